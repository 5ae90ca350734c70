"""A Python client for ExperienceRegistry: one code path for the embedded EVM and any JSON-RPC node.

Transactions are signed locally by the node's key, nonces are tracked here, every call is gas-estimated
first (so a revert is caught before anything is sent) and each receipt is fetched right after sending.
Reverts arrive in different shapes per backend (eth-tester: the revert bytes inside an exception
message; a JSON-RPC node: a ContractCustomError with ``data``); both are decoded into the contract's
custom error names.
"""

from __future__ import annotations

import ast
import functools
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3 import Web3
from web3.contract.contract import Contract, ContractFunction
from web3.logs import DISCARD
from web3.types import Nonce, TxParams, TxReceipt, Wei

from dso.chain.artifact import load_artifact
from dso.chain.registry import (
    SPONSOR_CHUNK,
    BatchInfo,
    BatchState,
    CertificateInfo,
    Registry,
    TransactionCount,
    all_pages,
    has_batch,
)
from dso.core.cid import parse_cid
from dso.core.records import BatchManifest
from dso.core.signing import RegistryDomain, submission_id
from dso.core.untrusted import load_json
from dso.endpoints import http_base_url
from dso.errors import ChainError, ContractRevert
from dso.files import read_input, write_text_atomic

DEV_CHAIN_IDS = {31337, 131277322940537}  # anvil / hardhat, eth-tester
Chain = Web3  # a chain connection, for callers that must not import web3 themselves

# A vote estimated while it would not decide its batch may decide it once other members' votes are mined
# first (members vote at once): deciding stores the state and appends to the accepted list (~30k gas).
DECISION_GAS = 40_000


# -- connecting --------------------------------------------------------------------------------


def _one_pass_gas_estimate(state: Any, transaction: Any) -> int:
    """py-evm's own estimate runs a transaction about 14 times (a binary search over the gas limit): three
    quarters of the embedded chain's time per transaction. One run at the block's gas limit gives the gas its
    message uses, plus the transaction's intrinsic gas; `Transactor` adds its margin (20% + 10,000), which
    covers the 1/64 a call must keep back."""
    from eth.vm.spoof import SpoofTransaction

    snapshot = state.snapshot()
    try:
        computation = state.apply_transaction(SpoofTransaction(transaction, gas=state.gas_limit, gas_price=0))
        if computation.is_error:
            raise computation.error
        return int(transaction.intrinsic_gas) + int(computation.get_gas_used())  # the message's gas excludes the base
    finally:
        state.revert(snapshot)


@functools.cache
def embedded_web3() -> Web3:
    """The in-process EVM (eth-tester + py-evm), one per process, kept for the process's lifetime."""
    from eth_tester import EthereumTester, PyEVMBackend
    from web3 import EthereumTesterProvider

    backend = PyEVMBackend()
    backend.chain.gas_estimator = _one_pass_gas_estimate
    return Web3(EthereumTesterProvider(EthereumTester(backend)))


def checksum_address(value: str) -> ChecksumAddress:
    """An Ethereum address in EIP-55 form; anything else is one ChainError line."""
    if not isinstance(value, str) or not Web3.is_address(value):
        raise ChainError(f"not an Ethereum address: {value!r:.60}")
    return Web3.to_checksum_address(value)


def connect(rpc: str | None = None, *, timeout_s: float = 30.0) -> Web3:
    """`None` or "embedded": the in-process EVM; otherwise a JSON-RPC URL (anvil, geth, ...)."""
    if rpc in (None, "", "embedded"):
        return embedded_web3()
    assert rpc is not None
    http_base_url(rpc, "chain RPC", ChainError)
    w3 = Web3(Web3.HTTPProvider(rpc, request_kwargs={"timeout": timeout_s}))
    try:
        w3.eth.chain_id  # noqa: B018 - a cheap call that proves the node answers
    except Exception as exc:
        raise ChainError(f"cannot reach chain node at {rpc}: {exc.__class__.__name__}") from None
    return w3


def dev_fund(w3: Web3, address: str, wei: int = 10**19) -> None:
    """Give `address` 10 ether (thousands of batches' gas) from the dev chain's richest unlocked account
    (dev chains only: anvil's accounts hold 10,000 ether each, so a thousand nodes need several of them)."""
    if w3.eth.chain_id not in DEV_CHAIN_IDS:
        raise ChainError("dev_fund only works on a local development chain")
    if w3.eth.get_balance(address) >= wei // 2:  # type: ignore[arg-type]
        return
    try:
        source = max(w3.eth.accounts[:10], key=w3.eth.get_balance)
        tx = w3.eth.send_transaction({"from": source, "to": address, "value": wei})  # type: ignore[typeddict-item]
        w3.eth.wait_for_transaction_receipt(tx)
    except Exception as exc:  # each backend raises its own types
        raise ChainError(f"cannot fund {address} on the dev chain: {str(exc)[:200]}") from None


