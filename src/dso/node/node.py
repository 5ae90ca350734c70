"""A DSO node: publishes what it learned, votes on what others published, pulls and merges what was accepted.

One `sync` does, in order, each step in its own module:

1. **outbox** and 2. **publish** (`dso.node.publish`): finish sending any built round, then the local
   experiences not yet published become one signed batch, written to the outbox first, then sent;
3. **scan**, 4. **vote** and 5. **finalize** (`dso.node.vote`, members only): new registry batches are read
   from a cursor, each pending batch of another node is fetched and verified (`dso.node.verify`), its texts
   run through the guard policy, and one `voteMany` casts every vote of the sync; batches whose window
   closed are finalized;
6. **pull** and 7. **merge** (`dso.node.pull`): decided batches past the cursor are read in registration
   order and the accepted ones fetched and verified; the global library is computed from every verified
   accepted record of the closed epochs (the robust consensus, with the evidence those records carry) and
   what it accepts is merged into the local library with provenance.

Bytes sent and received (records, manifests, transactions, signatures read back) are kept per sync.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from eth_account.signers.local import LocalAccount

from dso.chain.registry import BatchInfo, Registry
from dso.config import DSOConfig
from dso.core.records import ExperienceRecord
from dso.embed.base import Vectors
from dso.errors import ChainError, DataError, NodeError, StoreError
from dso.library import ExperienceLibrary
from dso.node import certify, publish, pull, verify, vote
from dso.node.context import Log, NodeContext, SharedWork, Voter
from dso.node.reports import (
    BuiltRound,
    LightSync,
    MergeReport,
    NodeStatus,
    PullReport,
    SentBatch,
    SyncReport,
    Traffic,
    VoteCast,
)
from dso.node.share import GlobalExperience, GlobalLibrary
from dso.node.state import NodeState
from dso.node.verify import BatchReview
from dso.store.base import ContentStore

if TYPE_CHECKING:  # the trial needs an LLM: imported only by a node that tries candidates
    from dso.consensus.certificate import Certificate
    from dso.node.audit import CertificateVerdict
    from dso.node.trial import LessonTrial, TrialReport

T = TypeVar("T")


class Node:
    """One node of the network over one library, one key, one registry and one content store."""

    def __init__(
        self,
        config: DSOConfig,
        library: ExperienceLibrary,
        account: LocalAccount | str,
        registry: Registry,
        store: ContentStore,
        state: NodeState,
        *,
        log: Log | None = None,
        shared: SharedWork | None = None,
        voter: Voter | None = None,
    ) -> None:
        """`account` is the node's key, or only its address for a read-only node (a reviewer page that asks
        for the key's password when a vote is cast): such a node verifies, pulls and merges, but never signs.
        `voter` replaces the honest member's judgement of a batch (an adversarial node in a simulation)."""
        if isinstance(account, str):
            key, address = None, account
        else:
            if not registry.can_write:
                raise NodeError("a node's registry client needs the node's account")
            key, address = account, str(account.address)
        self.ctx = NodeContext(config, library, key, address, registry, store, state, log=log, shared=shared)
        self._voter = voter

    # -- what the node is ----------------------------------------------------------------------

    @property
    def address(self) -> str:
        return self.ctx.address

    @property
    def account(self) -> LocalAccount | None:
        return self.ctx.account

    @property
    def config(self) -> DSOConfig:
        return self.ctx.config

    @property
    def library(self) -> ExperienceLibrary:
        return self.ctx.library

    @property
    def registry(self) -> Registry:
        return self.ctx.registry

    @property
    def store(self) -> ContentStore:
        return self.ctx.store

    @property
    def state(self) -> NodeState:
        return self.ctx.state

    @property
    def model(self) -> str:
        return self.ctx.model

    @property
    def voter(self) -> Voter | None:
        """The judgement that replaces an honest member's (an adversarial node in a simulation), if any."""
        return self._voter

    def embed(self, texts: list[str]) -> Vectors:
        return self.ctx.embed(texts)

    def is_member(self) -> bool:
        return self.registry.is_member(self.address)

    # -- the steps -----------------------------------------------------------------------------

    def flush_outbox(self) -> list[SentBatch]:
        return publish.flush_outbox(self.ctx)

    def publish(self) -> BuiltRound | None:
        return publish.publish(self.ctx)

    def scan(self) -> int:
        return vote.scan(self.ctx)

    def pending(self) -> list[BatchInfo]:
        return vote.pending(self.ctx)

    def fetch_verified(self, info: BatchInfo) -> list[tuple[str, ExperienceRecord]]:
        return verify.fetch_verified(self.ctx, info)

    def review(self, info: BatchInfo) -> BatchReview:
        return verify.review(self.ctx, info)

    def guard_findings(self, texts: list[str]) -> list[list[str]]:
        return verify.guard_findings(self.ctx, texts)

    def judge(self, info: BatchInfo) -> tuple[bool, str]:
        """This member's vote on one batch and why (its voter's, when one was given)."""
        return self._voter(info) if self._voter is not None else vote.judge(self.ctx, info)

    def vote(self) -> list[VoteCast]:
        return vote.vote(self.ctx, self.judge)

    def cast_votes(self, decided: list[VoteCast], registry: Registry | None = None) -> None:
        vote.cast_votes(self.ctx, decided, registry)

    def finalize_expired(self) -> int:
        return vote.finalize_expired(self.ctx)

    def pull(self, *, retry_all: bool = False) -> PullReport:
        return pull.pull(self.ctx, retry_all=retry_all)

    def global_library(self) -> GlobalLibrary:
        return pull.global_library(self.ctx)

    def try_candidates(self, trial: LessonTrial, limit: int | None = None) -> TrialReport:
        """Try candidate lessons of the trial's domains on this node's own questions; adopt those that gain."""
        from dso.node.trial import try_candidates

        return try_candidates(self.ctx, trial, self.config.network.max_trials if limit is None else limit)

    def statement(self, epoch: int) -> Certificate:
        """The certificate statement (root of the global library) this node computes for a closed epoch."""
        from dso.node.audit import statement

        return statement(self.ctx, epoch)

    def audit_certificate(self, certificate: Certificate, committee: Sequence[str]) -> CertificateVerdict:
        """Accept a committee's certificate only if two thirds signed and its root is this node's own."""
        from dso.node.audit import audit_certificate

        return audit_certificate(self.ctx, certificate, committee)

    def merge(self) -> MergeReport:
        return pull.merge(self.ctx)

    def attest(self) -> int | None:
        """As a member, attest the global library of the newest epoch closed here (once each); a refusal by the
        registry (this member not eligible), a store that does not answer or a library too large for one block
        is logged, not raised: light nodes then read an older certificate, or compute for themselves."""
        try:
            return certify.attest(self.ctx)
        except (DataError, StoreError, ChainError) as exc:  # a revert, a store down, a library over one block
            self.ctx.log(f"no attestation this sync: {exc}")
            return None

    # -- one sync ------------------------------------------------------------------------------

    def sync(self, *, retry_all: bool = False) -> SyncReport:
        """One full sync (see the module docstring): what it did, bytes included. Batches that could not be
        fetched before are tried again when due, or all of them with `retry_all` (a sync asked for by hand)."""
        seq = self.state.start_sync()
        self.ctx.traffic.rows.clear()
        before = dataclasses.replace(self.registry.sent)
        started = time.perf_counter()
        timings: dict[str, float] = {}
        cpu: dict[str, float] = {}

        def timed(name: str, step: Callable[[], T]) -> T:
            t0, c0 = time.perf_counter(), time.process_time()
            out = step()
            timings[name] = round(time.perf_counter() - t0, 3)
            cpu[name] = round(time.process_time() - c0, 3)  # every thread of the process (the embedder's too)
            return out

        published = timed("publish", self.publish)
        votes: list[VoteCast] = []
        closed = 0
        member = self.is_member()
        if member:  # only members vote, and only they need to follow pending batches
            timed("scan", self.scan)
            votes = timed("vote", self.vote)
            closed = timed("finalize", self.finalize_expired)
        light: LightSync | None = None
        attested: int | None = None
        if self.config.network.light and not member:  # the certified library instead of every batch
            pulled, light = timed("pull", lambda: certify.light_pull(self.ctx))
            found = light
            merged = timed("merge", lambda: certify.light_merge(self.ctx, found))
        else:
            pulled = timed("pull", lambda: self.pull(retry_all=retry_all))
            merged = timed("merge", self.merge)
        if member:
            attested = timed("attest", self.attest)
        after = self.registry.sent
        self.ctx.traffic.add("transactions", "sent", after.bytes - before.bytes)
        self.state.add_traffic(seq, self.ctx.traffic.rows)
        report = SyncReport(
            sync=seq,
            published=published,
            votes=tuple(votes),
            finalized=closed,
            pulled=pulled,
            merged=merged,
            transactions=after.transactions - before.transactions,
            gas=after.gas - before.gas,
            bytes=Traffic.from_json(self.state.traffic(seq)),
            seconds=round(time.perf_counter() - started, 3),
            phases=timings,
            cpu_phases=cpu,
            attested=attested,
            light=light,
        )
        self.state.finish_sync(seq, report.to_json())
        return report

    def global_digest(self, accepted: list[GlobalExperience] | None = None) -> str:
        """sha256 of the global library's sorted texts: equal on nodes that agree."""
        return pull.global_digest(self.global_library().accepted if accepted is None else accepted)

    def status(self) -> NodeStatus:
        accepted = self.global_library().accepted
        return NodeStatus(
            node=self.address,
            registry=self.registry.address,
            chain_id=self.registry.chain_id,
            member=self.is_member(),
            round=self.state.next_round() - 1,
            library_size=len(self.library),
            outbox=self.state.outbox_counts(),
            own_batches=tuple(self.state.own_batches()),
            syncs=self.state.sync_count(),
            last_sync=self.state.last_sync(),
            bytes=Traffic.from_json(self.state.traffic()),
            refused_batches=tuple(self.state.refused()),
            retrying_batches=tuple(self.state.retries()),
            global_size=len(accepted),
            global_digest=self.global_digest(accepted),
            settled_epoch=self.state.settled_epoch(),
        )

    def close(self) -> None:
        self.state.close()
