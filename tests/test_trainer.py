"""The trainer's bookkeeping: kill mid-batch and resume, usage counted once, the lesson gate.

The model is not the point of these tests, so a scripted LLM answers (served over HTTP on loopback for
the `dso train` processes that are killed); `test_cli.py` runs the real model end to end.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dso.config import load_config
from dso.embed import Embedder
from dso.learn.datasets import Problem
from dso.learn.extract import Extractor, Rollout
from dso.learn.rewards import DefaultVerifier
from dso.learn.run import load_run_config, run_training
from dso.learn.trainer import group_evidence, read_rollouts, train
from dso.library import ExperienceLibrary
from dso.llm.testing import ScriptedLLM, ScriptedRequest, serve_openai

LESSON = "When adding two numbers, count up from the larger one."


def scripted(request: ScriptedRequest) -> str | list[str]:
    """Solver: one right and one wrong attempt per question. Extractor: one lesson, always added."""
    schema = json.dumps(request.json_schema or {})
    if '"lessons"' in schema:
        return json.dumps({"lessons": [LESSON]})
    if '"operations"' in schema:
        candidates = re.findall(r"^- (When .*)$", request.prompt, re.MULTILINE)
        return json.dumps({"operations": [{"op": "ADD", "id": "", "text": c} for c in candidates[:1]]})
    right = re.search(r"What is (\d+) \+ (\d+)", request.prompt)
    answer = int(right[1]) + int(right[2]) if right else 0
    return [f"ANSWER: {answer if i % 2 == 0 else answer + 1}" for i in range(request.n)]


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with serve_openai(ScriptedLLM(scripted)) as url:
        yield url


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "sums.jsonl"
    lines = [json.dumps({"question": f"What is {i} + {i + 2}?", "answer": str(2 * i + 2)}) for i in range(12)]
    path.write_text("\n".join(lines) + "\n")
    return path


def train_cli(
    endpoint: str, dataset: Path, run_dir: Path, *extra: str, fault: str | None = None, prune: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DSO_LLM_BACKEND": "openai", "DSO_LLM_BASE_URL": endpoint, "DSO_LLM_RETRIES": "0"}
    if not prune:  # keep every lesson, so usage can be compared with the prompts that held it
        env |= {"DSO_TRAIN_PRUNE_P": "0", "DSO_TRAIN_PRUNE_MIN_USES": "0"}
    if fault:
        env["DSO_FAULT"] = fault
    flags = ["--model", "scripted", "--dataset", str(dataset), "--train-size", "6", "--heldout-size", "2"]
    flags += ["--batch-size", "2", "--group-size", "2", "--max-tokens", "32", *extra, "--json"]
    return subprocess.run(
        [sys.executable, "-m", "dso", "train", "--run-dir", str(run_dir), *flags],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def metrics(run_dir: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_resume_after_a_kill_mid_batch(tmp_path: Path, endpoint: str, dataset: Path) -> None:
    run_dir = tmp_path / "run"
    killed = train_cli(endpoint, dataset, run_dir, fault="after-rollouts:0:1")  # after batch 1's rollouts
    assert killed.returncode == -9, killed.stderr
    assert [m["batch"] for m in metrics(run_dir)] == [0]
    kept = (run_dir / "rollouts" / "e0-b1.jsonl").read_text()

    refused = train_cli(endpoint, dataset, run_dir)  # the run directory is taken: resuming must be asked for
    assert refused.returncode == 1 and "--resume" in refused.stderr and "Traceback" not in refused.stderr
    changed = train_cli(endpoint, dataset, run_dir, "--resume", "--epochs", "2")
    assert changed.returncode == 1 and "another configuration" in changed.stderr

    resumed = train_cli(endpoint, dataset, run_dir, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    rows = metrics(run_dir)
    assert [m["batch"] for m in rows] == [0, 1, 2]  # each batch exactly once
    assert [m["rollouts_reused"] for m in rows] == [False, True, False]  # batch 1's rollouts were not redone
    assert (run_dir / "rollouts" / "e0-b1.jsonl").read_text() == kept
    assert [b["batch"] for b in json.loads(resumed.stdout)["train"]["batches"]] == [1, 2]
    with sqlite3.connect(run_dir / "library.db") as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'user:train_cursor'").fetchone()[0] == "0:2"
    again = train_cli(endpoint, dataset, run_dir, "--resume")  # nothing left to do
    assert again.returncode == 0 and json.loads(again.stdout)["train"]["batches"] == []


def test_evaluation_on_another_seed_uses_only_questions_the_run_never_saw(
    tmp_path: Path, endpoint: str, dataset: Path
) -> None:
    run_dir = tmp_path / "run"
    trained = train_cli(endpoint, dataset, run_dir, "--eval")
    assert trained.returncode == 0
    batches = [line for line in trained.stderr.splitlines() if line.startswith("epoch 0 batch ")]
    assert len(batches) == 3 and "reward" in batches[0] and "library" in batches[0]  # a line per batch, no terminal
    own = json.loads((run_dir / "eval.json").read_text())
    env = {**os.environ, "DSO_LLM_BACKEND": "openai", "DSO_LLM_BASE_URL": endpoint, "DSO_LLM_RETRIES": "0"}
    command = [sys.executable, "-m", "dso", "eval", "--run-dir", str(run_dir), "--json"]
    quiet: dict[str, Any] = {"capture_output": True, "text": True, "env": env, "timeout": 300}
    other = subprocess.run([*command, "--heldout-seed", "7"], **quiet)
    assert other.returncode == 0, other.stderr
    report = json.loads(other.stdout)
    assert report["heldout_seed"] == 7 and own["heldout_seed"] == 0 and report["heldout"] == 2
    floor = report["constant_answer"]  # one reply to both questions scores 1/2 or 2/2
    assert floor["accuracy"] in (0.5, 1.0) and isinstance(floor["answer"], str)
    asked = [
        json.loads(line)["problem_id"] for line in (run_dir / "eval-seed7-baseline.jsonl").read_text().splitlines()
    ]
    rollouts = list((run_dir / "rollouts").glob("*.jsonl"))
    trained = {json.loads(line)["problem_id"] for f in rollouts for line in f.read_text().splitlines()}
    evaluated = {json.loads(line)["problem_id"] for line in (run_dir / "eval-baseline.jsonl").read_text().splitlines()}
    assert asked and not set(asked) & (trained | evaluated)
    assert json.loads((run_dir / "eval.json").read_text()) == own  # the run's own evaluation is kept

    # more questions than the run's held-out size: all 4 of the 12 that the run never saw, and no more
    larger = subprocess.run([*command, "--heldout-seed", "8", "--heldout-size", "4"], **quiet)
    assert larger.returncode == 0, larger.stderr
    assert json.loads(larger.stdout)["heldout"] == 4
    for flags, message in (
        (["--heldout-seed", "9", "--heldout-size", "5"], "gave 4 questions not seen by the run; 5 requested"),
        (["--heldout-size", "4"], "needs another held-out seed"),  # the run's own split is fixed by its config
        (["--heldout-seed", "0", "--heldout-size", "4"], "needs another held-out seed"),  # 0 is the run's seed
        (["--heldout-seed", "9", "--heldout-size", "1000001"], "held-out size must be 1 to 1,000,000"),
        (["--heldout-seed", "9", "--heldout-size", "0"], "held-out size must be 1 to 1,000,000"),
    ):
        refused = subprocess.run([*command, *flags], **quiet)
        assert refused.returncode != 0 and refused.stdout == ""
        assert refused.stderr.startswith("error: ") and message in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    assert json.loads((run_dir / "eval.json").read_text()) == own


@pytest.mark.slow
def test_usage_is_counted_once_when_a_batch_is_sampled_again(tmp_path: Path, endpoint: str, dataset: Path) -> None:
    """Killed after batch 1 was sampled but before its rollouts were saved: the resumed run samples it again,
    and every experience's usage still equals the prompts it was in."""
    run_dir = tmp_path / "run"
    killed = train_cli(endpoint, dataset, run_dir, fault="before-rollouts-saved:0:1", prune=False)
    assert killed.returncode == -9 and not (run_dir / "rollouts" / "e0-b1.jsonl").exists()
    resumed = train_cli(endpoint, dataset, run_dir, "--resume", prune=False)
    assert resumed.returncode == 0, resumed.stderr
    prompts: Counter[str] = Counter()
    for path in (run_dir / "rollouts").glob("*.jsonl"):
        for group in read_rollouts(path).values():
            prompts.update(group[0].experiences)
    assert prompts, "no experience was ever in a prompt: the check below would prove nothing"
    with sqlite3.connect(run_dir / "library.db") as db:
        usage = dict(db.execute("SELECT id, usage_count FROM experiences").fetchall())
        evidence = dict(db.execute("SELECT id, helped + hurt + neutral FROM experiences").fetchall())
    assert {i: n for i, n in usage.items() if n} == dict(prompts)
    expected: Counter[str] = Counter()
    for path in (run_dir / "rollouts").glob("*.jsonl"):
        for key, counts in group_evidence(list(read_rollouts(path).values())).items():
            expected[key] += sum(counts)
    assert {i: n for i, n in evidence.items() if n} == dict(expected)  # each batch's evidence counted once


