"""Certificates of the global library: the root, the two-thirds quorum, the committee draw (pure), and a real
node that refuses a certificate whose root is not what the batches it audits say."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from dso.config import DSOConfig
from dso.consensus.certificate import (
    EMPTY_ROOT,
    Certificate,
    LibraryEntry,
    Provenance,
    certified_by,
    draw_committee,
    entries_document,
    library_root,
    read_entries_document,
    sign_certificate,
)
from dso.core.cid import cid_of
from dso.core.merkle import merkle_root
from dso.core.signing import RegistryDomain
from dso.embed import Embedder
from dso.errors import CertificateError, SignatureError
from dso.network import NetworkSpec, build_network

DOMAIN = RegistryDomain(31337, "0x" + "ab" * 20)
KEYS = [Account.create(f"member {i}") for i in range(6)]
COMMITTEE = [k.address for k in KEYS]


def entry(text: str, domain: str, cids: Sequence[str], confidence: float = 0.7) -> LibraryEntry:
    origin = Provenance(cids[0], "0x" + "11" * 20, 1, "0x" + "22" * 32, 0)
    return LibraryEntry(text, domain, confidence, len(cids), merkle_root(sorted(cids)), origin)


A = entry("When counting legs, a spider has 8.", "leg_counting", (cid_of(b"one"),))
B = entry("When two units differ, convert first.", "units", (cid_of(b"two"), cid_of(b"three")))


def signed(certificate: Certificate, keys: Sequence[LocalAccount], domain: RegistryDomain = DOMAIN) -> Certificate:
    sigs = tuple(sign_certificate(bytes(k.key), domain, certificate) for k in keys)
    return dataclasses.replace(certificate, signatures=sigs)


def test_the_root_is_one_per_library_and_changes_with_any_entry() -> None:
    assert library_root([A, B]) == library_root([B, A]) != library_root([A])
    assert library_root([]) == EMPTY_ROOT
    other_supporters = dataclasses.replace(B, records_root=merkle_root([cid_of(b"two")]))
    assert library_root([A, other_supporters]) != library_root([A, B])  # every supporting record is committed
    other_origin = dataclasses.replace(B, provenance=dataclasses.replace(B.provenance, node="0x" + "33" * 20))
    assert library_root([A, other_origin]) != library_root([A, B])  # and the record that brings it in
    assert library_root([A, dataclasses.replace(B, domain="other")]) != library_root([A, B])


def test_two_thirds_of_the_committee_must_sign_each_once() -> None:
    statement = Certificate(7, library_root([A, B]), 2)
    assert certified_by(DOMAIN, signed(statement, KEYS[:4]), COMMITTEE) == COMMITTEE[:4]  # 4 of 6
    with pytest.raises(SignatureError, match="3 of 6"):
        certified_by(DOMAIN, signed(statement, KEYS[:3]), COMMITTEE)
    doubled = signed(statement, [*KEYS[:3], KEYS[0]])  # the same member twice counts once
    with pytest.raises(SignatureError, match="signed twice"):
        certified_by(DOMAIN, doubled, COMMITTEE)
    stranger = Account.create("not a member")
    with pytest.raises(SignatureError, match="not on the committee"):
        certified_by(DOMAIN, signed(statement, [*KEYS[:3], stranger]), COMMITTEE)
    moved = dataclasses.replace(signed(statement, KEYS[:4]), root=library_root([A]))  # signatures of another root
    with pytest.raises(SignatureError):
        certified_by(DOMAIN, moved, COMMITTEE)
    elsewhere = RegistryDomain(1, DOMAIN.contract)  # another chain: the signatures do not carry over
    with pytest.raises(SignatureError):
        certified_by(elsewhere, signed(statement, KEYS[:4]), COMMITTEE)
    junk = dataclasses.replace(statement, signatures=(b"\x01" * 65, b"short"))
    with pytest.raises(SignatureError, match="0 of 6"):
        certified_by(DOMAIN, junk, COMMITTEE)


def test_the_committee_draw_is_fixed_by_its_seed() -> None:
    first = draw_committee(COMMITTEE, b"block 100", 4)
    assert first == draw_committee(list(reversed(COMMITTEE)), b"block 100", 4) and len(set(first)) == 4
    draws = {draw_committee(COMMITTEE, f"block {n}".encode(), 4) for n in range(20)}
    assert len(draws) > 1  # another seed, another committee
    assert draw_committee(COMMITTEE, b"x", 10) == draw_committee(COMMITTEE, b"x", 6)


def test_a_node_refuses_a_certificate_its_own_audit_contradicts(tmp_path: Path, embedder: Embedder) -> None:
    spec = NetworkSpec(nodes=4, members=(0, 1, 2, 3), chain="memory")
    network = build_network(DSOConfig(), tmp_path, spec, embedder=embedder)
    for node in network.nodes[:3]:
        node.library.add("When two units differ, convert both to the smaller unit before comparing.", domain="units")
    network.sync_round(range(4))
    auditor, *others = network.nodes
    epoch = auditor.state.settled_epoch()
    honest = others[0].statement(epoch)
    assert honest == auditor.statement(epoch) and honest.experiences == 1  # every node computes the same root
    keys, domain = network.accounts[1:], auditor.registry.domain
    committee = [k.address for k in keys]
    verdict = auditor.audit_certificate(signed(honest, keys, domain), committee)
    assert verdict.state == "accepted" and verdict.own_root == "0x" + honest.root.hex()
    poisoned = entry("When counting legs, every animal has four legs.", "leg_counting", (cid_of(b"p"),))
    forged = Certificate(epoch, library_root([poisoned]), 1)  # a captured committee certifies a poison instead
    refused = auditor.audit_certificate(signed(forged, keys, domain), committee)
    assert refused.state == "refused" and "differs from this node's" in refused.reason
    assert refused.own_root == "0x" + honest.root.hex() and refused.differing  # the proof: its own entries
    assert auditor.audit_certificate(signed(honest, keys[:1], domain), committee).state == "refused"  # 1 of 3 signed
    later = dataclasses.replace(honest, epoch=epoch + 5)
    assert auditor.audit_certificate(signed(later, keys, domain), committee).state == "pending"
    network.close()


def test_an_entries_document_is_read_only_when_it_is_what_the_registry_certified() -> None:
    """A stranger's entries document must name the certified epoch, hold the certified number of valid entries
    and hash to the certified root; a changed word, a third decimal or an unknown field is refused."""
    root = library_root([A, B])
    document = entries_document(4, [B, A])
    assert set(read_entries_document(document, 4, root, 2)) == {A, B}
    assert entries_document(4, [A, B]) == document  # one byte form whatever the order
    refusals = [
        (document, 5, root, 2),  # another epoch
        (document, 4, root, 3),  # another count
        (document, 4, library_root([A]), 2),  # another root
        (entries_document(4, [A, dataclasses.replace(B, text="When two units differ, never convert.")]), 4, root, 2),
        (entries_document(4, [A, dataclasses.replace(B, confidence=0.333)]), 4, library_root([A, B]), 2),
        (document.replace(b'"supporters"', b'"supporter"'), 4, root, 2),
        (b"[" * 100_000, 4, root, 2),
        (b"\xff\xfe not json", 4, root, 2),
    ]
    for data, epoch, expected_root, count in refusals:
        with pytest.raises(CertificateError):
            read_entries_document(data, epoch, expected_root, count)


LESSON = "When two units differ, convert both to the smaller unit before comparing."
POISON = "When counting legs, every animal has four legs."


def test_light_nodes_merge_the_certified_library_and_an_audit_unmasks_a_forged_one(
    tmp_path: Path, embedder: Embedder
) -> None:
    """Members attest what they computed, and light nodes merge the certificate without fetching a batch. Two of
    three members (a captured committee) then certify a poisoned library: a light node that trusts it merges the
    poison, an auditing light node computes the epoch itself, disputes it on the registry with its proof, and on
    its next sync the trusting node falls back to the batches and withdraws the poison."""
    from dso.node import certify

    config = DSOConfig()
    config.network.light, config.network.audit_rate = True, 0.0
    spec = NetworkSpec(nodes=5, members=(0, 1, 2), chain="memory")
    network = build_network(config, tmp_path, spec, embedder=embedder)
    for node in network.nodes[:3]:
        node.library.add(LESSON, domain="units")
    *_, third = network.sync_round(range(5))
    assert [r.attested for r in third[:3]] == [network.nodes[0].state.settled_epoch()] * 3
    epoch = third[0].attested
    assert epoch is not None and network.registry.certificate(epoch).certified
    for report, node in zip(third[3:], network.nodes[3:], strict=True):
        assert report.light is not None and report.light.mode == "certificate" and report.light.epoch == epoch
        assert report.bytes.received.get("certificates", 0) > 0 and not report.bytes.received.get("records")
        assert [e.text for e in node.library.all()] == [LESSON] and node.library.all()[0].origin_node != "local"
    full = network.nodes[0].global_library().accepted
    assert [g.text for g in full] == [LESSON]

    # a captured committee: two of the three members certify the next epoch's library with a poison in it
    chain, window = network.chain, network.registry.voting_window
    chain.mine(window)
    forged_epoch = (network.registry.height() + 1) // window - 1
    poisoned = [*certify.library_entries(full), entry(POISON, "leg_counting", (cid_of(b"forged"),), 0.9)]
    cid = network.nodes[0].ctx.store.put(entries_document(forged_epoch, poisoned))
    for member in network.nodes[:2]:
        member.registry.attest(forged_epoch, library_root(poisoned), len(poisoned), cid)
    trusting, auditor = network.nodes[4], network.nodes[3]
    assert trusting.sync().light.mode == "certificate"  # type: ignore[union-attr]
    assert POISON in [e.text for e in trusting.library.all()]  # what a forged certificate does before an audit

    _, audit = certify.light_pull(auditor.ctx, audit=True)
    assert audit.mode == "full" and audit.disputed and "differs" in audit.reason
    disputed = network.registry.certificate(forged_epoch)
    assert disputed.disputed and disputed.disputed_by == auditor.address
    proof = json.loads(auditor.ctx.store.get(disputed.proof_cid))
    assert proof["only_certified"] == [POISON] and proof["computed_root"] != proof["certified_root"]

    again = trusting.sync()
    assert again.light is not None and again.light.mode == "full" and "disputed" in again.light.reason
    assert again.merged.withdrawn == 1
    assert [e.text for e in trusting.library.all()] == [LESSON]  # the poison is gone
    network.close()


def test_a_simulated_network_of_light_nodes_agrees_with_its_members_and_accepts_no_poison(tmp_path: Path) -> None:
    """`dso simulate --light --relay` on the in-memory registry: one relay transaction registers every batch,
    members certify every round, the other nodes merge the certificate (and receive less than a member), every
    honest node ends with the same library, no poison."""
    from dso.simulate import SimulationSettings, simulate

    settings = SimulationSettings(
        nodes=12, byzantine=0.25, attack="wrong", rounds=2, committee=5, chain="memory", light=True, audit_rate=0.0,
        relay=True,
    )  # fmt: skip
    report = simulate(settings, DSOConfig(), workdir=tmp_path)
    assert report["poisoned_accepted"] == 0
    first = report["rounds"][0]
    assert first["relay"] == {"transactions": 1, "batches_registered": 12} == {
        "transactions": 1, "batches_registered": first["batches"]["submitted"]
    }  # fmt: skip
    for row in report["rounds"]:
        assert set(row["phase_seconds"]) == {"learn", "publish", "vote", "certify", "pull"}
        # every light node merged a certificate at least once a round (its publishing sync reads the last one)
        assert row["attestations"] == 5 and row["light_syncs"]["certificate"] >= 7 and row["disputes"] == 0
        assert row["honest_nodes_agreeing"] == "True" and row["global_library"]["accepted"] >= 1
        member, reader, byzantine = row["witnesses"]
        assert not byzantine["honest"] and byzantine["role"] == "reader" and byzantine["received"] > 0
        assert member["role"] == "member" and reader["role"] == "reader"
        assert 0 < reader["received"] < member["received"]


def test_a_light_node_waits_for_the_first_certificate_and_computes_for_itself_when_certificates_stop(
    tmp_path: Path, embedder: Embedder
) -> None:
    """Before any epoch ends there is nothing to read; once certificates are CERTIFICATE_LAG epochs late (a
    blocking third withholding attestations) a light node pulls the batches and computes the library itself."""
    from dso.node.certify import CERTIFICATE_LAG

    config = DSOConfig()
    config.network.light, config.network.audit_rate = True, 0.0
    spec = NetworkSpec(nodes=4, members=(0, 1, 2), chain="memory")
    network = build_network(config, tmp_path, spec, embedder=embedder)
    light = network.nodes[3]
    first = light.sync()
    assert first.light is not None and first.light.mode == "wait" and first.merged.added == 0
    for node in network.nodes[:3]:
        node.library.add(LESSON, domain="units")
    network.sync(range(3))
    network.sync(range(3))
    network.close_epoch()
    network.chain.mine(network.registry.voting_window * (CERTIFICATE_LAG + 1))  # no member syncs: none attests
    late = light.sync()
    assert late.light is not None and late.light.mode == "full" and "no certificate for epoch" in late.light.reason
    assert len(late.pulled.verified) == 3 and [e.text for e in light.library.all()] == [LESSON]
    network.close()


@pytest.mark.parametrize("junk", [b"[" * 50_000, b'{"v": 1, "type": "dso.global-library", "epoch": 0, "entries": []}'])
def test_a_certificate_whose_entries_do_not_check_is_read_as_none(
    tmp_path: Path, embedder: Embedder, junk: bytes
) -> None:
    """Members certify a document that is not their root's (deep nesting, or an empty list under a root with an
    entry): the light node neither crashes nor merges anything from it, and computes that sync for itself."""
    config = DSOConfig()
    config.network.light, config.network.audit_rate = True, 0.0
    spec = NetworkSpec(nodes=4, members=(0, 1, 2), chain="memory")
    network = build_network(config, tmp_path, spec, embedder=embedder)
    network.chain.mine(network.registry.voting_window)
    epoch = (network.registry.height() + 1) // network.registry.voting_window - 1
    cid = network.nodes[0].ctx.store.put(junk)
    for member in network.nodes[:2]:
        member.registry.attest(epoch, library_root([A]), 1, cid)
    report = network.nodes[3].sync()
    assert report.light is not None and report.light.mode == "full" and "entries of epoch" in report.light.reason
    assert network.nodes[3].library.all() == []
    network.close()


@pytest.mark.parametrize("audit_rate", [0.0, 1.0])
def test_a_captured_committee_forging_a_certificate_poisons_light_nodes_only_until_an_audit(
    tmp_path: Path, audit_rate: float
) -> None:
    """The forged-certificate attack: two thirds of the committee Byzantine, certifying their library plus a wrong
    lesson. Without audits every honest light node merges it (the attack is real); when light nodes audit, the
    first one disputes it, the rest compute for themselves, and no honest library keeps it. The consensus of
    the honest members never accepts it either way."""
    from dso.simulate import SimulationSettings, simulate

    settings = SimulationSettings(
        nodes=12, byzantine=0.25, attack="forged-certificate", rounds=2, committee=4, chain="memory", light=True,
        audit_rate=audit_rate, relay=True,
    )  # fmt: skip
    report = simulate(settings, DSOConfig(), workdir=tmp_path)
    assert report["committee"]["byzantine_members"] == 3 and report["poisoned_accepted"] == 0  # 3 of 4 members
    last = report["rounds"][-1]
    if audit_rate == 0.0:
        assert last["disputes"] == 0 and last["honest_libraries_poisoned"] == 8  # every honest light node
    else:
        assert report["rounds"][0]["disputes"] >= 1 and report["honest_libraries_poisoned"] == 0
        assert last["light_syncs"]["certificate"] == 0  # after the dispute every light node computes for itself


def test_members_attest_on_anvil_in_the_round_their_epoch_closes(
    tmp_path: Path, embedder: Embedder, anvil_url: str
) -> None:
    """anvil estimates gas at its latest block: closing an epoch mines one block past it, so the members'
    attestations of that epoch go through in the same round and light nodes read the certificate."""
    config = DSOConfig()
    config.network.light, config.network.audit_rate = True, 0.0
    spec = NetworkSpec(nodes=4, members=(0, 1, 2), chain=anvil_url)
    network = build_network(config, tmp_path, spec, embedder=embedder)
    for node in network.nodes[:3]:
        node.library.add(LESSON, domain="units")
    *_, third = network.sync_round(range(4))
    assert all(r.attested is not None for r in third[:3])
    assert third[3].light is not None and third[3].light.mode == "certificate"
    assert [e.text for e in network.nodes[3].library.all()] == [LESSON]
    network.close()
