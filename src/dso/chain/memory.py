"""An in-memory ExperienceRegistry: the contract's rules in Python, on a block-height counter.

For tests and fast networks, shipped for users' tests the way `dso.llm.testing.ScriptedLLM` is. It
enforces what `contracts/ExperienceRegistry.sol` enforces, with the same revert names: EIP-712 batch
signatures (low s, v 27/28, the node's key, this chain and this registry), one batch per node and round,
at most four batches per node and window, sponsorship of non-member publishers,
membership, a vote per eligible member, the voting window, 2/3 acceptance, more than 1/3 rejection, the
quorum at finalization, and membership changed only by a 2/3 member vote. Like a development chain with
auto-mining, every successful transaction mines one block and a refused one mines none; `mine` advances
the height as `evm_mine` does. `tests/test_chain.py` runs the same scenarios here and on the EVM.

Not metered: gas is counted as 0; `sent.bytes` counts each call's ABI-encoded input (what the EVM client
counts is the whole signed transaction, about 110 bytes more per call).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils.address import is_address, to_checksum_address
from eth_utils.crypto import keccak

from dso.chain.registry import (
    MAX_BATCHES_PER_WINDOW,
    MAX_SPONSORED_PER_MEMBER,
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
from dso.core.merkle import verify_proof
from dso.core.records import BatchManifest
from dso.core.signing import RegistryDomain, batch_id, recover_submission_signer
from dso.errors import ChainError, ContractRevert, SignatureError

MEMORY_CHAIN_ID = 4_477_775  # "DSO" in ASCII: no public chain uses it
ZERO_ADDRESS = "0x" + "00" * 20


def _selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


def _calldata(signature: str, types: list[str], values: list[Any]) -> int:
    """Bytes of a call's ABI-encoded input, as a transaction carries it."""
    return len(_selector(signature)) + len(abi_encode(types, values))


@dataclasses.dataclass(kw_only=True)
class _Ballot:
    """What a batch and a membership proposal share: a window, who may vote, the tally, the outcome."""

    deadline: int
    epoch: int  # membership epoch when created: who may vote
    eligible: int  # members when created: what 2/3 is measured against
    up: int = 0
    down: int = 0
    state: BatchState = BatchState.PENDING
    voted: set[str] = dataclasses.field(default_factory=set)


@dataclasses.dataclass(kw_only=True)
class _Batch(_Ballot):
    node: str
    round: int
    merkle_root: bytes
    batch_cid: str
    signature: bytes


@dataclasses.dataclass(kw_only=True)
class _Proposal(_Ballot):
    account: str
    add: bool


@dataclasses.dataclass
class _Certificate:
    """One epoch's attestations and what they certified."""

    eligible: int
    epoch: int  # membership epoch at the first attestation: who may attest
    attested: set[str] = dataclasses.field(default_factory=set)
    counts: dict[tuple[bytes, int, str], int] = dataclasses.field(default_factory=dict)
    certified: tuple[bytes, int, str] | None = None
    disputed_by: str = ""
    proof_cid: str = ""


@dataclasses.dataclass
class _Contract:
    """One deployed registry's storage."""

    address: str
    voting_window: int
    quorum_bps: int
    members: list[str]
    member_since: dict[str, int] = dataclasses.field(default_factory=dict)
    membership_epoch: int = 0
    batches: dict[bytes, _Batch] = dataclasses.field(default_factory=dict)
    batch_ids: list[bytes] = dataclasses.field(default_factory=list)
    accepted_ids: list[bytes] = dataclasses.field(default_factory=list)
    rounds_used: set[tuple[str, int]] = dataclasses.field(default_factory=set)
    proposals: list[_Proposal] = dataclasses.field(default_factory=list)
    batches_in_window: dict[tuple[str, int], int] = dataclasses.field(default_factory=dict)
    sponsor_of: dict[str, str] = dataclasses.field(default_factory=dict)
    sponsored_count: dict[str, int] = dataclasses.field(default_factory=dict)
    certificates: dict[int, _Certificate] = dataclasses.field(default_factory=dict)


