"""Voting (members only): follow the registry's pending batches from a cursor, judge each one, cast every
vote of a sync in `voteMany` transactions, and close batches whose voting window ended."""

from __future__ import annotations

from dso.chain.registry import BatchInfo, BatchState, Registry
from dso.errors import ChainError, ContractRevert, DataError, StoreError
from dso.faults import fault_point
from dso.node.context import NodeContext, Voter, hex_id
from dso.node.reports import VoteCast
from dso.node.verify import fetch_sample, fetch_verified, guard_findings

PAGE = 100
SAMPLE = 8  # records of a large batch a member checks (every check and the guards) before the whole batch


def scan(ctx: NodeContext) -> int:
    """Read the registry's batches from the lowest one that may still be pending (a cursor, never from 0),
    note every one, and move the cursor past those decided; returns how many are pending."""
    cursor = ctx.state.cursor("scan")
    offset, lowest_pending = cursor, None
    while True:
        page = ctx.registry.batches(offset, PAGE)
        with ctx.state.transaction():
            for index, info in enumerate(page, offset):
                ctx.state.note_batch(hex_id(info.id), info.node, info.round, info.state.name.lower())
                ctx.seen[hex_id(info.id)] = info
                if info.state == BatchState.PENDING and lowest_pending is None:
                    lowest_pending = index
            offset += len(page)
            ctx.state.set_cursor("scan", offset if lowest_pending is None else lowest_pending)
        if len(page) < PAGE:
            break
    return sum(1 for info in ctx.seen.values() if info.state == BatchState.PENDING)


def pending(ctx: NodeContext) -> list[BatchInfo]:
    """The registry's pending batches as the last `scan` read them, oldest first."""
    return [info for info in ctx.seen.values() if info.state == BatchState.PENDING]


def judge(ctx: NodeContext, info: BatchInfo) -> tuple[bool, str]:
    """An honest member's vote on one batch and why: every check passes and enough texts pass the guards.

    A batch of more than `SAMPLE` records is judged on a random sample first (manifest, signature, and every
    check and guard on the sampled records): a sample that fails is a no without the rest fetched or embedded,
    so a large hostile batch costs a member a bounded amount of work.

    A failed check is a no; a store or chain that does not answer raises (StoreError, ChainError): no vote
    can be cast on what could not be fetched, and `vote` leaves the batch for the next sync."""
    try:
        sample, held = fetch_sample(ctx, info, SAMPLE)
    except DataError as exc:
        return False, f"verification failed: {exc}"
    if sample is not None:  # a large batch: a bounded sample first, the whole batch only if the sample holds
        texts = [record.text for _, record in sample]
        failed = [", ".join(broken) for broken in guard_findings(ctx, texts) if broken]
        if 1 - len(failed) / len(texts) + 1e-9 < ctx.config.network.voting_threshold:
            return False, f"{len(failed)} of {len(texts)} sampled texts break the guards ({failed[0]})"
    try:
        records = fetch_verified(ctx, info, held)  # the manifest and sampled records are not fetched again
    except DataError as exc:
        return False, f"verification failed: {exc}"
    texts = [record.text for _, record in records]
    failed = [", ".join(broken) for broken in guard_findings(ctx, texts) if broken]
    passing = 1 - len(failed) / len(texts)
    if passing + 1e-9 < ctx.config.network.voting_threshold:
        return False, f"{len(failed)} of {len(texts)} texts break the guards ({failed[0]})"
    return True, f"verified; {len(texts) - len(failed)} of {len(texts)} texts pass the guards"


def vote(ctx: NodeContext, voter: Voter) -> list[VoteCast]:
    """Judge every pending batch this member has not voted on with `voter`; one voteMany casts them all.

    A batch of a publisher no member vouches for (neither a member nor sponsored on the registry) is not
    fetched, checked or voted on automatically: a fresh key costs the members nothing; people may still
    review it and vote on the reviewer page, and it is judged here once a member sponsors its publisher."""
    decided = []
    unvouched = 0
    for batch_id in ctx.state.unvoted_pending():
        info = ctx.seen.get(batch_id) or ctx.registry.batch(bytes.fromhex(batch_id[2:]))
        if info.state != BatchState.PENDING:
            continue
        if not ctx.registry.is_vouched(info.node):
            unvouched += 1
            continue
        # its own batch too: a member checks what it published like any other batch and counts once;
        # a vote cast before a crash, not yet in the state, is skipped by the registry's lenient voteMany
        try:
            approve, reason = voter(info)
        except (StoreError, ChainError) as exc:
            ctx.log(f"no vote on {batch_id[:12]} this sync: it could not be fetched ({str(exc)[:160]})")
            continue
        decided.append(VoteCast(batch_id, approve, reason))
        ctx.log(f"vote {'yes' if approve else 'no'} on {batch_id[:12]} from {info.node[:10]}: {reason}")
    if unvouched:
        ctx.log(f"{unvouched} pending batch(es) from publishers no member sponsors: left to reviewers")
    cast_votes(ctx, decided)
    return decided


def cast_votes(ctx: NodeContext, decided: list[VoteCast], registry: Registry | None = None) -> None:
    """Cast votes in voteMany chunks and keep them in the state; `registry` is a client holding the key for a
    read-only node (the key is unlocked only for this call)."""
    if registry is None:
        ctx.key()
        registry = ctx.registry
    if decided:
        registry.vote_many([bytes.fromhex(v.batch_id[2:]) for v in decided], [v.approve for v in decided])
        fault_point("sync:voted")
    ctx.state.record_votes([(v.batch_id, v.approve, v.reason) for v in decided])


def finalize_expired(ctx: NodeContext) -> int:
    """Close batches whose voting window ended (anyone may); a batch someone else closed is skipped."""
    block = ctx.registry.height()
    closed = 0
    for batch_id, info in list(ctx.seen.items()):
        if info.state != BatchState.PENDING or block <= info.deadline:
            continue
        try:
            ctx.registry.finalize(info.id)
            closed += 1
        except ContractRevert as exc:
            if exc.name != "AlreadyDecided":
                raise
        info = ctx.registry.batch(info.id)
        ctx.seen[batch_id] = info
        with ctx.state.transaction():
            ctx.state.note_batch(batch_id, info.node, info.round, info.state.name.lower())
    return closed
