"""Certificates of the global library: the root, the two-thirds quorum, the committee draw (pure), and a real
node that refuses a certificate whose root is not what the batches it audits say."""

from __future__ import annotations

import dataclasses
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
    certified_by,
    draw_committee,
    library_root,
    sign_certificate,
)
from dso.core.cid import cid_of
from dso.core.signing import RegistryDomain
from dso.embed import Embedder
from dso.errors import SignatureError
from dso.network import NetworkSpec, build_network

DOMAIN = RegistryDomain(31337, "0x" + "ab" * 20)
KEYS = [Account.create(f"member {i}") for i in range(6)]
COMMITTEE = [k.address for k in KEYS]
A = LibraryEntry("When counting legs, a spider has 8.", "leg_counting", (cid_of(b"one"),))
B = LibraryEntry("When two units differ, convert first.", "units", (cid_of(b"two"), cid_of(b"three")))


def signed(certificate: Certificate, keys: Sequence[LocalAccount], domain: RegistryDomain = DOMAIN) -> Certificate:
    sigs = tuple(sign_certificate(bytes(k.key), domain, certificate) for k in keys)
    return dataclasses.replace(certificate, signatures=sigs)


def test_the_root_is_one_per_library_and_changes_with_any_entry() -> None:
    assert library_root([A, B]) == library_root([B, A]) != library_root([A])
    assert library_root([]) == EMPTY_ROOT
    other_provenance = dataclasses.replace(B, records=(cid_of(b"two"),))
    assert library_root([A, other_provenance]) != library_root([A, B])  # provenance is committed too
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
    poisoned = LibraryEntry("When counting legs, every animal has four legs.", "leg_counting", (cid_of(b"p"),))
    forged = Certificate(epoch, library_root([poisoned]), 1)  # a captured committee certifies a poison instead
    refused = auditor.audit_certificate(signed(forged, keys, domain), committee)
    assert refused.state == "refused" and "differs from this node's" in refused.reason
    assert refused.own_root == "0x" + honest.root.hex() and refused.differing  # the proof: its own entries
    assert auditor.audit_certificate(signed(honest, keys[:1], domain), committee).state == "refused"  # 1 of 3 signed
    later = dataclasses.replace(honest, epoch=epoch + 5)
    assert auditor.audit_certificate(signed(later, keys, domain), committee).state == "pending"
    network.close()
