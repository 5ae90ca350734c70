"""Auditing a committee's certificate against what this node computes itself.

A certificate (`dso.consensus.certificate`) states the root of the global library at the end of one epoch,
signed by at least two thirds of that epoch's committee. A node that holds the epoch's batches recomputes the
library from them (the same consensus every node runs) and compares roots: a certificate whose root differs
is refused, and the refusal carries both roots and the entries that differ, which is the proof another node
can check against the same public batches. Until this node has closed the epoch it cannot audit, and says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from dso.consensus.certificate import Certificate, certified_by, library_root
from dso.errors import SignatureError
from dso.node.certify import library_entries
from dso.node.context import NodeContext
from dso.node.pull import global_library


@dataclasses.dataclass(frozen=True)
class CertificateVerdict:
    state: str  # "accepted", "refused" or "pending" (the epoch is not closed at this node yet)
    reason: str
    own_root: str | None  # 0x-hex, when this node computed the epoch
    differing: tuple[str, ...] = ()  # texts in one library and not the other (at most 10)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def statement(ctx: NodeContext, epoch: int) -> Certificate:
    """What this node computes for a closed `epoch`, unsigned: what it signs when it sits on the committee."""
    entries = library_entries(global_library(ctx, epoch).accepted)
    return Certificate(epoch, library_root(entries), len(entries))


def audit_certificate(ctx: NodeContext, certificate: Certificate, committee: Sequence[str]) -> CertificateVerdict:
    """Check the signatures (two thirds of `committee`), then the root against this node's own computation."""
    try:
        certified_by(ctx.registry.domain, certificate, committee)
    except SignatureError as exc:
        return CertificateVerdict("refused", f"signatures: {exc}", None)
    if certificate.epoch > ctx.state.settled_epoch():
        return CertificateVerdict("pending", f"epoch {certificate.epoch} is not closed at this node yet", None)
    accepted = global_library(ctx, certificate.epoch).accepted
    entries = library_entries(accepted)
    own = library_root(entries)
    if own == certificate.root and len(entries) == certificate.experiences:
        return CertificateVerdict("accepted", "the root matches this node's own computation", "0x" + own.hex())
    return CertificateVerdict(
        "refused",
        f"root 0x{certificate.root.hex()[:16]}... ({certificate.experiences} experiences) differs from this node's "
        f"0x{own.hex()[:16]}... ({len(entries)}) over the same epoch's batches",
        "0x" + own.hex(),
        tuple(sorted(e.text for e in entries)[:10]),
    )
