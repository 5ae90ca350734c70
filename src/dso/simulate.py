"""`dso simulate`: a network of many nodes on one machine, each running the real node code.

Every node has its own key, library, state file and registry client; they share one chain (the embedded
EVM, or any JSON-RPC node) and one content store (a block folder, or an IPFS daemon). A round:

1. **learn** (replay mode): each honest node draws lessons from a pool of experiences learned on the
   development machine (`dso/data/replay_pool.json`, written by `python -m dso.bench.pool`); each
   lesson of the pool has its own popularity, so some are learned by most nodes and some by few.
   Byzantine nodes draw honestly too (to keep their reputation) and add their attack.
2. **publish**: every node runs `Node.sync` (its outbox, one signed batch, one `submitBatch`).
3. **vote**: the committee members run `Node.sync` again: they re-verify every pending batch and cast
   their votes in `voteMany` transactions.
4. **pull**: every node runs `Node.sync` once more: it pulls the accepted batches, verifies them, computes
   the global library with the robust consensus, and merges it into its own library.

Not every node is a registry member: a vote costs about 33k gas and a registry deployed with 600 or more
members runs out of block gas, so the members are a committee of `committee` nodes drawn at random (by the
seed) when the registry is deployed; membership changes afterwards only by the registry's own 2/3
membership votes. What this means for Byzantine tolerance: the committee decides which batches count,
and a committee with more than a third Byzantine members can reject every honest batch (censorship),
while poisoning needs the consensus's support threshold too. `committee_capture` gives the chance that a
random committee is captured; the `vote-collusion` attack runs Byzantine members that vote for their own
batches and against honest ones.

Nodes in one process share work that depends only on public data (`SharedWork`: a batch's verification,
the global library of a set of records, embeddings of a text, registry reads at one block height); each
node still runs every step and counts the bytes it would have sent and received.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

from dso.bench.byzantine import attack_texts, committee_capture
from dso.bench.common import machine
from dso.chain.client import BatchInfo, RegistryClient, connect, deploy_registry, dev_fund
from dso.config import DSOConfig
from dso.embed import Embedder, make_embedder
from dso.embed.base import Vectors
from dso.errors import ConfigError, LibraryError
from dso.library import ExperienceLibrary
from dso.node.node import Node, SharedWork
from dso.node.state import NodeState
from dso.store import ContentStore, LocalBlockStore

ATTACKS = ("none", "junk", "wrong", "paraphrase", "inflation", "injection", "retrieval-hijack", "vote-collusion")
Progress = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class SimulationSettings:
    nodes: int = 20
    byzantine: float = 0.0  # share of nodes that are Byzantine
    attack: str = "wrong"
    rounds: int = 3
    committee: int = 9  # registry members, drawn at random among all nodes
    draws: int = 3  # lessons each node learns from the pool per round (before de-duplication)
    chain: str = ""  # "" = the embedded EVM; or a JSON-RPC URL
    store: str = ""  # "" = a block folder; or an IPFS HTTP API URL
    seed: int = 0
    mode: str = "replay"

    def check(self) -> None:
        if self.mode != "replay":
            raise ConfigError(
                "dso simulate runs replay mode only; live mode (nodes learning with the model) is not built"
            )
        if self.attack not in ATTACKS:
            raise ConfigError(f"unknown attack {self.attack!r}; known: {', '.join(ATTACKS)}")
        if not 2 <= self.nodes <= 5000:
            raise ConfigError(f"--nodes must lie in [2, 5000], got {self.nodes}")
        if not 0.0 <= self.byzantine < 0.5:
            raise ConfigError(f"--byzantine must lie in [0, 0.5), got {self.byzantine}")
        if not 1 <= self.committee <= min(self.nodes, 200):
            raise ConfigError(f"--committee must lie in [1, min(nodes, 200)], got {self.committee}")
        if not 1 <= self.rounds <= 100 or not 1 <= self.draws <= 50:
            raise ConfigError("--rounds must lie in [1, 100] and --draws in [1, 50]")


def replay_pool() -> list[str]:
    document = json.loads(resources.files("dso").joinpath("data", "replay_pool.json").read_text(encoding="utf-8"))
    return [entry["text"] for entry in document["experiences"]]


class CachingEmbedder:
    """One vector per distinct text for all nodes of the process (the same text always embeds the same)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.cache: dict[str, np.ndarray] = {}

    @property
    def identity(self) -> str:
        return self.inner.identity

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed(self, texts: Sequence[str]) -> Vectors:
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            self.cache.update(zip(missing, self.inner.embed(missing), strict=True))
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self.cache[t] for t in texts]).astype(np.float32)


