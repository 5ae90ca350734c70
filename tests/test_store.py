"""Content stores (embedded block store and a real IPFS daemon) and keystores."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from dso.core.car import decode_car, encode_car
from dso.core.cid import cid_of
from dso.endpoints import RetryPolicy
from dso.errors import KeystoreError, StoreError
from dso.keys import keystore_address, load_account, new_keystore
from dso.services import free_port
from dso.store import LocalBlockStore
from dso.store.ipfs import IPFSStore

SIZES = [0, 1, 1_000, 100_000, 262_144]


def blob(size: int, seed: int = 1) -> bytes:
    return bytes((i * 31 + seed) % 251 for i in range(size))


def test_local_store_round_trip_and_tampering(tmp_path: Path) -> None:
    store = LocalBlockStore(tmp_path / "blocks")
    cids = [store.put(blob(n)) for n in SIZES]
    assert cids == [cid_of(blob(n)) for n in SIZES]
    assert [store.get(c) for c in cids] == [blob(n) for n in SIZES]
    assert store.put(blob(1_000)) == cids[2]  # idempotent
    path = tmp_path / "blocks" / cids[2][-2:] / cids[2]
    path.write_bytes(b"tampered")
    with pytest.raises(StoreError, match="corrupt"):
        store.get(cids[2])
    with pytest.raises(StoreError, match="not in"):
        store.get(cid_of(b"never stored"))
    with pytest.raises(StoreError, match="not a base32 CIDv1"):
        store.get("../../etc/passwd")
    assert store.has(cids[0]) and not store.has(cid_of(b"never stored"))
    store.pin(cids[0])
    with pytest.raises(StoreError, match="cannot pin"):
        store.pin(cid_of(b"never stored"))


def test_ipfs_daemon_gives_the_same_cids(ipfs_api: str) -> None:
    store = IPFSStore(ipfs_api)
    assert store.node_id()
    for size in SIZES[1:]:
        data = blob(size, seed=7)
        cid = store.put(data)  # raises if the daemon's CID differs from ours
        assert cid == cid_of(data)
        assert store.get(cid) == data
        assert store.has(cid)
        store.pin(cid)
    store.close()


def test_ipfs_missing_block_fails_fast(ipfs_api: str) -> None:
    store = IPFSStore(ipfs_api, policy=RetryPolicy(timeout_s=1), lookup_timeout_s=0.5)
    missing = cid_of(b"nobody stored this")
    assert not store.has(missing)
    with pytest.raises(StoreError, match="could not provide"):
        store.get(missing)


def test_car_moves_a_batch_between_stores(tmp_path: Path, ipfs_api: str) -> None:
    blocks = [blob(500, seed=s) for s in range(4)]
    local = LocalBlockStore(tmp_path / "a")
    cids = [local.put(b) for b in blocks]
    car = encode_car([cids[0]], [local.get(c) for c in cids])
    roots, found = decode_car(car)
    remote = IPFSStore(ipfs_api)
    assert [remote.put(found[c]) for c in cids] == cids
    assert roots == [cids[0]] and remote.get(cids[3]) == blocks[3]


def test_dead_ipfs_endpoint_is_one_clear_error() -> None:
    store = IPFSStore(f"http://127.0.0.1:{free_port()}", policy=RetryPolicy(retries=1, backoff_s=0.01))
    with pytest.raises(StoreError, match="failed after 2 attempts: cannot connect"):
        store.put(b"x")
    with pytest.raises(StoreError, match="must start with http"):
        IPFSStore("127.0.0.1:5001")


def test_keystore_is_encrypted_and_unlocks_only_with_its_password(tmp_path: Path) -> None:
    path = tmp_path / "node.json"
    address = new_keystore(path, "correct horse", kdf="pbkdf2", iterations=1000)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    account = load_account(path, "correct horse")
    assert account.address == address == keystore_address(path)
    assert account.key.hex().removeprefix("0x") not in path.read_text()
    with pytest.raises(KeystoreError, match="cannot unlock"):
        load_account(path, "wrong")
    with pytest.raises(KeystoreError, match="refusing to overwrite"):
        new_keystore(path, "x")
    with pytest.raises(KeystoreError, match="non-empty password"):
        new_keystore(tmp_path / "other.json", "")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(KeystoreError, match="not a keystore"):
        load_account(tmp_path / "bad.json", "x")
    with pytest.raises(KeystoreError, match="dso keys new"):
        load_account(tmp_path / "absent.json", "x")
    assert json.loads(path.read_text())["version"] == 3


def test_a_batch_goes_to_the_ipfs_daemon_as_one_car_import(ipfs_api: str) -> None:
    store = IPFSStore(ipfs_api)
    blocks = [blob(300 + s, seed=100 + s) for s in range(5)]
    cids = store.put_many(blocks)
    assert cids == [cid_of(b) for b in blocks]
    assert [store.get(c) for c in cids] == blocks and all(store.has(c) for c in cids)
    assert store.put_many(blocks) == cids and store.put_many([]) == []  # again: the same CIDs, nothing new


def test_the_local_store_takes_a_batch_too(tmp_path: Path) -> None:
    store = LocalBlockStore(tmp_path)
    blocks = [blob(100, seed=s) for s in range(3)]
    assert store.put_many(blocks) == [cid_of(b) for b in blocks]
    assert [store.get(c) for c in store.put_many(blocks)] == blocks
