"""The node end to end on the embedded EVM and a shared block store: publish, vote, pull, merge, refuse, recover.

Real parts throughout: the MiniLM embedder, the registry contract on py-evm, EIP-712 signatures, the block
store that re-hashes every read. Nodes live in one process here; `test_node_processes.py` runs them as
separate `dso node run` processes against anvil and an IPFS daemon.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dso.chain.client import RegistryClient, embedded_web3
from dso.chain.registry import BatchState, registry_epoch
from dso.config import DSOConfig
from dso.core.cid import cid_of
from dso.core.records import ExperienceRecord, encode_record
from dso.core.signing import batch_id as batch_id_of
from dso.core.signing import sign_batch
from dso.embed import Embedder
from dso.errors import NodeError
from dso.network import Network, NetworkSpec, build_network
from dso.node import share

pytestmark = pytest.mark.slow  # a registry on the embedded EVM: seconds per test

LESSONS = [
    "When a question counts legs, multiply each animal's count by its legs before adding.",
    "When two units differ, convert both to the smaller unit before comparing.",
]


def make_network(tmp_path: Path, embedder: Embedder, members: int = 3, others: int = 1) -> Network:
    """The network builder every network uses, on the embedded EVM; each node fetches for itself."""
    spec = NetworkSpec(
        nodes=members + others,
        members=tuple(range(members)),
        chain="embedded",
        share_work=False,
        key_tag=f"test-node:{tmp_path.name}",
        operator=None,
    )
    return build_network(DSOConfig(), tmp_path, spec, embedder=embedder)


def test_an_experience_travels_from_one_node_to_another_with_provenance(tmp_path: Path, embedder: Embedder) -> None:
    net = make_network(tmp_path, embedder)
    a, b, c, d = net.nodes  # d is not a member: it only pulls
    for text in LESSONS:
        a.library.add(text, domain="leg_counting")
    a.library.apply([], evidence={a.library.all()[0].id: (4, 1, 2)})  # what a's training would have counted
    first = a.sync()
    assert first.records_published == 2 and first.bytes.sent["records"] > 0
    assert first.bytes.sent["transactions"] > 0
    assert a.sync().published is None  # nothing new to publish; no second batch
    b.sync()  # a voted for its own batch when it published it; b's yes is the second of three: accepted
    c.sync()
    batch_id = a.state.own_batches()[0]
    info = a.registry.batch(bytes.fromhex(batch_id[2:]))
    assert info.state == BatchState.ACCEPTED
    manifest = share.check_manifest(info, net.store.get(info.batch_cid))
    assert a.registry.batch_id(manifest, info.batch_cid) == batch_id_of(manifest, info.batch_cid) == info.id
    net.close_epoch()  # the epoch closes: what was accepted in it is merged
    summary = d.sync()  # d is not a member: its first sync pulls the accepted batch
    assert summary.merged.added == 2, summary
    b.sync()
    c.sync()
    assert summary.bytes.received["records"] > 0
    for node in (b, d):
        texts = {e.text for e in node.library.all()}
        assert set(LESSONS) <= texts
        merged = next(e for e in node.library.all() if e.text == LESSONS[0])
        assert merged.origin_node == a.address
        (row,) = node.library.provenance(merged.id)
        epoch = registry_epoch(info, a.registry.voting_window)  # the registry's epoch, not the claimed round 1
        assert (row.node, row.batch_id, row.round) == (a.address, batch_id, epoch)
        assert (
            row.record_cid in a.store.get(a.registry.batch(bytes.fromhex(batch_id[2:])).batch_cid).decode()
        )  # the record CID is one the manifest lists
    size = len(d.library)
    again = d.sync()  # merging is idempotent
    assert again.merged.added == 0 and len(d.library) == size
    a.sync()  # a has not read the registry since its batch was accepted
    statuses = [n.status() for n in (a, b, c, d)]
    assert len({s.global_digest for s in statuses}) == 1
    assert statuses[0].global_size == 2
    accepted = d.global_library().accepted
    claimed = {g.text: g.to_json()["claimed_evidence"] for g in accepted}
    assert claimed[LESSONS[0]] == {"helped": 4, "hurt": 1, "neutral": 2}  # carried in a's record, as claimed
    assert len(a.library) == 2  # a's own experiences were not merged back into it


def test_a_store_serving_other_bytes_leaves_the_whole_batch_unmerged_until_it_serves_them(
    tmp_path: Path, embedder: Embedder
) -> None:
    """Bytes that do not hash to their CID prove the store wrong, not the publisher: not one record of the
    batch is merged, the batch is not refused, and once the store serves the right bytes it is merged."""
    net = make_network(tmp_path, embedder)
    a, b, c, d = net.nodes
    for text in LESSONS:
        a.library.add(text)
    a.sync()
    b.sync()
    c.sync()  # voted yes on the intact batch: accepted
    net.close_epoch()
    batch = a.registry.batch(bytes.fromhex(a.state.own_batches()[0][2:]))
    assert batch.state == BatchState.ACCEPTED
    # the store now serves other bytes under one record's name
    manifest = share.check_manifest(batch, net.store.get(batch.batch_cid))
    victim = net.store.root / manifest.records[0][-2:] / manifest.records[0]
    intact = victim.read_bytes()
    victim.write_bytes(intact.replace(b"When", b"Then"))
    summary = d.sync()
    (waiting,) = summary.pulled.retrying
    assert "corrupt" in waiting.reason and waiting.batch_id == "0x" + batch.id.hex()
    assert summary.pulled.refused == () and d.status().refused_batches == ()
    assert len(d.library) == 0  # not one record of the batch was merged, the intact one included
    victim.write_bytes(intact)
    again = d.sync(retry_all=True)
    assert again.pulled.verified == ("0x" + batch.id.hex(),) and len(d.library) == 2


def test_members_vote_no_on_a_record_signed_into_another_nodes_batch(tmp_path: Path, embedder: Embedder) -> None:
    net = make_network(tmp_path, embedder)
    a, b = net.nodes[0], net.nodes[1]
    forger, victim = net.accounts[2], net.accounts[3]
    record = ExperienceRecord(LESSONS[0], 0.9, "general", 0, "x", "y", victim.address, 1_700_000_000)
    data = encode_record(record)
    net.store.put(data)
    domain = a.registry.domain
    batch = share.build_batch(
        [(cid_of(data), data)],
        node=forger.address,
        round_=1,
        signer=lambda manifest, cid: sign_batch(forger.key, domain, manifest, cid),
        domain=domain,
    )
    net.store.put(batch.manifest_bytes)
    relay = RegistryClient(embedded_web3(), net.registry.address, forger)
    batch_id = relay.submit_batch(batch.manifest, batch.manifest_cid, batch.signature)
    a.sync()
    b.sync()
    row = b.state.batch_row("0x" + batch_id.hex())
    assert row is not None and row["vote"] == 0 and "names node" in row["vote_reason"]
    assert a.registry.batch(batch_id).state == BatchState.REJECTED  # two of three members said no


def test_a_node_killed_around_submission_submits_each_batch_once(tmp_path: Path, embedder: Embedder) -> None:
    net = make_network(tmp_path, embedder)
    a = net.nodes[0]
    a.library.add(LESSONS[0])

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # what a kill leaves behind: the step started, nothing after it ran

    a.registry.submit_batch = crash  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        a.sync()
    assert a.state.unfinished_outbox()[0]["state"] == "stored"
    count = a.registry.batch_count()
    restarted = net.restart(0)  # the same state file and library, a new process's objects
    restarted.sync()
    assert restarted.registry.batch_count() == count + 1
    # killed after the registry took the batch but before the outbox said so
    restarted.library.add(LESSONS[1])
    original = restarted.state.set_outbox_state

    def crash_when_done(round_: int, state: str, batch_id: str | None = None) -> None:
        if state == "done":
            raise KeyboardInterrupt
        original(round_, state, batch_id)

    restarted.state.set_outbox_state = crash_when_done  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        restarted.sync()
    again = net.restart(0)
    summary = again.sync()
    assert again.registry.batch_count() == count + 2  # the second round, once
    assert again.state.outbox_counts() == {"done": 2}
    assert summary.published is None  # nothing was published twice
    assert sorted(again.state.own_batches()) == sorted({b for b in again.state.own_batches()})


def test_a_state_file_refuses_another_node(tmp_path: Path, embedder: Embedder) -> None:
    from dso.keys import new_keystore
    from dso.network import open_node

    config = DSOConfig()
    config.network.node_dir = tmp_path / "node"
    config.library.path = tmp_path / "node" / "library.db"
    config.chain.addresses = tmp_path / "addresses.json"
    config.chain.keystore = tmp_path / "one.json"
    new_keystore(config.chain.keystore, "pw", kdf="pbkdf2", iterations=2)
    node = open_node(config, "pw")
    node.close()
    config.chain.keystore = tmp_path / "two.json"
    new_keystore(config.chain.keystore, "pw", kdf="pbkdf2", iterations=2)
    with pytest.raises(NodeError, match="belongs to"):
        open_node(config, "pw")