def test_evidence_compares_each_group_with_its_batch() -> None:
    def group(problem: str, rewards: list[float], used: tuple[str, ...]) -> list[Rollout]:
        return [Rollout(problem, i, "", r, 0, 0, "stop", used) for i, r in enumerate(rewards)]

    groups = [group("p1", [1, 1], ("a", "b")), group("p2", [0, 0], ("b",)), group("p3", [1, 0], ("c", "c"))]
    assert group_evidence(groups) == {"a": (1, 0, 0), "b": (1, 1, 0), "c": (0, 0, 1)}  # batch mean 0.5
    assert group_evidence([]) == {}
    # in every group: no contrast, so no evidence (above or below the mean is the question, not the lesson)
    everywhere = [group("p1", [1, 1], ("a", "z")), group("p2", [0, 0], ("z",)), group("p3", [1, 0], ("z",))]
    assert group_evidence(everywhere) == {"a": (1, 0, 0)}


@pytest.mark.slow
@pytest.mark.parametrize("bad", [["--dataset", "no_such_task"], ["--dataset", "missing.jsonl"]])
def test_bad_dataset_is_one_line(tmp_path: Path, endpoint: str, dataset: Path, bad: list[str]) -> None:
    result = train_cli(endpoint, dataset, tmp_path / "r", *bad)
    assert result.returncode == 1 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert not (tmp_path / "r").exists()  # nothing half-made: the same command works once the dataset is fixed


