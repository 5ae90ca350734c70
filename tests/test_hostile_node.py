"""A node reads batches written by strangers: junk in every form is one DataError, never a crash."""

from __future__ import annotations

import json

import pytest
from eth_account import Account

from dso.chain.registry import BatchInfo, BatchState
from dso.core.cid import cid_of
from dso.core.records import BatchManifest, encode_batch
from dso.core.signing import RegistryDomain
from dso.errors import DataError
from dso.node import share

NODE = Account.create().address
DOMAIN = RegistryDomain(31337, "0x" + "11" * 20)
JUNK = [
    b"",
    b"\x00" * 100,
    b"\xff\xfe not utf-8 \x80",
    b"[" * 10_000 + b"]" * 10_000,  # nesting
    b'{"v": 1}',
    json.dumps({"v": 1, "type": "dso.batch", "node": 5, "round": "x", "records": {}, "merkle_root": []}).encode(),
    b"x" * 2_000_000,  # size
]


def _info(
    root: bytes = b"\x00" * 32, cid: str = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
) -> BatchInfo:
    return BatchInfo(b"\x01" * 32, NODE, 1, 100, 3, 0, 0, BatchState.ACCEPTED, root, cid)


@pytest.mark.parametrize("data", JUNK)
def test_junk_manifests_are_refused_in_one_error(data: bytes) -> None:
    with pytest.raises(DataError):
        share.check_manifest(_info(), data)


@pytest.mark.parametrize("data", JUNK)
def test_junk_records_refuse_the_batch(data: bytes) -> None:
    cid = cid_of(b"a record that is not one")
    manifest = BatchManifest.build(NODE, 1, [cid])
    info = _info(manifest.merkle_root, cid_of(encode_batch(manifest)))
    with pytest.raises(DataError):
        share.check_records(info, manifest, {cid: data})  # bytes that do not hash to the CID, or do not decode


@pytest.mark.parametrize(
    "submitted",
    [{}, {"node": NODE}, {"signature": "0x00"}, {"signature": b"\x00" * 65}, {"signature": 7, "round": None}],
)
def test_junk_submissions_are_refused(submitted: dict[str, object]) -> None:
    manifest = BatchManifest.build(NODE, 1, [cid_of(b"r")])
    info = _info(manifest.merkle_root, cid_of(encode_batch(manifest)))
    complete = {"node": info.node, "merkleRoot": info.merkle_root, "batchCid": info.batch_cid, "round": info.round}
    for args in (submitted, {**complete, **submitted}):
        with pytest.raises(DataError):
            share.check_submission(info, manifest, args, DOMAIN)


def test_an_overflowing_code_scale_cannot_pass_the_code_check(embedder: object) -> None:
    """A finite float32 scale of 3e38 used to overflow the code check's norm to infinity and its cosine to NaN,
    which passed `cosine < 0.6`: now the check runs in float64 and only a cosine >= 0.6 passes."""
    import dataclasses

    import numpy as np

    from dso.core import codec
    from dso.core.records import ExperienceRecord
    from dso.embed import Embedder
    from dso.errors import RecordError

    assert isinstance(embedder, Embedder)
    text = "When two units differ, convert both to the smaller unit before comparing."
    vector = embedder.embed([text])
    batch = codec.encode(-vector, bits=1)  # a code for the opposite meaning
    huge = dataclasses.replace(batch, scales=np.array([3e38], dtype=np.float32))
    (code,) = codec.to_records(huge)
    record = ExperienceRecord(text, 0.9, "general", 0, embedder.identity, "m", "0x" + "11" * 20, 1, code=code)
    with pytest.raises(RecordError, match="does not match its text"):
        share.check_codes([("cid", record)], vector, embedder.identity)
    (honest,) = codec.to_records(codec.encode(vector, bits=1))
    share.check_codes([("cid", dataclasses.replace(record, code=honest))], vector, embedder.identity)
