"""The registry port's conformance: the same scenarios on the in-memory registry, the contract on the
embedded EVM and the contract on a real anvil node, with the same outcomes and revert names."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from dso.chain.client import RegistryClient, connect, deploy_registry, dev_fund, mine
from dso.chain.memory import MemoryChain
from dso.chain.registry import BatchState
from dso.core.cid import cid_of
from dso.core.merkle import merkle_proofs
from dso.core.records import BatchManifest, encode_batch
from dso.core.signing import RegistryDomain, sign_batch
from dso.errors import ChainError, ContractRevert
from dso.services import free_port

KEYS: list[LocalAccount] = [Account.from_key(bytes([i + 1]) * 32) for i in range(6)]
MEMBERS, NODE, OUTSIDER = KEYS[:3], KEYS[4], KEYS[5]

Client = Any  # RegistryClient or InMemoryRegistry: both implement the port, plus vote and membership calls
Deploy = Callable[..., list[Client]]


@dataclasses.dataclass(frozen=True)
class Backend:
    name: str
    chain_id: int
    deploy: Callable[[LocalAccount, list[str], int, int], Client]
    client: Callable[[str, LocalAccount], Client]
    mine: Callable[[int], None]
    w3: Any = None  # the contract's backends only


@pytest.fixture(params=["memory", "embedded", "anvil"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "memory":
        chain = MemoryChain()
        yield Backend(
            "memory",
            chain.chain_id,
            lambda owner, members, window, bps: chain.deploy(owner, members, voting_window=window, quorum_bps=bps),
            chain.registry,
            chain.mine,
        )
        return
    w3 = connect(None) if request.param == "embedded" else connect(request.getfixturevalue("anvil_url"))
    for account in KEYS:
        dev_fund(w3, account.address)
    yield Backend(
        request.param,
        w3.eth.chain_id,
        lambda owner, members, window, bps: deploy_registry(w3, owner, members, voting_window=window, quorum_bps=bps),
        lambda address, account: RegistryClient(w3, address, account),
        lambda blocks: mine(w3, blocks),
        w3,
    )


@pytest.fixture()
def w3(backend: Backend) -> Any:
    """The contract client's chain, for tests of the client itself (nonces, gas): not the port's rules."""
    if backend.w3 is None:
        pytest.skip("a property of the contract client over web3, not of the registry's rules")
    return backend.w3


@pytest.fixture()
def deploy(backend: Backend) -> Deploy:
    """Deploy a fresh registry; returns one client per key of KEYS, in the same order."""

    def _deploy(members: list[LocalAccount] = MEMBERS, window: int = 50, quorum_bps: int = 1000) -> list[Client]:
        first = backend.deploy(members[0], [m.address for m in members], window, quorum_bps)
        return [first if k is members[0] else backend.client(first.address, k) for k in KEYS]

    return _deploy


def signed_batch(
    registry: Client,
    round_: int = 1,
    node: LocalAccount = NODE,
    domain: RegistryDomain | None = None,
    n: int = 3,
) -> tuple[BatchManifest, str, bytes]:
    cids = [cid_of(f"record {round_}-{i}".encode()) for i in range(n)]
    manifest = BatchManifest.build(node.address, round_, cids)
    batch_cid = cid_of(encode_batch(manifest))
    return manifest, batch_cid, sign_batch(node.key, domain or registry.domain, manifest, batch_cid)


def revert_name(action: Callable[[], object]) -> str:
    with pytest.raises(ContractRevert) as info:
        action()
    return info.value.name


def test_two_thirds_of_members_accept_a_batch(deploy: Deploy) -> None:
    owner, m2, m3, _, node, _ = deploy()
    manifest, batch_cid, signature = signed_batch(owner)
    batch_id = node.submit_batch(manifest, batch_cid, signature)  # the node relays its own batch
    info = owner.batch(batch_id)
    assert (info.state, info.eligible, info.node, info.batch_cid) == (BatchState.PENDING, 3, NODE.address, batch_cid)
    assert info.merkle_root == manifest.merkle_root
    owner.vote(batch_id, True)
    assert owner.batch(batch_id).state == BatchState.PENDING  # 1 of 3 is not 2/3
    m2.vote(batch_id, True)
    assert owner.batch(batch_id).state == BatchState.ACCEPTED
    assert [b.id for b in owner.global_experiences()] == [batch_id]
    assert revert_name(lambda: m3.vote(batch_id, True)) == "AlreadyDecided"


def test_a_third_rejecting_decides_and_finalize_uses_quorum(deploy: Deploy, backend: Backend) -> None:
    owner, m2, m3 = deploy(window=3)[:3]
    rejected = owner.submit_batch(*signed_batch(owner, round_=1))
    m2.vote(rejected, False)
    assert owner.batch(rejected).state == BatchState.PENDING  # 1 * 3 > 3 is false
    m3.vote(rejected, False)
    assert owner.batch(rejected).state == BatchState.REJECTED
    late = owner.submit_batch(*signed_batch(owner, round_=2))
    owner.vote(late, True)  # 1 of 3 votes, all approving: quorum (10% -> 1) met
    assert revert_name(lambda: owner.finalize(late)) == "VotingOpen"
    backend.mine(4)
    assert revert_name(lambda: m2.vote(late, True)) == "VotingClosed"
    owner.finalize(late)
    assert owner.batch(late).state == BatchState.ACCEPTED
    silent = owner.submit_batch(*signed_batch(owner, round_=3))
    backend.mine(4)
    owner.finalize(silent)  # nobody voted: below quorum
    assert owner.batch(silent).state == BatchState.REJECTED


def test_forged_and_replayed_signatures_are_refused(deploy: Deploy, backend: Backend) -> None:
    owner = deploy()[0]
    other_registry = deploy()[0]
    manifest, batch_cid, _ = signed_batch(owner)
    by_outsider = sign_batch(
        OUTSIDER.key, owner.domain, BatchManifest.build(OUTSIDER.address, 1, manifest.records), batch_cid
    )
    assert revert_name(lambda: owner.submit_batch(manifest, batch_cid, by_outsider)) == "InvalidSignature"
    other_chain = RegistryDomain(backend.chain_id + 1, owner.address)
    assert revert_name(lambda: owner.submit_batch(*signed_batch(owner, domain=other_chain))) == "InvalidSignature"
    for_other_contract = signed_batch(owner, domain=other_registry.domain)
    assert revert_name(lambda: owner.submit_batch(*for_other_contract)) == "InvalidSignature"
    other_registry.submit_batch(*for_other_contract)  # valid where it was meant to go
    round_one = signed_batch(owner, round_=1)
    round_two = BatchManifest.build(NODE.address, 2, round_one[0].records)
    assert revert_name(lambda: owner.submit_batch(round_two, round_one[1], round_one[2])) == "InvalidSignature"


def test_malleable_duplicate_and_reused_round(deploy: Deploy) -> None:
    owner = deploy()[0]
    manifest, batch_cid, signature = signed_batch(owner)
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    s = int.from_bytes(signature[32:64], "big")
    twin = signature[:32] + (n - s).to_bytes(32, "big") + bytes([55 - signature[64]])
    assert revert_name(lambda: owner.submit_batch(manifest, batch_cid, twin)) == "MalleableSignature"
    owner.submit_batch(manifest, batch_cid, signature)
    assert revert_name(lambda: owner.submit_batch(manifest, batch_cid, signature)) == "DuplicateBatch"
    same_round = signed_batch(owner, round_=1, n=4)
    assert revert_name(lambda: owner.submit_batch(*same_round)) == "RoundAlreadyUsed"


def test_only_members_vote_once(deploy: Deploy) -> None:
    owner, _, _, _, node, outsider = deploy()
    batch_id = owner.submit_batch(*signed_batch(owner))
    assert revert_name(lambda: outsider.vote(batch_id, True)) == "NotMember"
    assert revert_name(lambda: node.vote_many([batch_id], [True])) == "NotMember"
    owner.vote(batch_id, False)
    assert revert_name(lambda: owner.vote(batch_id, True)) == "AlreadyVoted"
    assert revert_name(lambda: owner.vote(b"\x07" * 32, True)) == "UnknownBatch"
    assert revert_name(lambda: owner.vote_many([batch_id], [True, False])) == "LengthMismatch"


def test_members_change_only_by_member_vote(deploy: Deploy) -> None:
    owner, m2, _, _, node, outsider = deploy()
    assert revert_name(lambda: outsider.propose_member(outsider.address)) == "NotMember"
    proposal = owner.propose_member(NODE.address, add=True)
    owner.vote_member(proposal, True)
    assert NODE.address not in owner.members()
    m2.vote_member(proposal, True)
    assert NODE.address in owner.members() and owner.proposal(proposal)["state"] == "accepted"
    batch_id = owner.submit_batch(*signed_batch(owner))
    node.vote(batch_id, True)  # the new member votes
    removal = node.propose_member(MEMBERS[1].address, add=False)
    owner.vote_member(removal, True)
    node.vote_member(removal, True)
    assert MEMBERS[1].address in owner.members()  # 2 of 4 is not 2/3
    m2.vote_member(removal, True)  # a member may vote for its own removal
    assert MEMBERS[1].address not in owner.members() and len(owner.members()) == 3


def test_the_last_member_cannot_be_removed(deploy: Deploy) -> None:
    solo = deploy(members=[MEMBERS[0]])[0]
    proposal = solo.propose_member(MEMBERS[0].address, add=False)
    assert revert_name(lambda: solo.vote_member(proposal, True)) == "LastMember"
    assert solo.members() == [MEMBERS[0].address]


def test_vote_many_and_pagination_without_logs(deploy: Deploy) -> None:
    clients = deploy()
    owner, m2 = clients[0], clients[1]
    # three publishers, four batches each: the most one node may register in a window
    ids = [owner.submit_batch(*signed_batch(owner, round_=r % 4 + 1, node=KEYS[3 + r // 4])) for r in range(12)]
    owner.vote_many(ids, [True] * 12)
    m2.vote_many(ids, [r % 3 != 0 for r in range(12)])  # 8 approvals reach 2/3, 4 stay pending
    accepted = owner.all_batches(BatchState.ACCEPTED, page=5)
    assert len(accepted) == 8 and len(owner.all_batches(BatchState.PENDING, page=5)) == 4
    assert [b.id for b in owner.global_experiences(0, 100)] == [b.id for b in accepted]
    assert [b.id for b in owner.global_experiences(3, 2)] == [b.id for b in accepted[3:5]]
    m2.vote_many(ids, [True] * 12)  # resent after a crash: everything m2 voted on is skipped
    assert len(owner.all_batches(BatchState.ACCEPTED)) == 8
    clients[2].vote_many(ids, [True] * 12)  # decided batches are skipped, the rest accepted
    assert owner.all_batches(BatchState.ACCEPTED) and len(owner.all_batches(BatchState.ACCEPTED)) == 12


def test_inclusion_proofs_verify_on_chain(deploy: Deploy) -> None:
    owner = deploy()[0]
    manifest, _, _ = signed_batch(owner, n=7)
    proofs = merkle_proofs(manifest.records)
    for cid in manifest.records:
        assert owner.verify_inclusion(manifest.merkle_root, cid, proofs[cid])
    assert not owner.verify_inclusion(manifest.merkle_root, cid_of(b"outsider"), proofs[manifest.records[0]])


def test_dead_rpc_and_missing_contract() -> None:
    with pytest.raises(ChainError, match="cannot reach chain node"):
        connect(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ChainError, match="no contract at"):
        RegistryClient(connect(None), "0x" + "12" * 20)


def test_proposal_id_comes_from_its_own_event_when_proposals_race(deploy: Deploy, backend: Backend) -> None:
    """Another member's proposal lands right after ours is mined: the id returned is still ours (a property
    of the contract client, which reads the id from its receipt; the in-memory registry answers at once)."""
    if backend.name == "memory":
        pytest.skip("no receipts in memory: a proposal's id is returned by the same locked call that makes it")
    owner, m2, *_ = deploy()
    send = owner._send
    raced: list[int] = []

    def send_then_race(fn: object) -> object:
        receipt = send(fn)  # type: ignore[arg-type]
        if not raced:
            raced.append(m2.propose_member(OUTSIDER.address, add=True))
        return receipt

    owner._send = send_then_race  # type: ignore[method-assign]
    mine_id = owner.propose_member(NODE.address, add=True)
    assert raced == [1] and mine_id == 0
    assert owner.proposal(mine_id)["account"] == NODE.address
    assert owner.proposal(raced[0])["account"] == OUTSIDER.address


FOUR = KEYS[:4]  # four members: A, B, C, D


def test_a_removed_member_no_longer_helps_a_proposal_it_voted_for(deploy: Deploy) -> None:
    """A proposes E and votes yes; A is removed; one more yes must not add E (2 of the 4 eligible)."""
    a, b, c, d, *_ = deploy(members=FOUR)
    add_e = a.propose_member(NODE.address, add=True)
    a.vote_member(add_e, True)
    remove_a = b.propose_member(FOUR[0].address, add=False)
    for member in (b, c, d):
        member.vote_member(remove_a, True)
    assert FOUR[0].address not in b.members() and len(b.members()) == 3
    b.vote_member(add_e, True)
    assert NODE.address not in b.members()  # 2 yes of 4 eligible is not 2/3 (old rule: 2 of 3 current)
    assert b.proposal(add_e)["eligible"] == 4 and b.proposal(add_e)["up"] == 2
    assert revert_name(lambda: a.vote_member(add_e, True)) == "NotMember"  # removed: no further votes
    c.vote_member(add_e, True)
    assert NODE.address in b.members()  # 3 yes of 4 eligible


def test_members_added_after_an_item_cannot_decide_it(deploy: Deploy) -> None:
    """A batch and a proposal are voted on by the members of their time only."""
    owner, m2, *_ = deploy()  # three members
    batch_id = owner.submit_batch(*signed_batch(owner))
    later = owner.propose_member(OUTSIDER.address, add=True)  # proposal made before NODE joins
    add_node = owner.propose_member(NODE.address, add=True)
    owner.vote_member(add_node, True)
    m2.vote_member(add_node, True)
    assert NODE.address in owner.members()
    node = owner.with_account(NODE)
    assert revert_name(lambda: node.vote(batch_id, True)) == "NotEligible"
    assert revert_name(lambda: node.vote_member(later, True)) == "NotEligible"
    node.vote_many([batch_id], [True])  # lenient: skipped, not counted
    assert owner.batch(batch_id).up == 0 and owner.batch(batch_id).eligible == 3
    owner.vote(batch_id, True)
    m2.vote(batch_id, True)
    assert owner.batch(batch_id).state == BatchState.ACCEPTED  # 2 of the 3 eligible
    fresh = owner.submit_batch(*signed_batch(owner, round_=2))
    node.vote(fresh, True)  # a batch submitted after it joined is open to it
    assert owner.batch(fresh).up == 1 and owner.batch(fresh).eligible == 4


def test_two_clients_of_one_key_do_not_collide_on_nonces(deploy: Deploy, w3: Any) -> None:
    """Two processes sending from one key: the one whose nonce went stale re-reads it and signs again."""
    owner = deploy()[0]
    twin = RegistryClient(w3, owner.address, MEMBERS[0])
    first = owner.submit_batch(*signed_batch(owner, round_=1))
    second = twin.submit_batch(*signed_batch(twin, round_=2))  # twin's nonce was read before owner sent
    third = owner.submit_batch(*signed_batch(owner, round_=3))  # owner's nonce is now stale
    assert {owner.batch(b).state for b in (first, second, third)} == {BatchState.PENDING}


def test_a_vote_leaves_gas_for_deciding_its_batch_when_others_vote_first(deploy: Deploy, w3: Any) -> None:
    """Members vote at once: a vote estimated while it decides nothing may decide its batch when mined."""
    owner, m2 = deploy()[:2]
    ids = [owner.submit_batch(*signed_batch(owner, round_=r)) for r in (1, 2, 3)]
    owner.vote_many(ids, [True] * 3)  # decides nothing: 1 of 3
    m2.vote_many(ids, [True] * 3)  # decides all three
    first, deciding = owner.receipts[0], m2.receipts[0]
    assert all(owner.batch(i).state == BatchState.ACCEPTED for i in ids)
    assert w3.eth.get_transaction(first["transactionHash"])["gas"] >= deciding["gasUsed"]


def test_anvil_keeps_recent_states_for_reads_pinned_to_a_superseded_block(anvil_url: str) -> None:
    """Nodes that read at the block they last saw must still find its state after others' transactions."""
    web3 = connect(anvil_url)
    account = web3.eth.accounts[0]
    seen = web3.eth.block_number
    for _ in range(3):  # other nodes' transactions move the chain on, one block each: each is mined before the next
        sent = web3.eth.send_transaction({"from": account, "to": account, "value": 1})
        web3.eth.wait_for_transaction_receipt(sent, timeout=30)
    assert web3.eth.block_number >= seen + 3
    assert web3.eth.get_balance(account, block_identifier=seen) > 0


