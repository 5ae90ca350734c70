"""The lesson gate: a proposed lesson enters the library only if it measurably helps on validation questions.

A small extractor writes lessons that are generic, tied to one training problem or plainly wrong, and on
held-out questions such lessons cost accuracy (docs/journal/). With ``train.gate_lessons`` every ADD and
UPDATE of a batch is tried before the batch is applied: the validation questions (``train.validation_size``,
apart from train and held-out) are answered greedily with the library as it stands, and again with one
operation applied to a copy of it. Question by question, the operation fixes some and breaks others; it is
kept only if it fixes more than it breaks and a one-sided sign test puts that at p <= ``train.gate_p``, so one
lucky question cannot carry it, and only if it breaks no more than it fixes among the questions whose answer
is not the commonest one: on a task whose answer is mostly "Yes", a lesson that makes the solver reply "Yes"
to everything passes the sign test on the majority alone. Candidates are tried one after the other on top of
those already kept in the same batch, each against what the library with them scores: lessons that each help
alone can fail together (several lessons that all make the solver write its work out do not add up), and what
is kept must be a library that helps, not a set of lessons that each did. DELETEs pass unchanged. With no
validation questions the batch's own questions are used (the older, weaker gate). The held-out split is never
used. The cost is one greedy pass over the questions, plus at most one per candidate (a kept candidate's
answers are the next one's baseline): a candidate is tried first on the questions it could fix (those the
library gets wrong), a few at a time, and dropped as soon as its result can no longer pass, whatever the
questions left would show. Answers are greedy, so this stops early without changing any decision; most
candidates fail, and most of the cost goes.

A node's trial of strangers' lessons (`dso.node.trial`) judges a candidate over several looks, each on fresh
questions: it passes each candidate's counts from earlier looks as `prior`, which the sign test and the early
stop add to this look's, and asks `finish` for the counts it will carry on: a candidate whose counts still
favour it is then asked every question, even when this look can no longer keep it, because counts taken only
on the questions it could fix would carry fixes and hide the breaks.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dso.learn.datasets import Problem
from dso.learn.evaluate import answer_key, constant_answer, question_score
from dso.learn.evidence import sign_test
from dso.learn.extract import Rollout
from dso.learn.rewards import Verifier
from dso.learn.solve import SolveSettings, solve
from dso.library import ExperienceLibrary, Operation
from dso.llm import LLM


@dataclasses.dataclass(frozen=True)
class Tally:
    """A candidate's paired counts from questions asked before (earlier looks of a trial)."""

    fixed: int = 0
    broken: int = 0
    asked: int = 0
    minority_fixed: int = 0
    minority_broken: int = 0


@dataclasses.dataclass(frozen=True)
class GateTrial:
    op: str
    text: str
    target: str | None
    against: float  # questions solved without it: the library plus the batch's candidates kept before it
    score: float  # questions solved with this operation applied, of those it was tried on
    asked: int  # questions it was tried on (fewer than all when its result could no longer pass)
    fixed: int  # questions it turned from wrong to right
    broken: int  # and from right to wrong
    p_value: float  # one-sided sign test of fixed against broken, counts of earlier looks (`prior`) included
    kept: bool
    # among the questions whose answer is not the validation set's commonest one: a lesson that wins only by
    # making the solver give the majority answer everywhere fixes majority questions and breaks these
    minority_fixed: int = 0
    minority_broken: int = 0


@dataclasses.dataclass(frozen=True)
class GateReport:
    questions: int
    baseline: float  # questions solved with the library as it stands
    trials: list[GateTrial]
    source: str = "validation"  # which questions: "validation" or "batch"
    kept_score: float = 0.0  # questions solved with every kept candidate applied (baseline when none is)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _scores(
    questions: Sequence[Problem],
    solver: LLM,
    verifier: Verifier,
    settings: SolveSettings,
    library: ExperienceLibrary,
) -> dict[str, float]:
    rollouts = solve(questions, solver, verifier, settings, library)
    return {problem_id: question_score(group) for problem_id, group in rollouts.items()}


def can_pass(fixed: int, broken: int, still_fixable: int, max_p: float) -> bool:
    """Whether a candidate at `fixed` / `broken` could still be kept if every question left it could fix
    were fixed (broken counts only grow, and the sign test only worsens with them)."""
    best = fixed + still_fixable
    return best > broken and sign_test(best, broken) <= max_p