class MemoryChain:
    """A development chain held in memory: a height counter and the registries deployed on it.

    Thread-safe: every transaction and read holds one lock, as a chain orders transactions."""

    def __init__(self, chain_id: int = MEMORY_CHAIN_ID) -> None:
        self.chain_id = chain_id
        self.height = 0
        self._contracts: dict[str, _Contract] = {}
        self._deployed = 0
        self.lock = threading.RLock()

    def mine(self, blocks: int = 1) -> None:
        """Advance by empty blocks (what `evm_mine` does on a development chain)."""
        with self.lock:
            self.height += blocks

    def deploy(
        self, account: LocalAccount, members: Sequence[str], *, voting_window: int = 100, quorum_bps: int = 1_000
    ) -> InMemoryRegistry:
        """Deploy a registry with an initial member set; returns a client acting as `account`."""
        with self.lock:
            if not members:
                raise ContractRevert("NoMembers", ())
            if voting_window <= 0 or not 0 <= quorum_bps <= 10_000:
                raise ContractRevert("BadParameters", ())
            checked: list[str] = []
            for member in members:
                address = _address(member)
                if address == ZERO_ADDRESS or address in checked:
                    raise ContractRevert("DuplicateMember", (address,))
                checked.append(address)
            self._deployed += 1
            raw = keccak(text=f"dso-memory-registry:{self.chain_id}:{account.address}:{self._deployed}")[12:]
            address = to_checksum_address(raw)
            self._contracts[address] = _Contract(address, voting_window, quorum_bps, checked)
            self.height += 1
        return InMemoryRegistry(self, address, account)

    def registry(self, address: str, account: LocalAccount | None = None) -> InMemoryRegistry:
        return InMemoryRegistry(self, address, account)

    def contract(self, address: str) -> _Contract:
        found = self._contracts.get(_address(address))
        if found is None:
            raise ChainError(f"no contract at {address} on chain {self.chain_id}")
        return found


def _address(value: str) -> str:
    if not isinstance(value, str) or not is_address(value):
        raise ChainError(f"not an Ethereum address: {value!r:.60}")
    return str(to_checksum_address(value))