class SharedReads(RegistryClient):
    """A registry client whose reads are shared by the nodes of one process while the chain does not move."""

    cache: dict[tuple[Any, ...], Any]

    def _cached(self, key: tuple[Any, ...], read: Callable[[], Any]) -> Any:
        height = self.w3.eth.block_number
        entry = self.cache.get(key)
        if entry is None or entry[0] != height:
            entry = (height, read())
            self.cache[key] = entry
        return entry[1]

    def batches(self, offset: int = 0, limit: int = 100) -> list[BatchInfo]:
        return list(self._cached(("batches", offset, limit), lambda: super(SharedReads, self).batches(offset, limit)))

    def global_experiences(self, offset: int = 0, limit: int = 100) -> list[BatchInfo]:
        # the accepted list only grows and an accepted batch never changes: a full page is final
        key = ("global", offset, limit)
        entry = self.cache.get(key)
        if entry is not None and len(entry[1]) == limit:
            return list(entry[1])
        read = lambda: super(SharedReads, self).global_experiences(offset, limit)  # noqa: E731
        return list(self._cached(key, read))

    def batch(self, batch_id: bytes) -> BatchInfo:
        return self._cached(("batch", batch_id), lambda: super(SharedReads, self).batch(batch_id))  # type: ignore[no-any-return]

    def is_member(self, account: str) -> bool:
        return bool(self._cached(("member", account), lambda: super(SharedReads, self).is_member(account)))


class ByzantineNode(Node):
    """A node that runs the same code but votes, as a member, for its own side (the vote-collusion attack)."""

    allies: ClassVar[set[str]] = set()

    def judge(self, info: BatchInfo) -> tuple[bool, str]:
        ally = info.node in self.allies
        return ally, "colluding: for an ally" if ally else "colluding: against an honest node"


@dataclasses.dataclass
class _Member:
    node: Node
    honest: bool


def node_account(seed: int, index: int) -> LocalAccount:
    """A node key derived from the seed: the same network each run, never a key to use elsewhere."""
    key = keccak(text=f"dso-simulate:{seed}:{index}")
    account: LocalAccount = Account.from_key(key)
    return account


