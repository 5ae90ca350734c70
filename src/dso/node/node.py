"""A DSO node: publishes what it learned, votes on what others published, pulls and merges what was accepted.

One `sync` does, in order:

1. **outbox**: finish sending any built round (store the blocks, submit the batch unless the registry
   already holds it);
2. **publish**: the local experiences not yet published become one signed batch (`share.build_*`),
   written to the outbox first, then sent;
3. **scan** (members only): new registry batches are read from a cursor (never from 0), pending ones
   refreshed;
4. **vote** (members only): each pending batch of another node is fetched and verified, its texts run
   through the consensus guards, and one `voteMany` casts every vote of the sync;
5. **finalize** (members) batches whose voting window closed;
6. **pull**: accepted batches past the cursor are fetched and verified; one failed check refuses the whole
   batch, with its reason kept;
7. **merge**: the global library is recomputed from every verified accepted record (robust consensus by
   default) and what it accepts is merged into the local library with provenance; merging is idempotent.

Bytes sent and received (records, manifests, transactions, signatures read back) are kept per sync.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from eth_account.signers.local import LocalAccount

from dso.chain.client import BatchInfo, BatchState, RegistryClient
from dso.config import DSOConfig
from dso.consensus.aggregate import guard_rules
from dso.consensus.guards import check_text
from dso.consensus.semantic_guard import SemanticGuard
from dso.core.records import BatchManifest, ExperienceRecord, decode_batch
from dso.core.signing import batch_id as local_batch_id
from dso.core.signing import sign_batch
from dso.embed.base import Vectors
from dso.errors import ChainError, ContractRevert, DataError, NodeError, StoreError
from dso.faults import fault_point
from dso.library import ExperienceLibrary, RemoteExperience
from dso.node import share
from dso.node.state import NodeState
from dso.store.base import ContentStore

PAGE = 100
Log = Callable[[str], None]

# The checks a receiver runs on a stranger's batch, in order (`Node.review` reports each one).
CHECKS = {
    "manifest": "manifest re-hashed to its CID; its node, round and Merkle root equal the registry's",
    "signature": "the registering transaction's signature recovers to the batch's node for this registry",
    "records": "every record re-hashed to its CID, names the node, and has a Merkle proof under the on-chain root",
    "codes": "every record's 1-bit embedding code matches its own text",
}


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    label: str
    outcome: str  # passed | failed | not run
    detail: str


@dataclasses.dataclass(frozen=True)
class BatchReview:
    """What a reviewer needs to judge one batch: each check's outcome, the records, the guards' findings."""

    info: BatchInfo
    checks: tuple[Check, ...]
    records: tuple[tuple[str, ExperienceRecord], ...]  # empty unless every check passed
    findings: tuple[tuple[str, ...], ...]  # per record: the guard rules its text breaks

    @property
    def verified(self) -> bool:
        return all(check.outcome == "passed" for check in self.checks)


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def hex_id(batch_id: bytes) -> str:
    return "0x" + batch_id.hex()


@dataclasses.dataclass
class SharedWork:
    """Results that depend only on public data, shared by nodes that run in one process (`dso simulate`).

    A batch's verification depends only on its bytes and the registry, the global library only on the
    verified records: every node would compute the same, so nodes in one process compute each once. What a
    node would have fetched is still counted in its own traffic."""

    verified: dict[str, tuple[list[tuple[str, ExperienceRecord]], list[tuple[str, int]]]] = dataclasses.field(
        default_factory=dict
    )
    global_libraries: dict[str, share.GlobalLibrary] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _Traffic:
    rows: list[tuple[str, str, int]] = dataclasses.field(default_factory=list)

    def add(self, kind: str, direction: str, n: int) -> None:
        self.rows.append((kind, direction, n))


class Node:
    """One node of the network over one library, one key, one registry and one content store."""

    def __init__(
        self,
        config: DSOConfig,
        library: ExperienceLibrary,
        account: LocalAccount | str,
        registry: RegistryClient,
        store: ContentStore,
        state: NodeState,
        *,
        log: Log | None = None,
        shared: SharedWork | None = None,
    ) -> None:
        """`account` is the node's key, or only its address for a read-only node (a reviewer page that asks
        for the key's password when a vote is cast): such a node verifies, pulls and merges, but never signs."""
        if isinstance(account, str):
            self.account: LocalAccount | None = None
            self.address = account
        else:
            if not registry.can_write:
                raise NodeError("a node's registry client needs the node's account")
            self.account = account
            self.address = str(account.address)
        self.config = config
        self.library = library
        self.registry = registry
        self.store = store
        self.state = state
        self._log = log or (lambda line: None)
        self._vectors: dict[str, Vectors] = {}
        self._semantic_guard: SemanticGuard | None = None
        self._traffic = _Traffic()
        self._shared = shared
        self._seen: dict[str, BatchInfo] = {}  # the registry's batches as the last scan read them
        self._global: tuple[str, share.GlobalLibrary] | None = None  # the last global library and its records' digest

    # -- helpers -------------------------------------------------------------------------------

    @property
    def model(self) -> str:
        return self.config.train.extractor_model or self.config.llm.model

    def embed(self, texts: list[str]) -> Vectors:
        """Unit vectors of `texts` by the library's embedder, each text embedded once per node."""
        embedder = self.library.embedder
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if missing:
            for text, vector in zip(missing, embedder.embed(missing), strict=True):
                self._vectors[text] = vector
        return np.stack([self._vectors[t] for t in texts]) if texts else np.zeros((0, embedder.dim), np.float32)

    def _guard(self) -> SemanticGuard:
        if self._semantic_guard is None:
            self._semantic_guard = SemanticGuard.shipped(self.library.embedder)
        return self._semantic_guard

    def _put(self, data: bytes, kind: str) -> None:
        self.store.put(data)
        self._traffic.add(kind, "sent", len(data))

    def _key(self) -> LocalAccount:
        if self.account is None:
            raise NodeError(f"node {self.address} is open read-only: publishing and voting need its key")
        return self.account

    # -- publishing ----------------------------------------------------------------------------

    def flush_outbox(self) -> list[dict[str, Any]]:
        """Send every built round still in the outbox; a round the registry already holds is marked done."""
        sent = []
        for row in self.state.unfinished_outbox():
            round_ = int(row["round"])
            manifest = decode_batch(row["manifest"])
            if row["state"] == "built":
                for _, data in self.state.outbox_records(round_):
                    self._put(data, "records")
                self._put(row["manifest"], "manifests")
                self.state.set_outbox_state(round_, "stored")
            batch_id = local_batch_id(manifest, row["manifest_cid"])
            if not self.registry.has_batch(batch_id):
                try:
                    self.registry.submit_batch(manifest, row["manifest_cid"], row["signature"])
                except ContractRevert as exc:
                    if exc.name == "RoundAlreadyUsed":
                        raise NodeError(
                            f"round {round_} of {self.address} is taken on the registry by another batch: "
                            "this node's state file is not the one it published with"
                        ) from None
                    if exc.name != "DuplicateBatch":
                        raise
                fault_point("sync:submitted")
            self.state.set_outbox_state(round_, "done", hex_id(batch_id))
            sent.append({"round": round_, "batch_id": hex_id(batch_id), "records": len(manifest.records)})
            self._log(f"published round {round_}: {len(manifest.records)} experiences, batch {hex_id(batch_id)[:12]}")
        return sent

    def publish(self) -> dict[str, Any] | None:
        """Build the next round from local experiences not yet published (None if there are none), then send it."""
        published = self.state.published_keys()
        key = self._key()
        fresh = [
            e
            for e in sorted(self.library.all(), key=lambda e: (e.created_at, e.id))
            if e.origin_node == "local" and text_key(e.text) not in published
        ][: self.config.network.max_publish]
        built = None
        if fresh:
            embedder_id = self.library.embedder_id or ""
            vectors = self.embed([e.text for e in fresh])
            records = share.build_records(
                fresh, vectors, node=self.address, model=self.model, embedder=embedder_id, timestamp=int(time.time())
            )
            round_ = self.state.next_round()
            domain = self.registry.domain

            def signer(manifest: BatchManifest, cid: str) -> bytes:
                return sign_batch(key.key, domain, manifest, cid)

            batch = share.build_batch(records, node=self.address, round_=round_, signer=signer, domain=domain)
            self.state.add_outgoing(round_, batch, [(text_key(e.text), e.id) for e in fresh])
            fault_point("sync:built")
            built = {"round": round_, "records": len(records), "manifest_cid": batch.manifest_cid}
        self.flush_outbox()
        return built

    # -- reading the registry ------------------------------------------------------------------

    def scan(self) -> int:
        """Read the registry's batches from the lowest one that may still be pending (a cursor, never from 0),
        note every one, and move the cursor past those decided; returns how many are pending."""
        cursor = self.state.cursor("scan")
        offset, lowest_pending = cursor, None
        while True:
            page = self.registry.batches(offset, PAGE)
            with self.state.transaction():
                for index, info in enumerate(page, offset):
                    self.state.note_batch(hex_id(info.id), info.node, info.round, info.state.name.lower())
                    self._seen[hex_id(info.id)] = info
                    if info.state == BatchState.PENDING and lowest_pending is None:
                        lowest_pending = index
                offset += len(page)
                self.state.set_cursor("scan", offset if lowest_pending is None else lowest_pending)
            if len(page) < PAGE:
                break
        return sum(1 for info in self._seen.values() if info.state == BatchState.PENDING)

    def _verify(
        self, info: BatchInfo, fetched: list[tuple[str, int]], passed: list[str]
    ) -> list[tuple[str, ExperienceRecord]]:
        """Every check of `CHECKS` in order; each one passed is appended to `passed`, the first failure raises."""
        manifest_bytes = self.store.get(info.batch_cid)
        fetched.append(("manifests", len(manifest_bytes)))
        manifest = share.check_manifest(info, manifest_bytes)
        passed.append("manifest")
        submitted, size = self.registry.submission(info.id)
        fetched.append(("signatures", size))
        share.check_submission(info, manifest, submitted, self.registry.domain)
        passed.append("signature")
        blocks = {cid: self.store.get(cid) for cid in manifest.records}
        fetched += [("records", len(data)) for data in blocks.values()]
        records = share.check_records(info, manifest, blocks)
        passed.append("records")
        vectors = self.embed([record.text for _, record in records])
        share.check_codes(records, vectors, self.library.embedder_id or "")
        passed.append("codes")
        return records

    def pending(self) -> list[BatchInfo]:
        """The registry's pending batches as the last `scan` read them, oldest first."""
        return [info for info in self._seen.values() if info.state == BatchState.PENDING]

    def fetch_verified(self, info: BatchInfo) -> list[tuple[str, ExperienceRecord]]:
        """Fetch a registry batch and run every check on it; a failed check raises DataError, StoreError or
        ChainError with the reason."""
        own = info.node == self.address
        key = f"{hex_id(info.id)}:{info.batch_cid}"
        if self._shared is not None and key in self._shared.verified:
            records, fetched = self._shared.verified[key]
            if not own:
                for kind, size in fetched:
                    self._traffic.add(kind, "received", size)
            return records
        fetched = []
        records = self._verify(info, fetched, [])
        if not own:
            for kind, n in fetched:
                self._traffic.add(kind, "received", n)
        if self._shared is not None:
            self._shared.verified[key] = (records, fetched)
        return records

    def review(self, info: BatchInfo) -> BatchReview:
        """Every check on one batch, each with its outcome, and the records when all pass (a reviewer's view)."""
        passed: list[str] = []
        failure = None
        records: list[tuple[str, ExperienceRecord]] = []
        try:
            records = self._verify(info, [], passed)
        except (DataError, StoreError, ChainError) as exc:
            failure = str(exc)
        checks = []
        for name, label in CHECKS.items():
            if name in passed:
                checks.append(Check(name, label, "passed", ""))
            elif failure is not None:
                checks.append(Check(name, label, "failed", failure))
                failure = None
            else:
                checks.append(Check(name, label, "not run", "an earlier check failed"))
        findings = self.guard_findings([record.text for _, record in records])
        return BatchReview(info, tuple(checks), tuple(records), tuple(tuple(f) for f in findings))

    # -- voting --------------------------------------------------------------------------------

    def is_member(self) -> bool:
        return self.registry.is_member(self.address)

    def guard_findings(self, texts: list[str]) -> list[list[str]]:
        """The consensus guards' findings per text (keyword rules, size caps, the semantic guard); [] = clean."""
        settings = self.config.consensus
        rules = guard_rules(settings.guard_rules)
        flagged: list[bool] = [bool(f) for f in self._guard().flags(self.embed(texts))] if texts else []
        findings = []
        for text, semantic in zip(texts, flagged, strict=True):
            broken = check_text(text, max_words=settings.max_words, max_bytes=settings.max_bytes, rules=rules)
            if semantic:
                broken.append("semantic-attack")
            findings.append(broken)
        return findings

    def judge(self, info: BatchInfo) -> tuple[bool, str]:
        """This member's vote on one batch and why: every check passes and enough texts pass the guards."""
        try:
            records = self.fetch_verified(info)
        except (DataError, StoreError, ChainError) as exc:
            return False, f"verification failed: {exc}"
        texts = [record.text for _, record in records]
        failed = [", ".join(broken) for broken in self.guard_findings(texts) if broken]
        passing = 1 - len(failed) / len(texts)
        if passing + 1e-9 < self.config.network.voting_threshold:
            return False, f"{len(failed)} of {len(texts)} texts break the guards ({failed[0]})"
        return True, f"verified; {len(texts) - len(failed)} of {len(texts)} texts pass the guards"

    def vote(self) -> list[dict[str, Any]]:
        """Judge every pending batch this member has not voted on; one voteMany per 200 casts them all."""
        decided = []
        for batch_id in self.state.unvoted_pending():
            info = self._seen.get(batch_id) or self.registry.batch(bytes.fromhex(batch_id[2:]))
            if info.state != BatchState.PENDING:
                continue
            # its own batch too: a member checks what it published like any other batch and counts once;
            # a vote cast before a crash, not yet in the state, is skipped by the registry's lenient voteMany
            approve, reason = self.judge(info)
            decided.append((batch_id, approve, reason))
            self._log(f"vote {'yes' if approve else 'no'} on {batch_id[:12]} from {info.node[:10]}: {reason}")
        self.cast_votes(decided)
        return [{"batch_id": b, "approve": a, "reason": r} for b, a, r in decided]

    def cast_votes(self, decided: list[tuple[str, bool, str]], registry: RegistryClient | None = None) -> None:
        """Cast (batch id, approve, reason) votes in voteMany chunks and keep them in the state; `registry`
        is a client holding the key for a read-only node (the key is unlocked only for this call)."""
        if registry is None:
            self._key()
            registry = self.registry
        if decided:
            registry.vote_many([bytes.fromhex(b[2:]) for b, _, _ in decided], [a for _, a, _ in decided])
            fault_point("sync:voted")
        self.state.record_votes(decided)

    def finalize_expired(self) -> int:
        """Close batches whose voting window ended (anyone may); a batch someone else closed is skipped."""
        block = self.registry.w3.eth.block_number
        closed = 0
        for batch_id, info in list(self._seen.items()):
            if info.state != BatchState.PENDING or block <= info.deadline:
                continue
            try:
                self.registry.finalize(info.id)
                closed += 1
            except ContractRevert as exc:
                if exc.name != "AlreadyDecided":
                    raise
            info = self.registry.batch(info.id)
            self._seen[batch_id] = info
            with self.state.transaction():
                self.state.note_batch(batch_id, info.node, info.round, info.state.name.lower())
        return closed

    # -- pulling and merging -------------------------------------------------------------------

    def pull(self) -> dict[str, Any]:
        """Fetch and verify accepted batches past the cursor; a batch failing any check is refused whole."""
        cursor = self.state.cursor("accepted")
        verified, refused = [], []
        while True:
            page = self.registry.global_experiences(cursor, PAGE)
            for info in page:
                batch_id = hex_id(info.id)
                with self.state.transaction():
                    self.state.note_batch(batch_id, info.node, info.round, "accepted")
                try:
                    records = self.fetch_verified(info)
                except (DataError, StoreError, ChainError) as exc:
                    reason = str(exc)
                    self.state.refuse(batch_id, reason, cursor + 1)
                    refused.append({"batch_id": batch_id, "node": info.node, "reason": reason})
                    self._log(f"refused batch {batch_id[:12]} from {info.node[:10]}: {reason[:200]}")
                else:
                    shared = [
                        share.SharedRecord(
                            cid,
                            batch_id,
                            r.node,
                            info.round,
                            r.text,
                            r.confidence,
                            r.domain,
                            r.epoch,
                            *(r.evidence or (0, 0, 0)),
                        )
                        for cid, r in records
                    ]
                    self.state.accept_verified(batch_id, shared, cursor + 1)
                    verified.append(batch_id)
                cursor += 1
            if len(page) < PAGE:
                break
        return {"verified": verified, "refused": refused}

    def global_library(self) -> share.GlobalLibrary:
        """The global library as this node computes it from every verified accepted record."""
        records = self.state.verified_records()
        digest = hashlib.sha256("\n".join(sorted(f"{r.batch_id}:{r.cid}" for r in records)).encode()).hexdigest()
        if self._global is not None and self._global[0] == digest:
            return self._global[1]  # the same verified records give the same library: status, merge and pages ask
        if self._shared is not None and digest in self._shared.global_libraries:
            return self._shared.global_libraries[digest]
        texts = share.texts_to_embed(records)
        vectors = dict(zip(texts, self.embed(texts), strict=True)) if texts else {}
        guard = self._guard() if self.config.network.byzantine_robust and records else None
        result = share.global_library(
            records,
            vectors,
            self.config.consensus,
            robust=self.config.network.byzantine_robust,
            semantic_guard=guard,
        )
        if self._shared is not None:
            self._shared.global_libraries[digest] = result
        self._global = (digest, result)
        return result

    def merge(self) -> dict[str, Any]:
        """Merge what the global library accepts into the local library; records already merged are skipped."""
        pending = self.state.unmerged_verified()
        accepted = self.global_library().accepted
        items = []
        for g in accepted:
            # a lesson this node published itself is already local; otherwise the earliest supporting record
            # brings it in (its provenance); the full list of supporters stays in the node's state
            if any(r.node == self.address for r in g.records):
                continue
            first = min(g.records, key=lambda r: (r.round, r.batch_id, r.cid))
            if not self.library.knows_record(first.cid):
                items.append(
                    RemoteExperience(
                        g.text,
                        first.confidence,
                        g.domain,
                        first.epoch,
                        first.node,
                        first.cid,
                        first.batch_id,
                        first.round,
                    )
                )
        results, skipped = self.library.merge_remote(items) if items else ([], [])
        fault_point("sync:merged")
        self.state.mark_merged(pending)
        for cid, reason in skipped:
            if reason != "record already merged":
                self._log(f"record {cid[:16]} not merged: {reason[:200]}")
        return {
            "added": sum(r.op == "ADD" for r in results),
            "supported": sum(r.op == "MERGE" for r in results),
            "skipped": len(skipped),
            "global_size": len(accepted),
        }

    # -- one sync ------------------------------------------------------------------------------

    def sync(self) -> dict[str, Any]:
        """One full sync (see the module docstring); returns what it did, bytes included."""
        seq = self.state.start_sync()
        self._traffic = _Traffic()
        before = dataclasses.replace(self.registry.sent)
        started = time.perf_counter()
        timings: dict[str, float] = {}

        def timed(name: str, step: Callable[[], Any]) -> Any:
            t0 = time.perf_counter()
            out = step()
            timings[name] = round(time.perf_counter() - t0, 3)
            return out

        published = timed("publish", self.publish)
        votes, closed = [], 0
        if self.is_member():  # only members vote, and only they need to follow pending batches
            timed("scan", self.scan)
            votes = timed("vote", self.vote)
            closed = timed("finalize", self.finalize_expired)
        pulled = timed("pull", self.pull)
        merged = timed("merge", self.merge)
        after = self.registry.sent
        self._traffic.add("transactions", "sent", after.bytes - before.bytes)
        self.state.add_traffic(seq, self._traffic.rows)
        summary = {
            "sync": seq,
            "published": published,
            "votes": votes,
            "finalized": closed,
            "pulled": pulled,
            "merged": merged,
            "transactions": after.transactions - before.transactions,
            "gas": after.gas - before.gas,
            "bytes": self.state.traffic(seq),
            "seconds": round(time.perf_counter() - started, 3),
            "phases": timings,
        }
        self.state.finish_sync(seq, summary)
        return summary

    def global_digest(self, accepted: list[share.GlobalExperience] | None = None) -> str:
        """sha256 of the global library's sorted texts: equal on nodes that agree."""
        if accepted is None:
            accepted = self.global_library().accepted
        return hashlib.sha256("\n".join(sorted(g.text for g in accepted)).encode()).hexdigest()

    def status(self) -> dict[str, Any]:
        accepted = self.global_library().accepted
        return {
            "node": self.address,
            "registry": self.registry.address,
            "chain_id": self.registry.w3.eth.chain_id,
            "member": self.is_member(),
            "round": self.state.next_round() - 1,
            "library_size": len(self.library),
            "outbox": self.state.outbox_counts(),
            "own_batches": self.state.own_batches(),
            "syncs": self.state.sync_count(),
            "last_sync": self.state.last_sync(),
            "bytes": self.state.traffic(),
            "refused_batches": self.state.refused(),
            "global_library": {"size": len(accepted), "digest": self.global_digest(accepted)},
        }

    def close(self) -> None:
        self.state.close()


