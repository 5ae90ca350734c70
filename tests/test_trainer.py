"""A real (tiny) learning run, killed mid-batch and resumed: nothing repeated, nothing lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FLAGS = [
    "--model",
    "smollm2-135m",
    "--dataset",
    "basic_arithmetic",
    "--train-size",
    "5",
    "--heldout-size",
    "2",
    "--batch-size",
    "2",
    "--group-size",
    "2",
    "--max-tokens",
    "32",
    "--temperature",
    "1.0",
]


def train(run_dir: Path, *extra: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DSO_LLM_PARALLEL": "3"}
    if fault:
        env["DSO_FAULT"] = fault
    return subprocess.run(
        [sys.executable, "-m", "dso", "train", "--run-dir", str(run_dir), *FLAGS, *extra, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def metrics(run_dir: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_resume_after_a_kill_mid_batch(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    killed = train(run_dir, fault="after-rollouts:0:1")  # dies after batch 1's rollouts, before its update
    assert killed.returncode == -9
    assert [m["batch"] for m in metrics(run_dir)] == [0]
    assert (run_dir / "rollouts" / "e0-b1.jsonl").exists()
    kept = (run_dir / "rollouts" / "e0-b1.jsonl").read_text()

    refused = train(run_dir)  # the run directory is taken: resuming must be asked for
    assert refused.returncode == 1 and "--resume" in refused.stderr and "Traceback" not in refused.stderr
    changed = train(run_dir, "--resume", "--epochs", "2")
    assert changed.returncode == 1 and "another configuration" in changed.stderr

    resumed = train(run_dir, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    rows = metrics(run_dir)
    assert [m["batch"] for m in rows] == [0, 1, 2]  # each batch exactly once
    assert [m["rollouts_reused"] for m in rows] == [False, True, False]  # batch 1's rollouts were not redone
    assert (run_dir / "rollouts" / "e0-b1.jsonl").read_text() == kept
    summary = json.loads(resumed.stdout)["train"]
    assert [b["batch"] for b in summary["batches"]] == [1, 2]

    import sqlite3

    with sqlite3.connect(run_dir / "library.db") as db:
        cursor = db.execute("SELECT value FROM meta WHERE key = 'user:train_cursor'").fetchone()[0]
    assert cursor == "0:2"
    again = train(run_dir, "--resume")  # nothing left to do
    assert again.returncode == 0 and json.loads(again.stdout)["train"]["batches"] == []


@pytest.mark.parametrize("bad", [["--dataset", "no_such_task"], ["--dataset", "missing.jsonl"]])
def test_bad_dataset_is_one_line(tmp_path: Path, bad: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dso", "train", "--run-dir", str(tmp_path / "r"), *FLAGS, *bad],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert not (tmp_path / "r").exists()  # nothing half-made: the same command works once the dataset is fixed


def test_gated_run_keeps_only_lessons_that_passed_the_gate(tmp_path: Path) -> None:
    run_dir = tmp_path / "gated"
    result = train(run_dir, "--gate", "--train-size", "2")  # one batch of 2 questions
    assert result.returncode == 0, result.stderr
    rows = metrics(run_dir)
    trials = []
    for row in rows:
        report = row["gate"]
        assert isinstance(report, dict) and report["questions"] == row["problems"]
        for trial in report["trials"]:
            assert trial["kept"] == (trial["score"] > report["baseline"])
            trials.append(trial)
    assert trials, "the tiny model proposed no lesson at all: the gate was never exercised"
    kept_adds = sum(1 for t in trials if t["kept"] and t["op"] == "ADD")
    assert json.loads(result.stdout)["train"]["library_size"] <= kept_adds
