"""The BitDelta codec: sizes, round trips, wire-format checks and corrupted bytes."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dso.core import codec
from dso.core.codec import Mode
from dso.errors import CodecError

DIM = 384


def unit_vectors(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, dim)).astype(np.float32) + 0.3  # a shared component, as in real embeddings
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_one_bit_code_is_52_bytes_for_384_dims() -> None:
    batch = codec.encode(unit_vectors(3), bits=1)
    assert batch.payload.shape == (3, 48) and batch.code_bytes == 52
    assert 1536 / batch.code_bytes == pytest.approx(29.54, abs=0.01)
    assert codec.record_size(DIM, 1, Mode.PLAIN) == 52 + codec.HEADER_SIZE + codec.CRC_SIZE == 66
    assert codec.record_size(DIM, 1, Mode.DELTA) == 98
    assert [len(r) for r in codec.to_records(batch)] == [66, 66, 66]


def test_one_bit_is_sign_times_mean_abs() -> None:
    v = np.array([[0.5, -0.25, 0.0, -1.0]], dtype=np.float32)
    batch = codec.encode(v, bits=1)
    assert batch.scales[0] == pytest.approx(0.4375)
    np.testing.assert_allclose(codec.decode(batch), [[0.4375, -0.4375, 0.4375, -0.4375]])


def test_mean_abs_is_the_l2_optimal_scale() -> None:
    v = unit_vectors(1, seed=3)[0]
    signs = np.where(v >= 0, 1.0, -1.0)
    best = float(np.abs(v).mean())
    error = lambda s: float(np.square(v - s * signs).sum())  # noqa: E731
    assert error(best) <= min(error(best * 0.95), error(best * 1.05))


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_more_bits_reconstruct_better_and_delta_helps(bits: int) -> None:
    v = unit_vectors(200, seed=1)
    reference = v.mean(axis=0)
    plain = codec.decode(codec.encode(v, bits))
    delta = codec.decode(codec.encode(v, bits, reference), reference)
    cos = lambda a: float(((a * v).sum(1) / np.linalg.norm(a, axis=1)).mean())  # noqa: E731
    assert cos(delta) >= cos(plain) - 1e-4
    floor = {1: 0.7, 2: 0.9, 4: 0.99, 8: 0.9999}[bits]
    assert cos(plain) > floor


def test_bit_widths_are_ordered() -> None:
    v = unit_vectors(100, seed=2)
    errors = [float(np.square(codec.decode(codec.encode(v, b)) - v).sum()) for b in (1, 2, 4, 8)]
    assert errors == sorted(errors, reverse=True)


def test_delta_needs_the_right_reference() -> None:
    v = unit_vectors(4)
    reference = v.mean(axis=0)
    batch = codec.encode(v, 1, reference)
    assert batch.mode == Mode.DELTA and batch.reference_id == codec.reference_id(reference)
    with pytest.raises(CodecError, match="need their reference"):
        codec.decode(batch)
    with pytest.raises(CodecError, match="does not match"):
        codec.decode(batch, reference + 1e-3)


def test_encode_rejects_bad_input() -> None:
    with pytest.raises(CodecError, match="unsupported bit width 3"):
        codec.encode(unit_vectors(1), bits=3)
    with pytest.raises(CodecError, match="NaN"):
        codec.encode(np.full((1, 8), np.nan, np.float32))
    with pytest.raises(CodecError, match="reference must be"):
        codec.encode(unit_vectors(1), 1, np.zeros(5, np.float32))


@settings(max_examples=60, deadline=None)
@given(
    bits=st.sampled_from(codec.SUPPORTED_BITS),
    dim=st.integers(1, 70),
    delta=st.booleans(),
    data=st.data(),
)
def test_records_round_trip(bits: int, dim: int, delta: bool, data: st.DataObject) -> None:
    v = data.draw(hnp.arrays(np.float32, (3, dim), elements=st.floats(-4, 4, width=32)))
    reference = data.draw(hnp.arrays(np.float32, (dim,), elements=st.floats(-1, 1, width=32))) if delta else None
    batch = codec.encode(v, bits, reference)
    parsed = codec.concat([codec.from_record(r, dim=dim) for r in codec.to_records(batch)])
    assert parsed.bits == bits and parsed.reference_id == batch.reference_id
    np.testing.assert_array_equal(parsed.payload, batch.payload)
    np.testing.assert_array_equal(parsed.scales, batch.scales)
    np.testing.assert_array_equal(codec.decode(parsed, reference), codec.decode(batch, reference))


RECORD = codec.to_records(codec.encode(unit_vectors(1), 1))[0]


@settings(max_examples=300, deadline=None)
@given(position=st.integers(0, len(RECORD) * 8 - 1))
def test_any_flipped_bit_is_rejected(position: int) -> None:
    corrupted = bytearray(RECORD)
    corrupted[position // 8] ^= 1 << (position % 8)
    with pytest.raises(CodecError):
        codec.from_record(bytes(corrupted))


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(0, len(RECORD) - 1), extra=st.binary(max_size=8))
def test_truncated_or_padded_records_are_rejected(cut: int, extra: bytes) -> None:
    with pytest.raises(CodecError):
        codec.from_record(RECORD[:cut])
    if extra:
        with pytest.raises(CodecError):
            codec.from_record(RECORD + extra)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_yield_a_vector(data: bytes) -> None:
    with pytest.raises(CodecError):
        codec.from_record(data)


def _forge(**fields: int | float | bytes) -> bytes:
    """A record with a valid checksum but one bad header field."""
    head = dict(magic=b"DSOC", version=1, bits=1, mode=0, reserved=0, dim=8, scale=0.5)
    head.update(fields)
    body = struct.pack(
        "<4sBBBBH", head["magic"], head["version"], head["bits"], head["mode"], head["reserved"], head["dim"]
    )
    body += struct.pack("<f", head["scale"]) + b"\x0f"
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, None),
        ({"magic": b"XXXX"}, "bad magic"),
        ({"version": 2}, "unknown codec record version 2"),
        ({"bits": 3}, "unsupported bit width 3"),
        ({"mode": 7}, "unknown codec mode"),
        ({"scale": float("nan")}, "invalid scale"),
        ({"scale": float("inf")}, "invalid scale"),
        ({"scale": -1.0}, "invalid scale"),
        ({"dim": 16}, "19 bytes, expected 20"),
    ],
)
def test_header_checks(fields: dict[str, int | float | bytes], message: str | None) -> None:
    record = _forge(**fields)
    if message is None:
        assert codec.from_record(record).dim == 8
        with pytest.raises(CodecError, match="dim 8, expected 384"):
            codec.from_record(record, dim=384)
        return
    with pytest.raises(CodecError, match=message):
        codec.from_record(record)


def test_retrieval_on_decoded_codes_recalls_more_with_more_bits() -> None:
    """The bit-width ablation of retrieval: top-10 on decoded codes against top-10 on the floats."""
    from dso.bench.codec_bench import bits_recall_rows

    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((2_000, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[:50] + 0.3 * rng.standard_normal((50, 384)).astype(np.float32)
    rows = bits_recall_rows(vectors, queries)
    assert [r["bits"] for r in rows] == [1, 2, 4, 8] and [r["code_bytes"] for r in rows] == sorted(
        r["code_bytes"] for r in rows
    )
    recalls = [r["recall_at_10"] for r in rows]
    assert recalls[-1] >= 0.9 and recalls[-1] >= recalls[0]
