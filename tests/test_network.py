"""Networks built one way (`dso.network`), on the in-memory registry and a local block store: whole syncs of
real nodes (real embedder, signatures, records, guards, consensus) in seconds, for `make test-fast`."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import pytest

from dso.config import DSOConfig
from dso.core.cid import cid_of
from dso.core.records import BatchManifest, ExperienceRecord, decode_batch, encode_batch, encode_record
from dso.embed import Embedder
from dso.errors import CIDError, StoreError
from dso.network import Network, NetworkSpec, build_network
from dso.network.attacks import INJECTIONS, WRONG
from dso.node.share import SharedRecord
from dso.store import ContentStore

HONEST = [
    "When a question counts legs, multiply each animal's count by its legs before adding.",
    "When two units differ, convert both to the smaller unit before comparing.",
]


def test_three_nodes_one_adversarial_sync_on_the_memory_registry(tmp_path: Path, embedder: Embedder) -> None:
    spec = NetworkSpec(nodes=3, members=(0, 1, 2), byzantine=frozenset({2}), colluding=True, chain="memory")
    network = build_network(DSOConfig(), tmp_path, spec, embedder=embedder)
    a, b, attacker = network.nodes
    a.library.add(HONEST[0], domain="leg_counting")
    b.library.add(HONEST[1], domain="units")
    attacker.library.add(INJECTIONS[0], confidence=1.0)
    attacker.library.add(WRONG[3], confidence=1.0)
    network.sync_round(range(3))  # publish, vote, the epoch closes, pull
    states = {info.node: info.state.name for info in network.registry.all_batches()}
    assert states == {a.address: "ACCEPTED", b.address: "ACCEPTED", attacker.address: "REJECTED"}
    ids = {info.node: "0x" + info.id.hex() for info in network.registry.all_batches()}
    # the attacker voted for its own batch and against every honest batch still open when it voted (one was
    # decided by the two honest yes votes before its turn): its colluding voter, on that node only
    votes = {node: attacker.state.batch_row(batch_id)["vote"] for node, batch_id in ids.items()}  # type: ignore[index]
    assert votes[attacker.address] == 1 and 0 in (votes[a.address], votes[b.address])
    assert {votes[a.address], votes[b.address]} <= {0, None}
    a_texts = {e.text for e in a.library.all()}
    b_texts = {e.text for e in b.library.all()}
    assert a_texts == b_texts == set(HONEST)  # each merged the other's lesson, nothing of the attacker's
    merged = next(e for e in a.library.all() if e.text == HONEST[1])
    assert merged.origin_node == b.address  # provenance travels with the lesson
    assert a.global_digest() == b.global_digest()
    rejected = a.state.batch_row(ids[attacker.address])
    assert rejected is not None and rejected["vote"] == 0 and "guards" in rejected["vote_reason"]
    report = a.sync()
    assert report.published is None and report.merged.added == 0  # nothing new: idempotent
    network.close()


def test_two_networks_in_one_process_do_not_share_their_attackers(tmp_path: Path, embedder: Embedder) -> None:
    colluding = build_network(
        DSOConfig(),
        tmp_path / "one",
        NetworkSpec(nodes=2, members=(0, 1), byzantine=frozenset({1}), colluding=True, chain="memory"),
        embedder=embedder,
    )
    honest = build_network(
        DSOConfig(), tmp_path / "two", NetworkSpec(nodes=2, members=(0, 1), chain="memory"), embedder=embedder
    )
    for network in (colluding, honest):
        network.nodes[0].library.add(HONEST[0])
        network.sync([0, 1])
    colluder = colluding.nodes[1]
    info = colluding.registry.all_batches()[0]
    assert colluder.judge(info) == (False, "colluding: against an honest node")
    assert honest.nodes[1].judge(honest.registry.all_batches()[0])[0] is True
    colluding.close()
    honest.close()


def _evidence_record(node: str, round_: int, text: str, helped: int, hurt: int, n: int) -> tuple[SharedRecord, bytes]:
    """A real record (canonical bytes under its CID) of a verified batch, as a pull stores it."""
    record = ExperienceRecord(text, 0.8, "math", 0, "test", "test", node, 1_700_000_000 + n, None, (helped, hurt, 0))
    data = encode_record(record)
    row = SharedRecord(cid_of(data), f"0x{round_:02d}{n:02d}", node, round_, text, 0.8, "math", 0, helped, hurt)
    return row, data


def test_the_live_node_passes_its_records_evidence_to_the_consensus(tmp_path: Path, embedder: Embedder) -> None:
    """Three established publishers of a lesson each measured harm on their own questions: the node's global
    library vetoes it, as `dso aggregate` and the attack bench do with the same rows."""
    network = build_network(
        DSOConfig(), tmp_path, NetworkSpec(nodes=1, members=(0,), chain="memory"), embedder=embedder
    )
    node = network.nodes[0]
    peers = [f"0x{i:040x}" for i in range(1, 5)]
    shared = "When a price rises then falls by the same percent, it ends below where it started."
    harmful = "When adding fractions, add the numerators and the denominators separately."
    rows = [_evidence_record(p, 1, shared, 2, 0, i) for i, p in enumerate(peers)]  # round 1: reputations
    rows += [_evidence_record(p, 2, harmful, 0, 3, i) for i, p in enumerate(peers[:3])]
    rows += [_evidence_record(peers[3], 2, shared, 1, 0, 9)]
    for row, data in rows:
        node.state.note_batch(row.batch_id, row.node, row.round, "accepted")
        node.state.accept_verified(row.batch_id, [(row, data)], 0)
    node.state.set_settled_epoch(2)  # both epochs closed
    library = node.global_library()
    accepted = {g.text for g in library.accepted}
    vetoed = {d.text: d.reason for d in library.rejected}
    assert shared in accepted
    assert harmful in vetoed and vetoed[harmful].startswith("evidence:")
    network.close()


@pytest.mark.parametrize("robust", [True, False])
def test_votes_and_merges_run_one_guard_policy(tmp_path: Path, embedder: Embedder, robust: bool) -> None:
    """A text the node's guard policy flags is voted down and never merged, with or without the robust
    consensus (the merge-everything mode used to skip the guards)."""
    config = DSOConfig()
    config.network.byzantine_robust = robust
    network = build_network(config, tmp_path, NetworkSpec(nodes=1, members=(0,), chain="memory"), embedder=embedder)
    node = network.nodes[0]
    attack = INJECTIONS[0]
    assert node.guard_findings([attack, HONEST[0]])[0] and node.guard_findings([attack, HONEST[0]])[1] == []
    rows = [_evidence_record(f"0x{i:040x}", 1, text, 0, 0, i) for i, text in enumerate([attack, HONEST[0]])]
    for row, data in rows:
        node.state.note_batch(row.batch_id, row.node, row.round, "accepted")
        node.state.accept_verified(row.batch_id, [(row, data)], 0)
    node.state.set_settled_epoch(1)
    assert [g.text for g in node.global_library().accepted] == [HONEST[0]]
    network.close()


class OutageStore:
    """A block store that can go down: every read fails while `down` (as an unreachable IPFS daemon does)."""

    def __init__(self, inner: ContentStore) -> None:
        self.inner, self.down = inner, False

    def put(self, data: bytes) -> str:
        return self.inner.put(data)

    def put_many(self, blocks: Sequence[bytes]) -> list[str]:
        return self.inner.put_many(blocks)

    def get(self, cid: str) -> bytes:
        if self.down:
            raise StoreError("cannot connect to the IPFS API (ConnectError)")
        return self.inner.get(cid)

    def has(self, cid: str) -> bool:
        return not self.down and self.inner.has(cid)

    def pin(self, cid: str) -> None:
        self.inner.pin(cid)


def test_a_store_outage_during_pull_is_retried_not_judged(tmp_path: Path, embedder: Embedder) -> None:
    """Accepted batches that cannot be fetched stay to be fetched: never refused, reported, and fetched by the
    next sync once the store is back; a member does not vote on what it cannot fetch."""
    spec = NetworkSpec(nodes=3, members=(0, 1), chain="memory", share_work=False)  # each node fetches for itself
    network = build_network(DSOConfig(), tmp_path, spec, embedder=embedder)
    a, b, reader = network.nodes
    a.library.add(HONEST[0])
    b.library.add(HONEST[1])
    network.sync([0, 1, 0, 1])  # both published, both accepted by the two members
    network.close_epoch()
    outage = OutageStore(reader.store)
    reader.ctx.store = outage
    outage.down = True
    first = reader.sync()
    assert first.pulled.verified == () and first.pulled.refused == () and len(first.pulled.retrying) == 2
    assert first.pulled.settled_epoch == -1  # an epoch with a batch still to fetch stays open at this node
    assert reader.state.refused() == [] and len(reader.state.retries()) == 2
    assert "IPFS" in reader.state.retries()[0]["reason"]
    later = reader.sync()  # not due yet (30 s): nothing tried, nothing lost
    assert later.pulled.retrying == () and len(reader.state.retries()) == 2
    outage.down = False
    back = reader.sync(retry_all=True)
    assert len(back.pulled.verified) == 2 and reader.state.retries() == [] and back.pulled.settled_epoch == 0
    assert {e.text for e in reader.library.all()} == set(HONEST)
    network.close()


def test_a_member_does_not_vote_on_a_batch_it_cannot_fetch(tmp_path: Path, embedder: Embedder) -> None:
    spec = NetworkSpec(nodes=2, members=(0, 1), chain="memory", share_work=False)
    network = build_network(DSOConfig(), tmp_path, spec, embedder=embedder)
    a, b = network.nodes
    a.library.add(HONEST[0])
    a.sync()  # a publishes and votes yes on its own batch: 1 of 2, pending
    outage = OutageStore(b.store)
    b.ctx.store = outage
    outage.down = True
    assert b.sync().votes == ()  # no vote cast on what could not be fetched: not a "no"
    (info,) = network.registry.all_batches()
    assert info.state.name == "PENDING" and info.down == 0
    outage.down = False
    (vote,) = b.sync().votes
    assert vote.approve and network.registry.all_batches()[0].state.name == "ACCEPTED"
    network.close()


# -- attacks on the live node code: the registry's epochs, cumulative support, the library following consensus


def test_a_batch_final_by_its_deadline_is_decided_by_every_node_without_waiting_for_finalize(
    tmp_path: Path, embedder: Embedder
) -> None:
    """A batch one member of three voted for stays pending: the reader's cursor waits there and its epoch stays
    open. Once the deadline block is mined nothing can change the outcome, so the reader computes what
    `finalize` will say (quorum cast, two thirds yes: accepted) and closes the epoch without anyone calling it;
    the later `finalize` changes nothing at any node."""
    spec = NetworkSpec(nodes=4, members=(0, 1, 2), chain="memory", share_work=False, voting_window=20)
    network = build_network(DSOConfig(), tmp_path, spec, embedder=embedder)
    a, b, _, reader = network.nodes
    a.library.add(HONEST[0])
    a.sync()  # a publishes and votes yes: 1 of 3, pending
    (info,) = network.registry.all_batches()
    assert info.state.name == "PENDING" and info.up == 1
    network.chain.mine(info.deadline - network.registry.height() - 1)  # one block before the deadline
    early = reader.sync()
    assert early.pulled.verified == () and early.pulled.settled_epoch == -1 and len(reader.library) == 0
    network.chain.mine(1)  # the deadline block: no vote can land any more
    final = reader.sync()
    assert network.registry.batch(info.id).state.name == "PENDING"  # nobody called finalize
    assert final.pulled.verified == ("0x" + info.id.hex(),) and final.pulled.settled_epoch >= 0
    assert {e.text for e in reader.library.all()} == {HONEST[0]}
    digest = reader.global_digest()
    b.sync()  # a member finalizes it: accepted, as the reader computed
    assert network.registry.batch(info.id).state.name == "ACCEPTED"
    again = reader.sync()
    assert again.pulled.verified == () and again.merged.added == 0 and reader.global_digest() == digest
    network.close()


def test_final_state_follows_the_contracts_finalize_rule() -> None:
    from dso.chain.registry import BatchInfo, BatchState, closed_epoch, final_state

    def batch(up: int, down: int, state: BatchState = BatchState.PENDING) -> BatchInfo:
        return BatchInfo(b"\x01" * 32, "0x" + "0" * 40, 1, 50, 9, up, down, state, b"\x00" * 32, "c")

    assert final_state(batch(1, 0), 49, 1) is None  # votes can still land in block 50
    assert final_state(batch(1, 0), 50, 1) == BatchState.ACCEPTED
    assert final_state(batch(1, 1), 50, 1) == BatchState.REJECTED  # yes short of two thirds of those cast
    assert final_state(batch(2, 1), 50, 1) == BatchState.ACCEPTED
    assert final_state(batch(2, 1), 50, 4) == BatchState.REJECTED  # fewer cast than the quorum
    assert final_state(batch(0, 0), 50, 1) == BatchState.REJECTED
    assert final_state(batch(0, 9, BatchState.ACCEPTED), 0, 1) == BatchState.ACCEPTED  # decided is final
    assert [closed_epoch(h, 10) for h in (0, 8, 9, 10, 19, 20)] == [-1, -1, 0, 0, 1, 1]


COMMON = "When a question counts legs, multiply each animal's count by its legs before adding."
SHARED = "When two units differ, convert both to the smaller unit before comparing."
POISON = WRONG[3]  # "When counting legs, every animal has four legs." passes every guard


def lone_batch(network: Network, index: int, text: str | list[str], claimed_round: int) -> None:
    """Node `index` registers a batch of its own making (one record, or one per text) under a round number of
    its choosing, outside its own outbox."""
    from dso.core.experience import Experience
    from dso.core.signing import sign_batch
    from dso.node import share as shares

    node = network.nodes[index]
    texts = [text] if isinstance(text, str) else text
    vectors = node.embed(texts)
    experiences = [Experience(f"e{i}", t, confidence=1.0) for i, t in enumerate(texts)]
    records = shares.build_records(
        experiences, vectors, node=node.address, model="m", embedder=node.library.embedder_id or "", timestamp=1
    )
    domain = network.registry.domain
    key = network.accounts[index].key
    batch = shares.build_batch(
        records,
        node=node.address,
        round_=claimed_round,
        signer=lambda m, c: sign_batch(key, domain, m, c),
        domain=domain,
    )
    network.store.put_many([data for _, data in records] + [batch.manifest_bytes])
    node.registry.submit_batch(batch.manifest, batch.manifest_cid, batch.signature)


@pytest.mark.parametrize("claimed_round", [0, 1, 2**40])
def test_a_lone_batch_under_any_claimed_round_poisons_no_honest_library(
    tmp_path: Path, embedder: Embedder, claimed_round: int
) -> None:
    """A non-member's fresh key registers one record alone, later than the honest round and under a round
    number of its choosing (the honest one, a past one, a far-future one). Members' guards pass it and they
    vote yes; before, it was the only node of its round and its support was 1.0. The batch belongs to the epoch
    the registry registered it in, support is weighed against every node seen so far, and a newcomer adds at
    most 5 points: no honest library takes it, and the honest libraries agree."""
    spec = NetworkSpec(nodes=5, members=(0, 1, 2), chain="memory", share_work=False, voting_window=50)
    network = build_network(DSOConfig(), tmp_path, spec, embedder=embedder)
    honest = network.nodes[:4]
    for node in honest:
        node.library.add(COMMON)
    for node in honest[:3]:
        node.library.add(SHARED)
    network.sync_round([0, 1, 2, 3])  # publish, vote, the epoch closes, pull
    network.chain.mine(120)  # time passes: the next batch lands in a later epoch
    lone_batch(network, 4, POISON, claimed_round)
    network.sync_round([0, 1, 2, 3])  # the members vote yes (it passes the guards), its epoch closes, all pull
    states = {info.node: info.state.name for info in network.registry.all_batches()}
    assert states[network.nodes[4].address] == "ACCEPTED"  # the registry took it: the consensus must stop it
    for node in honest:
        assert POISON not in {e.text for e in node.library.all()}
        assert {e.text for e in node.library.all()} == {COMMON, SHARED}
    assert len({node.global_digest() for node in honest}) == 1
    network.close()


def test_a_large_hostile_batch_is_voted_down_on_a_sample_before_the_rest_is_fetched(
    tmp_path: Path, embedder: Embedder
) -> None:
    """A sponsored publisher registers 60 well-formed records, 48 of them injections: a member checks 8 records
    drawn at random (every check and the guards), votes no, and never fetches or embeds the other 52. A batch
    of 60 good records passes its sample and is then checked whole and voted yes."""
    from dso.node.vote import SAMPLE

    spec = NetworkSpec(nodes=3, members=(0, 1), chain="memory", share_work=False)
    network = build_network(DSOConfig(), tmp_path, spec, embedder=embedder)
    a, b, _ = network.nodes
    good = [f"When a list holds {i} items, count them twice before answering." for i in range(60)]
    hostile = [f"{INJECTIONS[i % len(INJECTIONS)]} ({i})" for i in range(48)] + good[:12]
    assert sum(bool(f) for f in a.guard_findings(hostile)) == 48
    lone_batch(network, 2, hostile, 1)
    report = a.sync()
    (vote,) = report.votes
    assert not vote.approve and f"of {SAMPLE} sampled texts break the guards" in vote.reason
    (info,) = network.registry.all_batches()
    sizes = [len(network.store.get(cid)) for cid in decode_batch(network.store.get(info.batch_cid)).records]
    assert len(sizes) == 60 and 0 < report.bytes.received["records"] <= SAMPLE * max(sizes)  # 8 records, not 60
    lone_batch(network, 2, good, 2)
    b.sync()
    votes = {v.batch_id: v for v in a.sync().votes}
    (yes,) = votes.values()
    assert yes.approve and "60 of 60 texts pass" in yes.reason
    network.close()


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_partial_views_converge_whatever_order_batches_are_accepted(
    tmp_path: Path, embedder: Embedder, order: tuple[int, ...]
) -> None:
    """Three publishers' batches are accepted one at a time in every order, and a reader syncs after each. The
    epoch is open meanwhile, so the reader merges nothing from a partial view (before, a batch briefly alone
    was merged and stayed); once the epoch closes it holds exactly what a reader that saw everything at once
    holds, and nothing was ever withdrawn."""
    spec = NetworkSpec(nodes=6, members=(5,), chain="memory", share_work=False)
    network = build_network(DSOConfig(), tmp_path, spec, embedder=embedder)
    publishers, reader, late, member = network.nodes[:3], network.nodes[3], network.nodes[4], network.nodes[5]
    publishers[0].library.add(COMMON)
    publishers[1].library.add(COMMON)
    publishers[2].library.add(SHARED)  # only one of three holds it: support 1/3 < 0.45 once all are in
    for index in order:
        publishers[index].sync()  # publish
        member.sync()  # the one member accepts it
        report = reader.sync()  # the reader fetches the batches accepted so far
        assert report.pulled.settled_epoch == -1 and report.merged.global_size == 0
        assert len(reader.library) == 0 and reader.global_library().accepted == []
    network.close_epoch()
    reader.sync()
    late.sync()  # a reader that sees all three at once
    assert {e.text for e in reader.library.all()} == {e.text for e in late.library.all()} == {COMMON}
    assert reader.global_digest() == late.global_digest()
    assert reader.state.settled_epoch() == late.state.settled_epoch() == 0
    assert [h for h in reader.library.history() if h.op == "WITHDRAW"] == []
    network.close()


def test_a_record_encoded_another_way_gets_no_second_cid_accepted(tmp_path: Path, embedder: Embedder) -> None:
    """One record has one byte form: the same record with its keys in another order is other bytes under another
    CID, and a batch listing it is voted down and merged nowhere, so a publisher cannot count its lesson twice."""
    import json as jsonlib

    from dso.core.signing import sign_batch
    from dso.node import share as shares

    spec = NetworkSpec(nodes=4, members=(0, 1), chain="memory", share_work=False)
    network = build_network(DSOConfig(), tmp_path, spec, embedder=embedder)
    publisher = network.nodes[2]
    publisher.library.add(HONEST[0])
    network.sync_round([0, 1, 2, 3])
    (first,) = network.registry.all_batches()
    assert first.state.name == "ACCEPTED"
    (cid,) = decode_batch(network.store.get(first.batch_cid)).records
    canonical = network.store.get(cid)
    document = jsonlib.loads(canonical)
    other = jsonlib.dumps(dict(reversed(list(document.items()))), separators=(",", ":")).encode()
    assert other != canonical and jsonlib.loads(other) == document and cid_of(other) != cid
    domain, key = network.registry.domain, network.accounts[2].key
    batch = shares.build_batch(
        [(cid_of(other), other)], node=publisher.address, round_=9,
        signer=lambda m, c: sign_batch(key, domain, m, c), domain=domain,
    )  # fmt: skip
    network.store.put_many([other, batch.manifest_bytes])
    publisher.registry.submit_batch(batch.manifest, batch.manifest_cid, batch.signature)
    reports = network.sync_round([0, 1, 3])
    votes = [v for report in reports[0] for v in report.votes]
    assert votes and not any(v.approve for v in votes) and all("canonical" in v.reason for v in votes)
    second = next(b for b in network.registry.all_batches() if b.id != first.id)
    assert second.state.name == "REJECTED"
    for node in (network.nodes[0], network.nodes[1], network.nodes[3]):
        assert not node.state.knows_record(cid_of(other)) and node.state.knows_record(cid)
        (lesson,) = node.global_library().accepted
        assert {r.cid for r in lesson.records} == {cid}
    network.close()


# -- local state re-checked: what a node reads back from its own files


def test_a_record_edited_in_the_node_state_never_changes_the_global_library(tmp_path: Path, embedder: Embedder) -> None:
    """Records are read back from their stored bytes, re-hashed to their CIDs: an edited text column is
    ignored, edited bytes are one error naming the file, and nothing merges from either."""
    import sqlite3

    from dso.errors import NodeError

    spec = NetworkSpec(nodes=2, members=(0, 1), chain="memory", share_work=False)
    network = build_network(DSOConfig(), tmp_path, spec, embedder=embedder)
    a, b = network.nodes
    a.library.add(HONEST[0])
    network.sync_round([0, 1])
    assert {g.text for g in b.global_library().accepted} == {HONEST[0]}
    db = sqlite3.connect(b.state.path)
    db.execute("UPDATE records SET text = ?", (POISON,))
    db.commit()
    b.ctx.last_global = None
    assert {g.text for g in b.global_library().accepted} == {HONEST[0]}  # the text comes from the bytes
    (data,) = db.execute("SELECT data FROM records").fetchone()
    db.execute("UPDATE records SET data = ?", (bytes(data).replace(b"multiply", b"subtract"),))
    db.commit()
    db.close()
    b.ctx.last_global = None
    with pytest.raises(NodeError, match=r"node\.db is damaged: record .* does not hash to its CID"):
        b.global_library()
    assert POISON not in {e.text for e in b.library.all()}
    network.close()


def test_outbox_bytes_edited_before_sending_are_never_sent(tmp_path: Path, embedder: Embedder) -> None:
    """A round built into the outbox is re-hashed (records, manifest) and its signature re-checked before
    anything leaves the node: edited bytes stop the send with one error naming the file."""
    import sqlite3

    from dso.errors import NodeError

    class RefusingStore(OutageStore):
        def put_many(self, blocks: Sequence[bytes]) -> list[str]:
            if self.down:
                raise StoreError("cannot connect to the IPFS API (ConnectError)")
            return self.inner.put_many(blocks)

    spec = NetworkSpec(nodes=1, members=(0,), chain="memory")
    network = build_network(DSOConfig(), tmp_path, spec, embedder=embedder)
    (node,) = network.nodes
    node.library.add(HONEST[0])
    store = RefusingStore(node.store)
    node.ctx.store, store.down = store, True
    with pytest.raises(StoreError):
        node.sync()  # built into the outbox; the store did not answer, so nothing was sent
    store.down = False
    db = sqlite3.connect(node.state.path)
    (data,) = db.execute("SELECT data FROM outbox_records").fetchone()
    db.execute("UPDATE outbox_records SET data = ?", (bytes(data).replace(b"multiply", b"subtract"),))
    db.commit()
    db.close()
    with pytest.raises(NodeError, match=r"node\.db is damaged: outbox round 1"):
        node.sync()
    assert network.registry.all_batches() == []
    network.close()


def test_the_largest_batch_costs_members_one_manifest_and_poisons_nothing(tmp_path: Path, embedder: Embedder) -> None:
    """A manifest of 10,000 records cannot exist (more than one block), so a non-member registers the largest
    that fits, 4,000 records (codes null: nothing to check them with) hiding one poison. Members read its
    manifest, see more records than a node takes in one batch, and vote no without fetching or embedding one
    record; nothing reaches any library, and the honest libraries agree."""
    from dso.core.signing import sign_batch
    from dso.node import share as shares

    spec = NetworkSpec(nodes=3, members=(0, 1), chain="memory", share_work=False)
    network = build_network(DSOConfig(), tmp_path, spec, embedder=embedder)
    a, b, attacker = network.nodes
    a.library.add(HONEST[0])
    b.library.add(HONEST[1])
    network.sync([0, 1, 0, 1])
    texts = [POISON] + [f"When a list holds item {i}, read item {i} before the others." for i in range(9_999)]
    records: list[tuple[str, bytes]] = []
    for i, text in enumerate(texts):
        data = encode_record(ExperienceRecord(text, 1.0, "math", 0, "e", "m", attacker.address, 1 + i))
        records.append((cid_of(data), data))
    key, domain = network.accounts[2].key, network.registry.domain
    with pytest.raises(CIDError, match="more than one raw block"):
        cid_of(encode_batch(BatchManifest.build(attacker.address, 7, [cid for cid, _ in records])))
    records = records[:4_000]
    batch = shares.build_batch(
        records, node=attacker.address, round_=7, signer=lambda m, c: sign_batch(key, domain, m, c), domain=domain
    )
    network.store.put_many([data for _, data in records] + [batch.manifest_bytes])
    attacker.registry.submit_batch(batch.manifest, batch.manifest_cid, batch.signature)
    reports = [a.sync(), b.sync()]  # a's no rejects it at once (more than a third of two members)
    (vote,) = [v for report in reports for v in report.votes]
    assert not vote.approve and "4000 records" in vote.reason and "max_batch_records" in vote.reason
    assert all(report.bytes.received.get("records", 0) == 0 for report in reports)  # not one record fetched
    (info,) = [i for i in network.registry.all_batches() if i.node == attacker.address]
    assert info.state.name == "REJECTED"
    network.close_epoch()
    network.sync([0, 1])
    for node in (a, b):
        assert {e.text for e in node.library.all()} == set(HONEST)
    assert a.global_digest() == b.global_digest()
    network.close()


def test_a_node_state_without_record_bytes_pulls_every_accepted_batch_again(tmp_path: Path) -> None:
    """State files of schema 2 kept records as columns only: opening one drops those records and rewinds the
    batch cursor, so the next sync fetches, checks and keeps each record's bytes."""
    import sqlite3

    from dso.node.state import NodeState

    path = tmp_path / "node.db"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('schema_version', '2'), ('cursor:accepted', '5');"
        "CREATE TABLE records (batch_id TEXT NOT NULL, cid TEXT NOT NULL, node TEXT NOT NULL, round INTEGER NOT NULL,"
        " text TEXT NOT NULL, confidence REAL NOT NULL, domain TEXT NOT NULL, epoch INTEGER NOT NULL,"
        " helped INTEGER NOT NULL DEFAULT 0, hurt INTEGER NOT NULL DEFAULT 0, neutral INTEGER NOT NULL DEFAULT 0,"
        " PRIMARY KEY (batch_id, cid));"
        "INSERT INTO records (batch_id, cid, node, round, text, confidence, domain, epoch)"
        " VALUES ('0x01', 'c', '0x00', 1, 't', 0.5, 'd', 0);"
    )
    old.commit()
    old.close()
    state = NodeState(path)
    assert state.cursor("batches") == 0 and state.verified_records() == [] and state.settled_epoch() == -1
    assert state.meta("schema_version") == "4"
    assert "data" in {row[1] for row in state.db.execute("PRAGMA table_info(records)")}
    state.close()