def test_a_memory_registry_that_was_never_deployed_is_refused() -> None:
    with pytest.raises(ChainError, match="no contract at"):
        MemoryChain().registry("0x" + "12" * 20)


def test_a_node_registers_at_most_four_batches_per_window(deploy: Deploy, backend: Backend) -> None:
    """What one publisher can make the members review: four batches per node per window of `votingWindow`
    blocks (the registry's epoch); the next window takes four more."""
    owner = deploy(window=40)[0]
    backend.mine(40 - owner.height() % 40)  # the start of a window: the five submissions below share one
    for round_ in range(1, 5):
        owner.submit_batch(*signed_batch(owner, round_=round_))
    assert revert_name(lambda: owner.submit_batch(*signed_batch(owner, round_=5))) == "TooManyBatches"
    other = signed_batch(owner, round_=1, node=OUTSIDER)
    owner.submit_batch(*other)  # the cap is per node
    backend.mine(40)
    owner.submit_batch(*signed_batch(owner, round_=5))
    assert owner.batch_count() == 6


def test_members_sponsor_publishers_and_sponsorship_lapses_with_membership(deploy: Deploy) -> None:
    owner, m2, m3, _, _, outsider = deploy()
    assert owner.is_vouched(MEMBERS[1].address) and not owner.is_vouched(NODE.address)
    assert revert_name(lambda: outsider.sponsor_many([NODE.address])) == "NotMember"
    m2.sponsor_many([NODE.address])
    assert owner.is_vouched(NODE.address) and not owner.is_vouched(OUTSIDER.address)
    assert revert_name(lambda: owner.sponsor_many([OUTSIDER.address, NODE.address])) == "AlreadySponsored"
    assert not owner.is_vouched(OUTSIDER.address)  # all or nothing: the reverted call sponsored no one
    removal = owner.propose_member(MEMBERS[1].address, add=False)
    owner.vote_member(removal, True)
    m3.vote_member(removal, True)
    assert not owner.is_vouched(NODE.address)  # its sponsor left: the sponsorship lapsed
    owner.sponsor_many([NODE.address])  # another member may vouch for it again
    assert owner.is_vouched(NODE.address)