def node_paths(config: DSOConfig) -> dict[str, Path]:
    """Where a node keeps its state, its blocks (embedded store) and its learning run (`dso node init` points
    library.path at the run's library.db, so the learning loop and the node share one library)."""
    root = config.network.node_dir
    return {"state": root / "node.db", "blocks": root / "blocks", "run": root / "run"}


def open_node(
    config: DSOConfig, password: str | None, *, library: ExperienceLibrary | None = None, log: Log | None = None
) -> Node:
    """A node from its configuration: keystore, chain (embedded or JSON-RPC), registry, store, library, state.

    On the embedded chain, which lives only in this process, a registry with this node as its only member
    is deployed when none is named. The state file remembers its node and registry, and refuses others.
    With `password` None the node opens read-only (its address read from the keystore, nothing signed)."""
    from dso.chain.client import DEV_CHAIN_IDS, AddressBook, connect, deploy_registry, dev_fund
    from dso.embed import make_embedder
    from dso.keys import keystore_address, load_account
    from dso.store import LocalBlockStore

    paths = node_paths(config)
    account = load_account(config.chain.keystore, password) if password is not None else None
    address = str(account.address) if account else keystore_address(config.chain.keystore)
    w3 = connect(config.chain.rpc or None)
    if account is not None and w3.eth.chain_id in DEV_CHAIN_IDS:
        dev_fund(w3, address)
    registry_address = config.chain.registry or AddressBook(config.chain.addresses).get(w3.eth.chain_id)
    if registry_address:
        registry = RegistryClient(w3, registry_address, account)
    elif not config.chain.rpc and account is not None:
        registry = deploy_registry(w3, account, [address], voting_window=config.chain.voting_window)
    else:
        raise NodeError(
            f"no registry named for chain {w3.eth.chain_id}: set chain.registry, or deploy one with dso chain deploy"
        )
    store: ContentStore
    if config.network.store:
        from dso.store.ipfs import IPFSStore

        store = IPFSStore(config.network.store)
    else:
        store = LocalBlockStore(paths["blocks"])
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
