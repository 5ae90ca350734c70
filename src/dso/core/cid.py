"""Content identifiers: CIDv1, raw codec, sha2-256, base32 (``bafkrei...``).

For data up to 256 KiB this equals what ``ipfs add --cid-version=1 --raw-leaves`` prints, because
such data is stored as a single raw block. Computed with hashlib and base64 (~50x faster than a
general multiformats library), parsed strictly: only this one CID form is accepted.
"""

from __future__ import annotations

import base64
import hashlib

from dso.errors import CIDError

PREFIX = bytes([0x01, 0x55, 0x12, 0x20])  # CIDv1, raw, sha2-256, 32-byte digest
MAX_BLOCK = 262_144  # above this, ipfs add chunks the data and the CID is no longer a raw block
BINARY_LENGTH = len(PREFIX) + 32


def cid_bytes_of(data: bytes) -> bytes:
    return PREFIX + hashlib.sha256(data).digest()


def encode_cid(binary: bytes) -> str:
    return "b" + base64.b32encode(binary).decode("ascii").lower().rstrip("=")


def cid_of(data: bytes) -> str:
    """The raw CIDv1 of `data`, as `ipfs add --cid-version=1 --raw-leaves` gives it."""
    if len(data) > MAX_BLOCK:
        raise CIDError(f"{len(data)} bytes is more than one raw block ({MAX_BLOCK}); records must stay below")
    return encode_cid(cid_bytes_of(data))


def parse_cid(cid: str) -> bytes:
    """The binary form of a base32 raw sha2-256 CIDv1; anything else is refused."""
    if not isinstance(cid, str) or not cid.startswith("b") or len(cid) != 59:
        raise CIDError(f"not a base32 CIDv1: {cid!r:.80}")
    body = cid[1:]
    if body != body.lower():
        raise CIDError(f"CID must be lower-case base32: {cid!r}")
    try:
        binary = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
    except (ValueError, TypeError):
        raise CIDError(f"CID is not valid base32: {cid!r}") from None
    if len(binary) != BINARY_LENGTH or not binary.startswith(PREFIX):
        raise CIDError(f"unsupported CID (need CIDv1 raw sha2-256): {cid!r}")
    if encode_cid(binary) != cid:
        raise CIDError(f"CID is not in canonical form: {cid!r}")
    return binary


def verify_cid(cid: str, data: bytes) -> None:
    """Raise unless `data` is exactly the content `cid` names."""
    if parse_cid(cid) != cid_bytes_of(data):
        raise CIDError(f"content does not match {cid}: got {cid_of(data) if len(data) <= MAX_BLOCK else 'other'}")