def test_two_thirds_of_the_members_certify_an_epochs_library_and_a_vouched_node_can_dispute_it(
    deploy: Deploy, backend: Backend
) -> None:
    """Attestations count per statement (root, size, entries document) once per member, only for an epoch whose
    registrations are over; the first statement 2/3 attest is certified and stays; a dispute
    needs a vouched account and a certificate, and is recorded once with its proof."""
    owner, m2, m3, _, node, outsider = deploy(window=10)
    root_a, root_b = bytes([0xA]) * 32, bytes([0xB]) * 32
    entries_a, entries_b, proof = (cid_of(label.encode()) for label in ("entries a", "entries b", "proof"))
    if owner.height() < 8:  # a transaction now lands in block 9 at most: epoch 0 (blocks 0 to 9) not over
        assert revert_name(lambda: owner.attest(0, root_a, 2, entries_a)) == "EpochOpen"
    assert revert_name(lambda: owner.attest(owner.height() // 10 + 1, root_a, 2, entries_a)) == "EpochOpen"
    backend.mine(max(0, 10 - owner.height()))
    assert not owner.certificate(0).certified and owner.certificate(0).eligible == 0
    assert revert_name(lambda: outsider.attest(0, root_a, 2, entries_a)) == "NotMember"
    owner.attest(0, root_a, 2, entries_a)
    assert revert_name(lambda: owner.attest(0, root_a, 2, entries_a)) == "AlreadyAttested"
    m2.attest(0, root_b, 2, entries_b)  # another statement: its own count
    assert not owner.certificate(0).certified and owner.has_attested(0, MEMBERS[1].address)
    assert not owner.has_attested(0, MEMBERS[2].address)
    assert revert_name(lambda: node.dispute(0, proof)) == "NotVouched"
    assert revert_name(lambda: owner.dispute(0, proof)) == "NotCertified"
    m3.attest(0, root_a, 2, entries_a)
    certificate = outsider.certificate(0)
    assert (certificate.certified, certificate.root, certificate.experiences, certificate.entries_cid) == (
        True,
        root_a,
        2,
        entries_a,
    )
    assert certificate.eligible == 3 and not certificate.disputed
    m2.sponsor_many([NODE.address])
    node.dispute(0, proof)
    disputed = owner.certificate(0)
    assert disputed.disputed and disputed.disputed_by == NODE.address and disputed.proof_cid == proof
    assert disputed.root == root_a  # a dispute does not change what was certified
    assert revert_name(lambda: m3.dispute(0, proof)) == "AlreadyDisputed"
    assert not owner.certificate(1).certified


def test_a_relay_registers_many_batches_in_one_transaction_and_skips_those_refused_alone(
    deploy: Deploy, backend: Backend
) -> None:
    """`submitBatches` from any account: a forged signature, a batch already registered and a reused round are
    skipped while the others register; each relayed batch's signed fields are read back from the relay's call."""
    owner, m2, _, _, _, outsider = deploy()
    good = signed_batch(owner, round_=1)
    member_batch = signed_batch(owner, round_=1, node=MEMBERS[1])
    manifest, cid, _ = signed_batch(owner, round_=2)
    forged = (manifest, cid, good[2])  # the node's signature of another batch
    reused = signed_batch(owner, round_=1, n=4)  # NODE's round 1 again, other records
    before = outsider.sent.transactions
    assert outsider.submit_batches([good, forged, member_batch, good, reused]) == 2
    assert outsider.sent.transactions == before + 1 and owner.batch_count() == 2
    ids = [owner.batch_id(m, c) for m, c, _ in (good, member_batch)]
    assert [owner.batch(i).state for i in ids] == [BatchState.PENDING] * 2
    for identifier, (m, c, signature) in zip(ids, (good, member_batch), strict=True):
        args, size = m2.submission(identifier)
        assert (args["node"], args["batchCid"], args["round"], bytes(args["signature"])) == (
            m.node,
            c,
            m.round,
            signature,
        )
        assert size >= 0
    assert revert_name(lambda: owner.submit_batch(*good)) == "DuplicateBatch"
    assert outsider.submit_batches([]) == 0
