"""Verifying a stranger's batch: every check a receiver runs, in order, each with its outcome.

The checks themselves are pure functions of `dso.node.share`; this step fetches the bytes (manifest,
the registering transaction, records), runs them, counts what it received and, in one process of many
nodes, shares a batch's verification with the others (`SharedWork`)."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping

from dso.chain.registry import BatchInfo
from dso.core.records import ExperienceRecord
from dso.errors import ChainError, DataError, StoreError
from dso.node import share
from dso.node.context import NodeContext, hex_id

# The checks a receiver runs on a stranger's batch, in order (`review` reports each one).
CHECKS = {
    "manifest": "manifest re-hashed to its CID; its node, round and Merkle root equal the registry's; "
    "it lists no more records than this node takes in one batch",
    "signature": "the registering transaction's signature recovers to the batch's node for this registry",
    "records": "every record re-hashed to its CID, names the node, and has a Merkle proof under the on-chain root",
    "codes": "every record's 1-bit embedding code matches its own text",
}
FAILURES = (DataError, StoreError, ChainError)  # what a failed check raises


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


def _verify(
    ctx: NodeContext,
    info: BatchInfo,
    fetched: list[tuple[str, int]],
    passed: list[str],
    held: Mapping[str, bytes] | None = None,
) -> list[tuple[str, ExperienceRecord]]:
    """Every check of `CHECKS` in order; each one passed is appended to `passed`, the first failure raises.
    `held`: blocks already fetched from the store (by `fetch_sample`), re-checked here, not fetched again."""
    held = held or {}

    def get(cid: str) -> bytes:
        return held[cid] if cid in held else ctx.store.get(cid)

    manifest_bytes = get(info.batch_cid)
    fetched.append(("manifests", len(manifest_bytes)))
    manifest = share.check_manifest(info, manifest_bytes, ctx.config.network.max_batch_records)
    passed.append("manifest")
    submitted, size = ctx.registry.submission(info.id)
    fetched.append(("signatures", size))
    share.check_submission(info, manifest, submitted, ctx.registry.domain)
    passed.append("signature")
    blocks = {cid: get(cid) for cid in manifest.records}
    fetched += [("records", len(data)) for data in blocks.values()]
    records = share.check_records(info, manifest, blocks)
    passed.append("records")
    vectors = ctx.embed([record.text for _, record in records])
    share.check_codes(records, vectors, ctx.library.embedder_id or "")
    passed.append("codes")
    return records


def fetch_sample(
    ctx: NodeContext, info: BatchInfo, count: int
) -> tuple[list[tuple[str, ExperienceRecord]] | None, dict[str, bytes]]:
    """The manifest and signature checks, then every check on `count` of the batch's records drawn at random
    (a draw its publisher cannot foresee): what a member reads before it spends on the whole batch. The
    sample's records, or None when the batch holds no more than `count` (the whole batch is as cheap); and the
    blocks fetched, which `fetch_verified` takes instead of fetching them again."""
    manifest_bytes = ctx.store.get(info.batch_cid)
    manifest = share.check_manifest(info, manifest_bytes, ctx.config.network.max_batch_records)
    if len(manifest.records) <= count:
        return None, {info.batch_cid: manifest_bytes}
    submitted, size = ctx.registry.submission(info.id)
    share.check_submission(info, manifest, submitted, ctx.registry.domain)
    chosen = random.SystemRandom().sample(list(manifest.records), count)
    blocks = {cid: ctx.store.get(cid) for cid in chosen}
    if info.node != ctx.address:
        ctx.traffic.add("manifests", "received", len(manifest_bytes))
        ctx.traffic.add("signatures", "received", size)
        for data in blocks.values():
            ctx.traffic.add("records", "received", len(data))
    records = share.check_records(info, manifest, blocks, only=chosen)
    share.check_codes(records, ctx.embed([record.text for _, record in records]), ctx.library.embedder_id or "")
    return records, {info.batch_cid: manifest_bytes, **blocks}


def fetch_verified(
    ctx: NodeContext, info: BatchInfo, held: Mapping[str, bytes] | None = None
) -> list[tuple[str, ExperienceRecord]]:
    """Fetch a registry batch and run every check on it; a failed check raises one of `FAILURES`. `held`:
    blocks of it already fetched (`fetch_sample`), checked like the rest but not fetched again."""
    own = info.node == ctx.address
    key = f"{hex_id(info.id)}:{info.batch_cid}"
    if ctx.shared is not None and key in ctx.shared.verified:
        records, fetched = ctx.shared.verified[key]
    else:
        fetched = []
        records = _verify(ctx, info, fetched, [], held)
        if ctx.shared is not None:
            ctx.shared.verified[key] = (records, fetched)
    if not own:
        for kind, n in fetched:
            ctx.traffic.add(kind, "received", n)
    return records


def guard_findings(ctx: NodeContext, texts: list[str]) -> list[list[str]]:
    """The node's guard policy's findings per text; [] = clean."""
    if not texts:
        return []
    if ctx.shared is None:
        return ctx.guards.findings(texts, ctx.embed(texts))
    policy = repr(ctx.config.consensus)
    known = ctx.shared.guard_findings
    missing = list(dict.fromkeys(t for t in texts if (policy, t) not in known))
    if missing:
        for text, found in zip(missing, ctx.guards.findings(missing, ctx.embed(missing)), strict=True):
            known[(policy, text)] = found
    return [list(known[(policy, t)]) for t in texts]


def review(ctx: NodeContext, info: BatchInfo) -> BatchReview:
    """Every check on one batch, each with its outcome, and the records when all pass (a reviewer's view)."""
    passed: list[str] = []
    failure = None
    records: list[tuple[str, ExperienceRecord]] = []
    try:
        records = _verify(ctx, info, [], passed)
    except FAILURES as exc:
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
    findings = guard_findings(ctx, [record.text for _, record in records])
    return BatchReview(info, tuple(checks), tuple(records), tuple(tuple(f) for f in findings))
