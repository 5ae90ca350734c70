"""Chain benchmark: gas per call and transactions per second, embedded EVM and anvil side by side.

Also the protocol-scale check: N submitted batches and every member's votes in a bounded number of
transactions (one submit per batch, plus voteMany calls whose count does not grow with N beyond
ceil(N / chunk), as a 30M block gas limit caps how many votes fit in one transaction), with batch
states read from contract views, never from event logs scanned from block 0.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from rich.console import Console

from dso.chain.client import Chain, RegistryClient, connect, deploy_registry, dev_fund, mine
from dso.chain.registry import BatchState
from dso.core.cid import cid_of
from dso.core.records import BatchManifest, encode_batch
from dso.core.signing import sign_batch
from dso.machine import machine
from dso.node.relay import CHUNK as RELAY_CHUNK

MEMBERS = [Account.from_key(bytes([0x40 + i]) * 32) for i in range(3)]
NODE = Account.from_key(b"\x7f" * 32)


def _signed(registry: RegistryClient, node: LocalAccount, round_: int) -> tuple[BatchManifest, str, bytes]:
    manifest = BatchManifest.build(node.address, round_, [cid_of(f"r{round_}-{i}".encode()) for i in range(4)])
    batch_cid = cid_of(encode_batch(manifest))
    return manifest, batch_cid, sign_batch(node.key, registry.domain, manifest, batch_cid)


def _setup(w3: Chain) -> list[RegistryClient]:
    for account in [*MEMBERS, NODE]:
        dev_fund(w3, account.address, 10**21)
    first = deploy_registry(w3, MEMBERS[0], [m.address for m in MEMBERS], voting_window=10**6)
    return [first] + [RegistryClient(w3, first.address, account) for account in (*MEMBERS[1:], NODE)]


def bench_backend(w3: Chain, batches: int, chunk: int, console: Console) -> dict[str, Any]:
    clients = _setup(w3)
    node = clients[-1]
    # the registry takes at most four batches per node and epoch: NODE relays batches that publishers sign,
    # four each (anyone may relay a signed batch)
    publishers = [Account.from_key(keccak(text=f"dso-bench-chain-{k}")) for k in range(-(-batches // 4))]
    signed = [_signed(node, publishers[(r - 1) // 4], r) for r in range(1, batches + 1)]
    started = time.perf_counter()
    ids, submit_receipts = [], []
    for s in signed:
        ids.append(node.submit_batch(*s))
        submit_receipts += node.receipts
    submit_s = time.perf_counter() - started
    submit_gas = statistics.median(r["gasUsed"] for r in submit_receipts)
    transactions = len(ids)

    # the same number of batches again through a relay: one submitBatches per `RELAY_CHUNK`, from NODE
    more = [Account.from_key(keccak(text=f"dso-bench-chain-{k}")) for k in range(len(publishers), 2 * len(publishers))]
    relayed = [_signed(node, more[i // 4], 1 + i % 4) for i in range(batches)]
    started = time.perf_counter()
    relay_receipts = []
    for start in range(0, len(relayed), RELAY_CHUNK):
        node.submit_batches(relayed[start : start + RELAY_CHUNK])
        relay_receipts += node.receipts
    relay_s = time.perf_counter() - started
    relay_gas = sum(r["gasUsed"] for r in relay_receipts) / max(1, len(relayed))
    transactions += len(relay_receipts)

    single = ids[:20]  # single votes, first member: none of these decides a batch (1 of 3)
    started = time.perf_counter()
    vote_receipts = [clients[0].vote(batch_id, True) for batch_id in single]
    vote_s = time.perf_counter() - started
    transactions += len(single)

    many_receipts = []
    started = time.perf_counter()
    for member in clients[:3]:
        member.vote_many(ids, [True] * len(ids), chunk=chunk)
        many_receipts += member.receipts
    many_s = time.perf_counter() - started
    transactions += len(many_receipts)
    started = time.perf_counter()
    accepted = clients[0].all_batches(BatchState.ACCEPTED)
    read_s = time.perf_counter() - started
    attest_gas = _attestation_gas(w3)
    console.print(f"  {batches} batches, {transactions} transactions, {len(accepted)} accepted")
    full_chunks = [r["gasUsed"] for r in many_receipts if r is not None]
    return {
        "batches": batches,
        "transactions": transactions,
        "accepted": len(accepted),
        "gas_per_submit": submit_gas,
        "relay_chunk": RELAY_CHUNK,
        "gas_per_relayed_batch": relay_gas,
        "relayed_batches_per_s": len(relayed) / relay_s,
        "gas_per_attestation": attest_gas,
        "gas_per_vote": statistics.median(r["gasUsed"] for r in vote_receipts),
        "vote_many_chunk": chunk,
        "gas_per_vote_many_chunk_median": statistics.median(full_chunks),
        "submit_tx_per_s": len(ids) / submit_s,
        "vote_tx_per_s": len(single) / vote_s,
        "votes_per_s_in_vote_many": 3 * len(ids) / many_s,
        "read_all_batches_s": read_s,
    }


def _attestation_gas(w3: Chain) -> float:
    """Median gas of one member's attestation of an epoch's library (the last of three certifies it)."""
    first = deploy_registry(w3, MEMBERS[0], [m.address for m in MEMBERS], voting_window=5)
    clients = [first] + [RegistryClient(w3, first.address, account) for account in MEMBERS[1:]]
    mine(w3, max(0, 6 - first.height()))
    entries = cid_of(b"an entries document")
    gas = []
    for client in clients:
        client.attest(0, keccak(text="a library root"), 12, entries)
        gas += [r["gasUsed"] for r in client.receipts]
    return float(statistics.median(gas))


def run_chain_bench(batches: int = 1_000, chunk: int = 100, quiet: bool = False) -> dict[str, Any]:
    from dso.services import start_anvil

    console = Console(quiet=quiet, stderr=True)
    result: dict[str, Any] = {"machine": machine(), "backends": {}}
    with tempfile.TemporaryDirectory() as scratch, start_anvil(Path(scratch)) as anvil:
        for name, rpc in (("anvil", anvil.url), ("embedded (eth-tester + py-evm)", None)):
            console.print(f"{name} ...")
            result["backends"][name] = bench_backend(connect(rpc), batches, chunk, console)
    return result
