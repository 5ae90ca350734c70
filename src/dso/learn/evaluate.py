"""Held-out evaluation: accuracy with and without the library, its 95% interval, and token cost.

Also DSO's "Hamiltonian" figures, measured rather than assumed: library size Psi and Theta, the
mean inference tokens (prompt + completion) spent per solved problem, so Psi * Theta ~ const can be
checked across runs.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dso.learn.datasets import Problem
from dso.learn.extract import Rollout
from dso.learn.rewards import Verifier, marked_answer
from dso.learn.solve import SolveSettings, solve
from dso.library import ExperienceLibrary
from dso.llm import LLM


@dataclasses.dataclass(frozen=True)
class EvalResult:
    arm: str
    questions: int
    samples: int
    accuracy: float  # Mean@k: per question, the mean reward of its k samples; then the mean
    ci95_low: float
    ci95_high: float
    prompt_tokens_per_question: float
    completion_tokens_per_question: float
    truncated_fraction: float  # samples that hit max_tokens
    marked_fraction: float  # samples that mark their answer (an "ANSWER:" line, \\boxed{}, "####"): see `marked_answer`
    library_size: int  # Psi
    tokens_per_solved: float | None  # Theta

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def confidence_interval(scores: Sequence[float]) -> tuple[float, float]:
    """95% interval of the mean: Wilson for 0/1 scores, normal approximation otherwise."""
    n = len(scores)
    if n == 0:
        return 0.0, 0.0
    mean = statistics.fmean(scores)
    if all(s in (0.0, 1.0) for s in scores):
        z = 1.96
        centre = (mean + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(mean * (1 - mean) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return max(0.0, centre - half), min(1.0, centre + half)
    half = 1.96 * statistics.stdev(scores) / math.sqrt(n) if n > 1 else 0.0
    return max(0.0, mean - half), min(1.0, mean + half)


def summarise(arm: str, rollouts: dict[str, list[Rollout]], library_size: int) -> EvalResult:
    groups = list(rollouts.values())
    per_question = [statistics.fmean(r.reward for r in group) for group in groups]
    flat = [r for group in groups for r in group]
    low, high = confidence_interval(per_question)
    spent = sum(r.prompt_tokens + r.completion_tokens for r in flat)
    solved = sum(r.reward for r in flat)
    return EvalResult(
        arm=arm,
        questions=len(groups),
        samples=len(flat) // max(1, len(groups)),
        accuracy=statistics.fmean(per_question) if per_question else 0.0,
        ci95_low=low,
        ci95_high=high,
        prompt_tokens_per_question=sum(r.prompt_tokens for r in flat) / max(1, len(groups)),
        completion_tokens_per_question=sum(r.completion_tokens for r in flat) / max(1, len(groups)),
        truncated_fraction=sum(r.finish_reason == "length" for r in flat) / max(1, len(flat)),
        marked_fraction=sum(marked_answer(r.response) is not None for r in flat) / max(1, len(flat)),
        library_size=library_size,
        tokens_per_solved=spent / solved if solved else None,
    )


def evaluate(
    problems: Sequence[Problem],
    solver: LLM,
    verifier: Verifier,
    settings: SolveSettings,
    library: ExperienceLibrary | None,
    *,
    arm: str,
    on_done: Callable[[Problem, list[Rollout]], None] | None = None,
) -> tuple[EvalResult, dict[str, list[Rollout]]]:
    rollouts = solve(problems, solver, verifier, settings, library, on_done=on_done)
    return summarise(arm, rollouts, len(library) if library is not None else 0), rollouts


@dataclasses.dataclass(frozen=True)
class PairedComparison:
    """Both arms answer the same questions, so the questions whose score changed carry the evidence."""

    fixed: int  # questions scored higher with the library
    broken: int  # questions scored lower with the library
    p_value: float  # exact two-sided sign test on the changed questions (McNemar's exact test for 0/1)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def question_score(group: list[Rollout]) -> float:
    """One question's score in one arm: the mean reward of its samples (Mean@k)."""
    return statistics.fmean(r.reward for r in group)


def changed_questions(baseline: dict[str, list[Rollout]], library: dict[str, list[Rollout]]) -> dict[str, str]:
    """Each question both arms answered whose score changed: "fixed" (higher with the library) or "broken"."""
    changed = {}
    for problem_id in sorted(baseline.keys() & library.keys()):
        before, after = question_score(baseline[problem_id]), question_score(library[problem_id])
        if before != after:
            changed[problem_id] = "fixed" if after > before else "broken"
    return changed


def paired_comparison(baseline: dict[str, list[Rollout]], library: dict[str, list[Rollout]]) -> PairedComparison:
    kinds = list(changed_questions(baseline, library).values())
    return _sign_test(kinds.count("fixed"), kinds.count("broken"))


def paired_scores(baseline: Mapping[str, float], arm: Mapping[str, float]) -> PairedComparison:
    """The same test on per-question scores already kept (an experiment's cells), over the questions both have."""
    shared = sorted(baseline.keys() & arm.keys())
    fixed = sum(arm[q] > baseline[q] for q in shared)
    return _sign_test(fixed, sum(arm[q] < baseline[q] for q in shared))


def _sign_test(fixed: int, broken: int) -> PairedComparison:
    changed = fixed + broken
    tail = sum(math.comb(changed, i) for i in range(min(fixed, broken) + 1)) / 2**changed
    return PairedComparison(fixed, broken, min(1.0, 2 * tail))


@dataclasses.dataclass(frozen=True)
class ConstantAnswer:
    """The floor a degenerate solver reaches: one reply, the held-out set's commonest answer, to every question.

    On a task whose answers are mostly one word ("Yes" on 71 of 100 syllogism questions), a library that
    makes the solver answer that word every time gains as much as one that teaches the task; an arm at or
    near this floor has learned the answer format and the majority, not the task."""

    answer: str
    accuracy: float

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def answer_key(answer: str) -> str:
    """An answer as the constant-answer floor counts it: case and spacing ignored."""
    return " ".join(answer.lower().split())


def constant_answer(problems: Sequence[Problem]) -> ConstantAnswer | None:
    """The commonest answer and its share of `problems` (answers compared as written, case ignored)."""
    if not problems:
        return None
    counts = Counter(answer_key(p.answer) for p in problems)
    answer, count = counts.most_common(1)[0]
    return ConstantAnswer(answer, count / len(problems))