def _try(
    questions: Sequence[Problem],
    baseline: dict[str, float],
    solver: LLM,
    verifier: Verifier,
    settings: SolveSettings,
    trial: ExperienceLibrary,
    max_p: float,
    prior: Tally,
    finish: bool,
) -> tuple[dict[str, float], int, int]:
    """Scores of one candidate, questions it could fix first, judged every `settings.parallel` answers (in
    order, whatever their timing, so the questions asked do not depend on it); stops when it can no longer
    pass (counting `prior`), unless `finish` and its counts still favour it. Returns the scores, fixed and
    broken of this look."""
    order = sorted(questions, key=lambda q: baseline[q.id] >= 1)  # stable: fixable first, in their order
    chunk = max(1, settings.parallel)
    scores: dict[str, float] = {}
    counts = [0, 0]  # fixed, broken

    def go_on(problem: Problem, rollouts: list[Rollout]) -> bool:
        score = question_score(rollouts)
        scores[problem.id] = score
        counts[0] += score > baseline[problem.id]
        counts[1] += score < baseline[problem.id]
        if len(scores) % chunk:
            return True
        still_fixable = sum(baseline[q.id] < 1 for q in order[len(scores) :])
        total_fixed, total_broken = prior.fixed + counts[0], prior.broken + counts[1]
        return can_pass(total_fixed, total_broken, still_fixable, max_p) or (finish and total_fixed > total_broken)

    solve(order, solver, verifier, settings, trial, until=go_on)
    return scores, counts[0], counts[1]


def gate(
    operations: Sequence[Operation],
    library: ExperienceLibrary,
    questions: Sequence[Problem],
    solver: LLM,
    verifier: Verifier,
    settings: SolveSettings,
    *,
    max_p: float = 1.0,
    source: str = "validation",
    prior: Sequence[Tally] | None = None,
    finish: bool = False,
) -> tuple[list[Operation], GateReport]:
    """The operations worth applying, and what each candidate scored; `library` itself is only read.

    Candidates are judged in their order, each on top of those kept before it; `prior` (one per operation)
    holds counts each earned before, which its decision adds to this look's; `finish` asks every question of
    a candidate whose counts still favour it (see the module's docstring)."""
    if prior is not None and len(prior) != len(operations):
        raise ValueError("give one prior tally per operation")
    candidates = [(i, o) for i, o in enumerate(operations) if o.op in ("ADD", "UPDATE")]
    if not candidates or not questions:
        return list(operations), GateReport(len(questions), 0.0, [], source)
    baseline = _scores(questions, solver, verifier, settings, library)
    start = sum(baseline.values())
    majority = constant_answer(questions)
    minority = {q.id for q in questions if majority is None or answer_key(q.answer) != majority.answer}
    dropped: set[int] = set()
    trials: list[GateTrial] = []
    with tempfile.TemporaryDirectory(prefix="dso-gate-") as scratch:
        accepted = library.copy_to(Path(scratch) / "accepted.db")  # the library with the candidates kept so far
        try:
            for index, operation in candidates:
                trial = accepted.copy_to(Path(scratch) / f"trial-{index}.db")
                try:
                    trial.apply([operation])
                    before = prior[index] if prior is not None else Tally()
                    scores, fixed, broken = _try(
                        questions, baseline, solver, verifier, settings, trial, max_p, before, finish
                    )
                finally:
                    trial.close()
                total_fixed, total_broken = before.fixed + fixed, before.broken + broken
                p_value = sign_test(total_fixed, total_broken)
                asked_minority = minority & scores.keys()
                minority_fixed = sum(scores[q] > baseline[q] for q in asked_minority)
                minority_broken = sum(scores[q] < baseline[q] for q in asked_minority)
                kept = (
                    total_fixed > total_broken
                    and p_value <= max_p
                    and before.minority_broken + minority_broken <= before.minority_fixed + minority_fixed
                )
                trials.append(
                    GateTrial(
                        operation.op,
                        operation.text or "",
                        operation.target,
                        sum(baseline.values()),
                        sum(scores.values()),
                        len(scores),
                        fixed,
                        broken,
                        round(p_value, 4),
                        kept,
                        minority_fixed,
                        minority_broken,
                    )
                )
                if not kept:
                    dropped.add(index)
                    continue
                accepted.apply([operation])
                # a kept candidate was asked every question (an early stop means it could no longer pass)
                baseline = {**baseline, **scores}
        finally:
            accepted.close()
    report = GateReport(len(questions), start, trials, source, sum(baseline.values()))
    return [o for i, o in enumerate(operations) if i not in dropped], report
