"""The registry port: what a node, the review page and the simulation ask of an ExperienceRegistry.

Two implementations stand behind it, peers in the way a test backend is a peer of a real one:
`dso.chain.client.RegistryClient` (the deployed contract, over the embedded EVM or any JSON-RPC node; the
only module that imports web3) and `dso.chain.memory.InMemoryRegistry` (the contract's rules in Python on
a height counter, for users' tests and fast networks). `tests/test_chain.py` runs one set of scenarios
against both and expects the same outcomes, revert names included.

Pure: the types below hold what the registry answers; no chain access here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from enum import IntEnum
from typing import Any, Protocol

from eth_account.signers.local import LocalAccount

from dso.core.records import BatchManifest
from dso.core.signing import RegistryDomain
from dso.errors import ContractRevert


class BatchState(IntEnum):
    NONE = 0
    PENDING = 1
    ACCEPTED = 2
    REJECTED = 3


@dataclasses.dataclass(frozen=True)
class BatchInfo:
    """One batch as the registry holds it."""

    id: bytes
    node: str
    round: int
    deadline: int  # last block in which votes count
    eligible: int  # members when it was submitted: what 2/3 is measured against
    up: int
    down: int
    state: BatchState
    merkle_root: bytes
    batch_cid: str

    def to_json(self) -> dict[str, Any]:
        row = dataclasses.asdict(self)
        row.update(id="0x" + self.id.hex(), merkle_root="0x" + self.merkle_root.hex(), state=self.state.name.lower())
        return row


@dataclasses.dataclass(frozen=True)
class CertificateInfo:
    """What the registry holds for one epoch's global library: the statement 2/3 of the members attested
    (`certified`), and whether a vouched node disputed it since, with the CID of its proof."""

    epoch: int
    certified: bool
    root: bytes  # Merkle root of the entries (`dso.consensus.certificate.library_root`)
    experiences: int
    entries_cid: str  # the document listing the entries
    eligible: int  # members at the epoch's first attestation (0: nobody attested yet)
    disputed: bool = False
    disputed_by: str = ""
    proof_cid: str = ""

    def to_json(self) -> dict[str, Any]:
        row = dataclasses.asdict(self)
        row["root"] = "0x" + self.root.hex()
        return row


@dataclasses.dataclass
class TransactionCount:
    """What one account's transactions cost: how many, their signed bytes on the wire, gas used."""

    transactions: int = 0
    bytes: int = 0
    gas: int = 0

    def add(self, raw_bytes: int, gas: int) -> None:
        self.transactions += 1
        self.bytes += raw_bytes
        self.gas += gas