# -- reverts -----------------------------------------------------------------------------------


@functools.cache
def _error_table() -> dict[bytes, tuple[str, list[str]]]:
    table = {}
    for item in load_artifact()["abi"]:
        if item["type"] == "error":
            types = [i["type"] for i in item["inputs"]]
            selector = keccak(text=f"{item['name']}({','.join(types)})")[:4]
            table[selector] = (item["name"], types)
    return table


def _revert_data(exc: BaseException) -> bytes | None:
    data = getattr(exc, "data", None)
    if isinstance(data, str) and data.startswith("0x"):
        return bytes.fromhex(data[2:])
    match = re.search(r"execution reverted: (b'.*'|b\".*\")", str(exc), re.S)  # eth-tester's shape
    if match:
        try:
            value = ast.literal_eval(match.group(1))
        except (ValueError, SyntaxError):
            return None
        return value if isinstance(value, bytes) else None
    return None


def decode_revert(exc: BaseException) -> ChainError:
    data = _revert_data(exc)
    if data and data[:4] in _error_table():
        name, types = _error_table()[data[:4]]
        return ContractRevert(name, tuple(abi_decode(types, data[4:])))
    return ChainError(f"transaction failed: {str(exc)[:200]}")


# -- sending -----------------------------------------------------------------------------------


class Transactor:
    """Signs and sends transactions for one local account, tracking its nonce."""

    def __init__(self, w3: Web3, account: LocalAccount, *, receipt_timeout_s: float = 120.0) -> None:
        self.w3, self.account = w3, account
        self._timeout = receipt_timeout_s
        self._nonce: int = int(w3.eth.get_transaction_count(account.address, "pending"))
        self._chain_id = w3.eth.chain_id
        self.sent = TransactionCount()

    def _send(self, tx: dict[str, Any], estimate: Any, headroom: int = 0) -> TxReceipt:
        try:
            gas = int(estimate())
        except Exception as exc:
            raise decode_revert(exc) from None
        tx.update(gas=gas + gas // 5 + 10_000 + headroom, chainId=self._chain_id)
        tx.setdefault("gasPrice", self.w3.eth.gas_price)
        for attempt in range(2):
            tx["nonce"] = self._nonce
            signed = self.account.sign_transaction(tx)
            try:
                tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
                break
            except Exception as exc:  # web3 and each backend raise their own types
                if attempt == 0 and "nonce" in str(exc).lower():
                    # another process sent from this key meanwhile: take the chain's count and sign again
                    self._nonce = int(self.w3.eth.get_transaction_count(self.account.address, "pending"))
                    continue
                raise ChainError(f"the chain node refused the transaction: {str(exc)[:200]!r}") from None
        self._nonce += 1
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self._timeout, poll_latency=0.02)
        self.sent.add(len(signed.raw_transaction), int(receipt["gasUsed"]))
        if receipt["status"] != 1:
            raise ChainError(f"transaction {tx_hash.hex()} reverted")
        return receipt

    def call(self, fn: ContractFunction, headroom: int = 0) -> TxReceipt:
        """Send `fn`; `headroom` is gas beyond the estimate for work other senders may add before it is mined."""
        return self._transact(fn, headroom)

    def deploy(self, abi: Any, bytecode: str, *args: Any) -> TxReceipt:
        return self._transact(self.w3.eth.contract(abi=abi, bytecode=bytecode).constructor(*args))

    def _transact(self, action: Any, headroom: int = 0) -> TxReceipt:
        """Build, estimate, sign and send a contract function or constructor call."""
        sender: TxParams = {"from": self.account.address}
        # gas and price are placeholders so that building does not estimate; _send fills both
        tx = action.build_transaction({**sender, "gas": 1, "gasPrice": Wei(0), "nonce": Nonce(self._nonce)})
        tx.pop("gas")
        tx.pop("gasPrice")
        return self._send(dict(tx), lambda: action.estimate_gas(sender), headroom)


# -- the registry ------------------------------------------------------------------------------