def simulate(
    settings: SimulationSettings, config: DSOConfig, *, workdir: Path | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """Run the network; returns per-round figures, with the settings and the machine."""
    settings.check()
    say = progress or (lambda line: None)
    scratch = Path(tempfile.mkdtemp(prefix="dso-sim-")) if workdir is None else workdir
    try:
        if settings.mode == "live":
            return _live(settings, config, scratch, say)
        return _simulate(settings, config, scratch, say)
    finally:
        if workdir is None:
            shutil.rmtree(scratch, ignore_errors=True)


def _live(settings: SimulationSettings, config: DSOConfig, scratch: Path, say: Progress) -> dict[str, Any]:
    """Live mode: the nodes learn with the embedded model, each on its own slice of `train.dataset` (the
    network of the main job, `dso.demo`, with these settings); per round, node 0's held-out accuracy alone
    and with the global library."""
    from dso.demo import DemoSettings, run_demo
    from dso.learn.run import Hooks

    attackers = round(settings.byzantine * settings.nodes)
    demo = DemoSettings(
        honest=settings.nodes - attackers,
        attackers=attackers,
        rounds=settings.rounds,
        questions=settings.draws,
        heldout=config.train.heldout_size,
    )
    started = time.perf_counter()
    report = run_demo(config, scratch / "live", Hooks(log=say), demo)
    report.update(settings=dataclasses.asdict(settings), machine=machine(), seconds=time.perf_counter() - started)
    report["poisoned_accepted"] = report["attacker_items_accepted"]
    return report


def _simulate(settings: SimulationSettings, config: DSOConfig, scratch: Path, say: Progress) -> dict[str, Any]:
    rng = random.Random(f"simulate:{settings.seed}")
    started = time.perf_counter()
    timings: dict[str, float] = {}
    w3 = connect(settings.chain or None)
    accounts = [node_account(settings.seed, i) for i in range(settings.nodes)]
    operator = node_account(settings.seed, -1)
    for account in [operator, *accounts]:
        dev_fund(w3, account.address)
    bad_ids = set(rng.sample(range(settings.nodes), round(settings.byzantine * settings.nodes)))
    members = sorted(rng.sample(range(settings.nodes), settings.committee))
    # the voting window counts blocks, and a dev chain mines one per transaction: a round of N nodes takes
    # about 2N + committee blocks, so a window of chain.voting_window blocks would close on the first batches
    # of a large network before the committee reaches them (they would be rejected for want of votes)
    window = max(config.chain.voting_window, 4 * settings.nodes + 10 * settings.committee)
    deployed = deploy_registry(w3, operator, [accounts[i].address for i in members], voting_window=window)
    timings["setup_chain"] = time.perf_counter() - started
    say(
        f"registry {deployed.address}: {settings.committee} members, {len(bad_ids)} Byzantine nodes of {settings.nodes}"
    )

    store: ContentStore
    if settings.store:
        from dso.store.ipfs import IPFSStore

        store = IPFSStore(settings.store)
    else:
        store = LocalBlockStore(scratch / "blocks")
    embedder = CachingEmbedder(make_embedder(config.embedder))
    shared = SharedWork()
    reads: dict[tuple[Any, ...], Any] = {}
    node_config = dataclasses.replace(config)
    ByzantineNode.allies = {accounts[i].address for i in bad_ids}
    nodes: list[_Member] = []
    t0 = time.perf_counter()
    for index, account in enumerate(accounts):
        folder = scratch / f"node{index:04d}"
        library = ExperienceLibrary.from_config(config.library, embedder, folder / "library.db")
        registry = SharedReads(w3, deployed.address, account)
        registry.cache = reads
        colluding = settings.attack == "vote-collusion" and index in bad_ids
        kind = ByzantineNode if colluding else Node
        node = kind(node_config, library, account, registry, store, NodeState(folder / "node.db"), shared=shared)
        nodes.append(_Member(node, index not in bad_ids))
    timings["setup_nodes"] = time.perf_counter() - t0
    say(f"{settings.nodes} nodes ready in {timings['setup_nodes']:.1f} s")

    pool = [t for t in replay_pool() if len(t.split()) <= config.library.word_cap]
    popularity = [0.9 * (0.85**rank) + 0.05 for rank in range(len(pool))]  # a few common lessons, a long tail
    rounds = []
    for round_ in range(1, settings.rounds + 1):
        entry: dict[str, Any] = {"round": round_, "mode": settings.mode}
        phase: dict[str, float] = {}
        t0 = time.perf_counter()
        for member in nodes:
            drawn = [t for t, p in zip(pool, popularity, strict=True) if rng.random() < p * settings.draws / 3]
            for text in drawn[: settings.draws]:
                member.node.library.add(text, confidence=rng.uniform(0.5, 0.9), domain="replay")
            if not member.honest and settings.attack not in ("none", "vote-collusion"):
                rows = attack_texts(settings.attack, member.node.address, rng, round_)
                for _, text, confidence in rows:
                    with contextlib.suppress(LibraryError):  # a text the library refuses is one the attacker loses
                        member.node.library.add(text, confidence=confidence, domain="replay")
        phase["learn"] = time.perf_counter() - t0
        before = {m.node.address: dataclasses.replace(m.node.registry.sent) for m in nodes}
        summaries: dict[str, list[dict[str, Any]]] = {m.node.address: [] for m in nodes}

        for name, who in (("publish", nodes), ("vote", [nodes[i] for i in members]), ("pull", nodes)):
            t = time.perf_counter()
            for number, member in enumerate(who, 1):
                summaries[member.node.address].append(member.node.sync())
                if number % 100 == 0:
                    say(f"round {round_} {name}: {number}/{len(who)} nodes")
            phase[name] = time.perf_counter() - t
        entry.update(_round_figures(nodes, summaries, before, set(pool), deployed, round_))
        entry["phase_seconds"] = {k: round(v, 2) for k, v in phase.items()}
        rounds.append(entry)
        say(
            f"round {round_}: {entry['batches']['accepted']} batches accepted, {entry['batches']['rejected']} "
            f"rejected; global library {entry['global_library']['accepted']} ({entry['poisoned_accepted']} "
            f"poisoned); {sum(phase.values()):.1f} s"
        )
    return {
        "mode": settings.mode,
        "settings": dataclasses.asdict(settings),
        "consensus": dataclasses.asdict(config.consensus),
        "machine": machine(),
        "chain": "embedded (eth-tester + py-evm)" if not settings.chain else "JSON-RPC",
        "store": "embedded block folder" if not settings.store else "IPFS HTTP API",
        "committee": {
            "members": settings.committee,
            "byzantine_members": sum(1 for i in members if i in bad_ids),
            "capture_probability": round(committee_capture(settings.nodes, len(bad_ids), settings.committee), 6),
        },
        "pool": len(pool),
        "voting_window_blocks": window,
        "setup_seconds": {k: round(v, 2) for k, v in timings.items()},
        "rounds": rounds,
        "poisoned_accepted": max(r["poisoned_accepted"] for r in rounds),
        "seconds": round(time.perf_counter() - started, 2),
    }


def _round_figures(
    nodes: list[_Member],
    summaries: dict[str, list[dict[str, Any]]],
    before: dict[str, Any],
    honest_texts: set[str],
    registry: RegistryClient,
    round_: int,
) -> dict[str, Any]:
    batches = [b for b in registry.all_batches() if b.round == round_]
    states = [b.state.name.lower() for b in batches]
    honest = [m.node for m in nodes if m.honest]
    observer = honest[0] if honest else nodes[0].node
    computed = observer.global_library()
    accepted, rejected = computed.accepted, computed.rejected
    # poisoned: accepted with no wording any honest node learned (an attack text, or its paraphrase)
    poisoned = [g.text for g in accepted if not ({g.text, *(g.decision.wordings if g.decision else ())} & honest_texts)]
    digests = {m.node.global_digest() for m in nodes if m.honest}

    def per_node(direction: str) -> list[int]:
        return [sum(sum(s["bytes"][direction].values()) for s in summaries[m.node.address]) for m in nodes if m.honest]

    sent, received = per_node("sent"), per_node("received")
    transactions = sum(m.node.registry.sent.transactions - before[m.node.address].transactions for m in nodes)
    gas = sum(m.node.registry.sent.gas - before[m.node.address].gas for m in nodes)
    published = sum((s["published"] or {}).get("records", 0) for rows in summaries.values() for s in rows)
    by_kind: dict[str, int] = {}
    for m in nodes:
        if m.honest:
            for s in summaries[m.node.address]:
                for kind, n in s["bytes"]["sent"].items():
                    by_kind[kind] = by_kind.get(kind, 0) + n
    honest_count = max(1, len(honest))
    return {
        "experiences_submitted": published,
        "batches": {
            "submitted": len(batches),
            "accepted": states.count("accepted"),
            "rejected": states.count("rejected"),
            "pending": states.count("pending"),
        },
        "global_library": {"accepted": len(accepted), "rejected": len(rejected)},
        "poisoned_accepted": len(poisoned),
        "poisoned_texts": poisoned[:5],
        "refused_batches": sum(len(s["pulled"]["refused"]) for rows in summaries.values() for s in rows),
        "honest_nodes_agreeing": f"{len(digests) == 1}",
        "bytes_per_honest_node": {
            "sent_median": statistics.median(sent) if sent else 0,
            "received_median": statistics.median(received) if received else 0,
            "sent_max": max(sent, default=0),
            "received_max": max(received, default=0),
            "sent_by_kind_mean": {k: round(v / honest_count) for k, v in sorted(by_kind.items())},
        },
        "transactions": transactions,
        "gas": gas,
    }