class Registry(Protocol):
    """One deployed ExperienceRegistry as seen by one account (or read-only, with none).

    Writes raise `ContractRevert` with the contract's error name when the contract would revert, and
    `ChainError` when the chain cannot be reached; reads never change anything."""

    @property
    def address(self) -> str: ...

    @property
    def chain_id(self) -> int: ...

    @property
    def domain(self) -> RegistryDomain:
        """Where a batch signature for this registry is valid (EIP-712 domain)."""
        ...

    @property
    def can_write(self) -> bool: ...

    @property
    def sent(self) -> TransactionCount:
        """This account's transactions through this client so far."""
        ...

    @property
    def voting_window(self) -> int: ...

    def height(self) -> int:
        """The chain's current block number."""
        ...

    def with_account(self, account: LocalAccount) -> Registry:
        """A client of the same registry that signs as `account` (a read-only node's vote, key unlocked once)."""
        ...

    # writes
    def submit_batch(self, manifest: BatchManifest, batch_cid: str, signature: bytes) -> bytes:
        """Register a signed batch; returns its id."""
        ...

    def submit_batches(self, submissions: Sequence[tuple[BatchManifest, str, bytes]]) -> int:
        """Register many signed batches in one transaction (a relay's); those `submit_batch` would refuse are
        skipped. Returns how many were registered."""
        ...

    def vote_many(self, batch_ids: Sequence[bytes], approvals: Sequence[bool]) -> None:
        """Vote on many batches; those decided, closed or already voted on by this account are skipped."""
        ...

    def finalize(self, batch_id: bytes) -> None:
        """Decide a batch whose voting window ended (anyone may)."""
        ...

    def sponsor_many(self, publishers: Sequence[str]) -> None:
        """Vouch, as a member, for non-member publishers: members' automatic votes then judge their batches."""
        ...

    def attest(self, epoch: int, root: bytes, experiences: int, entries_cid: str) -> None:
        """Attest, as a member, the global library computed up to an ended `epoch` (one attestation each)."""
        ...

    def dispute(self, epoch: int, proof_cid: str) -> None:
        """Mark an epoch's certificate disputed, as a vouched node whose own computation contradicts it."""
        ...

    # reads
    def certificate(self, epoch: int) -> CertificateInfo: ...

    def has_attested(self, epoch: int, account: str) -> bool: ...

    def is_member(self, account: str) -> bool: ...

    def is_vouched(self, account: str) -> bool:
        """Whether members' automatic votes judge this publisher's batches: a member, or sponsored by one."""
        ...

    def members(self) -> list[str]: ...

    def has_voted(self, batch_id: bytes, account: str) -> bool: ...

    def quorum(self, eligible: int) -> int: ...

    def batch_id(self, manifest: BatchManifest, batch_cid: str) -> bytes: ...

    def batch(self, batch_id: bytes) -> BatchInfo: ...

    def has_batch(self, batch_id: bytes) -> bool: ...

    def batch_count(self) -> int: ...

    def batches(self, offset: int = 0, limit: int = 100) -> list[BatchInfo]:
        """Every submitted batch in submission order, one page."""
        ...

    def global_experiences(self, offset: int = 0, limit: int = 100) -> list[BatchInfo]:
        """Accepted batches in order of acceptance, one page."""
        ...

    def all_batches(self, state: BatchState | None = None, page: int = 200) -> list[BatchInfo]: ...

    def submission(self, batch_id: bytes) -> tuple[dict[str, Any], int]:
        """The arguments that registered `batch_id` (node, merkleRoot, batchCid, round, signature; a relayed
        batch's entry of its `submitBatches` call) and the bytes read for them (a relayed call's whole input
        the first time this client reads it, 0 after): a fetcher re-checks the signature itself."""
        ...


MAX_BATCHES_PER_WINDOW = 4  # the contract's cap on one node's batches in one epoch (`TooManyBatches`)
MAX_SPONSORED_PER_MEMBER = 1024  # publishers one member may sponsor (`SponsorLimit`)
SPONSOR_CHUNK = 200  # publishers per sponsorMany transaction: about 50k gas each, well inside a block


def registry_epoch(info: BatchInfo, voting_window: int) -> int:
    """The epoch a batch belongs to, defined by the registry, whatever round its publisher claims: the block it
    was registered in (its deadline less the voting window), in windows of `voting_window` blocks. Every node
    reads the same numbers from the registry, so every node puts a batch in the same epoch."""
    window = max(1, int(voting_window))
    return max(0, info.deadline - window) // window


def final_state(info: BatchInfo, height: int, quorum: int) -> BatchState | None:
    """The state a batch ends in, read at `height` (the latest block), or None while votes can still change it.

    A decided batch is final. A pending one is final once its deadline block is mined (no vote can land after
    it): `finalize` will then decide it from the frozen votes, `quorum` of its eligible members cast and two
    thirds of them yes, whenever anyone calls it, so a node computes that outcome itself instead of waiting
    for the call (a late `finalize` cannot move a batch into an epoch every node already closed)."""
    if info.state != BatchState.PENDING:
        return info.state
    if height < info.deadline:
        return None
    cast = info.up + info.down
    return BatchState.ACCEPTED if cast >= max(1, quorum) and 3 * info.up >= 2 * cast else BatchState.REJECTED


def closed_epoch(height: int, voting_window: int) -> int:
    """The newest epoch whose registrations are over at `height` (its last block is mined): -1 for none."""
    window = max(1, int(voting_window))
    return (height + 1) // window - 1


def all_pages(registry: Registry, state: BatchState | None, page: int) -> list[BatchInfo]:
    """Every batch of the registry, read page by page, filtered by state: `all_batches` for both backends."""
    found: list[BatchInfo] = []
    for offset in range(0, registry.batch_count(), page):
        found += registry.batches(offset, page)
    return [b for b in found if state is None or b.state == state]


def has_batch(registry: Registry, batch_id: bytes) -> bool:
    """Whether the registry holds this batch (in any state): `has_batch` for both backends."""
    try:
        registry.batch(batch_id)
    except ContractRevert as exc:
        if exc.name == "UnknownBatch":
            return False
        raise
    return True