class RegistryClient:
    """Read and write one deployed ExperienceRegistry; writes need an account."""

    def __init__(self, w3: Web3, address: str, account: LocalAccount | None = None) -> None:
        self.w3 = w3
        self.address = checksum_address(address)
        if not w3.eth.get_code(self.address):
            raise ChainError(f"no contract at {self.address} on chain {w3.eth.chain_id}")
        self.contract: Contract = w3.eth.contract(address=self.address, abi=load_artifact()["abi"])
        self._tx = None if account is None else Transactor(w3, account)
        self.chain_id = int(w3.eth.chain_id)
        self.receipts: list[TxReceipt] = []  # of this client's last write, for gas measurements
        # relayed transactions this client read (`submission`): each batch's signed fields by id, per transaction
        self._relayed: dict[bytes, dict[bytes, dict[str, Any]]] = {}
        # the batches registered in a block, by id, with the transaction that registered each (None: two did)
        self._registered: dict[int, dict[bytes, bytes | None]] = {}

    def height(self) -> int:
        return int(self.w3.eth.block_number)

    def with_account(self, account: LocalAccount) -> RegistryClient:
        return RegistryClient(self.w3, self.address, account)

    @property
    def domain(self) -> RegistryDomain:
        return RegistryDomain(self.chain_id, self.address)

    def _send(self, fn: ContractFunction, headroom: int = 0) -> TxReceipt:
        if self._tx is None:
            raise ChainError("this client has no account; writes need a node key")
        receipt = self._tx.call(fn, headroom)
        self.receipts = [receipt]
        return receipt

    @functools.cached_property
    def voting_window(self) -> int:
        return int(self._view(self.contract.functions.votingWindow()))

    @property
    def can_write(self) -> bool:
        return self._tx is not None

    @property
    def sent(self) -> TransactionCount:
        """This client's transactions so far (all zero without an account)."""
        return TransactionCount() if self._tx is None else self._tx.sent

    def _view(self, fn: ContractFunction) -> Any:
        try:
            return fn.call()
        except Exception as exc:
            raise decode_revert(exc) from None

    # writes
    def submit_batch(self, manifest: BatchManifest, batch_cid: str, signature: bytes) -> bytes:
        parse_cid(batch_cid)
        fn = self.contract.functions.submitBatch(
            manifest.node, manifest.merkle_root, batch_cid, manifest.round, signature
        )
        self._send(fn)
        return self.batch_id(manifest, batch_cid)

    def submit_batches(self, submissions: Sequence[tuple[BatchManifest, str, bytes]]) -> int:
        items = list(submissions)
        for _, batch_cid, _ in items:
            parse_cid(batch_cid)
        before = self.batch_count()
        fn = self.contract.functions.submitBatches(
            [m.node for m, _, _ in items],
            [m.merkle_root for m, _, _ in items],
            [c for _, c, _ in items],
            [m.round for m, _, _ in items],
            [bytes(sig) for _, _, sig in items],
        )
        self._send(fn)
        return self.batch_count() - before

    def vote(self, batch_id: bytes, approve: bool) -> TxReceipt:
        return self._send(self.contract.functions.vote(batch_id, approve), DECISION_GAS)

    def vote_many(self, batch_ids: Sequence[bytes], approvals: Sequence[bool], chunk: int = 200) -> None:
        """One `voteMany` per `chunk` batches: a vote costs about 33k gas, so 200 stay well inside a block."""
        ids, votes = list(batch_ids), list(approvals)
        if len(ids) != len(votes):
            raise ContractRevert("LengthMismatch", ())
        receipts = [
            self._send(
                self.contract.functions.voteMany(ids[i : i + chunk], votes[i : i + chunk]),
                DECISION_GAS * len(ids[i : i + chunk]),
            )
            for i in range(0, len(ids), chunk)
        ]
        self.receipts = receipts

    def attest(self, epoch: int, root: bytes, experiences: int, entries_cid: str) -> None:
        parse_cid(entries_cid)
        self._send(self.contract.functions.attest(epoch, root, experiences, entries_cid))

    def dispute(self, epoch: int, proof_cid: str) -> None:
        parse_cid(proof_cid)
        self._send(self.contract.functions.dispute(epoch, proof_cid))

    def certificate(self, epoch: int) -> CertificateInfo:
        row = self._view(self.contract.functions.certificate(epoch))
        certified, disputed, experiences, eligible, _members_epoch, root, entries_cid, disputed_by, proof_cid = row
        by = "" if int(disputed_by, 16) == 0 else str(disputed_by)
        return CertificateInfo(
            epoch, bool(certified), bytes(root), int(experiences), str(entries_cid), int(eligible), bool(disputed),
            by, str(proof_cid),
        )  # fmt: skip

    def has_attested(self, epoch: int, account: str) -> bool:
        return bool(self._view(self.contract.functions.hasAttested(epoch, checksum_address(account))))

    def is_member(self, account: str) -> bool:
        return bool(self._view(self.contract.functions.isMember(checksum_address(account))))

    def is_vouched(self, account: str) -> bool:
        return bool(self._view(self.contract.functions.isVouched(checksum_address(account))))

    def sponsor_many(self, publishers: Sequence[str]) -> None:
        """One `sponsorMany` per SPONSOR_CHUNK publishers."""
        accounts = [checksum_address(p) for p in publishers]
        for i in range(0, len(accounts), SPONSOR_CHUNK):
            self._send(self.contract.functions.sponsorMany(accounts[i : i + SPONSOR_CHUNK]))

    def has_voted(self, batch_id: bytes, account: str) -> bool:
        return bool(self._view(self.contract.functions.hasVoted(batch_id, checksum_address(account))))

    def quorum(self, eligible: int) -> int:
        """Votes a batch needs at the end of its window (the registry's quorum of its eligible members)."""
        return int(self._view(self.contract.functions.quorum(eligible)))

    def finalize(self, batch_id: bytes) -> None:
        self._send(self.contract.functions.finalize(batch_id))

    def propose_member(self, account: str, add: bool = True) -> int:
        """The new proposal's id, read from this transaction's own MemberProposed event: a count read
        afterwards would be another member's id whenever two proposals land close together."""
        receipt = self._send(self.contract.functions.proposeMember(checksum_address(account), add))
        events = self.contract.events.MemberProposed().process_receipt(receipt, errors=DISCARD)
        if len(events) != 1:
            raise ChainError(f"proposeMember transaction logged {len(events)} MemberProposed events, expected 1")
        return int(events[0]["args"]["proposalId"])

    def vote_member(self, proposal_id: int, approve: bool) -> TxReceipt:
        return self._send(self.contract.functions.voteMember(proposal_id, approve))

    # reads
    def batch_id(self, manifest: BatchManifest, batch_cid: str) -> bytes:
        fn = self.contract.functions.batchId(manifest.node, manifest.merkle_root, batch_cid, manifest.round)
        return bytes(self._view(fn))

    def members(self) -> list[str]:
        return list(self._view(self.contract.functions.members()))

    def proposal(self, proposal_id: int) -> dict[str, Any]:
        account, add, deadline, up, down, state, _epoch, eligible = self._view(
            self.contract.functions.proposal(proposal_id)
        )
        return {
            "account": account,
            "add": add,
            "deadline": deadline,
            "eligible": eligible,
            "up": up,
            "down": down,
            "state": BatchState(state).name.lower(),
        }

    def batch(self, batch_id: bytes) -> BatchInfo:
        return _batch_info(batch_id, self._view(self.contract.functions.getBatch(batch_id)))

    def has_batch(self, batch_id: bytes) -> bool:
        return has_batch(self, batch_id)

    def batch_count(self) -> int:
        return int(self._view(self.contract.functions.batchCount()))

    def batches(self, offset: int = 0, limit: int = 100) -> list[BatchInfo]:
        ids, rows = self._view(self.contract.functions.getBatches(offset, limit))
        return [_batch_info(bytes(i), r) for i, r in zip(ids, rows, strict=True)]

    def global_experiences(self, offset: int = 0, limit: int = 100) -> list[BatchInfo]:
        ids, rows = self._view(self.contract.functions.getGlobalExperiences(offset, limit))
        return [_batch_info(bytes(i), r) for i, r in zip(ids, rows, strict=True)]

    def all_batches(self, state: BatchState | None = None, page: int = 200) -> list[BatchInfo]:
        return all_pages(self, state, page)

    def submission(self, batch_id: bytes) -> tuple[dict[str, Any], int]:
        """The arguments of the `submitBatch` call that registered `batch_id` (signature included), read
        from its transaction, and the size of that call's input: how a fetcher re-checks a batch's
        signature without trusting the contract's word for it."""
        # the batch's deadline is its submission block plus the voting window: read that one block's logs
        # (a node scanning every block is slow, and the embedded chain's log search scans them all)
        block = self.batch(batch_id).deadline - self.voting_window
        registered = self._registered.get(block)
        if registered is None:  # every batch of that block at once: a relay's block holds a hundred
            registered = {}
            for log in self.contract.events.BatchSubmitted().get_logs(from_block=block, to_block=block):
                found = bytes(log["args"]["batchId"])
                registered[found] = None if found in registered else bytes(log["transactionHash"])
            if len(self._registered) >= 256:
                self._registered.clear()
            self._registered[block] = registered
        tx_hash = registered.get(batch_id)
        if tx_hash is None:
            raise ChainError(f"batch 0x{batch_id.hex()} has no single BatchSubmitted event in block {block}")
        relayed = self._relayed.get(tx_hash)  # a relay's transaction this client read already: its entries by id
        size = 0
        if relayed is None:
            data = bytes(self.w3.eth.get_transaction(HexBytes(tx_hash))["input"])
            try:
                fn, args = self.contract.decode_function_input(data)
            except ValueError:
                raise ChainError(f"batch 0x{batch_id.hex()} was submitted through another contract") from None
            if fn.fn_name == "submitBatch":
                return dict(args), len(data)
            if fn.fn_name != "submitBatches":
                raise ChainError(f"batch 0x{batch_id.hex()} was not registered by submitBatch or submitBatches")
            fields = ("nodes", "merkleRoots", "batchCids", "rounds", "signatures")
            relayed = {
                submission_id(node, root, cid, round_): {
                    "node": node, "merkleRoot": root, "batchCid": cid, "round": round_, "signature": signature
                }
                for node, root, cid, round_, signature in zip(*(args[f] for f in fields), strict=True)
            }  # fmt: skip
            if len(self._relayed) >= 64:
                self._relayed.clear()
            self._relayed[tx_hash], size = relayed, len(data)
        entry = relayed.get(batch_id)
        if entry is None:
            raise ChainError(f"batch 0x{batch_id.hex()} is not among the batches its transaction registered")
        return dict(entry), size

    def verify_inclusion(self, merkle_root: bytes, cid: str, proof: Sequence[bytes]) -> bool:
        fn = self.contract.functions.verifyInclusion(merkle_root, parse_cid(cid), list(proof))
        return bool(self._view(fn))


