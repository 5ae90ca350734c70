"""Records, CIDs, Merkle batches, signatures and CAR files: the verifiable layer."""

from __future__ import annotations

import json
import random
import unicodedata

import pytest
import rfc8785
from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st

from dso.core import codec
from dso.core.car import decode_car, encode_car
from dso.core.cid import cid_of, parse_cid, verify_cid
from dso.core.merkle import leaf_hash, merkle_proofs, merkle_root, node_hash, verify_proof
from dso.core.records import (
    BatchManifest,
    ExperienceRecord,
    decode_batch,
    decode_record,
    encode_batch,
    encode_record,
    record_cid,
)
from dso.core.signing import RegistryDomain, sign_batch, verify_batch_signature
from dso.errors import CARError, CIDError, MerkleError, RecordError, SignatureError

KEY = Account.from_key(b"\x11" * 32)
OTHER = Account.from_key(b"\x22" * 32)
DOMAIN = RegistryDomain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")


def test_a_version_2_record_carries_evidence_and_a_version_1_record_still_decodes() -> None:
    with_evidence = make_record(evidence=(3, 1, 2))
    data = encode_record(with_evidence)
    assert json.loads(data)["v"] == 2 and json.loads(data)["evidence"] == {"helped": 3, "hurt": 1, "neutral": 2}
    assert decode_record(data) == with_evidence
    old = encode_record(make_record())
    assert json.loads(old)["v"] == 1 and decode_record(old) == make_record()
    for bad in (
        {"helped": -1, "hurt": 0, "neutral": 0},
        {"helped": 1, "hurt": 0},
        {"helped": 1.5, "hurt": 0, "neutral": 0},
    ):
        document = json.loads(data)
        document["evidence"] = bad
        with pytest.raises(RecordError, match="evidence"):
            decode_record(rfc8785.dumps(document))


def make_record(i: int = 0, **changes: object) -> ExperienceRecord:
    fields: dict[str, object] = dict(
        text=f"When a word problem mixes units, convert them first ({i}).",
        confidence=0.75,
        domain="math",
        epoch=1,
        embedder="all-MiniLM-L6-v2/onnx-int8@8199be6f699a",
        model="qwen2.5-1.5b",
        node=KEY.address,
        timestamp=1_764_000_000,
        code=codec.to_records(codec.encode([[0.1 * (j - 2) for j in range(8)]], 1))[0],
    )
    fields.update(changes)
    return ExperienceRecord(**fields)  # type: ignore[arg-type]


def test_cid_matches_the_known_vector() -> None:
    assert cid_of(b'{"hello":"world","n":1}') == "bafkreibsw5uzqkr2nyw7cictbmdnzoxr5d3v4acm52usvq7jdpl2esgxfa"
    assert cid_of(b"") == "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


@pytest.mark.parametrize(
    "bad",
    [
        "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",  # CIDv0
        "BAFKREIBSW5UZQKR2NYW7CICTBMDNZOXR5D3V4ACM52USVQ7JDPL2ESGXFA",  # upper case
        "bafkreibsw5uzqkr2nyw7cictbmdnzoxr5d3v4acm52usvq7jdpl2esgxf!",
        "bafyreibsw5uzqkr2nyw7cictbmdnzoxr5d3v4acm52usvq7jdpl2esgxfa",  # dag-cbor codec
        "",
    ],
)
def test_only_raw_sha256_cidv1_is_accepted(bad: str) -> None:
    with pytest.raises(CIDError):
        parse_cid(bad)


def test_record_round_trip_and_one_byte_form() -> None:
    record = make_record()
    data = encode_record(record)
    assert decode_record(data) == record
    assert json.loads(data)["type"] == "dso.experience"
    assert record_cid(record) == cid_of(data)
    pretty = json.dumps(json.loads(data), indent=1).encode()
    with pytest.raises(RecordError, match="canonical"):
        decode_record(pretty)
    reordered = json.dumps(dict(reversed(list(json.loads(data).items()))), separators=(",", ":")).encode()
    with pytest.raises(RecordError, match="canonical"):
        decode_record(reordered)


texts = (
    st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Co", "Cn", "Zl", "Zp")), min_size=1, max_size=80)
    .map(lambda t: " ".join(unicodedata.normalize("NFC", t).split()))
    .filter(bool)
)


