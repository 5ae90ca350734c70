"""How similar a question is to the lessons of its own task and to those of other tasks: the measurement
behind `train.min_similarity`, the cosine below which an experience is not injected.

The lessons are the committed pool (`dso/data/replay_pool.json`: lessons learned here on several tasks);
the questions are drawn from each task with a seed no learning run used. For every threshold the bench
retrieves the top k lessons of the whole pool for every question and counts how many were injected and
how many of those came from the question's own task. The chosen threshold is the lowest at which at least
`target` of the injected lessons are on task: the point where lessons stop leaking across tasks.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from dso.bench.common import stamp
from dso.config import DSOConfig
from dso.embed import make_embedder
from dso.embed.base import Embedder
from dso.learn.datasets import train_heldout_split
from dso.learn.evaluate import evaluate, paired_comparison
from dso.learn.rewards import DefaultVerifier
from dso.learn.solve import SolveSettings
from dso.library import ExperienceLibrary
from dso.llm import make_llm

THRESHOLDS = [round(0.05 * i, 2) for i in range(0, 13)]


def pool_lessons() -> list[dict[str, str]]:
    data = json.loads(resources.files("dso").joinpath("data/replay_pool.json").read_text(encoding="utf-8"))
    return [row for row in data["experiences"] if isinstance(row, dict)]


def run_relevance_bench(
    embedder: Embedder, *, questions: int = 50, seed: int = 9173, k: int = 5, target: float = 0.9
) -> dict[str, Any]:
    lessons = pool_lessons()
    tasks = sorted({row["domain"] for row in lessons})
    lesson_vectors = embedder.embed([row["text"] for row in lessons])
    lesson_tasks = np.array([row["domain"] for row in lessons])
    rows = []
    per_task: dict[str, Any] = {}
    sims_same, sims_other = [], []
    scores_by_task = {}
    for task in tasks:
        _, drawn = train_heldout_split(task, 0, questions, seed=seed)
        scores = embedder.embed([p.question for p in drawn]) @ lesson_vectors.T
        scores_by_task[task] = scores
        same = lesson_tasks == task
        sims_same += scores[:, same].ravel().tolist()
        sims_other += scores[:, ~same].ravel().tolist()
        per_task[task] = {
            "same_task_median": round(float(np.median(scores[:, same])), 3),
            "other_task_median": round(float(np.median(scores[:, ~same])), 3),
        }
    for threshold in THRESHOLDS:
        injected = on_task = 0
        for task, scores in scores_by_task.items():
            for row in scores:
                top = [i for i in np.argsort(-row)[:k] if row[i] >= threshold]
                injected += len(top)
                on_task += sum(lesson_tasks[i] == task for i in top)
        total = len(tasks) * questions
        rows.append(
            {
                "threshold": threshold,
                "injected_per_question": round(injected / total, 3),
                "on_task_share": round(on_task / injected, 3) if injected else None,
                "on_task_per_question": round(on_task / total, 3),
            }
        )
    chosen = next((r["threshold"] for r in rows if (r["on_task_share"] or 0) >= target), None)
    return stamp(
        {
            "lessons": len(lessons),
            "tasks": tasks,
            "questions_per_task": questions,
            "seed": seed,
            "k": k,
            "target_on_task_share": target,
            "chosen_threshold": chosen,
            "similarity": {
                "same_task_median": round(float(np.median(sims_same)), 3),
                "other_task_median": round(float(np.median(sims_other)), 3),
                "per_task": per_task,
            },
            "thresholds": rows,
        },
        f"dso bench relevance --questions {questions} --seed {seed} -o bench/results/relevance.json",
    )


def run_threshold_eval(
    config: DSOConfig, learning_result: Path, threshold: float, *, log: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """How much of a learned library's harm came from experiences injected below `threshold`.

    The library is the one a committed learning run ended with (`bench/results/learning-*.json`); its
    held-out questions, seed, token budget, top k and solver prompt are the run's (v1 for runs that
    predate the recorded prompt versions). Three arms on the same questions,
    greedy, in one run: no experiences, the library as the run used it (top k whatever the similarity),
    and the library cut at `threshold`."""
    from dso.core.untrusted import load_json
    from dso.errors import ConfigError, DSOError
    from dso.files import read_input
    from dso.learn.prompts import load_prompt

    saved = load_json(read_input(learning_result, DSOError), DSOError, str(learning_result))
    try:
        run, listed = saved["train"]["config"], saved["train"]["experiences"]
        if not isinstance(listed, list) or not all(isinstance(t, str) for t in listed):
            raise TypeError("experiences must be a list of texts")
        texts = list(listed)
        dataset, heldout_size, seed = str(run["dataset"]), int(run["heldout_size"]), int(run["seed"])
        max_tokens, top_k = int(run["max_tokens"]), int(run["top_k"])
        prompts = run.get("prompts", {})  # runs before prompt versions were recorded used solver v1
        if not isinstance(prompts, dict):
            raise TypeError("prompts must be a table of template versions")
        solver_prompt = int(prompts.get("solver", 1))
    except (KeyError, TypeError, ValueError) as exc:
        raise DSOError(f"{learning_result} is not a learning result written by bench/learning.sh: {exc}") from None
    bounds = {
        "heldout_size": (heldout_size, 1, 10_000),
        "max_tokens": (max_tokens, 1, 32_768),
        "top_k": (top_k, 0, 50),
        "prompts.solver": (solver_prompt, 1, 99),
    }
    for key, (value, low, high) in bounds.items():
        if not low <= value <= high:
            raise DSOError(f"{learning_result}: {key} {value} lies outside [{low}, {high}]")
    try:
        load_prompt("solver", solver_prompt)
    except ConfigError as exc:
        raise DSOError(f"{learning_result}: {exc}") from None
    if not texts or len(texts) > 10_000:
        raise DSOError(f"{learning_result}: a library of 1 to 10,000 experiences is needed, got {len(texts)}")
    _, heldout = train_heldout_split(dataset, 0, heldout_size, seed=seed)
    solver, verifier = make_llm(config), DefaultVerifier()
    arms: dict[str, Any] = {}
    answers: dict[str, dict[str, list[Any]]] = {}
    injected: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory() as home, ExperienceLibrary(Path(home) / "run.db", make_embedder()) as lib:
            for text in texts:  # unlabelled: a lesson of the question's own task would pass any cut
                lib.add(text)
            for arm, library, cut in (
                ("baseline", None, -1.0),
                ("library", lib, -1.0),
                ("thresholded", lib, threshold),
            ):
                settings = SolveSettings(
                    max_tokens=max_tokens,
                    top_k=top_k,
                    min_similarity=cut,
                    seed=seed + 1,
                    parallel=config.llm.parallel,
                    prompt_version=solver_prompt,
                )
                if log:
                    log(f"{arm}: {len(heldout)} questions")
                result, rollouts = evaluate(heldout, solver, verifier, settings, library, arm=arm)
                arms[arm], answers[arm] = result.to_json(), rollouts
                injected[arm] = sum(len(g[0].experiences) for g in rollouts.values() if g) / max(1, len(rollouts))
    finally:
        solver.close()
    pairs = {
        f"{b} vs {a}": paired_comparison(answers[a], answers[b]).to_json()
        for a, b in (("baseline", "library"), ("baseline", "thresholded"), ("library", "thresholded"))
    }
    harm = arms["baseline"]["accuracy"] - arms["library"]["accuracy"]
    recovered = arms["thresholded"]["accuracy"] - arms["library"]["accuracy"]
    return stamp(
        {
            "dataset": dataset,
            "model": config.llm.model,
            "heldout": len(heldout),
            "seed": seed,
            "max_tokens": max_tokens,
            "top_k": top_k,
            "solver_prompt": solver_prompt,
            "threshold": threshold,
            "experiences": texts,
            "arms": arms,
            "experiences_per_question": {k: round(v, 3) for k, v in injected.items()},
            "paired": pairs,
            "harm": round(harm, 4),
            "harm_recovered_share": round(recovered / harm, 3) if harm > 0 else None,
        },
        f"dso bench relevance --eval {learning_result} --threshold {threshold:g}",
    )
