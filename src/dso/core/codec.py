"""BitDelta-style embedding codec: k-bit codes plus one float32 scale per vector.

1 bit: ``sign(v) * scale`` with ``scale = mean|v|`` (the L2-optimal scale for a sign code, as in
BitDelta); a 384-dim vector becomes 48 bytes of signs + 4 bytes of scale = 52 bytes instead of 1,536.
2/4/8 bits: a symmetric uniform quantiser with 2^k levels, ``value = (q - (2^k - 1)/2) * scale`` where
``scale`` is the step. For 2 and 4 bits the step is the MSE-optimal one for Gaussian data (0.9957 and
0.3352 times the vector's RMS; values beyond the outer levels are clipped), which on MiniLM vectors has
3.4x (2 bits) and 1.3x (4 bits) less squared error than stretching the levels to ``max|v|``; with 256
levels clipping costs more than it saves, so 8 bits uses ``max|v|``.

Two modes. *plain* encodes the vector itself (DSO's original design). *delta* encodes ``v - reference``
for a reference vector both sides hold (e.g. the global library's centroid), named in the code by the
sha256 of its float32 bytes so a receiver knows which reference to add back. Sentence embeddings share
a large common component, so centring first keeps far more of what distinguishes them.

Everything is vectorised over a whole batch; there is no Python loop per vector.

Wire format of one record (little-endian), see `HEADER_SIZE`:

    offset  size  field
    0       4     magic b"DSOC"
    4       1     version (1)
    5       1     bits (1, 2, 4 or 8)
    6       1     mode (0 plain, 1 delta)
    7       1     reserved, 0
    8       2     dim (uint16)
    10      32    reference id, sha256 of the reference (delta mode only)
    ..      4     scale (float32, finite, >= 0)
    ..      n     payload, ceil(dim * bits / 8) bytes, most significant bit first
    ..      4     CRC-32 of everything before it
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
import zlib
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from dso.errors import CodecError

MAGIC = b"DSOC"
VERSION = 1
SUPPORTED_BITS = (1, 2, 4, 8)
HEADER_SIZE = 10  # magic, version, bits, mode, reserved, dim; + 32 in delta mode
CRC_SIZE = 4
_HEAD = struct.Struct("<4sBBBBH")
_GAUSSIAN_STEP = {2: 0.9957, 4: 0.3352}  # MSE-optimal uniform step / sigma (Max, 1960)


class Mode(IntEnum):
    PLAIN = 0
    DELTA = 1


Floats = npt.NDArray[np.float32]


@dataclasses.dataclass(frozen=True)
class CodeBatch:
    """n encoded vectors of one shape: packed codes (n, payload_bytes) and scales (n,)."""

    bits: int
    dim: int
    payload: npt.NDArray[np.uint8]
    scales: Floats
    reference_id: bytes | None = None  # sha256 of the reference in delta mode

    @property
    def mode(self) -> Mode:
        return Mode.PLAIN if self.reference_id is None else Mode.DELTA

    def __len__(self) -> int:
        return len(self.scales)

    @property
    def code_bytes(self) -> int:
        """Bytes per vector on the wire, excluding header and checksum: payload + scale."""
        return payload_bytes(self.dim, self.bits) + 4


def payload_bytes(dim: int, bits: int) -> int:
    return (dim * bits + 7) // 8


def record_size(dim: int, bits: int, mode: Mode) -> int:
    return HEADER_SIZE + (32 if mode == Mode.DELTA else 0) + 4 + payload_bytes(dim, bits) + CRC_SIZE


def reference_id(reference: Floats) -> bytes:
    """The content hash that names a reference vector."""
    return hashlib.sha256(np.ascontiguousarray(reference, dtype="<f4").tobytes()).digest()


def _check_bits(bits: int) -> None:
    if bits not in SUPPORTED_BITS:
        raise CodecError(f"unsupported bit width {bits}; use one of {SUPPORTED_BITS}")


def encode(vectors: npt.ArrayLike, bits: int = 1, reference: npt.ArrayLike | None = None) -> CodeBatch:
    """Encode a (n, dim) batch (or one vector) into k-bit codes and per-vector scales."""
    _check_bits(bits)
    matrix = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    if matrix.ndim != 2 or matrix.shape[1] == 0 or matrix.shape[1] > 0xFFFF:
        raise CodecError(f"expected a (n, dim) array with 0 < dim <= 65535, got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        raise CodecError("vectors contain NaN or infinity")
    ref_id = None
    if reference is not None:
        ref = np.asarray(reference, dtype=np.float32)
        if ref.shape != (matrix.shape[1],) or not np.all(np.isfinite(ref)):
            raise CodecError(f"reference must be a finite vector of dim {matrix.shape[1]}")
        matrix = matrix - ref
        ref_id = reference_id(ref)
    n, dim = matrix.shape
    if bits == 1:
        scales = np.abs(matrix).mean(axis=1).astype(np.float32)
        payload = np.packbits(matrix >= 0, axis=1)
    else:
        half = (2**bits - 1) / 2
        if bits in _GAUSSIAN_STEP:
            rms = np.sqrt(np.square(matrix).mean(axis=1))
            scales = (_GAUSSIAN_STEP[bits] * rms).astype(np.float32)
        else:
            scales = (np.abs(matrix).max(axis=1) / half).astype(np.float32)
        safe = np.where(scales > 0, scales, 1.0)[:, None]
        codes = np.clip(np.rint(matrix / safe + half), 0, 2**bits - 1).astype(np.uint8)
        if bits == 8:
            payload = codes
        else:
            shifts = np.arange(bits - 1, -1, -1, dtype=np.uint8)
            bit_planes = (codes[:, :, None] >> shifts) & 1
            payload = np.packbits(bit_planes.reshape(n, dim * bits), axis=1)
    return CodeBatch(bits, dim, np.ascontiguousarray(payload, dtype=np.uint8), scales, ref_id)


def decode(batch: CodeBatch, reference: npt.ArrayLike | None = None) -> Floats:
    """Dequantise a batch back to (n, dim) float32 vectors; a result that is not finite is refused."""
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked once, on the result
        return _decode(batch, reference)


def _decode(batch: CodeBatch, reference: npt.ArrayLike | None) -> Floats:
    n, dim, bits = len(batch), batch.dim, batch.bits
    if bits == 1:
        signs = np.unpackbits(batch.payload, axis=1, count=dim).astype(np.float32) * 2 - 1
        out = signs * batch.scales[:, None]
    else:
        if bits == 8:
            codes = batch.payload.astype(np.float32)
        else:
            planes = np.unpackbits(batch.payload, axis=1, count=dim * bits).reshape(n, dim, bits)
            weights = (1 << np.arange(bits - 1, -1, -1)).astype(np.float32)
            codes = planes.astype(np.float32) @ weights
        out = (codes - (2**bits - 1) / 2) * batch.scales[:, None]
    if batch.reference_id is not None:
        if reference is None:
            raise CodecError("delta-coded vectors need their reference vector to decode")
        ref = np.asarray(reference, dtype=np.float32)
        if ref.shape != (dim,) or reference_id(ref) != batch.reference_id:
            raise CodecError("reference vector does not match the code's reference id")
        out = out + ref
    decoded = np.asarray(out, dtype=np.float32)
    if not np.all(np.isfinite(decoded)):  # a checksummed record can still carry a scale that overflows
        raise CodecError("decoded values are not finite (scale out of range); nothing was decoded")
    return decoded


def to_records(batch: CodeBatch) -> list[bytes]:
    """One self-describing wire record per vector."""
    head = _HEAD.pack(MAGIC, VERSION, batch.bits, int(batch.mode), 0, batch.dim)
    if batch.reference_id is not None:
        head += batch.reference_id
    records = []
    scale_bytes = batch.scales.astype("<f4")
    for i in range(len(batch)):
        body = head + scale_bytes[i].tobytes() + batch.payload[i].tobytes()
        records.append(body + struct.pack("<I", zlib.crc32(body)))
    return records


def from_record(data: bytes, *, dim: int | None = None) -> CodeBatch:
    """Parse and check one record; any defect raises CodecError and yields no vector."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"codec record must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < HEADER_SIZE + 4 + CRC_SIZE:
        raise CodecError(f"codec record truncated: {len(data)} bytes")
    magic, version, bits, mode, reserved, got_dim = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise CodecError("not a DSO codec record (bad magic)")
    if version != VERSION:
        raise CodecError(f"unknown codec record version {version}")
    if bits not in SUPPORTED_BITS:
        raise CodecError(f"unsupported bit width {bits} in codec record")
    if mode not in (Mode.PLAIN, Mode.DELTA) or reserved != 0:
        raise CodecError(f"unknown codec mode {mode}/{reserved}")
    if got_dim == 0 or (dim is not None and got_dim != dim):
        raise CodecError(f"codec record has dim {got_dim}, expected {dim}")
    expected = record_size(got_dim, bits, Mode(mode))
    if len(data) != expected:
        raise CodecError(f"codec record has {len(data)} bytes, expected {expected}")
    (crc,) = struct.unpack_from("<I", data, len(data) - CRC_SIZE)
    if zlib.crc32(data[:-CRC_SIZE]) != crc:
        raise CodecError("codec record checksum mismatch (corrupted bytes)")
    offset = HEADER_SIZE
    ref_id = None
    if mode == Mode.DELTA:
        ref_id = data[offset : offset + 32]
        offset += 32
    (scale,) = struct.unpack_from("<f", data, offset)
    if not np.isfinite(scale) or scale < 0:
        raise CodecError(f"codec record has invalid scale {scale}")
    payload = np.frombuffer(data, dtype=np.uint8, count=payload_bytes(got_dim, bits), offset=offset + 4)
    return CodeBatch(bits, got_dim, payload[None, :].copy(), np.array([scale], dtype=np.float32), ref_id)


def concat(batches: list[CodeBatch]) -> CodeBatch:
    """Join batches of the same shape and reference (e.g. records parsed one by one)."""
    if not batches:
        raise CodecError("nothing to concatenate")
    first = batches[0]
    for other in batches[1:]:
        if (other.bits, other.dim, other.reference_id) != (first.bits, first.dim, first.reference_id):
            raise CodecError("cannot mix codes of different bit width, dim or reference")
    return CodeBatch(
        first.bits,
        first.dim,
        np.concatenate([b.payload for b in batches]),
        np.concatenate([b.scales for b in batches]),
        first.reference_id,
    )
