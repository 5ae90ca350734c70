"""Hostile bytes at the record and batch decoders: never a crash, only RecordError, one byte form per value.

Inputs are generated (hypothesis and loops), not only hand-picked: nesting, size, types, encodings and
single-byte mutations of valid encodings.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dso.core.car import decode_car, encode_car
from dso.core.cid import cid_of, parse_cid
from dso.core.records import BatchManifest, decode_batch, decode_record, encode_batch, encode_record
from dso.core.signing import verify_batch_signature
from dso.core.untrusted import load_json, nesting_depth
from dso.errors import CARError, CIDError, DSOError, RecordError, SignatureError
from test_records import DOMAIN, KEY, make_record

VALID = encode_record(make_record())
BATCH = encode_batch(BatchManifest.build(KEY.address, 7, [cid_of(b"r%d" % i) for i in range(5)]))
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def refused_or_round_trips(decode: object, encode: object, data: bytes) -> None:
    """Decoding either refuses with RecordError or yields a value whose encoding is exactly `data`."""
    try:
        value = decode(data)  # type: ignore[operator]
    except RecordError:
        return
    assert encode(value) == data  # type: ignore[operator]


def test_deep_nesting_inside_the_size_cap_is_refused_in_a_subprocess() -> None:
    """The signing stack raises the recursion limit; 600 KB of brackets must still be a one-line refusal."""
    code = (
        "import dso.core.signing, sys\n"
        "from dso.core.records import decode_batch\n"
        "from dso.errors import RecordError\n"
        "for data in (b'[' * 600_000, b'{\"a\":' * 100_000, b'[' * 600_000 + b']' * 600_000):\n"
        "    try:\n"
        "        decode_batch(data)\n"
        "    except RecordError as exc:\n"
        "        print(str(exc)[:80])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-500:]
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and all("nests deeper" in line or "bytes; the cap" in line for line in lines)


def test_one_value_has_one_byte_form() -> None:
    as_bool = VALID.replace(b'"v":1', b'"v":true')
    assert as_bool != VALID
    with pytest.raises(RecordError):
        decode_record(as_bool)
    document = json.loads(BATCH)
    upper = dict(document, merkle_root="0x" + document["merkle_root"][2:].upper())
    with pytest.raises(RecordError, match="lower-case"):
        decode_batch(json.dumps(upper, separators=(",", ":"), sort_keys=True).encode())
    with pytest.raises(RecordError):
        decode_batch(BATCH.replace(b'"v":1', b'"v":true'))
    code = json.loads(VALID)["code"]
    raw = base64.b64decode(code)
    assert len(raw) % 3 != 0  # the encoding has padding, so it has spare bits to abuse
    last = code.rstrip("=")[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    sibling = alphabet[alphabet.index(last) ^ 1]  # same decoded bytes, one stray padding bit set
    forged = code.rstrip("=")[:-1] + sibling + "=" * (len(code) - len(code.rstrip("=")))
    assert base64.b64decode(forged) == raw and forged != code
    with pytest.raises(RecordError, match="canonical base64"):
        decode_record(VALID.replace(code.encode(), forged.encode()))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_random_bytes_are_refused_cleanly(data: bytes) -> None:
    for decode in (decode_record, decode_batch):
        with pytest.raises(RecordError):
            decode(data)


@settings(max_examples=150, deadline=None)
@given(JSON_VALUES)
def test_any_json_value_is_refused_or_round_trips(value: object) -> None:
    data = json.dumps(value).encode()
    refused_or_round_trips(decode_record, encode_record, data)
    refused_or_round_trips(decode_batch, encode_batch, data)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["v", "confidence", "epoch", "timestamp", "text", "domain", "code", "node"]), JSON_VALUES)
def test_a_field_of_any_type_is_refused_or_round_trips(field: str, value: object) -> None:
    document = dict(json.loads(VALID), **{field: value})
    data = json.dumps(document, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
    refused_or_round_trips(decode_record, encode_record, data)


def test_every_single_byte_mutation_is_refused_or_round_trips() -> None:
    for data, decode, encode in ((VALID, decode_record, encode_record), (BATCH, decode_batch, encode_batch)):
        for position in range(len(data)):
            for replacement in (0x00, 0x22, 0x5B, 0x7B, 0x31, data[position] ^ 0x20):
                mutated = data[:position] + bytes([replacement]) + data[position + 1 :]
                refused_or_round_trips(decode, encode, mutated)


@pytest.mark.parametrize(
    "text",
    ["", "[" * 40, '{"a":' * 40 + "1" + "}" * 40, "NaN", "[Infinity]", '{"x": -Infinity}', "\ud800", "[1,]"],
)
def test_load_json_refuses_with_one_line(text: str) -> None:
    with pytest.raises(DSOError) as info:
        load_json(text, DSOError, "document")
    assert "\n" not in str(info.value)


def test_nesting_depth_ignores_brackets_inside_strings() -> None:
    assert nesting_depth('{"a": "[[[[[[", "b": [1, {"c": "\\"]]]"}]}') == 3
    assert load_json('["' + "[" * 100 + '"]', DSOError, "x") == ["[" * 100]


CAR = encode_car([cid_of(b"root")], [b"root", b"leaf one", b"leaf two"])


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=600))
def test_car_cid_and_signature_decoders_refuse_random_input_cleanly(data: bytes) -> None:
    with pytest.raises(CARError):
        decode_car(data)
    with pytest.raises(CIDError):
        parse_cid(data.decode("latin-1"))
    manifest = decode_batch(BATCH)
    with pytest.raises(SignatureError):
        verify_batch_signature(DOMAIN, manifest, cid_of(BATCH), data)


def test_every_single_byte_mutation_of_a_car_is_refused_or_decodes_to_the_same_blocks() -> None:
    assert len(decode_car(CAR)[1]) == 3
    for position in range(len(CAR)):
        for replacement in (0x00, 0xFF, CAR[position] ^ 0x01):
            mutated = CAR[:position] + bytes([replacement]) + CAR[position + 1 :]
            try:
                got_blocks = decode_car(mutated)[1]
            except CARError:
                continue
            assert all(cid_of(block) == cid for cid, block in got_blocks.items())  # never a block under a wrong CID