@settings(max_examples=80, deadline=None)
@given(
    text=texts,
    confidence=st.floats(0, 1),
    epoch=st.integers(0, 2**32 - 1),
    timestamp=st.integers(0, 2**40 - 1),
    with_code=st.booleans(),
)
def test_encoding_is_deterministic_and_lossless(
    text: str, confidence: float, epoch: int, timestamp: int, with_code: bool
) -> None:
    record = make_record(text=text, confidence=confidence, epoch=epoch, timestamp=timestamp)
    if not with_code:
        record = make_record(text=text, confidence=confidence, epoch=epoch, timestamp=timestamp, code=None)
    try:
        data = encode_record(record)
    except RecordError:
        return  # e.g. a text that NFC-normalises differently; refusing is the correct outcome
    assert decode_record(data) == record
    assert encode_record(decode_record(data)) == data
    twin = make_record(text=text, confidence=confidence, epoch=epoch, timestamp=timestamp, code=record.code)
    assert encode_record(twin) == data


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"confidence": 1.5}, r"confidence must lie in \[0, 1\]"),
        ({"confidence": float("nan")}, "confidence must be a number"),
        ({"node": KEY.address.lower()}, "checksummed"),
        ({"text": "two  spaces"}, "single-spaced"),
        ({"text": " ".join(["word"] * 70)}, "exceeds 64 words"),
        ({"epoch": -1}, "epoch"),
        ({"code": b"not a codec record"}, "record code is invalid"),
        ({"domain": ""}, "domain"),
    ],
)
def test_invalid_records_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(RecordError, match=message):
        encode_record(make_record(**changes))


def _canonical(document: dict[str, object]) -> bytes:
    import rfc8785

    return rfc8785.dumps(document)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(extra=1), r"unknown \['extra'\]"),
        (lambda d: d.pop("domain"), r"missing \['domain'\]"),
        (lambda d: d.update(v=3), "unsupported record version"),
        (lambda d: d.update(v=2), r"missing \['evidence'\]"),  # a version 2 record carries evidence
        (lambda d: d.update(code="!!!"), "not valid base64"),
        (lambda d: d.update(confidence=2), "confidence must lie"),
        (lambda d: d.update(epoch=True), "epoch"),
    ],
)
def test_tampered_record_documents_are_refused(mutate: object, message: str) -> None:
    document = json.loads(encode_record(make_record()))
    mutate(document)  # type: ignore[operator]
    with pytest.raises(RecordError, match=message):
        decode_record(_canonical(document))


def test_bytes_that_are_not_a_record() -> None:
    for data, message in ((b"\xff\xfe", "UTF-8"), (b"[1]", "JSON object"), (b"{", "not valid JSON")):
        with pytest.raises(RecordError, match=message):
            decode_record(data)
    with pytest.raises(RecordError, match="cap is 16384"):
        decode_record(b" " * 20_000)


def test_tampered_record_no_longer_matches_its_cid() -> None:
    data = encode_record(make_record())
    cid = cid_of(data)
    tampered = data.replace(b"0.75", b"0.95")
    decode_record(tampered)  # still a well-formed record ...
    with pytest.raises(CIDError, match="does not match"):
        verify_cid(cid, tampered)  # ... but not the one that was named


def cids(n: int) -> list[str]:
    return [record_cid(make_record(i)) for i in range(n)]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17])
def test_every_proof_verifies_and_order_does_not_matter(n: int) -> None:
    items = cids(n)
    root = merkle_root(items)
    shuffled = items[:]
    random.Random(n).shuffle(shuffled)
    assert merkle_root(shuffled) == root
    proofs = merkle_proofs(items)
    assert all(verify_proof(c, proofs[c], root) for c in items)
    assert max(len(p) for p in proofs.values()) <= max(1, (n - 1).bit_length())


def test_proofs_fail_for_another_root_or_record() -> None:
    items = cids(6)
    proofs = merkle_proofs(items)
    other_root = merkle_root(cids(7))
    assert not verify_proof(items[0], proofs[items[0]], other_root)
    outsider = record_cid(make_record(99))
    assert not verify_proof(outsider, proofs[items[0]], merkle_root(items))
    assert not verify_proof(items[0], [b"\x00" * 32, *proofs[items[0]][1:]], merkle_root(items))
    assert not verify_proof(items[0], [b"short"], merkle_root(items))


