"""Experience records and batch manifests: the units that leave a node.

Canonical bytes are RFC 8785 JSON (JCS): sorted keys, no insignificant white space, one fixed number
format. JSON rather than DAG-CBOR because a record is read by people (reviewers, the web page) and by
Solidity-free tooling in any language, and JCS makes it byte-deterministic. Decoding is strict: the
bytes must be *exactly* the canonical encoding of a valid record, so one record has one byte form and
one CID. Unknown fields are rejected; a later version adds fields under a new ``v`` (version 2 added the origin node's
evidence counts; version 1 records, without them, still decode).
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import rfc8785
from eth_utils.address import is_checksum_address as _is_checksum_address

from dso.core import codec
from dso.core.cid import cid_of, parse_cid
from dso.core.experience import MAX_TEXT_BYTES, normalise_text, word_count
from dso.core.merkle import merkle_root
from dso.core.untrusted import b64decode_canonical, is_int, load_json
from dso.errors import CIDError, CodecError, RecordError

RECORD_VERSION = 2  # 2 adds the origin node's evidence counts; version 1 records still decode
_LOWER_HEX_32 = re.compile(r"0x[0-9a-f]{64}")
MAX_RECORD_BYTES = 16_384
MAX_WORDS = 64  # the protocol's hard cap; a library may enforce a lower one
MAX_BATCH_RECORDS = 10_000

_RECORD_FIELDS = {
    "v",
    "type",
    "text",
    "code",
    "confidence",
    "domain",
    "epoch",
    "embedder",
    "model",
    "node",
    "timestamp",
}
_RECORD_FIELDS_V2 = _RECORD_FIELDS | {"evidence"}
_EVIDENCE_KEYS = ("helped", "hurt", "neutral")
_BATCH_FIELDS = {"v", "type", "node", "round", "records", "merkle_root"}
BATCH_VERSION = 1


@functools.lru_cache(maxsize=65_536)
def is_checksum_address(value: str) -> bool:
    """EIP-55 check, remembered: a network has few addresses and each record names one (a keccak each time)."""
    return bool(_is_checksum_address(value))


@dataclasses.dataclass(frozen=True)
class ExperienceRecord:
    text: str
    confidence: float
    domain: str
    epoch: int
    embedder: str  # identity of the model that made the embedding
    model: str  # the LLM that wrote the experience
    node: str  # EIP-55 address of the origin node
    timestamp: int  # unix seconds
    code: bytes | None = None  # a codec wire record of the embedding
    # the origin node's own counts (helped, hurt, neutral): a claim like confidence, shown, never decisive;
    # None writes a version 1 record
    evidence: tuple[int, int, int] | None = None

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "v": 1 if self.evidence is None else RECORD_VERSION,
            "type": "dso.experience",
            "text": self.text,
            "code": None if self.code is None else base64.b64encode(self.code).decode("ascii"),
            "confidence": self.confidence,
            "domain": self.domain,
            "epoch": self.epoch,
            "embedder": self.embedder,
            "model": self.model,
            "node": self.node,
            "timestamp": self.timestamp,
        }
        if self.evidence is not None:
            document["evidence"] = dict(zip(_EVIDENCE_KEYS, self.evidence, strict=True))
        return document


@dataclasses.dataclass(frozen=True)
class BatchManifest:
    """One node's records of one round, bound together by their Merkle root."""

    node: str
    round: int
    records: tuple[str, ...]  # CIDs, sorted
    merkle_root: bytes

    @classmethod
    def build(cls, node: str, round_: int, cids: Sequence[str]) -> BatchManifest:
        ordered = tuple(sorted(set(cids)))
        if len(ordered) != len(cids):
            raise RecordError("a batch may not hold the same record twice")
        manifest = cls(node, round_, ordered, merkle_root(ordered))
        _check_batch(manifest)
        return manifest

    def to_json(self) -> dict[str, Any]:
        return {
            "v": BATCH_VERSION,
            "type": "dso.batch",
            "node": self.node,
            "round": self.round,
            "records": list(self.records),
            "merkle_root": "0x" + self.merkle_root.hex(),
        }


def _short_string(value: Any, name: str, limit: int = 128) -> None:
    if not isinstance(value, str) or not value or len(value.encode("utf-8")) > limit or normalise_text(value) != value:
        raise RecordError(f"record {name} must be a non-empty normalised string of at most {limit} bytes")


def _check_record(record: ExperienceRecord) -> None:
    if not isinstance(record.text, str) or normalise_text(record.text) != record.text or not record.text:
        raise RecordError("record text must be non-empty, NFC, single-spaced, without control characters")
    if len(record.text.encode("utf-8")) > MAX_TEXT_BYTES or word_count(record.text) > MAX_WORDS:
        raise RecordError(f"record text exceeds {MAX_WORDS} words or {MAX_TEXT_BYTES} bytes")
    confidence = record.confidence
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not math.isfinite(confidence):
        raise RecordError(f"record confidence must be a number, got {confidence!r}")
    if not 0.0 <= confidence <= 1.0:
        raise RecordError(f"record confidence must lie in [0, 1], got {confidence}")
    _short_string(record.domain, "domain", 64)
    _short_string(record.embedder, "embedder")
    _short_string(record.model, "model")
    if not is_int(record.epoch) or not 0 <= record.epoch < 2**32:
        raise RecordError(f"record epoch must be an integer in [0, 2^32), got {record.epoch!r}")
    if not is_int(record.timestamp) or not 0 <= record.timestamp < 2**40:
        raise RecordError(f"record timestamp must be unix seconds, got {record.timestamp!r}")
    if not isinstance(record.node, str) or not is_checksum_address(record.node):
        raise RecordError(f"record node must be an EIP-55 checksummed address, got {record.node!r:.60}")
    if record.evidence is not None:
        evidence = record.evidence
        if (
            not isinstance(evidence, tuple)
            or len(evidence) != 3
            or not all(is_int(n) and 0 <= n < 2**32 for n in evidence)
        ):
            raise RecordError("record evidence must be three counts (helped, hurt, neutral) in [0, 2^32)")
    if record.code is not None:
        try:
            codec.from_record(record.code)
        except CodecError as exc:
            raise RecordError(f"record code is invalid: {exc}") from None