def test_members_vote_automatically_only_on_publishers_a_member_sponsors(tmp_path: Path, embedder: Embedder) -> None:
    """A fresh key's batch costs the members nothing: no fetch, no check, no vote, until a member sponsors
    its publisher on the registry; then it is judged like any other."""
    spec = NetworkSpec(nodes=3, members=(0, 1), chain="memory", share_work=False, sponsored=False)
    network = build_network(DSOConfig(), tmp_path, spec, embedder=embedder)
    a, b, newcomer = network.nodes
    newcomer.library.add(HONEST[0])
    newcomer.sync()
    (info,) = network.registry.all_batches()
    for member in (a, b):
        report = member.sync()
        assert report.votes == () and report.bytes.received == {}  # not even its manifest was fetched
    assert network.registry.batch(info.id).state.name == "PENDING"
    a.registry.sponsor_many([newcomer.address])
    assert [v.approve for v in a.sync().votes] == [True]
    b.sync()
    assert network.registry.batch(info.id).state.name == "ACCEPTED"
    network.close_epoch()
    a.sync()
    assert {e.text for e in a.library.all()} == {HONEST[0]}
    network.close()


def test_a_damaged_settled_epoch_is_one_error_naming_the_file(tmp_path: Path) -> None:
    from dso.errors import NodeError
    from dso.node.state import NodeState

    state = NodeState(tmp_path / "node.db")
    assert state.settled_epoch() == -1
    state.set_settled_epoch(3)
    assert state.settled_epoch() == 3
    for junk in ("-2", "x", "9" * 30, "1e3"):
        state.set_meta("settled_epoch", junk)
        with pytest.raises(NodeError, match=r"node\.db is damaged: settled_epoch"):
            state.settled_epoch()
    state.close()