HELPFUL = "When a brother's sisters are asked for, count the woman herself as well."
USELESS = "When reading a problem, read it carefully."


LUCKY = "When Alice has exactly 2 sisters, her brother has 3 sisters."


def aiw_script(request: ScriptedRequest, lessons: tuple[str, ...] = (USELESS, HELPFUL)) -> str | list[str]:
    """Solver right exactly when the helpful rule is in its prompt (or the lucky one on its one question);
    extractor proposes `lessons`."""
    schema = json.dumps(request.json_schema or {})
    if '"lessons"' in schema:
        return json.dumps({"lessons": list(lessons)})
    if '"operations"' in schema:
        candidates = re.findall(r"^- (When .*)$", request.prompt, re.MULTILINE)
        return json.dumps({"operations": [{"op": "ADD", "id": "", "text": c} for c in candidates]})
    sisters = int(re.findall(r"has (\d+) sisters", request.prompt)[-1])
    right = "count the woman herself" in request.prompt or (sisters == 2 and "exactly 2 sisters" in request.prompt)
    return "ANSWER: " + str(sisters + 1 if right else sisters)


def aiw_problems(numbers: range, prefix: str = "aiw") -> list[Problem]:
    return [
        Problem(
            f"{prefix}-{n}",
            f"Alice has {n} sisters and 1 brother. How many sisters does her brother have?",
            str(n + 1),
            "aiw",
        )
        for n in numbers
    ]


def test_gated_run_keeps_only_lessons_that_passed_the_gate(tmp_path: Path, embedder: Embedder) -> None:
    config = load_config(
        environ={}, overrides={"train.gate_lessons": True, "train.batch_size": 2, "train.min_similarity": -1.0}
    )
    problems = aiw_problems(range(2, 6))
    library = ExperienceLibrary(tmp_path / "lib.db", embedder)
    (tmp_path / "rollouts").mkdir()
    llm = ScriptedLLM(aiw_script)
    extractor = Extractor(llm, library, contrast_batch=False)
    rows = train(config.train, tmp_path, problems, llm, extractor, DefaultVerifier(), parallel=2)
    trials = [t for row in rows if row.gate for t in row.gate["trials"]]
    assert trials and all(row.gate and row.gate["questions"] == row.problems for row in rows)
    for row in rows:
        assert row.gate is not None
        for trial in row.gate["trials"]:
            assert trial["kept"] == (trial["score"] > row.gate["baseline"])
    assert {t["text"] for t in trials if t["kept"]} == {HELPFUL}
    assert USELESS in {t["text"] for t in trials} and [e.text for e in library.all()] == [HELPFUL]


