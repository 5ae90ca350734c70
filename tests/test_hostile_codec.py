"""Hostile codec records and vectors: no infinities out of a decoder, no bare errors out of an aggregator."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dso.core import codec, robust
from dso.errors import AggregationError, CodecError


def with_scale(record: bytes, scale: float) -> bytes:
    """The record with another scale and a correct checksum: what a malicious peer can send."""
    body = bytearray(record[: -codec.CRC_SIZE])
    struct.pack_into("<f", body, codec.HEADER_SIZE, scale)
    return bytes(body) + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize("bits", [2, 4, 8])  # 1 bit: values are +-scale, finite for any finite scale
def test_a_checksummed_record_with_a_huge_scale_decodes_to_nothing(bits: int) -> None:
    record = codec.to_records(codec.encode(np.full((1, 16), 0.25, np.float32), bits))[0]
    huge = with_scale(record, 3.0e38)
    parsed = codec.from_record(huge)  # the header and checksum are fine ...
    with pytest.raises(CodecError, match="not finite"):
        codec.decode(parsed)  # ... but no infinity ever leaves the decoder
    for method in robust.METHODS:  # and nothing the aggregators are given can be one
        with pytest.raises(AggregationError):
            robust.aggregate(np.array([[1.0, np.inf], [0.0, 1.0], [0.5, 0.5], [0.2, 0.1]]), method, 0)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=0, max_size=200))
def test_random_bytes_never_decode(data: bytes) -> None:
    with pytest.raises(CodecError):
        codec.from_record(data)


@settings(max_examples=100, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True, width=32), st.sampled_from([1, 2, 4, 8]))
def test_any_scale_decodes_finite_or_is_refused(scale: float, bits: int) -> None:
    record = codec.to_records(codec.encode(np.linspace(-1, 1, 16, dtype=np.float32)[None, :], bits))[0]
    try:
        vectors = codec.decode(codec.from_record(with_scale(record, scale)))
    except CodecError:
        return
    assert np.all(np.isfinite(vectors))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=3, max_size=3), min_size=0, max_size=9)
)
def test_aggregators_refuse_with_their_own_error(rows: list[list[float]]) -> None:
    for method in robust.METHODS:
        try:
            result = robust.aggregate(np.array(rows, dtype=np.float64).reshape(len(rows), 3), method, 1)
        except AggregationError:
            continue
        assert np.all(np.isfinite(result))
