"""What leaves a node and what it accepts back: records, signed batches, their checks, the global library.

Pure: no store, chain or clock here. The node (`dso.node.node`) fetches the bytes and hands them in;
every check a receiver makes on a stranger's batch is a function below that raises `DataError` (or a
subclass) with the reason, so a vote, a refusal and the reviewer page all give the same explanation.

A fetcher trusts nothing it has not re-derived: a block's bytes must hash to its CID (the store checks),
the manifest must name the node, round and Merkle root the registry holds, the signature in the
registering transaction must recover to that node for this registry and chain, and every record must
belong to the manifest's node, carry a proof against the on-chain root and, where both sides use the same
embedder, carry an embedding code that matches its own text.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dso.chain.registry import BatchInfo
from dso.config import ConsensusConfig
from dso.consensus.aggregate import Decision, Reputation, Submission, Validation, aggregate, unique_texts
from dso.consensus.policy import GuardPolicy
from dso.core import codec
from dso.core.cid import cid_of
from dso.core.experience import Experience
from dso.core.merkle import merkle_proofs, verify_proof
from dso.core.records import (
    MAX_BATCH_RECORDS,
    BatchManifest,
    ExperienceRecord,
    decode_batch,
    decode_record,
    encode_batch,
    encode_record,
)
from dso.core.signing import RegistryDomain, verify_batch_signature
from dso.embed.base import Vectors
from dso.errors import DataError, RecordError, SignatureError

# A 1-bit sign code keeps about sqrt(2/pi) = 0.80 of a vector's direction (cosine); an honest record measures
# 0.75-0.85 on MiniLM, a code made for another text about 0.0-0.5.
MIN_CODE_COSINE = 0.6


@dataclasses.dataclass(frozen=True)
class OutgoingBatch:
    """One round's records, manifest and signature, built before anything is sent."""

    records: tuple[tuple[str, bytes], ...]  # (CID, canonical bytes)
    manifest: BatchManifest
    manifest_bytes: bytes
    manifest_cid: str
    signature: bytes


def build_records(
    experiences: Sequence[Experience], vectors: Vectors, *, node: str, model: str, embedder: str, timestamp: int
) -> list[tuple[str, bytes]]:
    """One canonical record per experience, its embedding as a 1-bit code; (CID, bytes) in input order."""
    codes = codec.to_records(codec.encode(vectors, bits=1)) if len(experiences) else []
    out = []
    for experience, code in zip(experiences, codes, strict=True):
        record = ExperienceRecord(
            text=experience.text,
            confidence=float(experience.confidence),
            domain=experience.domain,
            epoch=int(experience.epoch),
            embedder=embedder,
            model=model,
            node=node,
            timestamp=timestamp,
            code=code,
            evidence=(experience.helped, experience.hurt, experience.neutral),
        )
        data = encode_record(record)
        out.append((cid_of(data), data))
    return out


def build_batch(
    records: Sequence[tuple[str, bytes]], *, node: str, round_: int, signer: Any, domain: RegistryDomain
) -> OutgoingBatch:
    """The manifest over `records` and the node's EIP-712 signature; `signer(manifest, cid)` -> 65 bytes."""
    manifest = BatchManifest.build(node, round_, [cid for cid, _ in records])
    manifest_bytes = encode_batch(manifest)
    manifest_cid = cid_of(manifest_bytes)
    signature = bytes(signer(manifest, manifest_cid))
    verify_batch_signature(domain, manifest, manifest_cid, signature)
    return OutgoingBatch(tuple(records), manifest, manifest_bytes, manifest_cid, signature)


# -- checks on a stranger's batch --------------------------------------------------------------


def check_manifest(info: BatchInfo, manifest_bytes: bytes, max_records: int = MAX_BATCH_RECORDS) -> BatchManifest:
    """The manifest a batch's CID names, which must be the batch the registry holds, listing at most
    `max_records` records (checked before a single record is fetched: what a batch can cost its receivers)."""
    manifest = decode_batch(manifest_bytes)
    if len(manifest.records) > max_records:
        raise RecordError(
            f"the batch lists {len(manifest.records)} records; this node takes at most {max_records} per batch "
            "(network.max_batch_records)"
        )
    if manifest.node != info.node:
        raise RecordError(f"manifest names node {manifest.node}, the registry {info.node}")
    if manifest.round != info.round:
        raise RecordError(f"manifest names round {manifest.round}, the registry {info.round}")
    if manifest.merkle_root != info.merkle_root:
        raise RecordError("manifest Merkle root differs from the one registered on chain")
    return manifest