def test_the_validation_gate_needs_a_sign_test_not_one_lucky_question(tmp_path: Path, embedder: Embedder) -> None:
    """On validation questions a lesson that fixes one question (p = 0.5) is dropped, one that fixes all kept."""
    config = load_config(
        environ={}, overrides={"train.gate_lessons": True, "train.batch_size": 2, "train.min_similarity": -1.0}
    )
    library = ExperienceLibrary(tmp_path / "lib.db", embedder)
    (tmp_path / "rollouts").mkdir()
    llm = ScriptedLLM(lambda request: aiw_script(request, (LUCKY, HELPFUL)))
    extractor = Extractor(llm, library, contrast_batch=False)
    validation = aiw_problems(range(2, 9), "validation")  # 7 questions: all fixed gives p = 0.008
    rows = train(
        config.train, tmp_path, aiw_problems(range(10, 12)), llm, extractor, DefaultVerifier(), validation=validation
    )
    (row,) = rows
    assert row.gate is not None and row.gate["source"] == "validation" and row.gate["questions"] == 7
    trials = {t["text"]: t for t in row.gate["trials"]}
    assert (trials[LUCKY]["fixed"], trials[LUCKY]["broken"], trials[LUCKY]["kept"]) == (1, 0, False)
    assert (
        trials[HELPFUL]["fixed"] == 7 and trials[HELPFUL]["p_value"] < config.train.gate_p and trials[HELPFUL]["kept"]
    )
    assert [e.text for e in library.all()] == [HELPFUL]


def test_solver_and_extractor_can_sit_on_different_endpoints(tmp_path: Path, dataset: Path) -> None:
    """A small solver on one OpenAI-compatible endpoint, the reflector on another (a large API or GPU model)."""
    asked: dict[str, list[ScriptedRequest]] = {"solver": [], "extractor": []}

    def side(name: str) -> ScriptedLLM:
        def answer(request: ScriptedRequest) -> str | list[str]:
            asked[name].append(request)
            return scripted(request)

        return ScriptedLLM(answer)

    with serve_openai(side("solver")) as solver_url, serve_openai(side("extractor")) as extractor_url:
        overrides = {
            "llm.backend": "openai",
            "llm.base_url": solver_url,
            "llm.model": "small-solver",
            "llm.retries": 0,
            "train.extractor_base_url": extractor_url,
            "train.extractor_model": "large-reflector",
            "train.dataset": str(dataset),
            "train.train_size": 4,
            "train.heldout_size": 2,
            "train.batch_size": 2,
            "train.group_size": 2,
            "train.max_tokens": 32,
        }
        summary = run_training(load_config(environ={}, overrides=overrides), tmp_path / "run")
    assert asked["solver"] and asked["extractor"]
    assert all(r.json_schema is None and "What is" in r.prompt for r in asked["solver"])  # only answering
    assert any('"lessons"' in json.dumps(r.json_schema) for r in asked["extractor"])  # only reflecting
    assert not any(r.json_schema is None and r.n > 1 for r in asked["extractor"])
    assert LESSON in summary["experiences"]
    spent = summary["solver_tokens"]  # the solver's side only: every request it served, none of the reflector's
    assert 0 < spent["chats"] <= len(asked["solver"]) and spent["prompt_tokens"] > 0 and spent["completion_tokens"] > 0
    # the claims page prices the run from these counts: solver and extractor tokens, in and out
    from dso.report import HOLDS, claims, cost_rows, load_results

    result = tmp_path / "learning-tiny.json"
    result.write_text(json.dumps({"train": summary}))
    (row,) = cost_rows(load_results([result]))
    extracted = summary["extraction"]["by_kind"].values()
    assert row["tokens in"] == spent["prompt_tokens"] + sum(k["prompt_tokens"] for k in extracted)
    assert row["tokens out"] == spent["completion_tokens"] + sum(k["completion_tokens"] for k in extracted)
    assert 0 < row["dollars"] < 0.01
    cost = next(c for c in claims(load_results([result])) if c.claim == "under $20 of compute per agent")
    assert cost.verdict == HOLDS and "counted every token" in cost.measured