def encode_record(record: ExperienceRecord) -> bytes:
    """Validate and serialise to canonical bytes."""
    _check_record(record)
    data = rfc8785.dumps(record.to_json())
    if len(data) > MAX_RECORD_BYTES:
        raise RecordError(f"record is {len(data)} bytes; the cap is {MAX_RECORD_BYTES}")
    return data


def record_cid(record: ExperienceRecord) -> str:
    return cid_of(encode_record(record))


def _load_canonical(data: bytes, limit: int, what: str) -> Mapping[str, Any]:
    if not isinstance(data, (bytes, bytearray)):
        raise RecordError(f"{what} must be bytes")
    if len(data) > limit:
        raise RecordError(f"{what} is {len(data)} bytes; the cap is {limit}")
    document = load_json(bytes(data), RecordError, what)
    if not isinstance(document, dict):
        raise RecordError(f"{what} must be a JSON object")
    try:
        canonical = rfc8785.dumps(document)
    except (rfc8785.CanonicalizationError, ValueError, TypeError) as exc:
        raise RecordError(f"{what} cannot be canonicalised: {exc}") from None
    if canonical != bytes(data):
        raise RecordError(f"{what} is not in canonical (RFC 8785) form")
    return document


def decode_record(data: bytes) -> ExperienceRecord:
    """Parse canonical record bytes; anything malformed raises RecordError."""
    document = _load_canonical(data, MAX_RECORD_BYTES, "record")
    version = document.get("v")
    if not is_int(version) or version not in (1, 2) or document.get("type") != "dso.experience":
        raise RecordError(f"unsupported record version/type {version!r:.20}/{document.get('type')!r:.40}")
    fields = _RECORD_FIELDS if version == 1 else _RECORD_FIELDS_V2
    if set(document) != fields:
        unknown = sorted(set(document) - fields)
        missing = sorted(fields - set(document))
        raise RecordError(f"record fields differ from version {version}: unknown {unknown}, missing {missing}")
    evidence = None
    if version == 2:
        counts = document["evidence"]
        if not isinstance(counts, dict) or set(counts) != set(_EVIDENCE_KEYS):
            raise RecordError("record evidence must be an object with helped, hurt and neutral")
        evidence = tuple(counts[key] for key in _EVIDENCE_KEYS)
    code = document["code"]
    if code is not None:
        code = b64decode_canonical(code, RecordError, "record code")
    confidence = document["confidence"]
    record = ExperienceRecord(
        text=document["text"],
        confidence=float(confidence) if is_int(confidence) else confidence,
        domain=document["domain"],
        epoch=document["epoch"],
        embedder=document["embedder"],
        model=document["model"],
        node=document["node"],
        timestamp=document["timestamp"],
        code=code,
        evidence=evidence,  # type-checked by _check_record below
    )
    _check_record(record)
    return record


def _check_batch(manifest: BatchManifest) -> None:
    if not isinstance(manifest.node, str) or not is_checksum_address(manifest.node):
        raise RecordError(f"batch node must be an EIP-55 checksummed address, got {manifest.node!r:.60}")
    if not is_int(manifest.round) or not 0 <= manifest.round < 2**64:
        raise RecordError(f"batch round must be an integer in [0, 2^64), got {manifest.round!r}")
    if not 1 <= len(manifest.records) <= MAX_BATCH_RECORDS:
        raise RecordError(f"a batch holds 1 to {MAX_BATCH_RECORDS} records, got {len(manifest.records)}")
    if list(manifest.records) != sorted(set(manifest.records)):
        raise RecordError("batch records must be sorted and distinct")
    try:
        for cid in manifest.records:
            parse_cid(cid)
    except CIDError as exc:
        raise RecordError(f"batch lists a bad CID: {exc}") from None
    if merkle_root(manifest.records) != manifest.merkle_root:
        raise RecordError("batch Merkle root does not match its records")


def encode_batch(manifest: BatchManifest) -> bytes:
    _check_batch(manifest)
    return rfc8785.dumps(manifest.to_json())


def decode_batch(data: bytes) -> BatchManifest:
    document = _load_canonical(data, 64 + MAX_BATCH_RECORDS * 64 + 512, "batch")
    if set(document) != _BATCH_FIELDS:
        raise RecordError(f"batch fields differ from version 1: {sorted(document)}")
    if not is_int(document["v"]) or document["v"] != BATCH_VERSION or document["type"] != "dso.batch":
        raise RecordError(f"unsupported batch version/type {document['v']!r:.20}/{document['type']!r:.40}")
    root = document["merkle_root"]
    if not isinstance(root, str) or not _LOWER_HEX_32.fullmatch(root):
        raise RecordError("batch merkle_root must be 0x + 64 lower-case hex digits")
    root_bytes = bytes.fromhex(root[2:])
    records = document["records"]
    if not isinstance(records, list) or not all(isinstance(c, str) for c in records):
        raise RecordError("batch records must be a list of CIDs")
    manifest = BatchManifest(document["node"], document["round"], tuple(records), root_bytes)
    _check_batch(manifest)
    return manifest
