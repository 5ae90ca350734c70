"""`dso bench answers`: a run's saved held-out answers, split into format and result, read without a model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dso.bench.answers import answer_report, repeat_report
from dso.config import load_config
from dso.errors import DSOError
from dso.learn.extract import Rollout
from dso.learn.trainer import config_json


def save(run_dir: Path, name: str, answers: list[tuple[str, float]]) -> None:
    rows = [Rollout(f"q{i}", 0, text, reward, 90, 40, "stop").to_json() for i, (text, reward) in enumerate(answers)]
    (run_dir / name).write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def write_run(run_dir: Path, suffix: str = "") -> None:
    save(
        run_dir,
        f"eval{suffix}-baseline.jsonl",
        [("So it follows from both.", 0.0), ("ANSWER: No", 0.0), ("ANSWER: Yes", 1.0), ("ANSWER: [bold]No", 0.0)],
    )
    save(
        run_dir,
        f"eval{suffix}-library.jsonl",
        [("ANSWER: Yes", 1.0), ("ANSWER: Yes", 1.0), ("ANSWER: No", 0.0), ("ANSWER: [bold]No", 0.0)],
    )


def test_changed_questions_are_split_by_whether_the_baseline_marked_its_answer(tmp_path: Path) -> None:
    write_run(tmp_path)
    report = answer_report(tmp_path)
    base, lib = report["arms"]["baseline"], report["arms"]["library"]
    assert (base["answers"], base["marked"], base["accuracy_when_marked"]) == (4, 3, pytest.approx(1 / 3))
    assert (lib["marked"], lib["accuracy"]) == (4, 0.5)
    assert ["Yes", 2, 2] in lib["commonest_answers"] and ["No", 1, 0] in lib["commonest_answers"]
    assert report["changed"] == {
        "fixed": {"baseline unmarked": 1, "baseline marked": 1},
        "broken": {"baseline unmarked": 0, "baseline marked": 1},
    }


def test_other_seed_files_and_refusals(tmp_path: Path) -> None:
    with pytest.raises(DSOError, match="no saved answers"):
        answer_report(tmp_path)
    write_run(tmp_path, "-seed101")
    assert answer_report(tmp_path, 101)["questions"] == 4
    good = (tmp_path / "eval-seed101-baseline.jsonl").read_bytes()
    junk = [
        b"{not json\n",
        b"[]\n",
        b'{"problem_id": 5}\n',
        b"[" * 100_000 + b"\n",
        b"\xff\xfe\x00junk\n",
        good.replace(b'"reward": 0.0', b'"reward": "none"'),
        good.replace(b'"response": "ANSWER: No"', b'"response": {"a": [1]}'),
    ]
    for i, content in enumerate(junk):
        (tmp_path / f"eval-seed{i}-baseline.jsonl").write_bytes(content)
        (tmp_path / f"eval-seed{i}-library.jsonl").write_bytes(good)
        with pytest.raises(DSOError, match="not a file of saved answers"):
            answer_report(tmp_path, i)
        assert (tmp_path / f"eval-seed{i}-library.jsonl").read_bytes() == good  # nothing rewritten


def test_a_check_on_the_runs_own_seed_reads_its_own_split(tmp_path: Path) -> None:
    """`dso eval --heldout-seed N`, N the run's own seed, answers the run's own split into eval-*.jsonl."""
    config = load_config(environ={"DSO_TRAIN_SEED": "7"})
    (tmp_path / "config.json").write_text(json.dumps(config_json(config)), encoding="utf-8")
    write_run(tmp_path)
    assert answer_report(tmp_path, 7)["questions"] == 4
    with pytest.raises(DSOError, match="eval-seed8-baseline"):
        answer_report(tmp_path, 8)
    # a config.json that is not one: the run's seed is unknown, any seed names another split; nothing rewritten
    for junk in (b"{not json", b"[" * 100_000, b'{"seed": "7", "prompts": {}}', b"\xff\xfe\x00", b'{"prompts": []}'):
        (tmp_path / "config.json").write_bytes(junk)
        with pytest.raises(DSOError, match="eval-seed7-baseline"):
            answer_report(tmp_path, 7)
        assert (tmp_path / "config.json").read_bytes() == junk


def test_a_second_run_of_the_same_questions_counts_the_answers_that_differ(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    write_run(first)
    # the second run: one baseline answer reworded with the same score, one turned right, one turned wrong
    save(
        second,
        "eval-baseline.jsonl",
        [("So it follows from both, then.", 0.0), ("ANSWER: Yes", 1.0), ("ANSWER: No", 0.0), ("ANSWER: [bold]No", 0.0)],
    )
    report = repeat_report(first, second)
    assert report["against"] == str(second) and list(report["arms"]) == ["baseline"]  # the only arm in both
    assert answer_report(first, against=second)["repeat"] == report  # from the answers the report read
    assert report["arms"]["baseline"] == {"questions": 4, "responses_differ": 3, "better_here": 1, "better_there": 1}
    assert repeat_report(first, first)["arms"]["library"] == {
        "questions": 4,
        "responses_differ": 0,
        "better_here": 0,
        "better_there": 0,
    }
    with pytest.raises(DSOError, match="no arm of saved answers in common"):
        repeat_report(first, tmp_path / "none")
    (second / "eval-baseline.jsonl").write_bytes(b"[" * 100_000 + b"\n")
    with pytest.raises(DSOError, match="not a file of saved answers"):
        repeat_report(first, second)


@pytest.mark.slow
def test_the_command_prints_model_text_inert(tmp_path: Path) -> None:
    write_run(tmp_path)
    shown = subprocess.run(
        [sys.executable, "-m", "dso", "bench", "answers", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "250", "PATH": "/usr/bin:/bin"},
    )
    assert shown.returncode == 0, shown.stderr
    assert "[bold]No" in shown.stdout  # the answer's markup is text, not style
    repeated = subprocess.run(
        [sys.executable, "-m", "dso", "bench", "answers", str(tmp_path), "--against", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert repeated.returncode == 0, repeated.stderr
    assert json.loads(repeated.stdout)["repeat"]["arms"]["baseline"]["responses_differ"] == 0
    missing = subprocess.run(
        [sys.executable, "-m", "dso", "bench", "answers", str(tmp_path / "none")], capture_output=True, text=True
    )
    assert missing.returncode == 1 and missing.stderr.startswith("error: no saved answers")


def test_the_constant_answer_floor_comes_from_the_runs_own_questions(tmp_path: Path) -> None:
    """With the run's config.json beside the answers, the floor is computed on exactly the questions answered."""
    from dso.config import load_config
    from dso.learn.run import heldout_questions
    from dso.learn.trainer import config_json

    config = load_config(
        environ={}, overrides={"train.dataset": "syllogism", "train.train_size": 2, "train.heldout_size": 6}
    )
    (tmp_path / "config.json").write_text(json.dumps(config_json(config)), encoding="utf-8")
    for seed, suffix in ((None, ""), (101, "-seed101")):
        problems, named = heldout_questions(config.train, seed, 6)
        assert named == suffix and len(problems) == 6
        for arm in ("baseline", "library"):
            save(tmp_path, f"eval{suffix}-{arm}.jsonl", [(f"ANSWER: {p.answer}", 1.0) for p in problems])
        rows = [json.loads(line) for line in (tmp_path / f"eval{suffix}-library.jsonl").read_text().splitlines()]
        for row, problem in zip(rows, problems, strict=True):
            row["problem_id"] = problem.id
        for arm in ("baseline", "library"):
            (tmp_path / f"eval{suffix}-{arm}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        floor = answer_report(tmp_path, seed)["constant_answer"]
        answers = [p.answer.lower() for p in problems]
        most = max(answers.count(a) for a in answers)
        assert answers.count(floor["answer"]) == most and floor["accuracy"] == pytest.approx(most / 6)
    (tmp_path / "config.json").write_text("{not json", encoding="utf-8")
    assert answer_report(tmp_path)["constant_answer"] is None  # answers are still read without the config
