"""What a node's steps report: frozen records the CLI, the trainer, the demo, the simulation and the review
page read by field. `to_json()` gives the shape `dso node sync --json` prints and the state file keeps."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from dso.consensus.certificate import LibraryEntry


@dataclasses.dataclass(frozen=True)
class BuiltRound:
    """A round this sync built from fresh local experiences (then sent from the outbox)."""

    round: int
    records: int
    manifest_cid: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class SentBatch:
    """An outbox round the registry now holds."""

    round: int
    batch_id: str
    records: int


@dataclasses.dataclass(frozen=True)
class VoteCast:
    batch_id: str
    approve: bool
    reason: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Refusal:
    """An accepted batch this node refused, and the check it failed."""

    batch_id: str
    node: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class PullReport:
    verified: tuple[str, ...] = ()
    refused: tuple[Refusal, ...] = ()  # a check failed: refused for good
    retrying: tuple[Refusal, ...] = ()  # the store or the chain did not answer: to be fetched again
    settled_epoch: int = -1  # the newest closed epoch: the global library covers epochs up to it

    def to_json(self) -> dict[str, Any]:
        return {
            "verified": list(self.verified),
            "refused": [r.to_json() for r in self.refused],
            "retrying": [r.to_json() for r in self.retrying],
            "settled_epoch": self.settled_epoch,
        }


@dataclasses.dataclass(frozen=True)
class MergeReport:
    added: int = 0
    supported: int = 0
    skipped: int = 0
    global_size: int = 0
    withdrawn: int = 0  # merged lessons the consensus no longer accepts, removed

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Traffic:
    """Bytes by kind (records, manifests, signatures, transactions), sent and received."""

    sent: Mapping[str, int] = dataclasses.field(default_factory=dict)
    received: Mapping[str, int] = dataclasses.field(default_factory=dict)

    @property
    def sent_total(self) -> int:
        return sum(self.sent.values())

    @property
    def received_total(self) -> int:
        return sum(self.received.values())

    @classmethod
    def from_json(cls, row: Mapping[str, Mapping[str, int]]) -> Traffic:
        return cls(dict(row.get("sent", {})), dict(row.get("received", {})))

    def to_json(self) -> dict[str, dict[str, int]]:
        return {"sent": dict(self.sent), "received": dict(self.received)}


@dataclasses.dataclass(frozen=True)
class LightSync:
    """What a light node's pull found: the certificate it merges, or why it pulled in full."""

    # "certificate"; "audit" (pulled in full, the certificate agreed); "full" (no usable certificate: disputed,
    # late or failing its checks); "wait" (none yet, or the registry did not answer)
    mode: str
    epoch: int
    reason: str
    entries: tuple[LibraryEntry, ...] = ()
    disputed: bool = False  # this node disputed the certificate

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "epoch": self.epoch, "reason": self.reason, "entries": len(self.entries),
                "disputed": self.disputed}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class SyncReport:
    """One sync: what it published, voted, finalized, pulled and merged, its chain cost, bytes and time."""

    sync: int
    published: BuiltRound | None
    votes: tuple[VoteCast, ...]
    finalized: int
    pulled: PullReport
    merged: MergeReport
    transactions: int
    gas: int
    bytes: Traffic
    seconds: float
    phases: Mapping[str, float]  # wall seconds per step
    cpu_phases: Mapping[str, float] = dataclasses.field(default_factory=dict)  # this process's CPU seconds per step
    attested: int | None = None  # the epoch this member attested the global library of, if any
    light: LightSync | None = None  # a light node: the certificate it merged, or why it pulled in full

    @property
    def records_published(self) -> int:
        return self.published.records if self.published else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "sync": self.sync,
            "published": self.published.to_json() if self.published else None,
            "votes": [v.to_json() for v in self.votes],
            "finalized": self.finalized,
            "pulled": self.pulled.to_json(),
            "merged": self.merged.to_json(),
            "transactions": self.transactions,
            "gas": self.gas,
            "bytes": self.bytes.to_json(),
            "attested": self.attested,
            "light": self.light.to_json() if self.light else None,
            "seconds": self.seconds,
            "phases": dict(self.phases),
            "cpu_phases": dict(self.cpu_phases),
        }

    def line(self) -> str:
        """One line for a person: what the sync did."""
        return (
            f"sync {self.sync}: published {self.records_published}, {len(self.votes)} votes, "
            f"{len(self.pulled.verified)} batches pulled, {len(self.pulled.refused)} refused, "
            f"{len(self.pulled.retrying)} to retry, "
            f"{self.merged.added} merged; global library {self.merged.global_size}"
            f"{f' (certified, epoch {self.light.epoch})' if self.light and self.light.mode == 'certificate' else ''}; "
            f"{self.bytes.sent_total} B sent, "
            f"{self.bytes.received_total} B received, {self.seconds:.1f} s"
        )


@dataclasses.dataclass(frozen=True)
class NodeStatus:
    node: str
    registry: str
    chain_id: int
    member: bool
    round: int
    library_size: int
    outbox: Mapping[str, int]
    own_batches: tuple[str, ...]
    syncs: int
    last_sync: Mapping[str, Any] | None
    bytes: Traffic
    refused_batches: tuple[Mapping[str, Any], ...]
    retrying_batches: tuple[Mapping[str, Any], ...]  # accepted, not fetched yet: attempts, next attempt, reason
    global_size: int
    global_digest: str
    settled_epoch: int = -1  # the newest epoch closed at this node: the global library covers up to it

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "registry": self.registry,
            "chain_id": self.chain_id,
            "member": self.member,
            "round": self.round,
            "library_size": self.library_size,
            "outbox": dict(self.outbox),
            "own_batches": list(self.own_batches),
            "syncs": self.syncs,
            "last_sync": dict(self.last_sync) if self.last_sync is not None else None,
            "bytes": self.bytes.to_json(),
            "refused_batches": [dict(r) for r in self.refused_batches],
            "retrying_batches": [dict(r) for r in self.retrying_batches],
            "global_library": {
                "size": self.global_size,
                "digest": self.global_digest,
                "closed_epochs": self.settled_epoch + 1,
            },
        }

    def line(self) -> str:
        return (
            f"node {self.node} ({'member' if self.member else 'not a member'}) on chain {self.chain_id}, "
            f"registry {self.registry}\nround {self.round}, {self.syncs} syncs, library {self.library_size} "
            f"experiences, global library {self.global_size} ({self.settled_epoch + 1} epochs closed); "
            f"outbox {dict(self.outbox) or 'empty'}; "
            f"{self.bytes.sent_total} B sent, {self.bytes.received_total} B received; "
            f"{len(self.refused_batches)} batches refused, {len(self.retrying_batches)} waiting to be fetched"
        )
