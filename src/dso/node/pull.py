"""Pulling and merging: the registry's batches are read in the order they were registered; each decided
accepted batch is fetched and verified; the global library is computed from every verified accepted record
of the **closed epochs**, and what it accepts is merged into the local library with provenance (merging is
idempotent, and a merged lesson the consensus stops accepting is withdrawn).

An epoch is the window of blocks a batch was registered in (`registry_epoch`), whatever round its publisher
claims. It is closed at a node when its last block is mined, every batch of it is decided (by votes, or by
its deadline passing: `final_state` computes what `finalize` will say) and every accepted one was fetched
(or refused with a proof). So every honest node computes each closed epoch's consensus from the same
inputs, and a batch that arrives late in an open epoch never changes a library already merged.

Only a proof of misbehaviour refuses a batch (a manifest, signature, record, Merkle proof or embedding code
that fails its check: `DataError`), for good and with its reason. A store or chain that does not answer
proves nothing about the batch: it stays to be fetched, retried on a growing schedule (`NodeState.retry_later`),
its epoch stays open, and the sync reports it (`PullReport.retrying`), so `dso node sync` can say it could not
do its work."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable

from dso.chain.registry import BatchInfo, BatchState, closed_epoch, final_state, registry_epoch
from dso.consensus.aggregate import Validation
from dso.core.experience import text_key
from dso.core.records import encode_record
from dso.errors import ChainError, DataError, StoreError
from dso.faults import fault_point
from dso.library import RemoteExperience
from dso.node import share
from dso.node.context import NodeContext, hex_id
from dso.node.reports import MergeReport, PullReport, Refusal
from dso.node.verify import fetch_verified

PAGE = 100
PENDING = BatchState.PENDING
NONE = (0, 0, 0)  # evidence of a record that claims none


def pull(ctx: NodeContext, *, now: float | None = None, retry_all: bool = False) -> PullReport:
    """Retry the batches whose next attempt is due (every one with `retry_all`: a sync asked for by hand), then
    read the registry's batches past the cursor in the order they were registered: each decided one is noted,
    an accepted one fetched and verified; the first batch still open to votes stops the cursor. Then the
    newest closed epoch (`settled_epoch`) is noted: the global library is computed over closed epochs only."""
    now = time.time() if now is None else now
    height = ctx.registry.height()  # read before the batches: every batch registered by then is in the list
    window = ctx.registry.voting_window
    verified: list[str] = []
    refused: list[Refusal] = []
    retrying: list[Refusal] = []

    def take(info: BatchInfo, cursor: int | None) -> None:
        batch_id = hex_id(info.id)
        epoch = registry_epoch(info, window)  # not the round the publisher claims
        try:
            records = fetch_verified(ctx, info)
        except DataError as exc:  # a proof: this batch is refused for good
            reason = str(exc)
            ctx.state.refuse(batch_id, reason, cursor)
            refused.append(Refusal(batch_id, info.node, reason))
            ctx.log(f"refused batch {batch_id[:12]} from {info.node[:10]}: {reason[:200]}")
        except (StoreError, ChainError) as exc:  # no answer proves nothing: try again later
            reason = str(exc)
            due = ctx.state.retry_later(batch_id, reason, cursor, epoch=epoch, now=now)
            retrying.append(Refusal(batch_id, info.node, reason))
            ctx.log(f"batch {batch_id[:12]} not fetched ({reason[:160]}); next attempt in {due - now:.0f} s")
        else:
            shared = [
                (
                    share.SharedRecord(
                        cid, batch_id, r.node, epoch, r.text, r.confidence, r.domain, r.epoch, *(r.evidence or NONE)
                    ),
                    encode_record(r),  # the canonical bytes the record was fetched as: they hash to its CID
                )
                for cid, r in records
            ]
            ctx.state.accept_verified(batch_id, shared, cursor)
            verified.append(batch_id)

    for row in ctx.state.retries(due_by=None if retry_all else now):
        try:
            info = ctx.registry.batch(bytes.fromhex(row["batch_id"][2:]))
        except ChainError as exc:
            ctx.state.retry_later(row["batch_id"], str(exc), now=now)
            retrying.append(Refusal(row["batch_id"], "", str(exc)))
            continue
        take(info, None)
    cursor = ctx.state.cursor("batches")
    open_batch: BatchInfo | None = None  # the first batch votes can still decide: the cursor waits there
    while open_batch is None:
        page = ctx.registry.batches(cursor, PAGE)
        for info in page:
            final = final_state(info, height, ctx.registry.quorum(info.eligible) if info.state == PENDING else 0)
            if final is None:
                open_batch = info
                break
            with ctx.state.transaction():
                ctx.state.note_batch(hex_id(info.id), info.node, info.round, final.name.lower())
                if final != BatchState.ACCEPTED:
                    ctx.state.set_cursor("batches", cursor + 1)
            if final == BatchState.ACCEPTED:
                take(info, cursor + 1)
            cursor += 1
        if len(page) < PAGE:
            break
    settled = closed_epoch(height, window)
    if open_batch is not None:
        settled = min(settled, registry_epoch(open_batch, window) - 1)
    waiting = [int(row["epoch"]) for row in ctx.state.retries()]
    if waiting:
        settled = min(settled, min(waiting) - 1)
    ctx.state.set_settled_epoch(settled)
    return PullReport(tuple(verified), tuple(refused), tuple(retrying), settled)


def validations(records: list[share.SharedRecord]) -> list[Validation]:
    """The evidence verified records carry, as the consensus's validations: each record's helped / hurt counts
    are its publisher's measurement of that text on its own validation questions. The attack bench and
    `dso aggregate` pass the same kind of rows; the consensus counts only established validators."""
    return [Validation(r.node, r.text, r.helped, r.hurt) for r in records if r.helped or r.hurt]


def global_library(ctx: NodeContext, upto: int | None = None) -> share.GlobalLibrary:
    """The global library as this node computes it from every verified accepted record of the closed epochs
    (up to epoch `upto`, a closed one, when given: what a certificate of that epoch states): nodes that closed
    the same epochs compute it from the same inputs, whatever order they saw batches in."""
    settled = ctx.state.settled_epoch()
    last = settled if upto is None else min(upto, settled)
    records = [r for r in ctx.state.verified_records() if r.round <= last]  # closed epochs only
    digest = hashlib.sha256("\n".join(sorted(f"{r.batch_id}:{r.cid}" for r in records)).encode()).hexdigest()
    if ctx.last_global is not None and ctx.last_global[0] == digest:
        return ctx.last_global[1]  # the same verified records give the same library: status, merge and pages ask
    if ctx.shared is not None and digest in ctx.shared.global_libraries:
        return ctx.shared.global_libraries[digest]
    texts = share.texts_to_embed(records)
    vectors = dict(zip(texts, ctx.embed(texts), strict=True)) if texts else {}
    result = share.global_library(
        records,
        vectors,
        ctx.config.consensus,
        robust=ctx.config.network.byzantine_robust,
        guards=ctx.guards if records else None,
        validations=validations(records),
    )
    if ctx.shared is not None:
        ctx.shared.global_libraries[digest] = result
    ctx.last_global = (digest, result)
    return result


def merge(ctx: NodeContext) -> MergeReport:
    """Merge what the global library accepts into the local library; records already merged are skipped."""
    pending = ctx.state.unmerged_verified(ctx.state.settled_epoch())
    computed = global_library(ctx)
    accepted = computed.accepted
    items = []
    for g in accepted:
        # a lesson this node published itself is already local; otherwise the earliest supporting record
        # brings it in (its provenance); the full list of supporters stays in the node's state
        if any(r.node == ctx.address for r in g.records):
            continue
        item = remote_experience(g)
        if not ctx.library.knows_record(item.record_cid):
            items.append(item)
    results, skipped = ctx.library.merge_remote(items) if items else ([], [])
    adopted = ctx.state.adopted_texts()  # candidates this node's own trial adopted (dso.node.trial)
    withdrawn = _withdraw_rejected(ctx, accepted + [g for g in computed.candidates if text_key(g.text) in adopted])
    fault_point("sync:merged")
    ctx.state.mark_merged(pending)
    for cid, reason in skipped:
        if reason != "record already merged":
            ctx.log(f"record {cid[:16]} not merged: {reason[:200]}")
    return MergeReport(
        added=sum(r.op == "ADD" for r in results),
        supported=sum(r.op == "MERGE" for r in results),
        skipped=len(skipped),
        global_size=len(accepted),
        withdrawn=withdrawn,
    )


def remote_experience(g: share.GlobalExperience) -> RemoteExperience:
    """A network lesson as the library merges it: brought in by its earliest supporting record (provenance),
    with the consensus's confidence (robust to a supporter that inflates its own), not that record's."""
    first = min(g.records, key=lambda r: (r.round, r.batch_id, r.cid))
    confidence = g.decision.confidence if g.decision is not None else first.confidence
    return RemoteExperience(
        g.text, confidence, g.domain, first.epoch, first.node, first.cid, first.batch_id, first.round
    )


def _withdraw_rejected(ctx: NodeContext, accepted: list[share.GlobalExperience]) -> int:
    """The library follows the consensus: a lesson this node merged from the network (its record came in a
    verified accepted batch) that the global library no longer accepts is withdrawn, with the reason in its
    history; `accepted` includes the candidates this node adopted by its own trial while they stay candidates.
    Local lessons, and lessons a file import brought, are never touched."""
    kept = {wording for g in accepted for wording in (g.text, *(g.decision.wordings if g.decision else ()))}
    withdrawn = 0
    for experience in ctx.library.all():
        if experience.origin_node == "local" or not experience.content_id or experience.text in kept:
            continue
        if not ctx.state.knows_record(experience.content_id):
            continue
        ctx.library.withdraw(experience.id, "the network's consensus no longer accepts it")
        ctx.log(f"withdrew {experience.id}: the global library no longer accepts it")
        withdrawn += 1
    return withdrawn


def global_digest(accepted: list[share.GlobalExperience]) -> str:
    """sha256 of the global library's sorted texts: equal on nodes that agree."""
    return texts_digest(g.text for g in accepted)


def texts_digest(texts: Iterable[str]) -> str:
    """sha256 of sorted texts: a global library's digest, computed or read from a certificate."""
    return hashlib.sha256("\n".join(sorted(texts)).encode()).hexdigest()
