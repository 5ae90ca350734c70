"""The hand-written tips of `dso bench tips`: each one must be storable in a default library, for a real task."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from dso.bench.tips import TIPS
from dso.embed import Embedder, make_embedder
from dso.learn.datasets import load_problems
from dso.library import ExperienceLibrary


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return make_embedder()


@pytest.mark.parametrize("task", sorted(TIPS))
def test_every_tip_is_accepted_by_a_default_library(task: str, embedder: Embedder) -> None:
    assert load_problems(task, 2, seed=0), f"{task} generates no questions"
    with tempfile.TemporaryDirectory() as home, ExperienceLibrary(Path(home) / "tips.db", embedder) as lib:
        for tip in TIPS[task]:
            lib.add(tip)  # raises on a tip over the word or byte cap
        assert len(lib) == len(TIPS[task])
