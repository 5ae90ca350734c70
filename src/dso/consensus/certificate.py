"""Certificates of the global library: a committee's signed statement of what one closed epoch accepted.

Every full node computes the global library itself (`dso.node.share.global_library`); so that a node need
not fetch every batch of a large network, a committee drawn per epoch can sign what it computed, and other
nodes check that statement instead of recomputing it, auditing a sample. This module is the pure part:

- **the library root**: each accepted experience is one canonical JSON leaf (its text, domain and the CIDs
  of the records behind it: its provenance), content-addressed like a record; the root is the Merkle root
  of the leaves' CIDs (`dso.core.merkle`), so one library has one root and any leaf can be proven in it;
- **the certificate**: (epoch, root, number of experiences) signed by committee members under EIP-712 for
  one chain and one registry contract (`dso.core.signing.RegistryDomain`), so it cannot be replayed
  elsewhere; it stands when at least two thirds of the committee signed, each signer counted once;
- **the committee draw**: members ordered by keccak(seed || address), the first `size` taken; seeded by a past
  block hash, anyone who knows it draws the same committee, and nobody chooses it.

What a captured committee can do is bounded by the audit, not by this module: a node that recomputes the
epoch (`dso.node.audit`) refuses a certificate whose root differs from its own, with both roots as proof.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

import rfc8785
from eth_account import Account
from eth_utils.crypto import keccak

from dso.core.cid import MAX_BLOCK, cid_of, parse_cid
from dso.core.experience import MAX_TEXT_BYTES, check_label, normalise_text, text_key
from dso.core.merkle import merkle_root
from dso.core.signing import RegistryDomain, recover_typed_signer, typed_data
from dso.core.untrusted import is_int, is_number, load_json
from dso.errors import CertificateError, CIDError, SignatureError

CERTIFICATE_TYPE = [
    {"name": "epoch", "type": "uint64"},
    {"name": "libraryRoot", "type": "bytes32"},
    {"name": "experiences", "type": "uint32"},
]
EMPTY_ROOT = bytes(32)  # the root of an epoch that accepted nothing


@dataclasses.dataclass(frozen=True)
class Provenance:
    """The record that brings a lesson into a library: the earliest one supporting it."""

    cid: str
    node: str  # the publisher's address
    epoch: int  # the record's own epoch field
    batch_id: str  # 0x-hex
    round: int  # the registry epoch of its batch

    def to_json(self) -> dict[str, Any]:
        return {"cid": self.cid, "node": self.node, "epoch": self.epoch, "batch": self.batch_id, "round": self.round}


@dataclasses.dataclass(frozen=True)
class LibraryEntry:
    """One accepted experience as the root commits to it: what a node merges (text, domain, the consensus's
    confidence, the record that brings it in) and the root of every record behind it, so that any supporter
    can be proven without the entry growing with the network."""

    text: str
    domain: str
    confidence: float  # the consensus's, to two decimals: what every node computes the same
    supporters: int  # distinct publishers behind it
    records_root: bytes  # Merkle root of every supporting record's CID
    provenance: Provenance

    def to_json(self) -> dict[str, Any]:
        return {
            "v": ENTRY_VERSION,
            "type": "dso.global-experience",
            "text": self.text,
            "domain": self.domain,
            "confidence": self.confidence,
            "supporters": self.supporters,
            "records_root": "0x" + self.records_root.hex(),
            "provenance": self.provenance.to_json(),
        }

    def to_bytes(self) -> bytes:
        return bytes(rfc8785.dumps(self.to_json()))

    @property
    def cid(self) -> str:
        return cid_of(self.to_bytes())

    @classmethod
    def from_json(cls, row: Any) -> LibraryEntry:
        """One entry of a stranger's entries document, every field checked; `CertificateError` otherwise."""
        if not isinstance(row, dict) or set(row) != _ENTRY_FIELDS or row["v"] != ENTRY_VERSION:
            raise CertificateError("an entry is not a version-2 global experience")
        origin = row["provenance"]
        if not isinstance(origin, dict) or set(origin) != _PROVENANCE_FIELDS:
            raise CertificateError("an entry's provenance is malformed")
        text, domain, confidence, supporters = row["text"], row["domain"], row["confidence"], row["supporters"]
        if row["type"] != "dso.global-experience" or not isinstance(text, str) or not text.strip():
            raise CertificateError("an entry holds no text")
        if len(text.encode()) > MAX_TEXT_BYTES or normalise_text(text) != text:
            raise CertificateError("an entry's text is too long or not in normal form")
        try:
            check_label(domain, "domain", error=CertificateError)
            check_label(origin["node"], "node", error=CertificateError)
            parse_cid(origin["cid"])
        except (CertificateError, CIDError) as exc:
            raise CertificateError(f"an entry's field is malformed: {exc}") from None
        if not is_number(confidence) or not 0.0 <= confidence <= 1.0 or round(confidence, 2) != confidence:
            raise CertificateError("an entry's confidence is not a two-decimal number in [0, 1]")
        if not all(is_int(v) and 0 <= v < 2**63 for v in (supporters, origin["epoch"], origin["round"])):
            raise CertificateError("an entry's counts are not non-negative integers")
        if not all(_HEX_32.fullmatch(str(v)) for v in (row["records_root"], origin["batch"])):
            raise CertificateError("an entry's roots are not 32-byte hex")
        provenance = Provenance(origin["cid"], origin["node"], origin["epoch"], origin["batch"], origin["round"])
        return cls(text, domain, float(confidence), supporters, bytes.fromhex(row["records_root"][2:]), provenance)


