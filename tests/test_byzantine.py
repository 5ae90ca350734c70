"""The attack suite at small size, on a seed the defaults were not chosen on: at 30% Byzantine nodes no
attack gets a poisoned experience accepted and honest recall stays at 0.9 or above."""

from __future__ import annotations

import pytest

from dso.bench.byzantine import simulate
from dso.config import ConsensusConfig
from dso.consensus.semantic_guard import SemanticGuard
from dso.embed import Embedder
from dso.embed.cache import CachingEmbedder
from dso.network.attacks import ATTACKS, committee_capture

pytestmark = pytest.mark.slow  # 8 simulated networks, about a minute


@pytest.fixture(scope="module")
def tools(embedder: Embedder) -> tuple[object, SemanticGuard]:
    return CachingEmbedder(embedder).embed_map, SemanticGuard.shipped(embedder)


@pytest.mark.parametrize("attack", ATTACKS)
def test_thirty_percent_byzantine(attack: str, tools: tuple[object, SemanticGuard]) -> None:
    embed, guard = tools
    run = simulate(attack, 0.3, embed, ConsensusConfig(), guard, nodes=40, rounds=2, seed=7)  # type: ignore[arg-type]
    assert run["byzantine"] == 12
    assert run["poisoned_accepted"] == 0, run["rounds"]
    assert run["honest_recall"] >= 0.9, run["rounds"]
    if attack == "retrieval-hijack":
        assert run["attack_success"] is False
    if attack in (
        "specialist",
        "placebo-claim",
    ):  # each a candidate: left to the trials of nodes that hold such questions
        assert all(r["poisoned_candidates"] > 0 for r in run["rounds"]), run["rounds"]


def test_committee_capture_probability() -> None:
    assert committee_capture(50, 0, 15) == 0.0
    assert committee_capture(50, 50, 15) == 1.0
    assert 0.2 < committee_capture(50, 15, 15) < 0.4  # a random 15-member committee of a 30% network
    # the binomial limit at 30%: 64 members forge with about 1e-9 but block with about 0.26; 512: 7e-66 and 0.05
    assert 9e-10 < committee_capture(None, 0.3, 64, forging=True) < 1e-9
    assert abs(committee_capture(None, 0.3, 64) - 0.2617) < 1e-3
    assert 7e-66 < committee_capture(None, 0.3, 512, forging=True) < 7.2e-66
    assert abs(committee_capture(None, 0.3, 512) - 0.0526) < 1e-3
    assert committee_capture(1_000, 300, 512, forging=True) == 0.0  # 342 Byzantine members do not exist
