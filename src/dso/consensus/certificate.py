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
from collections.abc import Sequence
from typing import Any

import rfc8785
from eth_account import Account
from eth_utils.crypto import keccak

from dso.core.cid import cid_of
from dso.core.experience import text_key
from dso.core.merkle import merkle_root
from dso.core.signing import RegistryDomain, recover_typed_signer, typed_data
from dso.errors import SignatureError

CERTIFICATE_TYPE = [
    {"name": "epoch", "type": "uint64"},
    {"name": "libraryRoot", "type": "bytes32"},
    {"name": "experiences", "type": "uint32"},
]
EMPTY_ROOT = bytes(32)  # the root of an epoch that accepted nothing


@dataclasses.dataclass(frozen=True)
class LibraryEntry:
    """One accepted experience as the root commits to it: text, domain and the records behind it."""

    text: str
    domain: str
    records: tuple[str, ...]  # CIDs, sorted

    def to_bytes(self) -> bytes:
        document: dict[str, Any] = {
            "v": 1,
            "type": "dso.global-experience",
            "text": self.text,
            "domain": self.domain,
            "records": sorted(self.records),
        }
        return bytes(rfc8785.dumps(document))

    @property
    def cid(self) -> str:
        return cid_of(self.to_bytes())


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