def test_a_lesson_that_keeps_hurting_is_deleted_by_rule_in_its_batch(tmp_path: Path, embedder: Embedder) -> None:
    """Evidence, not the extractor, removes it: the deletion lands in the batch's transaction with its reason."""
    harmful = "When adding numbers, always add one more to be safe."
    config = load_config(environ={}, overrides={"train.batch_size": 2, "train.min_similarity": -1.0})
    library = ExperienceLibrary(tmp_path / "lib.db", embedder)
    library.add(harmful)
    (experience,) = library.all()
    library.apply([], evidence={experience.id: (1, 6, 0)})  # hurt in six earlier groups, helped in one
    (tmp_path / "rollouts").mkdir()

    def script(request: ScriptedRequest) -> str | list[str]:
        if request.json_schema:
            return scripted(request) if '"operations"' not in json.dumps(request.json_schema) else '{"operations": []}'
        asked = re.search(r"What is (\d+) \+ (\d+)", request.prompt)
        assert asked
        right = int(asked[1]) % 2 == 0  # even questions solved, odd ones failed: one group above the mean
        total = int(asked[1]) + int(asked[2])
        return [f"ANSWER: {total if right else total + 1}" for _ in range(request.n)]

    problems = [Problem(f"q{i}", f"What is {i} + 2?", str(i + 2), "sums") for i in (2, 3)]
    llm = ScriptedLLM(script)
    rows = train(
        config.train, tmp_path, problems, llm, Extractor(llm, library, contrast_batch=False), DefaultVerifier()
    )
    # in both groups of the batch, so the batch adds no evidence; (1 helped, 6 hurt): sign test p = 0.06 <= 0.1
    assert len(rows) == 1 and len(library) == 0
    deleted = [h for h in library.history(experience.id) if h.op == "DELETE"]
    assert len(deleted) == 1 and "pruned on evidence: hurt 6 times, helped 1" in deleted[0].detail["reason"]


def test_a_recorded_batch_is_extracted_again_with_the_settings_its_run_recorded(
    tmp_path: Path, endpoint: str, dataset: Path
) -> None:
    run_dir = tmp_path / "run"
    assert train_cli(endpoint, dataset, run_dir).returncode == 0
    saved = json.loads((run_dir / "config.json").read_text())
    assert load_run_config(run_dir).train.summarize_min_words == saved["summarize_min_words"]
    for key in ("summarize_min_words", "min_similarity"):  # a run recorded before these settings existed
        del saved[key]
    (run_dir / "config.json").write_text(json.dumps(saved))
    older = load_run_config(run_dir)
    assert older.train.summarize_min_words == 0 and older.train.min_similarity == -1.0
    assert older.train.dataset == saved["dataset"] and older.model == "scripted"

    env = {**os.environ, "DSO_LLM_BACKEND": "openai", "DSO_LLM_BASE_URL": endpoint, "DSO_LLM_RETRIES": "0"}
    command = [sys.executable, "-m", "dso", "bench", "extraction", str(run_dir), "e0-b1", "--json"]
    bench = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert bench.returncode == 0, bench.stderr
    result = json.loads(bench.stdout)
    assert result["groups"] == 2 and result["model"] == "scripted"
    assert all(calls > 0 for calls in result["llm_calls"].values())
    missing = subprocess.run([*command[:-2], "e9-b9"], capture_output=True, text=True, env=env, timeout=300)
    assert missing.returncode == 1 and missing.stderr.startswith("error: ") and "e9-b9" in missing.stderr


def careful(request: ScriptedRequest) -> str | list[str]:
    """A solver that answers right when its prompt tells it to double-check or carries the learned lesson."""
    asked = re.search(r"What is (\d+) \+ (\d+)", request.prompt)
    total = int(asked[1]) + int(asked[2]) if asked else 0
    right = "double-check" in request.prompt.lower() or LESSON in request.prompt
    return [f"ANSWER: {total if right else total + 1}" for _ in range(request.n)]


def test_eval_reports_the_bare_prompt_the_placebo_and_the_library(tmp_path: Path, endpoint: str, dataset: Path) -> None:
    """Three arms on the same questions; the library is paired against both. Here the placebo instruction
    alone gets every question right, so the lesson adds nothing beyond it, which the report says."""
    run_dir = tmp_path / "run"
    trained = train_cli(endpoint, dataset, run_dir, prune=False)
    assert trained.returncode == 0, trained.stderr
    with serve_openai(ScriptedLLM(careful)) as url:
        env = {**os.environ, "DSO_LLM_BACKEND": "openai", "DSO_LLM_BASE_URL": url, "DSO_LLM_RETRIES": "0"}
        result = subprocess.run(
            [sys.executable, "-m", "dso", "eval", "--run-dir", str(run_dir), "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    accuracy = {arm: row["accuracy"] for arm, row in report["arms"].items()}
    assert accuracy == {"baseline": 0.0, "placebo": 1.0, "library": 1.0}
    assert report["paired"]["fixed"] == 2 and report["paired_placebo"] == {"fixed": 0, "broken": 0, "p_value": 1.0}
    assert report["gain_over_placebo"] == 0.0 and "double-check" in report["placebo"].lower()