def test_leaves_and_nodes_are_domain_separated() -> None:
    a, b = (leaf_hash(c) for c in cids(2))
    from eth_utils import keccak

    assert node_hash(a, b) != keccak(min(a, b) + max(a, b))
    assert leaf_hash(cids(1)[0]) != keccak(parse_cid(cids(1)[0]))
    with pytest.raises(MerkleError, match="same record twice"):
        merkle_root([cids(1)[0]] * 2)
    with pytest.raises(MerkleError, match="at least one"):
        merkle_root([])


def manifest(n: int = 4, round_: int = 7) -> tuple[BatchManifest, str]:
    built = BatchManifest.build(KEY.address, round_, cids(n))
    return built, cid_of(encode_batch(built))


def test_batch_manifest_round_trip_and_checks() -> None:
    built, _ = manifest()
    assert decode_batch(encode_batch(built)) == built
    document = json.loads(encode_batch(built))
    document["merkle_root"] = "0x" + "00" * 32
    with pytest.raises(RecordError, match="Merkle root does not match"):
        decode_batch(_canonical(document))
    document = json.loads(encode_batch(built))
    document["records"] = list(reversed(document["records"]))
    with pytest.raises(RecordError, match="sorted"):
        decode_batch(_canonical(document))


def test_signature_binds_node_chain_contract_round_and_root() -> None:
    built, batch_cid = manifest()
    signature = sign_batch(KEY.key, DOMAIN, built, batch_cid)
    verify_batch_signature(DOMAIN, built, batch_cid, signature)
    replays = [
        (RegistryDomain(1, DOMAIN.contract), built, batch_cid),
        (RegistryDomain(31337, "0x" + "ab" * 20), built, batch_cid),
        (DOMAIN, manifest(4, round_=8)[0], batch_cid),
        (DOMAIN, manifest(5)[0], batch_cid),
        (DOMAIN, built, cid_of(b"another batch")),
    ]
    for domain, other_manifest, other_cid in replays:
        with pytest.raises(SignatureError, match="not by its node"):
            verify_batch_signature(domain, other_manifest, other_cid, signature)


def test_signature_by_another_key_and_malformed_signatures() -> None:
    built, batch_cid = manifest()
    with pytest.raises(SignatureError, match="cannot sign for node"):
        sign_batch(OTHER.key, DOMAIN, built, batch_cid)
    forged_manifest = BatchManifest.build(OTHER.address, built.round, built.records)
    forged = sign_batch(OTHER.key, DOMAIN, forged_manifest, batch_cid)
    with pytest.raises(SignatureError, match="not by its node"):
        verify_batch_signature(DOMAIN, built, batch_cid, forged)
    good = sign_batch(KEY.key, DOMAIN, built, batch_cid)
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    s = int.from_bytes(good[32:64], "big")
    malleated = good[:32] + (n - s).to_bytes(32, "big") + bytes([55 - good[64]])  # the twin signature
    with pytest.raises(SignatureError, match="high s"):
        verify_batch_signature(DOMAIN, built, batch_cid, malleated)
    with pytest.raises(SignatureError, match="65 bytes"):
        verify_batch_signature(DOMAIN, built, batch_cid, good[:64])
    with pytest.raises(SignatureError, match="v must be 27 or 28"):
        verify_batch_signature(DOMAIN, built, batch_cid, good[:64] + b"\x05")


def test_car_round_trip_and_damage() -> None:
    built, batch_cid = manifest(3)
    blocks = [encode_batch(built)] + [encode_record(make_record(i)) for i in range(3)]
    car = encode_car([batch_cid], blocks)
    roots, found = decode_car(car)
    assert roots == [batch_cid] and set(found) == {cid_of(b) for b in blocks}
    for cut in range(1, len(car), 37):
        with pytest.raises(CARError):
            decode_car(car[:cut])
    tampered = bytearray(car)
    tampered[-5] ^= 0x01
    with pytest.raises(CARError, match="does not match its CID"):
        decode_car(bytes(tampered))
    with pytest.raises(CARError, match="lacks its root"):
        decode_car(encode_car([batch_cid], blocks[1:]))
