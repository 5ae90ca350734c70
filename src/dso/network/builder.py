"""One way to build a network: the node of `dso node run` / `dso train --dso` (`open_node`), and the many
nodes of `dso demo`, `dso simulate` and the tests (`build_network`), from the same parts.

The parts: a chain (`memory`: the in-memory registry; `embedded`: the contract on the in-process EVM; or a
JSON-RPC URL), a content store (a block folder, or an IPFS HTTP API), one library, key and state file per
node. Only the transport changes between them: every node runs the same `Node`.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

from dso.chain.memory import MemoryChain
from dso.chain.registry import BatchInfo, BatchState, CertificateInfo, Registry, TransactionCount
from dso.config import DSOConfig
from dso.core.records import BatchManifest
from dso.core.signing import RegistryDomain
from dso.embed import Embedder, make_embedder
from dso.embed.cache import CachingEmbedder
from dso.errors import NodeError
from dso.library import ExperienceLibrary
from dso.network.attacks import colluding_voter, forging_attester
from dso.node.context import Log, SharedWork, Voter
from dso.node.node import Node
from dso.node.pull import texts_digest
from dso.node.reports import SyncReport
from dso.node.share import GlobalExperience
from dso.node.state import NodeState
from dso.store import ContentStore, LocalBlockStore


def node_paths(config: DSOConfig) -> dict[str, Path]:
    """Where a node keeps its state, its blocks (embedded store) and its learning run (`dso node init` points
    library.path at the run's library.db, so the learning loop and the node share one library)."""
    root = config.network.node_dir
    return {"state": root / "node.db", "blocks": root / "blocks", "run": root / "run"}


def node_account(seed: int, index: int, tag: str = "dso-simulate") -> LocalAccount:
    """A node key derived from a seed: the same network each run, never a key to use elsewhere."""
    account: LocalAccount = Account.from_key(keccak(text=f"{tag}:{seed}:{index}"))
    return account


def make_store(url: str, folder: Path) -> ContentStore:
    """An IPFS daemon's HTTP API at `url`, or a block folder when `url` is empty."""
    if url:
        from dso.store.ipfs import IPFSStore

        return IPFSStore(url)
    return LocalBlockStore(folder)


# -- one node from its configuration -----------------------------------------------------------


def open_node(
    config: DSOConfig, password: str | None, *, library: ExperienceLibrary | None = None, log: Log | None = None
) -> Node:
    """A node from its configuration: keystore, chain (embedded or JSON-RPC), registry, store, library, state.

    On the embedded chain, which lives only in this process, a registry with this node as its only member
    is deployed when none is named. The state file remembers its node and registry, and refuses others.
    With `password` None the node opens read-only (its address read from the keystore, nothing signed)."""
    from dso.chain.client import DEV_CHAIN_IDS, AddressBook, RegistryClient, connect, deploy_registry, dev_fund
    from dso.keys import keystore_address, load_account

    paths = node_paths(config)
    account = load_account(config.chain.keystore, password) if password is not None else None
    address = str(account.address) if account else keystore_address(config.chain.keystore)
    w3 = connect(config.chain.rpc or None)
    if account is not None and w3.eth.chain_id in DEV_CHAIN_IDS:
        dev_fund(w3, address)
    registry_address = config.chain.registry or AddressBook(config.chain.addresses).get(w3.eth.chain_id)
    registry: Registry
    if registry_address:
        registry = RegistryClient(w3, registry_address, account)
    elif not config.chain.rpc and account is not None:
        registry = deploy_registry(w3, account, [address], voting_window=config.chain.voting_window)
    else:
        raise NodeError(
            f"no registry named for chain {w3.eth.chain_id}: set chain.registry, or deploy one with dso chain deploy"
        )
    store = make_store(config.network.store, paths["blocks"])
    state = NodeState(paths["state"])
    genesis = bytes(w3.eth.get_block(0)["hash"]).hex()[:16]  # the embedded EVM is a new chain in every process
    bound = {"node": address, "registry": f"chain {w3.eth.chain_id} ({genesis}) {registry.address}"}
    mismatch = None
    with state.transaction():
        for key, value in bound.items():
            stored = state.meta(key)
            if stored is None:
                state.set_meta(key, value)
            elif stored != value:
                mismatch = f"{paths['state']} belongs to {key} {stored}, not {value}"
                if not config.chain.rpc:
                    mismatch += " (the embedded chain ends with its process: a lasting node needs chain.rpc)"
                break
    if mismatch:
        state.close()
        raise NodeError(mismatch)
    if library is None:
        library = ExperienceLibrary.from_config(config.library, make_embedder(config.embedder))
    return Node(config, library, account or address, registry, store, state, log=log)


# -- many nodes in one process -----------------------------------------------------------------


class SharedReads:
    """A registry client whose reads are shared by the nodes of one process while the chain does not move.

    Each node keeps its own client (its key, its transaction count); reads that depend only on the chain's
    state are answered once per block height for all of them. Every node still makes each call."""

    def __init__(self, inner: Registry, cache: dict[tuple[Any, ...], Any]) -> None:
        self.inner = inner
        self.cache = cache

    def _cached(self, key: tuple[Any, ...], read: Callable[[], Any]) -> Any:
        height = self.inner.height()
        entry = self.cache.get(key)
        if entry is None or entry[0] != height:
            entry = (height, read())
            self.cache[key] = entry
        return entry[1]

    # the port, by delegation
    @property
    def address(self) -> str:
        return self.inner.address

    @property
    def chain_id(self) -> int:
        return self.inner.chain_id

    @property
    def domain(self) -> RegistryDomain:
        return self.inner.domain

    @property
    def can_write(self) -> bool:
        return self.inner.can_write

    @property
    def sent(self) -> TransactionCount:
        return self.inner.sent

    @property
    def voting_window(self) -> int:
        return self.inner.voting_window

    def height(self) -> int:
        return self.inner.height()

    def with_account(self, account: LocalAccount) -> Registry:
        return SharedReads(self.inner.with_account(account), self.cache)

    def submit_batch(self, manifest: BatchManifest, batch_cid: str, signature: bytes) -> bytes:
        return self.inner.submit_batch(manifest, batch_cid, signature)

    def submit_batches(self, submissions: Sequence[tuple[BatchManifest, str, bytes]]) -> int:
        return self.inner.submit_batches(submissions)

    def vote_many(self, batch_ids: Sequence[bytes], approvals: Sequence[bool]) -> None:
        self.inner.vote_many(batch_ids, approvals)

    def finalize(self, batch_id: bytes) -> None:
        self.inner.finalize(batch_id)

    def sponsor_many(self, publishers: Sequence[str]) -> None:
        self.inner.sponsor_many(publishers)

    def attest(self, epoch: int, root: bytes, experiences: int, entries_cid: str) -> None:
        self.inner.attest(epoch, root, experiences, entries_cid)

    def dispute(self, epoch: int, proof_cid: str) -> None:
        self.inner.dispute(epoch, proof_cid)

    def certificate(self, epoch: int) -> CertificateInfo:
        return self._cached(("certificate", epoch), lambda: self.inner.certificate(epoch))  # type: ignore[no-any-return]

    def has_attested(self, epoch: int, account: str) -> bool:
        return self.inner.has_attested(epoch, account)

    def is_member(self, account: str) -> bool:
        return bool(self._cached(("member", account), lambda: self.inner.is_member(account)))

    def is_vouched(self, account: str) -> bool:
        return bool(self._cached(("vouched", account), lambda: self.inner.is_vouched(account)))

    def members(self) -> list[str]:
        return self.inner.members()

    def has_voted(self, batch_id: bytes, account: str) -> bool:
        return self.inner.has_voted(batch_id, account)

    def quorum(self, eligible: int) -> int:
        return int(self._cached(("quorum", eligible), lambda: self.inner.quorum(eligible)))

    def batch_id(self, manifest: BatchManifest, batch_cid: str) -> bytes:
        return self.inner.batch_id(manifest, batch_cid)

    def batch(self, batch_id: bytes) -> BatchInfo:
        return self._cached(("batch", batch_id), lambda: self.inner.batch(batch_id))  # type: ignore[no-any-return]

    def has_batch(self, batch_id: bytes) -> bool:
        return self.inner.has_batch(batch_id)

    def batch_count(self) -> int:
        return self.inner.batch_count()

    def batches(self, offset: int = 0, limit: int = 100) -> list[BatchInfo]:
        return list(self._cached(("batches", offset, limit), lambda: self.inner.batches(offset, limit)))

    def global_experiences(self, offset: int = 0, limit: int = 100) -> list[BatchInfo]:
        # the accepted list only grows and an accepted batch never changes: a full page is final
        key = ("global", offset, limit)
        entry = self.cache.get(key)
        if entry is not None and len(entry[1]) == limit:
            return list(entry[1])
        return list(self._cached(key, lambda: self.inner.global_experiences(offset, limit)))

    def all_batches(self, state: BatchState | None = None, page: int = 200) -> list[BatchInfo]:
        return self.inner.all_batches(state, page)

    def submission(self, batch_id: bytes) -> tuple[dict[str, Any], int]:
        return self.inner.submission(batch_id)


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
    """Who is in a network and what it runs on."""

    nodes: int
    members: tuple[int, ...]  # indexes of the registry's members
    byzantine: frozenset[int] = frozenset()
    colluding: bool = False  # Byzantine members vote for their own side (the vote-collusion attack)
    forging: bool = False  # Byzantine members attest a library with a poison in it (the forged-certificate attack)
    chain: str = "memory"  # memory | embedded | a JSON-RPC URL
    store: str = ""  # "" = a block folder in the network's folder; or an IPFS HTTP API URL
    voting_window: int = 100
    seed: int = 0
    key_tag: str = "dso-simulate"  # node keys derive from (tag, seed, index + first_key)
    first_key: int = 0
    operator: int | None = -1  # the key index that deploys the registry (None: the first member)
    share_work: bool = True  # nodes share public results (verifications, registry reads at one height)
    # nodes that share nothing even when the others do (their own registry reads, verifications and embedding
    # cache): what one real node pays, measured beside the shared simulation (`Network.round_figures`)
    witnesses: tuple[int, ...] = ()
    sponsored: bool = True  # members vouch on chain for every other node, so members' automatic votes judge them


@dataclasses.dataclass
class Network:
    """Nodes sharing one registry and one content store; node i is `nodes[i]`, honest unless Byzantine."""

    spec: NetworkSpec
    nodes: list[Node]
    registry: Registry  # the deployer's client, for reading what the registry holds
    store: ContentStore
    chain: Any  # the MemoryChain or the Web3 connection
    accounts: list[LocalAccount] = dataclasses.field(default_factory=list)
    folder: Path = Path(".")
    shared: SharedWork | None = None
    reads: dict[tuple[Any, ...], Any] = dataclasses.field(default_factory=dict)
    client: Callable[[LocalAccount], Registry] | None = None

    def restart(self, index: int, config: DSOConfig | None = None) -> Node:
        """Node `index` as a new process would open it: new objects over the same key, library and state
        files (the old objects are dropped unclosed, as a killed process leaves them). `config` replaces its
        configuration."""
        old = self.nodes[index]
        assert self.client is not None
        registry = self.client(self.accounts[index])
        sharing = self.spec.share_work and index not in self.spec.witnesses
        if sharing:
            registry = SharedReads(registry, self.reads)
        node = network_node(
            self.folder,
            index,
            config or old.config,
            self.accounts[index],
            registry,
            self.store,
            old.library.embedder,
            shared=self.shared if sharing else None,
            voter=old.voter,
        )
        self.nodes[index] = node
        return node

    @property
    def honest(self) -> list[Node]:
        return [n for i, n in enumerate(self.nodes) if i not in self.spec.byzantine]

    def is_honest(self, node: Node) -> bool:
        return self.nodes.index(node) not in self.spec.byzantine

    def close_epoch(self) -> int:
        """Mine to the end of the current epoch and past every pending batch's deadline (`close_epoch`)."""
        return close_epoch(self.chain, self.registry)

    def sync(self, indexes: Sequence[int], progress: Callable[[int], None] | None = None) -> list[SyncReport]:
        """One sync of each named node, in order."""
        reports = []
        for number, index in enumerate(indexes, 1):
            reports.append(self.nodes[index].sync())
            if progress:
                progress(number)
        return reports

    def sync_round(self, indexes: Sequence[int]) -> list[list[SyncReport]]:
        """One round: every named node syncs (publishing), again (voting on what the others published), the
        epoch closes (`close_epoch`), and every node syncs a third time (pulling and merging); the reports of
        each pass."""
        passes = [self.sync(indexes), self.sync(indexes)]
        self.close_epoch()
        return [*passes, self.sync(indexes)]

    def round_figures(
        self, round_: int, syncs: dict[str, list[SyncReport]], poisoned: Callable[[GlobalExperience], bool]
    ) -> dict[str, Any]:
        """What one round did, seen from the first honest node: batches by state, the global library, poisoned
        lessons, bytes per honest node (median and max), transactions and gas."""
        batches = [b for b in self.registry.all_batches() if b.round == round_]
        states = [b.state.name.lower() for b in batches]
        honest = self.honest
        # a member computes the library itself; a light node (network.light) reads the members' certificate
        observer = next((n for n in honest if n.is_member()), honest[0] if honest else self.nodes[0])
        computed = observer.global_library()
        bad = [g.text for g in computed.accepted if poisoned(g)]
        digests = {self._digest(n, syncs[n.address]) for n in honest}
        light = [r.light for rows in syncs.values() for r in rows if r.light is not None]
        sent = [sum(s.bytes.sent_total for s in syncs[n.address]) for n in honest]
        received = [sum(s.bytes.received_total for s in syncs[n.address]) for n in honest]
        by_kind: dict[str, int] = {}
        for n in honest:
            for s in syncs[n.address]:
                for kind, size in s.bytes.sent.items():
                    by_kind[kind] = by_kind.get(kind, 0) + size
        count = max(1, len(honest))
        byzantine = [n for i, n in enumerate(self.nodes) if i in self.spec.byzantine]
        byzantine_sent = [sum(s.bytes.sent_total for s in syncs[n.address]) for n in byzantine]
        byzantine_received = [sum(s.bytes.received_total for s in syncs[n.address]) for n in byzantine]
        return {
            "experiences_submitted": sum(s.records_published for rows in syncs.values() for s in rows),
            "batches": {
                "submitted": len(batches),
                "accepted": states.count("accepted"),
                "rejected": states.count("rejected"),
                "pending": states.count("pending"),
            },
            "global_library": {
                "accepted": len(computed.accepted),
                "rejected": len(computed.rejected),
                # rejected for support alone: merged only where a node's own trial shows a gain (dso.node.trial)
                "candidates": len(computed.candidates),
                "poisoned_candidates": sum(poisoned(g) for g in computed.candidates),
            },
            "poisoned_accepted": len(bad),
            "poisoned_texts": bad[:5],
            "refused_batches": sum(len(s.pulled.refused) for rows in syncs.values() for s in rows),
            "honest_nodes_agreeing": f"{len(digests) == 1}",
            "global_digest": observer.global_digest(computed.accepted),  # sha256 of the accepted texts
            "bytes_per_honest_node": {
                "sent_median": statistics.median(sent) if sent else 0,
                "received_median": statistics.median(received) if received else 0,
                "sent_max": max(sent, default=0),
                "received_max": max(received, default=0),
                "sent_by_kind_mean": {k: round(v / count) for k, v in sorted(by_kind.items())},
            },
            "bytes_per_byzantine_node": {
                "sent_median": statistics.median(byzantine_sent) if byzantine_sent else 0,
                "received_median": statistics.median(byzantine_received) if byzantine_received else 0,
            },
            "witnesses": [self._witness(i, syncs[self.nodes[i].address]) for i in self.spec.witnesses],
            "transactions": sum(s.transactions for rows in syncs.values() for s in rows),
            "gas": sum(s.gas for rows in syncs.values() for s in rows),
            "light_syncs": {
                mode: sum(1 for found in light if found.mode == mode)
                for mode in ("certificate", "audit", "full", "wait")
            },
            "disputes": sum(1 for found in light if found.disputed),
            "attestations": sum(1 for rows in syncs.values() for r in rows if r.attested is not None),
        }

    @staticmethod
    def _digest(node: Node, reports: Sequence[SyncReport]) -> str:
        """The digest of the library a node merged last: the certificate's, for a light node that read one."""
        light = next((r.light for r in reversed(reports) if r.light is not None), None)
        if light is not None and light.mode == "certificate":
            return texts_digest(e.text for e in light.entries)
        return node.global_digest()

    def _witness(self, index: int, syncs: Sequence[SyncReport]) -> dict[str, Any]:
        """What a node that shares nothing paid this round: CPU and wall seconds per step, bytes, transactions."""
        cpu: dict[str, float] = {}
        wall: dict[str, float] = {}
        for report in syncs:
            for step, seconds in report.cpu_phases.items():
                cpu[step] = cpu.get(step, 0.0) + seconds
            for step, seconds in report.phases.items():
                wall[step] = wall.get(step, 0.0) + seconds
        return {
            "node": index,
            "role": "member" if index in self.spec.members else "reader",
            "honest": index not in self.spec.byzantine,
            "cpu_seconds": {k: round(v, 3) for k, v in sorted(cpu.items())},
            "cpu_seconds_total": round(sum(cpu.values()), 3),
            "wall_seconds": {k: round(v, 3) for k, v in sorted(wall.items())},
            "sent": sum(s.bytes.sent_total for s in syncs),
            "received": sum(s.bytes.received_total for s in syncs),
            "transactions": sum(s.transactions for s in syncs),
        }

    def close(self) -> None:
        for node in self.nodes:
            node.library.close()
            node.close()


@dataclasses.dataclass(frozen=True)
class Deployment:
    """A network's chain side: its keys, each funded (on a development chain), and its registry with
    `spec.members` as members and, with `spec.sponsored`, every other node sponsored by a member."""

    chain: Any  # the MemoryChain or the Web3 connection
    registry: Registry  # the deployer's client
    accounts: list[LocalAccount]  # node i's key is accounts[i]
    client: Callable[[LocalAccount], Registry]  # a client of the registry signing as an account


def deploy_network(spec: NetworkSpec) -> Deployment:
    """Keys, funding, the registry and its sponsorships, for `spec` (no node is opened)."""
    accounts = [node_account(spec.seed, spec.first_key + i, spec.key_tag) for i in range(spec.nodes)]
    deployer = node_account(spec.seed, spec.operator, spec.key_tag) if spec.operator is not None else None
    members = [accounts[i].address for i in spec.members]
    owner = deployer or accounts[spec.members[0]]
    chain: Any
    if spec.chain == "memory":
        memory = MemoryChain()
        chain = memory
        deployed: Registry = memory.deploy(owner, members, voting_window=spec.voting_window)

        def client(account: LocalAccount) -> Registry:
            return memory.registry(deployed.address, account)
    else:
        from dso.chain.client import RegistryClient, connect, deploy_registry, dev_fund

        chain = connect(None if spec.chain == "embedded" else spec.chain)
        for account in [*([deployer] if deployer else []), *accounts]:
            dev_fund(chain, account.address)
        deployed = deploy_registry(chain, owner, members, voting_window=spec.voting_window)

        def client(account: LocalAccount) -> Registry:
            return RegistryClient(chain, deployed.address, account)

    if spec.sponsored:  # every non-member is vouched for by a member, spread over the members (at most 1,024 each)
        outsiders = [a.address for i, a in enumerate(accounts) if i not in spec.members]
        for k, m in enumerate(spec.members):
            mine = outsiders[k :: len(spec.members)]
            if mine:
                client(accounts[m]).sponsor_many(mine)
    return Deployment(chain, deployed, accounts, client)


def close_epoch(chain: Any, registry: Registry) -> int:
    """Mine a development chain (a `MemoryChain` or a Web3 connection to the embedded EVM or anvil) past the last
    block of the current epoch, and past the deadline of every batch still pending, so that every batch
    registered so far is decided and its epoch closed: what waiting for the voting window does on a live
    chain. The simulation, the demo, the Flower server and the tests run it between rounds. Returns the
    number of blocks mined."""
    height = registry.height()
    window = max(1, registry.voting_window)
    # past the current epoch's last block by one: an attestation of the closed epoch is then valid at the chain's
    # head, where anvil estimates gas (a live chain is there by the time a member syncs)
    target = (height // window + 1) * window
    for info in registry.all_batches(BatchState.PENDING):
        target = max(target, info.deadline)
    blocks = target - height
    if blocks > 0:
        if isinstance(chain, MemoryChain):
            chain.mine(blocks)
        else:
            from dso.chain.client import mine

            mine(chain, blocks)
    return max(0, blocks)


def network_node(
    folder: Path,
    index: int,
    config: DSOConfig,
    account: LocalAccount,
    registry: Registry,
    store: ContentStore,
    embedder: Embedder,
    *,
    shared: SharedWork | None = None,
    voter: Voter | None = None,
) -> Node:
    """Node `index` of a network kept in `folder`: its library and state under `folder/nodeNNNN/` (a new node,
    or the same node reopened by another process: a restart, a Flower client)."""
    where = folder / f"node{index:04d}"
    library = ExperienceLibrary.from_config(config.library, embedder, where / "library.db")
    return Node(config, library, account, registry, store, NodeState(where / "node.db"), shared=shared, voter=voter)


def build_network(
    config: DSOConfig,
    folder: Path,
    spec: NetworkSpec,
    *,
    embedder: Embedder | None = None,
    configs: Sequence[DSOConfig] | None = None,
) -> Network:
    """A deployed network (`deploy_network`), a store, and one node per index with its own library
    (`folder/nodeNNNN/library.db`) and state, all in this process; `configs` gives each node its own
    configuration (default: `config` for all)."""
    deployment = deploy_network(spec)
    store = make_store(spec.store, folder / "blocks")
    shared = SharedWork() if spec.share_work else None
    reads: dict[tuple[Any, ...], Any] = {}
    base = embedder or make_embedder(config.embedder)
    cache = CachingEmbedder(base)
    allies = [deployment.accounts[i].address for i in sorted(spec.byzantine)]
    nodes = []
    for index, account in enumerate(deployment.accounts):
        node_config = configs[index] if configs is not None else config
        registry = deployment.client(account)
        if index in spec.witnesses:  # shares nothing: its own reads, verifications and embedding cache
            node = network_node(folder, index, node_config, account, registry, store, CachingEmbedder(base))
            nodes.append(node)
            continue
        registry = SharedReads(registry, reads) if spec.share_work else registry
        voter = colluding_voter(allies) if spec.colluding and index in spec.byzantine else None
        nodes.append(
            network_node(folder, index, node_config, account, registry, store, cache, shared=shared, voter=voter)
        )
    for index, node in enumerate(nodes):
        if spec.forging and index in spec.byzantine:
            node.ctx.attester = forging_attester(allies)
    chain, accounts = deployment.chain, deployment.accounts
    return Network(spec, nodes, deployment.registry, store, chain, accounts, folder, shared, reads, deployment.client)
