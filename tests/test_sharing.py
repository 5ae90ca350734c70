"""`dso experiment sharing` end to end at a tiny size on the real embedded model: the network, the trials,
every arm on the same held-out questions, the summary and its plots, and a resume that redoes nothing."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from dso.config import load_config
from dso.embed import Embedder
from dso.errors import ConfigError, DSOError
from dso.llm.llamacpp import LlamaCppLLM
from dso.network.attacks import PLACEBO_CLAIM
from dso.report import UNMEASURED, claims, load_results, render, sharing_rows
from dso.sharing import CELLS, TRIALS, SharingSettings, sharing_experiment

TINY = SharingSettings(heldout=3, validation=3, max_tokens=16)


def test_specialists_share_and_every_arm_is_paired(tmp_path: Path, small_llm: LlamaCppLLM) -> None:
    run_dir = tmp_path / "sharing"
    said: list[str] = []
    summary = sharing_experiment(TINY, load_config(), run_dir, command="test", progress=said.append, solver=small_llm)
    assert [t["domain"] for t in summary["tasks"]] == ["leg_counting", "products"]
    for task in summary["tasks"]:
        arms = {a["arm"]: a for a in task["arms"]}
        assert set(arms) == {"none", "placebo", "specialist", "node 0", "node 1", "node 2"}
        assert arms["none"]["vs_none"] == {"fixed": 0, "broken": 0, "p_value": 1.0}
        assert all(0 <= a["ci95"][0] <= a["accuracy"] <= a["ci95"][1] <= 1 for a in arms.values())
        assert arms["specialist"]["lessons"] and not arms["placebo"]["lessons"]
    assert set(summary["gains"]) == {"node 0", "node 1", "node 2"}
    network = summary["network"]
    assert network["poisoned_accepted"] == []  # the attacker's lessons are at most candidates, tried or not
    assert PLACEBO_CLAIM not in {g["text"] for g in network["accepted"]}
    assert set(summary["trials"]) == {"node 0", "node 1", "node 2"}
    assert all((run_dir / name).read_bytes().startswith(b"\x89PNG") for name in ("gains.png", "accuracy.png"))
    assert json.loads((run_dir / "summary.json").read_text())["experiment"] == "sharing"
    cells = (run_dir / CELLS).read_text().splitlines()
    trials = (run_dir / TRIALS).read_text().splitlines() if (run_dir / TRIALS).exists() else []
    said.clear()
    again = sharing_experiment(TINY, load_config(), run_dir, command="test", progress=said.append, solver=small_llm)
    assert (run_dir / CELLS).read_text().splitlines() == cells  # every arm was done: nothing answered again
    assert ((run_dir / TRIALS).read_text().splitlines() if trials else []) == trials
    assert not any("held-out questions" in line for line in said)
    assert again["tasks"] == summary["tasks"]
    results = load_results([run_dir])  # the report reads the summary: one row per node and task it never learned
    rows = sharing_rows(results)
    assert len(rows) == 2 * 2 and {r["task"] for r in rows} == {"leg_counting", "products"}
    assert not any("specialist of leg_counting" in r["node"] and r["task"] == "leg_counting" for r in rows)
    verdict = {c.claim: c.verdict for c in claims(results)}[
        "a node gains from lessons other nodes learned, beyond the placebo"
    ]
    assert verdict != UNMEASURED and "Sharing: each node" in render(results, command="test")


def test_bad_settings_are_refused_before_anything_runs(tmp_path: Path) -> None:
    for bad in (
        SharingSettings(tasks=("chain_sum", "chain_sum")),
        SharingSettings(lessons=("one.txt",)),
        SharingSettings(readers=0),
        SharingSettings(heldout=0),
        SharingSettings(max_tokens=5),
    ):
        with pytest.raises(ConfigError):
            sharing_experiment(bad, load_config(), tmp_path / "x", command="test")
    assert not (tmp_path / "x").exists()


def test_a_damaged_cells_file_is_one_error_before_any_model_loads(tmp_path: Path) -> None:
    run_dir = tmp_path / "sharing"
    run_dir.mkdir()
    for junk in (
        '{"task": "x"}',
        "[[[[",
        '{"task": "t", "library": "k", "instruction": "", "arms": [], "scores": {"q": "1"}}',
    ):
        (run_dir / CELLS).write_text(junk + "\n")
        with pytest.raises(DSOError, match="not a cell of this experiment"):
            sharing_experiment(TINY, load_config(), run_dir, command="test")


def test_arms_whose_prompts_are_the_same_share_one_key(tmp_path: Path, embedder: Embedder) -> None:
    """An arm is answered once per distinct set of prompts: a library whose lessons no question retrieves (another
    domain, below the similarity floor) asks what the placebo asks; one with a lesson of the questions' own kind
    does not, nor does the same library under a lower floor."""
    from dso.learn.datasets import train_heldout_split
    from dso.library import ExperienceLibrary
    from dso.sharing import LEGS, placebo_settings, prompts_key

    _, questions = train_heldout_split(LEGS, 0, 4, seed=3)
    settings = placebo_settings(load_config(), 64)
    other = ExperienceLibrary(tmp_path / "other.db", embedder)
    other.add("When a question asks for a date, count the days of each month in between.", domain="calendar")
    own = ExperienceLibrary(tmp_path / "own.db", embedder)
    own.add("When counting legs, a spider has 8 legs and an insect 6.", domain=questions[0].task)
    empty = prompts_key(questions, settings, None)
    assert prompts_key(questions, settings, other) == empty
    assert prompts_key(questions, settings, own) != empty
    assert prompts_key(questions, dataclasses.replace(settings, min_similarity=-1.0), other) != empty
    assert prompts_key(questions[:2], settings, None) != empty  # other questions, other prompts