def _batch_info(batch_id: bytes, row: Sequence[Any]) -> BatchInfo:
    node, round_, deadline, _epoch, eligible, up, down, state, root, cid = row
    return BatchInfo(batch_id, node, round_, deadline, eligible, up, down, BatchState(state), bytes(root), cid)


def deploy_registry(
    w3: Web3, account: LocalAccount, members: Sequence[str], *, voting_window: int = 100, quorum_bps: int = 1_000
) -> RegistryClient:
    """Deploy a registry with an initial member set; returns a client acting as `account`."""
    artifact = load_artifact()
    checksummed = [checksum_address(m) for m in members]
    receipt = Transactor(w3, account).deploy(
        artifact["abi"], artifact["bytecode"], checksummed, voting_window, quorum_bps
    )
    address = receipt["contractAddress"]
    assert address is not None
    return RegistryClient(w3, address, account)


class AddressBook:
    """Deployed registry addresses per chain id, kept in a JSON file in the run directory."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, dict[str, str]]:
        if not self.path.is_file():
            return {}
        data = load_json(read_input(self.path, ChainError, limit=1024 * 1024), ChainError, f"address book {self.path}")
        if not isinstance(data, dict):
            raise ChainError(f"address book {self.path} is malformed")
        return data

    def get(self, chain_id: int) -> str | None:
        return self._read().get(str(chain_id), {}).get("ExperienceRegistry")

    def put(self, chain_id: int, address: str) -> None:
        data = self._read()
        data[str(chain_id)] = {"ExperienceRegistry": address}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path, json.dumps(data, indent=1, sort_keys=True) + "\n")


MINE_CHUNK = 256  # blocks per anvil_mine call: thousands in one call outlast the client's read timeout


def mine(w3: Web3, blocks: int = 1) -> None:
    """Advance a dev chain by empty blocks: the embedded EVM in one call, anvil MINE_CHUNK blocks a call, any
    other node that answers `evm_mine` one block a call. A chain that does not answer is a `ChainError`."""
    if blocks <= 0:
        return
    tester = getattr(w3.provider, "ethereum_tester", None)
    if tester is not None:
        tester.mine_blocks(blocks)
        return
    try:
        left = blocks
        while left > 0:
            step = min(left, MINE_CHUNK)
            answer = w3.provider.make_request("anvil_mine", [hex(step)])  # type: ignore[arg-type]
            if "error" in answer:
                for _ in range(left):
                    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
                return
            left -= step
    except Exception as exc:  # the HTTP client's own errors (timeouts, refused connections)
        raise ChainError(f"could not mine {blocks} blocks: {str(exc)[:200]}") from None


def _conforms(registry: RegistryClient) -> Registry:
    return registry  # mypy checks here that the contract client implements the port