ENTRY_VERSION = 2  # 2: provenance and a root of the supporters instead of every supporter's CID
_ENTRY_FIELDS = {"v", "type", "text", "domain", "confidence", "supporters", "records_root", "provenance"}
_PROVENANCE_FIELDS = {"cid", "node", "epoch", "batch", "round"}
_HEX_32 = re.compile(r"0x[0-9a-f]{64}")
MAX_ENTRIES = 10_000
MAX_ENTRIES_BYTES = MAX_BLOCK  # one raw block: about 600 entries


def entries_document(epoch: int, entries: Sequence[LibraryEntry]) -> bytes:
    """The canonical document a member stores beside its attestation: the epoch and its entries in text order."""
    ordered = sorted(entries, key=lambda e: text_key(e.text))
    return bytes(
        rfc8785.dumps({"v": 1, "type": "dso.global-library", "epoch": epoch, "entries": [e.to_json() for e in ordered]})
    )


def read_entries_document(data: bytes, epoch: int, root: bytes, experiences: int) -> list[LibraryEntry]:
    """A stranger's entries document, checked against what the registry certified for `epoch`: the same epoch,
    `experiences` entries, each valid, and their root equal to `root`. Anything else raises `CertificateError`."""
    if len(data) > MAX_ENTRIES_BYTES:
        raise CertificateError(f"entries document of {len(data)} bytes is over the limit")
    document = load_json(data, CertificateError, "entries document")
    if not isinstance(document, dict) or set(document) != {"v", "type", "epoch", "entries"} or document["v"] != 1:
        raise CertificateError("not a version-1 global library document")
    rows = document["entries"]
    if document["type"] != "dso.global-library" or document["epoch"] != epoch or not isinstance(rows, list):
        raise CertificateError(f"not the global library of epoch {epoch}")
    if len(rows) != experiences or len(rows) > MAX_ENTRIES:
        raise CertificateError(f"{len(rows)} entries where the certificate says {experiences}")
    entries = [LibraryEntry.from_json(row) for row in rows]
    if library_root(entries) != root:
        raise CertificateError("the entries' root is not the certified root")
    return entries


def library_root(entries: Sequence[LibraryEntry]) -> bytes:
    """The Merkle root of the entries' CIDs: the same set of entries gives the same root in any order."""
    if not entries:
        return EMPTY_ROOT
    return merkle_root(sorted({e.cid for e in sorted(entries, key=lambda e: text_key(e.text))}))


@dataclasses.dataclass(frozen=True)
class Certificate:
    """A committee's statement: at the end of `epoch`, the global library has this root and this many entries."""

    epoch: int
    root: bytes
    experiences: int
    signatures: tuple[bytes, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "root": "0x" + self.root.hex(),
            "experiences": self.experiences,
            "signatures": ["0x" + s.hex() for s in self.signatures],
        }


def _typed_data(domain: RegistryDomain, certificate: Certificate) -> dict[str, Any]:
    message = {"epoch": certificate.epoch, "libraryRoot": certificate.root, "experiences": certificate.experiences}
    return typed_data(domain, "Certificate", CERTIFICATE_TYPE, message)


def sign_certificate(private_key: bytes, domain: RegistryDomain, certificate: Certificate) -> bytes:
    """One member's 65-byte (r, s, v) signature of the certificate's statement (its signatures aside)."""
    if len(certificate.root) != 32 or not 0 <= certificate.epoch < 2**64 or not 0 <= certificate.experiences < 2**32:
        raise SignatureError("a certificate holds an epoch (uint64), a 32-byte root and a count (uint32)")
    signed = Account.sign_typed_data(private_key, full_message=_typed_data(domain, certificate))
    return bytes(signed.signature)


def certificate_signer(domain: RegistryDomain, certificate: Certificate, signature: bytes) -> str:
    """The address that signed the statement, under the rules batch signatures follow (65 bytes, low s)."""
    if len(certificate.root) != 32:
        raise SignatureError("a certificate's root is 32 bytes")
    return recover_typed_signer(_typed_data(domain, certificate), signature)


def certified_by(domain: RegistryDomain, certificate: Certificate, committee: Sequence[str]) -> list[str]:
    """The committee members who signed; raises unless at least two thirds of the committee did, each once.

    A signature by someone outside the committee, a second one by the same member, or one that does not
    recover is not counted (and said in the error when the quorum is not reached)."""
    members = set(committee)
    signers: list[str] = []
    ignored: list[str] = []
    for signature in certificate.signatures:
        try:
            signer = certificate_signer(domain, certificate, signature)
        except SignatureError as exc:
            ignored.append(str(exc)[:80])
            continue
        if signer not in members or signer in signers:
            ignored.append(f"{signer} {'signed twice' if signer in signers else 'is not on the committee'}")
            continue
        signers.append(signer)
    if not members or 3 * len(signers) < 2 * len(members):
        detail = f"; not counted: {'; '.join(ignored[:3])}" if ignored else ""
        raise SignatureError(
            f"{len(signers)} of {len(members)} committee members signed, fewer than two thirds{detail}"
        )
    return signers


def draw_committee(members: Sequence[str], seed: bytes, size: int) -> tuple[str, ...]:
    """`size` members ordered by keccak(seed || address): deterministic given `seed`, chosen by nobody."""
    ranked = sorted(set(members), key=lambda address: keccak(seed + bytes.fromhex(address.removeprefix("0x"))))
    return tuple(ranked[: max(0, size)])