def check_submission(
    info: BatchInfo, manifest: BatchManifest, submitted: Mapping[str, Any], domain: RegistryDomain
) -> None:
    """The registering transaction's arguments are this batch's, and its signature is the node's."""
    expected = {
        "node": info.node,
        "merkleRoot": info.merkle_root,
        "batchCid": info.batch_cid,
        "round": info.round,
    }
    for key, value in expected.items():
        if submitted.get(key) != value:
            raise SignatureError(f"the registering transaction's {key} differs from the registry's batch")
    signature = submitted.get("signature")
    if not isinstance(signature, (bytes, bytearray)):
        raise SignatureError("the registering transaction carries no signature")
    verify_batch_signature(domain, manifest, info.batch_cid, bytes(signature))


def check_records(
    info: BatchInfo, manifest: BatchManifest, blocks: Mapping[str, bytes], only: Sequence[str] | None = None
) -> list[tuple[str, ExperienceRecord]]:
    """Every record of the manifest (or the `only` ones of it, a sample): decoded, the manifest's node, included
    under the on-chain root."""
    proofs = merkle_proofs(manifest.records)
    out = []
    for cid in manifest.records if only is None else [c for c in manifest.records if c in set(only)]:
        if cid not in blocks:
            raise RecordError(f"record {cid} of the batch was not fetched")
        if cid_of(blocks[cid]) != cid:
            raise RecordError(f"record {cid}: bytes do not hash to the CID")
        record = decode_record(blocks[cid])
        if record.node != manifest.node:
            raise RecordError(f"record {cid} names node {record.node}, its batch {manifest.node}")
        if not verify_proof(cid, proofs[cid], info.merkle_root):
            raise RecordError(f"record {cid} has no inclusion proof under the on-chain Merkle root")
        out.append((cid, record))
    return out


def check_codes(records: Sequence[tuple[str, ExperienceRecord]], vectors: Vectors, embedder: str) -> None:
    """Each record's embedding code must match its own text (when made by the receiver's embedder).

    `vectors` are the receiver's embeddings of the records' texts, in order. Codes from another embedder
    cannot be compared and are left alone: the receiver never uses a stranger's vectors anyway."""
    for (cid, record), vector in zip(records, vectors, strict=True):
        if record.code is None or record.embedder != embedder:
            continue
        try:
            decoded = codec.decode(codec.from_record(record.code, dim=len(vector)))[0]
        except DataError as exc:
            raise RecordError(f"record {cid}: {exc}") from None
        # float64 throughout, and a comparison NaN cannot pass: a huge finite scale (3e38) overflows a float32
        # norm to infinity and the cosine to NaN, and `NaN < 0.6` is false
        wide = decoded.astype(np.float64)
        norm = float(np.linalg.norm(wide))
        cosine = float(wide @ np.asarray(vector, dtype=np.float64)) / norm if norm > 0 else 0.0
        if not cosine >= MIN_CODE_COSINE:
            raise RecordError(f"record {cid}: its embedding code does not match its text (cosine {cosine:.2f})")


# -- the global library ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SharedRecord:
    """A verified record of an accepted batch, as the global library computation reads it."""

    cid: str
    batch_id: str  # 0x-hex
    node: str
    round: int
    text: str
    confidence: float
    domain: str
    epoch: int
    helped: int = 0  # the origin node's own evidence counts, as its record claims them
    hurt: int = 0
    neutral: int = 0


