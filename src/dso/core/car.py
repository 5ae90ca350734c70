"""CAR v1 (content-addressed archive) for moving a batch between stores.

Layout: varint(len(header)) + header + sections, each varint(len(cid) + len(data)) + binary CID + data.
The header is DAG-CBOR ``{"roots": [CID...], "version": 1}``, written and read here for exactly that
shape. Reading checks every block against its CID and refuses truncated or trailing bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

from dso.core.cid import BINARY_LENGTH, cid_bytes_of, encode_cid, parse_cid
from dso.errors import CARError, CIDError

MAX_CAR_BYTES = 256 * 1024 * 1024


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, offset: int) -> tuple[int, int]:
    value = shift = 0
    for index in range(offset, min(offset + 9, len(data))):
        byte = data[index]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if index > offset and byte == 0:
                raise CARError("non-minimal varint")
            return value, index + 1
        shift += 7
    raise CARError("truncated CAR (varint)")


def _cbor_head(major: int, value: int) -> bytes:
    if value < 24:
        return bytes([major << 5 | value])
    if value < 256:
        return bytes([major << 5 | 24, value])
    return bytes([major << 5 | 25]) + value.to_bytes(2, "big")


def _header(roots: Sequence[str]) -> bytes:
    body = bytearray(b"\xa2" + _cbor_head(3, 5) + b"roots" + _cbor_head(4, len(roots)))
    for root in roots:
        link = b"\x00" + parse_cid(root)  # tag 42: multibase identity prefix + binary CID
        body += b"\xd8\x2a" + _cbor_head(2, len(link)) + link
    body += _cbor_head(3, 7) + b"version" + b"\x01"
    return bytes(body)


def _parse_header(header: bytes) -> list[str]:
    prefix = b"\xa2" + _cbor_head(3, 5) + b"roots"
    if not header.startswith(prefix):
        raise CARError("CAR header is not {roots, version}")
    offset = len(prefix)
    if offset >= len(header) or header[offset] >> 5 != 4:
        raise CARError("CAR header roots is not an array")
    count = header[offset] & 0x1F
    if count >= 24:
        raise CARError("CAR header lists too many roots")
    offset += 1
    link_head = b"\xd8\x2a" + _cbor_head(2, BINARY_LENGTH + 1) + b"\x00"
    roots = []
    for _ in range(count):
        if header[offset : offset + len(link_head)] != link_head:
            raise CARError("CAR root is not a supported CID link")
        offset += len(link_head)
        try:
            roots.append(encode_cid(header[offset : offset + BINARY_LENGTH]))
            parse_cid(roots[-1])
        except CIDError as exc:
            raise CARError(f"CAR root: {exc}") from None
        offset += BINARY_LENGTH
    if header[offset:] != _cbor_head(3, 7) + b"version\x01":
        raise CARError("CAR header version is not 1")
    return roots


def encode_car(roots: Sequence[str], blocks: Sequence[bytes]) -> bytes:
    header = _header(roots)
    out = bytearray(_varint(len(header)) + header)
    for data in blocks:
        cid = cid_bytes_of(data)
        out += _varint(len(cid) + len(data)) + cid + data
    return bytes(out)


def decode_car(data: bytes) -> tuple[list[str], dict[str, bytes]]:
    """Roots and blocks (by CID) of a CAR v1; every block is checked against its CID."""
    if len(data) > MAX_CAR_BYTES:
        raise CARError(f"CAR is larger than {MAX_CAR_BYTES} bytes")
    length, offset = _read_varint(data, 0)
    if offset + length > len(data):
        raise CARError("truncated CAR (header)")
    roots = _parse_header(data[offset : offset + length])
    offset += length
    blocks: dict[str, bytes] = {}
    while offset < len(data):
        size, offset = _read_varint(data, offset)
        if size < BINARY_LENGTH or offset + size > len(data):
            raise CARError("truncated CAR (block)")
        cid_binary, block = data[offset : offset + BINARY_LENGTH], data[offset + BINARY_LENGTH : offset + size]
        try:
            cid = encode_cid(cid_binary)
            parse_cid(cid)
        except CIDError as exc:
            raise CARError(f"CAR block: {exc}") from None
        if cid_bytes_of(block) != cid_binary:
            raise CARError(f"CAR block {cid} does not match its CID")
        blocks[cid] = block
        offset += size
    missing = [r for r in roots if r not in blocks]
    if missing:
        raise CARError(f"CAR lacks its root block {missing[0]}")
    return roots, blocks
