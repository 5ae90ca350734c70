"""Certified global libraries: members attest, light nodes read the certificate instead of every batch.

A full node fetches and verifies every accepted batch and computes the global library itself: its work and
traffic grow with the network. A registry member still does (it votes on every batch), and after closing an
epoch it **attests** the library it computed up to it: the entries document goes to the content store and
the registry records (epoch, root, size, document CID); the first statement two thirds of the members attest
is certified (`ExperienceRegistry.attest`).

A **light node** (`network.light`, not a member) reads the newest certificate instead: one registry read and
one document, checked against the certified root entry by entry, whatever the network's size. With chance
`network.audit_rate` it audits: it runs the full pull (every batch since its cursor), computes the same epoch
itself and, when its root differs, disputes the certificate on the registry with a proof document (both roots
and the entries that differ), then merges its own computation. Every light node treats a disputed certificate
as none and falls back to the full pull for good, so one honest auditor moves the whole network back to
computing for itself; a blocking third that withholds attestations only costs light nodes that saving.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from typing import Any

import rfc8785

from dso.chain.registry import CertificateInfo
from dso.consensus.certificate import (
    LibraryEntry,
    Provenance,
    entries_document,
    library_root,
    read_entries_document,
)
from dso.core.experience import text_key
from dso.core.merkle import merkle_root
from dso.errors import ChainError, ContractRevert, DataError, StoreError
from dso.library import RemoteExperience
from dso.node import pull
from dso.node.context import NodeContext
from dso.node.reports import LightSync, MergeReport, PullReport
from dso.node.share import GlobalExperience

SCAN_EPOCHS = 64  # epochs a light node looks back for a certificate
CERTIFICATE_LAG = 2  # ended epochs a certificate may be late before a light node computes for itself


def library_entries(accepted: Sequence[GlobalExperience]) -> list[LibraryEntry]:
    """The global library's accepted experiences as certificate entries: what a node merges of each (text,
    domain, the consensus's confidence, the record that brings it in) and the root of all its records."""
    entries = []
    for g in accepted:
        first = pull.remote_experience(g)
        provenance = Provenance(first.record_cid, first.node, first.epoch, first.batch_id or "", first.round or 0)
        entries.append(
            LibraryEntry(
                g.text,
                g.domain,
                round(first.confidence, 2),
                len({r.node for r in g.records}),
                merkle_root(sorted({r.cid for r in g.records})),
                provenance,
            )
        )
    return entries


def attest(ctx: NodeContext) -> int | None:
    """As a member: store the entries of the global library up to the newest epoch closed here (every batch of
    it decided and fetched, so the epoch has ended on chain too) and attest its root on the registry, once per
    epoch; returns the epoch attested, or None when there is nothing new."""
    epoch = ctx.state.settled_epoch()
    if epoch < 0 or epoch <= int(ctx.state.meta("attested_epoch") or "-1"):
        return None
    if ctx.registry.has_attested(epoch, ctx.address):
        ctx.state.set_meta("attested_epoch", str(epoch))
        return None
    entries = library_entries(pull.global_library(ctx, epoch).accepted)
    if ctx.attester is not None:  # a Byzantine member of the attack suite
        entries = ctx.attester(entries)
    document = entries_document(epoch, entries)
    cid = ctx.store.put(document)
    ctx.traffic.add("certificates", "sent", len(document))
    ctx.registry.attest(epoch, library_root(entries), len(entries), cid)
    ctx.state.set_meta("attested_epoch", str(epoch))
    ctx.log(f"attested the global library of epoch {epoch}: {len(entries)} experiences")
    return epoch


def newest_certificate(ctx: NodeContext) -> tuple[int, CertificateInfo | None]:
    """The newest ended epoch, and the newest certificate at or after the one this node merged last (looking
    back SCAN_EPOCHS epochs)."""
    window = max(1, ctx.registry.voting_window)
    newest = (ctx.registry.height() + 1) // window - 1
    oldest = max(0, newest - SCAN_EPOCHS, int(ctx.state.meta("light_epoch") or "-1"))
    for epoch in range(newest, oldest - 1, -1):
        info = ctx.registry.certificate(epoch)
        if info.certified:
            return newest, info
    return newest, None


