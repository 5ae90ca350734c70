"""Records benchmark: encode + CID, Merkle build and proof checks, store put/get on both backends."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from eth_account import Account

from dso.core import codec
from dso.core.merkle import merkle_proofs, merkle_root, verify_proof
from dso.core.records import ExperienceRecord, encode_record, record_cid
from dso.machine import machine
from dso.store import ContentStore, LocalBlockStore


def sample_records(count: int) -> list[ExperienceRecord]:
    node = Account.from_key(b"\x01" * 32).address
    rng = np.random.default_rng(0)
    codes = codec.to_records(codec.encode(rng.standard_normal((count, 384)).astype(np.float32), 1))
    return [
        ExperienceRecord(
            text=f"When a word problem mixes units ({i}), convert every quantity to one unit first.",
            confidence=round(float(rng.uniform()), 4),
            domain="math",
            epoch=i % 5,
            embedder="all-MiniLM-L6-v2/onnx-int8@8199be6f699a",
            model="qwen2.5-1.5b",
            node=node,
            timestamp=1_764_000_000 + i,
            code=codes[i],
        )
        for i in range(count)
    ]


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def _store_rates(store: ContentStore, blocks: list[bytes]) -> dict[str, float]:
    started = time.perf_counter()
    cids = [store.put(b) for b in blocks]
    put_s = time.perf_counter() - started
    started = time.perf_counter()
    for cid in cids:
        store.get(cid)
    get_s = time.perf_counter() - started
    return {"put_per_s": _rate(len(blocks), put_s), "get_per_s": _rate(len(blocks), get_s)}


def run_records_bench(count: int = 10_000, store_blocks: int = 500, ipfs: bool = True) -> dict[str, Any]:
    records = sample_records(count)
    started = time.perf_counter()
    encoded = [encode_record(r) for r in records]
    encode_s = time.perf_counter() - started
    started = time.perf_counter()
    cids = [record_cid(r) for r in records]
    cid_s = time.perf_counter() - started
    started = time.perf_counter()
    root = merkle_root(cids)
    build_s = time.perf_counter() - started
    proofs = merkle_proofs(cids)
    started = time.perf_counter()
    assert all(verify_proof(c, proofs[c], root) for c in cids)
    verify_s = time.perf_counter() - started
    result: dict[str, Any] = {
        "machine": machine(),
        "records": count,
        "record_bytes_median": statistics.median(len(e) for e in encoded),
        "encode_per_s": _rate(count, encode_s),
        "encode_and_cid_per_s": _rate(count, cid_s),
        "merkle_build_s": build_s,
        "proof_length_max": max(len(p) for p in proofs.values()),
        "proof_verify_per_s": _rate(count, verify_s),
        "stores": {},
    }
    blocks = encoded[:store_blocks]
    with tempfile.TemporaryDirectory() as scratch:
        result["stores"]["local"] = _store_rates(LocalBlockStore(Path(scratch) / "blocks"), blocks)
        if ipfs:
            from dso.errors import ServiceError
            from dso.services import start_ipfs
            from dso.store.ipfs import IPFSStore

            try:
                with start_ipfs(Path(scratch) / "ipfs") as daemon:
                    result["stores"]["ipfs (js-ipfs daemon, loopback)"] = _store_rates(IPFSStore(daemon.url), blocks)
            except ServiceError as exc:
                result["stores"]["ipfs"] = {"skipped": str(exc)}
    return result