@dataclasses.dataclass(frozen=True)
class GlobalExperience:
    """One experience of the global library with the records that support it."""

    text: str
    domain: str
    records: tuple[SharedRecord, ...]
    decision: Decision | None  # None when merged without the robust aggregation

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "domain": self.domain,
            "supporters": sorted({r.node for r in self.records}),
            "claimed_evidence": {
                "helped": sum(r.helped for r in self.records),
                "hurt": sum(r.hurt for r in self.records),
                "neutral": sum(r.neutral for r in self.records),
            },
            "records": sorted(r.cid for r in self.records),
            "reason": self.decision.reason if self.decision else "in a batch the registry accepted",
        }


@dataclasses.dataclass(frozen=True)
class GlobalLibrary:
    """The global library: accepted experiences, rejected decisions, each node's reputation after the last round,
    and the candidates (rejected for support alone, strongest first) that a node may try on its own questions."""

    accepted: list[GlobalExperience]
    rejected: list[Decision]
    reputations: dict[str, Reputation]
    candidates: list[GlobalExperience] = dataclasses.field(default_factory=list)


def global_library(
    records: Sequence[SharedRecord],
    vectors: Mapping[str, Vectors],
    settings: ConsensusConfig,
    *,
    robust: bool,
    guards: GuardPolicy | None = None,
    validations: Sequence[Validation] = (),
) -> GlobalLibrary:
    """The global library every node computes from the same accepted batches.

    Robust: the consensus (`dso.consensus.aggregate`) runs once per epoch, in epoch order, each time over every
    record of the epochs so far (support is cumulative: a lesson published by one node in one epoch and by
    others later adds up, and a batch alone in its epoch is weighed against the whole network seen so far,
    never against itself alone), reputations carried from epoch to epoch; the library is the last run's
    decision, so a lesson accepted from a partial view is dropped when the fuller view rejects it. A record's
    `round` is the registry epoch of its batch (`registry_epoch`), never the round its publisher claims. The
    per-node cap counts `max_per_node` for each epoch. Otherwise every record of an accepted batch is in.
    Record texts are normalised by the record format, so they match the consensus's wordings as they are.
    Deterministic: the same records give the same library whatever their order. `vectors` maps each of
    `unique_texts` of the records to its unit vector. `guards` is the node's content policy, run in both modes
    (the same one its votes run); `validations` are the evidence rows the consensus weighs (robust mode)."""
    ordered = sorted(records, key=lambda r: (r.round, r.batch_id, r.cid))
    if not robust:
        policy = guards or GuardPolicy.from_settings(settings)
        texts = sorted({r.text for r in ordered})
        found = policy.findings(texts, [vectors[t] for t in texts]) if texts else []
        refused = {text for text, broken in zip(texts, found, strict=True) if broken}
        by_text: dict[str, list[SharedRecord]] = {}
        for record in ordered:
            if record.text not in refused:
                by_text.setdefault(record.text, []).append(record)
        merged = [GlobalExperience(t, rows[0].domain, tuple(rows), None) for t, rows in by_text.items()]
        return GlobalLibrary(merged, [], {})
    reputations: dict[str, Reputation] = {}
    epochs = sorted({r.round for r in ordered})
    if not epochs:
        return GlobalLibrary([], [], {})
    for count, epoch in enumerate(epochs, 1):
        rows = [r for r in ordered if r.round <= epoch]
        submissions = [Submission(r.node, r.text, r.confidence, r.domain, r.round, "accepted") for r in rows]
        capped = dataclasses.replace(settings, max_per_node=settings.max_per_node * count)
        result = aggregate(submissions, vectors, capped, reputations, validations, guards)
        reputations = dict(result.reputations)

    def backed(decision: Decision) -> GlobalExperience:
        wordings, supporters = set(decision.wordings), set(decision.supporters)
        backing = tuple(r for r in rows if r.node in supporters and r.text in wordings)
        return GlobalExperience(decision.text, decision.domain, backing, decision)

    accepted = [backed(d) for d in result.accepted]
    candidates = [backed(d) for d in result.rejected if d.candidate]  # the consensus's order: support first
    return GlobalLibrary(accepted, list(result.rejected), reputations, candidates)


def texts_to_embed(records: Sequence[SharedRecord]) -> list[str]:
    """The texts `global_library` needs vectors for."""
    return unique_texts([Submission(r.node, r.text, r.confidence) for r in records])