class InMemoryRegistry:
    """One account's client of a registry on a `MemoryChain` (read-only with `account` None)."""

    def __init__(self, chain: MemoryChain, address: str, account: LocalAccount | None = None) -> None:
        self.chain = chain
        self._contract = chain.contract(address)
        self.address = self._contract.address
        self.chain_id = chain.chain_id
        self._account = account
        self._sent = TransactionCount()

    # -- the port's plumbing ---------------------------------------------------------------

    @property
    def domain(self) -> RegistryDomain:
        return RegistryDomain(self.chain_id, self.address)

    @property
    def can_write(self) -> bool:
        return self._account is not None

    @property
    def sent(self) -> TransactionCount:
        return self._sent

    @property
    def voting_window(self) -> int:
        return self._contract.voting_window

    def height(self) -> int:
        return self.chain.height

    def with_account(self, account: LocalAccount) -> InMemoryRegistry:
        return InMemoryRegistry(self.chain, self.address, account)

    def _sender(self) -> str:
        if self._account is None:
            raise ChainError("this client has no account; writes need a node key")
        return str(self._account.address)

    def _mined(self, size: int) -> int:
        """Count one successful transaction and mine its block; returns that block's number."""
        self.chain.height += 1
        self._sent.add(size, 0)
        return self.chain.height

    def _only_member(self, sender: str) -> None:
        if sender not in self._contract.members:
            raise ContractRevert("NotMember", (sender,))

    def _eligible(self, sender: str, epoch: int) -> bool:
        c = self._contract
        return sender in c.members and c.member_since.get(sender, 0) <= epoch

    # -- writes ----------------------------------------------------------------------------

    def submit_batch(self, manifest: BatchManifest, batch_cid: str, signature: bytes) -> bytes:
        parse_cid(batch_cid)
        self._sender()
        with self.chain.lock:
            refusal = self._refusal(manifest, batch_cid, signature)
            if refusal is not None:
                raise refusal
            size = _calldata(
                "submitBatch(address,bytes32,string,uint64,bytes)",
                ["address", "bytes32", "string", "uint64", "bytes"],
                [manifest.node, manifest.merkle_root, batch_cid, manifest.round, bytes(signature)],
            )
            return self._register(manifest, batch_cid, signature, self._mined(size))

    def submit_batches(self, submissions: Sequence[tuple[BatchManifest, str, bytes]]) -> int:
        """One `submitBatches` transaction: each batch that `submit_batch` would refuse is skipped."""
        self._sender()
        items = list(submissions)
        for _, batch_cid, _ in items:
            parse_cid(batch_cid)
        with self.chain.lock:
            size = _calldata(
                "submitBatches(address[],bytes32[],string[],uint64[],bytes[])",
                ["address[]", "bytes32[]", "string[]", "uint64[]", "bytes[]"],
                [[m.node for m, _, _ in items], [m.merkle_root for m, _, _ in items], [c for _, c, _ in items],
                 [m.round for m, _, _ in items], [bytes(sig) for _, _, sig in items]],
            )  # fmt: skip
            block = self.chain.height + 1  # the block this transaction is mined in
            registered = 0
            for manifest, batch_cid, signature in items:
                if self._refusal(manifest, batch_cid, signature) is None:
                    self._register(manifest, batch_cid, signature, block)
                    registered += 1
            self._mined(size)
        return registered

    def _refusal(self, manifest: BatchManifest, batch_cid: str, signature: bytes) -> ContractRevert | None:
        """Why the contract would refuse to register this batch now, or None (under the chain's lock)."""
        c = self._contract
        try:
            signer = recover_submission_signer(
                self.domain, manifest.node, manifest.merkle_root, batch_cid, manifest.round, signature
            )
        except SignatureError as exc:
            return ContractRevert("MalleableSignature" if "high s" in str(exc) else "InvalidSignature", ())
        if signer != manifest.node:
            return ContractRevert("InvalidSignature", ())
        identifier = batch_id(manifest, batch_cid)
        if identifier in c.batches:
            return ContractRevert("DuplicateBatch", (identifier,))
        if (manifest.node, manifest.round) in c.rounds_used:
            return ContractRevert("RoundAlreadyUsed", (manifest.node, manifest.round))
        window = (self.chain.height + 1) // c.voting_window  # the block this transaction is mined in
        if c.batches_in_window.get((manifest.node, window), 0) >= MAX_BATCHES_PER_WINDOW:
            return ContractRevert("TooManyBatches", (manifest.node, window))
        return None

    def _register(self, manifest: BatchManifest, batch_cid: str, signature: bytes, block: int) -> bytes:
        """Store a batch `_refusal` let through, registered in `block`."""
        c = self._contract
        identifier = batch_id(manifest, batch_cid)
        window = block // c.voting_window
        c.batches_in_window[(manifest.node, window)] = c.batches_in_window.get((manifest.node, window), 0) + 1
        c.rounds_used.add((manifest.node, manifest.round))
        c.batches[identifier] = _Batch(
            node=manifest.node,
            round=manifest.round,
            deadline=block + c.voting_window,
            epoch=c.membership_epoch,
            eligible=len(c.members),
            merkle_root=manifest.merkle_root,
            batch_cid=batch_cid,
            signature=bytes(signature),
        )
        c.batch_ids.append(identifier)
        return identifier

    def _vote(self, sender: str, identifier: bytes, approve: bool, lenient: bool, block: int) -> None:
        c = self._contract
        b = c.batches.get(identifier)
        if b is None:
            raise ContractRevert("UnknownBatch", (identifier,))
        if not self._eligible(sender, b.epoch):
            if lenient:
                return
            raise ContractRevert("NotEligible", (sender,))
        if b.state != BatchState.PENDING or block > b.deadline:
            if lenient:
                return
            raise ContractRevert("AlreadyDecided" if b.state != BatchState.PENDING else "VotingClosed", ())
        if sender in b.voted:
            if lenient:
                return
            raise ContractRevert("AlreadyVoted", (sender,))
        b.voted.add(sender)
        if approve:
            b.up += 1
        else:
            b.down += 1
        if b.up * 3 >= b.eligible * 2:
            self._decide(identifier, b, True)
        elif b.down * 3 > b.eligible:
            self._decide(identifier, b, False)

    def _decide(self, identifier: bytes, b: _Batch, accepted: bool) -> None:
        b.state = BatchState.ACCEPTED if accepted else BatchState.REJECTED
        if accepted:
            self._contract.accepted_ids.append(identifier)

    def vote(self, batch_id: bytes, approve: bool) -> None:
        sender = self._sender()
        with self.chain.lock:
            self._only_member(sender)
            self._vote(sender, batch_id, approve, False, self.chain.height + 1)  # every check precedes a change
            self._mined(_calldata("vote(bytes32,bool)", ["bytes32", "bool"], [batch_id, approve]))

    def vote_many(self, batch_ids: Sequence[bytes], approvals: Sequence[bool]) -> None:
        sender = self._sender()
        ids, votes = list(batch_ids), list(approvals)
        with self.chain.lock:
            self._only_member(sender)
            if len(ids) != len(votes):
                raise ContractRevert("LengthMismatch", ())
            for identifier in ids:  # an unknown batch reverts the whole call, as on chain
                if identifier not in self._contract.batches:
                    raise ContractRevert("UnknownBatch", (identifier,))
            block = self.chain.height + 1
            for identifier, approve in zip(ids, votes, strict=True):
                self._vote(sender, identifier, approve, True, block)
            self._mined(_calldata("voteMany(bytes32[],bool[])", ["bytes32[]", "bool[]"], [ids, votes]))

    def finalize(self, batch_id: bytes) -> None:
        self._sender()
        with self.chain.lock:
            b = self._contract.batches.get(batch_id)
            if b is None:
                raise ContractRevert("UnknownBatch", (batch_id,))
            if b.state != BatchState.PENDING:
                raise ContractRevert("AlreadyDecided", ())
            if self.chain.height + 1 <= b.deadline:
                raise ContractRevert("VotingOpen", ())
            cast = b.up + b.down
            self._decide(batch_id, b, cast >= self.quorum(b.eligible) and b.up * 3 >= cast * 2)
            self._mined(_calldata("finalize(bytes32)", ["bytes32"], [batch_id]))

    def sponsor_many(self, publishers: Sequence[str]) -> None:
        sender = self._sender()
        targets = [_address(p) for p in publishers]
        for start in range(0, len(targets), SPONSOR_CHUNK):  # one transaction per chunk, as the EVM client sends
            chunk = targets[start : start + SPONSOR_CHUNK]
            with self.chain.lock:
                c = self._contract
                self._only_member(sender)
                count, sponsor_of = c.sponsored_count.get(sender, 0), dict(c.sponsor_of)
                for target in chunk:  # all or nothing, as a reverted transaction
                    current = sponsor_of.get(target)
                    if target == ZERO_ADDRESS or (current is not None and current in c.members):
                        raise ContractRevert("AlreadySponsored", (target,))
                    if count >= MAX_SPONSORED_PER_MEMBER:
                        raise ContractRevert("SponsorLimit", (sender,))
                    sponsor_of[target] = sender
                    count += 1
                c.sponsor_of, c.sponsored_count[sender] = sponsor_of, count
                self._mined(_calldata("sponsorMany(address[])", ["address[]"], [chunk]))

    def attest(self, epoch: int, root: bytes, experiences: int, entries_cid: str) -> None:
        parse_cid(entries_cid)
        sender = self._sender()
        with self.chain.lock:
            c = self._contract
            self._only_member(sender)
            if self.chain.height + 1 < (epoch + 1) * c.voting_window:  # the block this transaction is mined in
                raise ContractRevert("EpochOpen", (epoch,))
            record = c.certificates.get(epoch) or _Certificate(len(c.members), c.membership_epoch)
            if not self._eligible(sender, record.epoch):
                raise ContractRevert("NotEligible", (sender,))
            if sender in record.attested:
                raise ContractRevert("AlreadyAttested", (sender,))
            c.certificates[epoch] = record
            record.attested.add(sender)
            statement = (bytes(root), int(experiences), entries_cid)
            record.counts[statement] = record.counts.get(statement, 0) + 1
            if record.certified is None and 3 * record.counts[statement] >= 2 * record.eligible:
                record.certified = statement
            self._mined(
                _calldata(
                    "attest(uint64,bytes32,uint32,string)",
                    ["uint64", "bytes32", "uint32", "string"],
                    [epoch, bytes(root), experiences, entries_cid],
                )
            )

    def dispute(self, epoch: int, proof_cid: str) -> None:
        parse_cid(proof_cid)
        sender = self._sender()
        with self.chain.lock:
            c = self._contract
            sponsor = c.sponsor_of.get(sender)
            if sender not in c.members and not (sponsor is not None and sponsor in c.members):
                raise ContractRevert("NotVouched", (sender,))
            record = c.certificates.get(epoch)
            if record is None or record.certified is None:
                raise ContractRevert("NotCertified", (epoch,))
            if record.disputed_by:
                raise ContractRevert("AlreadyDisputed", (epoch,))
            record.disputed_by, record.proof_cid = sender, proof_cid
            self._mined(_calldata("dispute(uint64,string)", ["uint64", "string"], [epoch, proof_cid]))

    def certificate(self, epoch: int) -> CertificateInfo:
        with self.chain.lock:
            record = self._contract.certificates.get(epoch)
            if record is None:
                return CertificateInfo(epoch, False, bytes(32), 0, "", 0)
            root, experiences, entries_cid = record.certified or (bytes(32), 0, "")
            return CertificateInfo(
                epoch, record.certified is not None, root, experiences, entries_cid, record.eligible,
                bool(record.disputed_by), record.disputed_by, record.proof_cid,
            )  # fmt: skip

    def has_attested(self, epoch: int, account: str) -> bool:
        with self.chain.lock:
            record = self._contract.certificates.get(epoch)
            return record is not None and _address(account) in record.attested

    def propose_member(self, account: str, add: bool = True) -> int:
        sender = self._sender()
        with self.chain.lock:
            c = self._contract
            self._only_member(sender)
            target = _address(account)
            if target == ZERO_ADDRESS or (target in c.members) == add:
                raise ContractRevert("NothingToChange", (target,))
            block = self._mined(_calldata("proposeMember(address,bool)", ["address", "bool"], [target, add]))
            c.proposals.append(
                _Proposal(
                    account=target,
                    add=add,
                    deadline=block + c.voting_window,
                    epoch=c.membership_epoch,
                    eligible=len(c.members),
                )
            )
            return len(c.proposals) - 1

    def vote_member(self, proposal_id: int, approve: bool) -> None:
        sender = self._sender()
        with self.chain.lock:
            c = self._contract
            self._only_member(sender)
            if not 0 <= proposal_id < len(c.proposals):
                raise ContractRevert("UnknownProposal", (proposal_id,))
            p = c.proposals[proposal_id]
            if not self._eligible(sender, p.epoch):
                raise ContractRevert("NotEligible", (sender,))
            if p.state != BatchState.PENDING:
                raise ContractRevert("AlreadyDecided", ())
            if self.chain.height + 1 > p.deadline:
                raise ContractRevert("VotingClosed", ())
            if sender in p.voted:
                raise ContractRevert("AlreadyVoted", (sender,))
            up, down = p.up + approve, p.down + (not approve)
            applies = up * 3 >= p.eligible * 2
            if applies:  # checked before anything changes: a revert here undoes the vote too
                if p.add and p.account in c.members:
                    raise ContractRevert("NothingToChange", (p.account,))
                if not p.add and p.account not in c.members:
                    raise ContractRevert("NothingToChange", (p.account,))
                if not p.add and len(c.members) == 1:
                    raise ContractRevert("LastMember", ())
            p.voted.add(sender)
            p.up, p.down = up, down
            if applies:
                if p.add:
                    c.members.append(p.account)
                    c.membership_epoch += 1
                    c.member_since[p.account] = c.membership_epoch
                else:
                    index = c.members.index(p.account)
                    c.members[index] = c.members[-1]
                    c.members.pop()
                    c.membership_epoch += 1
                p.state = BatchState.ACCEPTED
            elif down * 3 > p.eligible:
                p.state = BatchState.REJECTED
            self._mined(_calldata("voteMember(uint256,bool)", ["uint256", "bool"], [proposal_id, approve]))

    # -- reads -----------------------------------------------------------------------------

    def is_member(self, account: str) -> bool:
        return _address(account) in self._contract.members

    def is_vouched(self, account: str) -> bool:
        c, address = self._contract, _address(account)
        return address in c.members or c.sponsor_of.get(address) in c.members

    def members(self) -> list[str]:
        return list(self._contract.members)

    def has_voted(self, batch_id: bytes, account: str) -> bool:
        b = self._contract.batches.get(batch_id)
        return b is not None and _address(account) in b.voted

    def quorum(self, eligible: int) -> int:
        q = (eligible * self._contract.quorum_bps + 9_999) // 10_000
        return q or 1

    def proposal(self, proposal_id: int) -> dict[str, Any]:
        c = self._contract
        if not 0 <= proposal_id < len(c.proposals):
            raise ContractRevert("UnknownProposal", (proposal_id,))
        p = c.proposals[proposal_id]
        return {
            "account": p.account,
            "add": p.add,
            "deadline": p.deadline,
            "eligible": p.eligible,
            "up": p.up,
            "down": p.down,
            "state": p.state.name.lower(),
        }

    def batch_id(self, manifest: BatchManifest, batch_cid: str) -> bytes:
        return batch_id(manifest, batch_cid)

    def _info(self, identifier: bytes) -> BatchInfo:
        b = self._contract.batches[identifier]
        return BatchInfo(
            identifier, b.node, b.round, b.deadline, b.eligible, b.up, b.down, b.state, b.merkle_root, b.batch_cid
        )

    def batch(self, batch_id: bytes) -> BatchInfo:
        with self.chain.lock:
            if batch_id not in self._contract.batches:
                raise ContractRevert("UnknownBatch", (batch_id,))
            return self._info(batch_id)

    def has_batch(self, batch_id: bytes) -> bool:
        return has_batch(self, batch_id)

    def batch_count(self) -> int:
        return len(self._contract.batch_ids)

    def _page(self, ids: list[bytes], offset: int, limit: int) -> list[BatchInfo]:
        with self.chain.lock:
            return [self._info(i) for i in ids[offset : offset + limit]]

    def batches(self, offset: int = 0, limit: int = 100) -> list[BatchInfo]:
        return self._page(self._contract.batch_ids, offset, limit)

    def global_experiences(self, offset: int = 0, limit: int = 100) -> list[BatchInfo]:
        return self._page(self._contract.accepted_ids, offset, limit)

    def all_batches(self, state: BatchState | None = None, page: int = 200) -> list[BatchInfo]:
        return all_pages(self, state, page)

    def submission(self, batch_id: bytes) -> tuple[dict[str, Any], int]:
        with self.chain.lock:
            b = self._contract.batches.get(batch_id)
            if b is None:
                raise ContractRevert("UnknownBatch", (batch_id,))
            args = {
                "node": b.node,
                "merkleRoot": b.merkle_root,
                "batchCid": b.batch_cid,
                "round": b.round,
                "signature": b.signature,
            }
        size = _calldata(
            "submitBatch(address,bytes32,string,uint64,bytes)",
            ["address", "bytes32", "string", "uint64", "bytes"],
            list(args.values()),
        )
        return args, size

    def verify_inclusion(self, merkle_root: bytes, cid: str, proof: Sequence[bytes]) -> bool:
        return verify_proof(cid, list(proof), merkle_root)


def _conforms(registry: InMemoryRegistry) -> Registry:
    return registry  # mypy checks here that the in-memory registry implements the port