def light_pull(ctx: NodeContext, *, audit: bool | None = None) -> tuple[PullReport, LightSync]:
    """Read the newest certificate and its entries; audit it with chance `network.audit_rate` (or as `audit`
    says). Pulls in full when a certificate is disputed, does not check, or is CERTIFICATE_LAG epochs late (a
    blocking third of the members withholding attestations); before the first epochs end there is nothing to
    read, and it waits."""
    if ctx.state.meta("light_fallback"):
        return pull.pull(ctx), LightSync("full", -1, ctx.state.meta("light_fallback") or "")
    settled = PullReport(settled_epoch=ctx.state.settled_epoch())
    try:
        newest, info = newest_certificate(ctx)
    except ChainError as exc:
        return settled, LightSync("wait", -1, f"registry: {exc}")
    if info is None or info.epoch < newest - CERTIFICATE_LAG:
        if info is None and newest < CERTIFICATE_LAG:
            return settled, LightSync("wait", -1, "no certificate yet")
        late = f"no certificate for epoch {newest}; the newest is {info.epoch if info else 'none'}"
        return pull.pull(ctx), LightSync("full", newest, late)
    if info.disputed:
        reason = f"the certificate of epoch {info.epoch} is disputed by {info.disputed_by}"
        ctx.state.set_meta("light_fallback", reason)
        ctx.log(f"{reason}: computing the global library from the batches from now on")
        return pull.pull(ctx), LightSync("full", info.epoch, reason)
    try:
        data = ctx.store.get(info.entries_cid)
        entries = read_entries_document(data, info.epoch, info.root, info.experiences)
    except (DataError, StoreError) as exc:
        return pull.pull(ctx), LightSync("full", info.epoch, f"entries of epoch {info.epoch}: {exc}")
    ctx.traffic.add("certificates", "received", len(data))
    if audit is None:
        audit = random.SystemRandom().random() < ctx.config.network.audit_rate
    if not audit:
        return PullReport(settled_epoch=info.epoch), LightSync("certificate", info.epoch, "certified", tuple(entries))
    report = pull.pull(ctx)
    if report.settled_epoch < info.epoch:
        return report, LightSync("certificate", info.epoch, "audit pending: epoch not closed here", tuple(entries))
    own = library_entries(pull.global_library(ctx, info.epoch).accepted)
    if library_root(own) == info.root:
        return report, LightSync("audit", info.epoch, "the audit agrees", tuple(entries))
    disputed = _dispute(ctx, info, entries, own)
    reason = f"the certificate of epoch {info.epoch} differs from this node's computation"
    ctx.state.set_meta("light_fallback", reason)
    return report, LightSync("full", info.epoch, reason, disputed=disputed)


def _dispute(ctx: NodeContext, info: CertificateInfo, certified: list[LibraryEntry], own: list[LibraryEntry]) -> bool:
    """Store the proof (both roots, the texts in one library and not the other) and dispute on the registry."""
    theirs, mine = {text_key(e.text): e.text for e in certified}, {text_key(e.text): e.text for e in own}
    proof: dict[str, Any] = {
        "v": 1,
        "type": "dso.certificate-dispute",
        "epoch": info.epoch,
        "certified_root": "0x" + info.root.hex(),
        "computed_root": "0x" + library_root(own).hex(),
        "only_certified": sorted(theirs[k] for k in theirs.keys() - mine.keys())[:50],
        "only_computed": sorted(mine[k] for k in mine.keys() - theirs.keys())[:50],
    }
    try:
        cid = ctx.store.put(bytes(rfc8785.dumps(proof)))
        ctx.registry.dispute(info.epoch, cid)
    except ContractRevert as exc:
        if exc.name != "AlreadyDisputed":
            ctx.log(f"could not dispute the certificate of epoch {info.epoch}: {exc}")
            return False
    except (ChainError, StoreError) as exc:
        ctx.log(f"could not dispute the certificate of epoch {info.epoch}: {exc}")
        return False
    ctx.log(f"disputed the certificate of epoch {info.epoch}: its root differs from this node's computation")
    return True


def light_merge(ctx: NodeContext, found: LightSync) -> MergeReport:
    """Merge a certified library (or, after a full or audited pull, what this node computed itself)."""
    if found.mode == "wait":
        return MergeReport()
    if found.mode != "certificate":
        report = pull.merge(ctx)
        earlier = _certified_cids(ctx)
        if not earlier:
            return report
        # back to computing for itself: what a certificate brought in and this node's consensus does not accept
        # (a forged certificate's lessons, above all) is withdrawn
        computed = pull.global_library(ctx).accepted
        kept = {wording for g in computed for wording in (g.text, *(g.decision.wordings if g.decision else ()))}
        withdrawn = 0
        for experience in ctx.library.all():
            if experience.content_id in earlier and experience.text not in kept:
                ctx.library.withdraw(experience.id, "a certified library this node no longer trusts brought it")
                withdrawn += 1
        ctx.state.set_meta("certified_cids", "")
        return dataclasses.replace(report, withdrawn=report.withdrawn + withdrawn)
    items = [
        _remote(e)
        for e in found.entries
        if e.provenance.node != ctx.address and not ctx.library.knows_record(e.provenance.cid)
    ]
    results, skipped = ctx.library.merge_remote(items) if items else ([], [])
    kept, earlier = {e.provenance.cid for e in found.entries}, _certified_cids(ctx)
    withdrawn = 0
    for experience in ctx.library.all():  # merged from the network earlier, not in this certificate: withdrawn
        cid = experience.content_id
        if experience.origin_node == "local" or not cid or cid in kept:
            continue
        if cid in earlier or ctx.state.knows_record(cid):
            ctx.library.withdraw(experience.id, "the network's certified library no longer holds it")
            withdrawn += 1
    ctx.state.set_meta("certified_cids", "\n".join(sorted(kept | earlier)))
    ctx.state.set_meta("light_epoch", str(found.epoch))
    return MergeReport(
        added=sum(r.op == "ADD" for r in results),
        supported=sum(r.op == "MERGE" for r in results),
        skipped=len(skipped),
        global_size=len(found.entries),
        withdrawn=withdrawn,
    )


def _remote(entry: LibraryEntry) -> RemoteExperience:
    origin = entry.provenance
    return RemoteExperience(
        entry.text, entry.confidence, entry.domain, origin.epoch, origin.node, origin.cid, origin.batch_id, origin.round
    )


def _certified_cids(ctx: NodeContext) -> set[str]:
    """Record CIDs this node merged from certificates: the lessons a later certificate may withdraw."""
    return {line for line in (ctx.state.meta("certified_cids") or "").split("\n") if line}
