"""The hand-written tips of `dso bench tips`: each one must be storable in a default library, for a real task;
the probe pairs its two arms question by question."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from dso.bench.tips import TIPS, _changed, read_lessons, run_tips_probe, tips_for
from dso.config import load_config
from dso.embed import Embedder, make_embedder
from dso.errors import ConfigError, DSOError
from dso.learn.datasets import Problem, load_problems
from dso.learn.extract import Rollout
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


@pytest.mark.slow
def test_the_probe_pairs_the_arms_and_lists_each_changed_question() -> None:
    config = load_config(environ={}, overrides={"llm.model": "smollm2-135m", "llm.parallel": 2})
    result = run_tips_probe(config, "leg_counting:min_animals=1,max_animals=2", 4, 16, quiet=True)
    baseline, tips = result["arms"]["baseline"], result["arms"]["tips"]
    assert baseline["questions"] == tips["questions"] == 4 and tips["library_size"] == len(TIPS["leg_counting"])
    paired, changed = result["paired"], result["changed"]
    assert [row["change"] for row in changed].count("fixed") == paired["fixed"]
    assert [row["change"] for row in changed].count("broken") == paired["broken"]
    assert 0 < paired["p_value"] <= 1
    # the accuracies differ by exactly the changed questions (one greedy answer per question)
    assert round((tips["accuracy"] - baseline["accuracy"]) * 4) == paired["fixed"] - paired["broken"]
    assert all(set(row) == {"id", "change", "correct", "baseline", "tips"} for row in changed)


def test_changed_questions_show_the_ground_truth_and_both_committed_answers() -> None:
    problems = [
        Problem(f"q{i}", f"question {i}", answer, "polynomial_multiplication")
        for i, answer in enumerate(["-3*y**4 - 6*y**2", "2", "5"])
    ]

    def arm(*rewards_and_texts: tuple[float, str]) -> dict[str, list[Rollout]]:
        return {
            p.id: [Rollout(p.id, 0, text, reward, 1, 1, "stop")]
            for p, (reward, text) in zip(problems, rewards_and_texts, strict=True)
        }

    baseline = arm((0.0, "work\nANSWER: -3y^4"), (1.0, "ANSWER: 2"), (0.0, "ANSWER: 4"))
    tips = arm((1.0, "ANSWER: -3y^4 - 6y^2"), (0.0, "ANSWER: 3"), (0.0, "ANSWER: 6"))
    assert _changed(problems, baseline, tips) == [
        {"id": "q0", "change": "fixed", "correct": "-3*y**4 - 6*y**2", "baseline": "-3y^4", "tips": "-3y^4 - 6y^2"},
        {"id": "q1", "change": "broken", "correct": "2", "baseline": "2", "tips": "3"},
    ]  # the ground truth whole (not its last number); q2 stayed wrong both ways


def test_tips_for_one_setting_come_before_those_for_the_whole_task() -> None:
    weekday = "calendar_arithmetic:tasks=['weekday_offset']"
    assert tips_for(weekday) == TIPS[weekday] != TIPS["calendar_arithmetic"]
    assert tips_for("calendar_arithmetic:tasks=['count_days']") == TIPS["calendar_arithmetic"]
    assert tips_for("leg_counting:min_animals=1,max_animals=2") == TIPS["leg_counting"]
    with pytest.raises(ConfigError, match="no hand-written tips for 'maze'"):
        tips_for("maze:min_dist=2")


def test_lessons_are_read_one_per_line_and_a_bad_file_is_one_config_error(tmp_path: Path) -> None:
    good = tmp_path / "lessons.txt"
    good.write_text("When adding, carry.\n\n  When counting legs, a spider has 8.  \n", encoding="utf-8")
    assert read_lessons(good) == ["When adding, carry.", "When counting legs, a spider has 8."]
    blank = tmp_path / "blank.txt"
    blank.write_text("\n   \n", encoding="utf-8")
    with pytest.raises(ConfigError, match="holds no lessons"):
        read_lessons(blank)
    with pytest.raises(ConfigError, match="cannot read lessons"):
        read_lessons(tmp_path / "missing.txt")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00When")
    with pytest.raises(ConfigError, match="cannot read lessons"):
        read_lessons(binary)
    with pytest.raises(ConfigError, match=r"cannot read lessons: .* is a directory"):
        read_lessons(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # read whole, a pipe would block the probe forever
    with pytest.raises(ConfigError, match=r"cannot read lessons: .* not a regular file"):
        read_lessons(fifo)


@pytest.mark.slow
def test_each_lesson_is_its_own_arm_against_one_baseline(tmp_path: Path) -> None:
    config = load_config(environ={}, overrides={"llm.model": "smollm2-135m", "llm.parallel": 2})
    lessons = ["When counting legs, a spider has 8 legs.", "When counting legs, a bird has 2 legs."]
    result = run_tips_probe(
        config, "leg_counting:min_animals=1,max_animals=2", 4, 16, lessons=lessons, each=True, quiet=True
    )
    assert list(result["arms"]) == ["baseline", "tip 1", "tip 2"] and result["source"] == "lessons file"
    assert [c["tips"] for c in result["comparisons"]] == [[lessons[0]], [lessons[1]]]
    baseline = result["arms"]["baseline"]["accuracy"]
    for comparison in result["comparisons"]:
        arm, paired = result["arms"][comparison["arm"]], comparison["paired"]
        assert arm["library_size"] == 1
        assert round((arm["accuracy"] - baseline) * 4) == paired["fixed"] - paired["broken"]
        assert [row["change"] for row in comparison["changed"]].count("fixed") == paired["fixed"]
    assert result["paired"] == result["comparisons"][0]["paired"]


def test_a_lesson_over_the_library_cap_is_refused_before_any_question_is_answered(tmp_path: Path) -> None:
    config = load_config(environ={}, overrides={"llm.model": "no-such-model"})  # loading it would fail
    with pytest.raises(DSOError, match="cap"):
        run_tips_probe(config, "leg_counting", 2, 16, lessons=["When " + "x" * 2000 + " do."], quiet=True)
