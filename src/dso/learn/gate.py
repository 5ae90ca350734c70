"""The lesson gate: a proposed lesson enters the library only if it helps on the batch it came from.

A small extractor writes lessons that are generic, tied to one training problem or plainly wrong, and
on held-out questions such lessons cost accuracy (see the README's measured results). With
``train.gate_lessons`` every ADD and UPDATE of a batch is tried on its own before the batch is applied:
the batch's questions are answered greedily with the library as it stands, and again with that one
operation applied to a copy of it; the operation is kept only if it solves strictly more of them.
DELETEs pass unchanged. Only the batch's training questions are used, never the held-out split. The
cost is one greedy pass over the batch, plus one per candidate.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dso.learn.datasets import Problem
from dso.learn.rewards import Verifier
from dso.learn.solve import SolveSettings, solve
from dso.library import ExperienceLibrary, Operation
from dso.llm import LLM


@dataclasses.dataclass(frozen=True)
class GateTrial:
    op: str
    text: str
    target: str | None
    score: float  # questions of the batch solved with this operation applied
    kept: bool


@dataclasses.dataclass(frozen=True)
class GateReport:
    questions: int
    baseline: float  # questions of the batch solved with the library as it stands
    trials: list[GateTrial]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _score(
    batch: Sequence[Problem], solver: LLM, verifier: Verifier, settings: SolveSettings, library: ExperienceLibrary
) -> float:
    rollouts = solve(batch, solver, verifier, settings, library)
    return sum(r.reward for group in rollouts.values() for r in group)


def gate(
    operations: Sequence[Operation],
    library: ExperienceLibrary,
    batch: Sequence[Problem],
    solver: LLM,
    verifier: Verifier,
    settings: SolveSettings,
) -> tuple[list[Operation], GateReport]:
    """The operations worth applying, and what each candidate scored; `library` itself is only read."""
    candidates = [(i, o) for i, o in enumerate(operations) if o.op in ("ADD", "UPDATE")]
    if not candidates:
        return list(operations), GateReport(len(batch), 0.0, [])
    baseline = _score(batch, solver, verifier, settings, library)
    dropped: set[int] = set()
    trials: list[GateTrial] = []
    with tempfile.TemporaryDirectory(prefix="dso-gate-") as scratch:
        for index, operation in candidates:
            trial = library.copy_to(Path(scratch) / f"trial-{index}.db")
            try:
                trial.apply([operation])
                score = _score(batch, solver, verifier, settings, trial)
            finally:
                trial.close()
            kept = score > baseline
            if not kept:
                dropped.add(index)
            trials.append(GateTrial(operation.op, operation.text or "", operation.target, score, kept))
    return [o for i, o in enumerate(operations) if i not in dropped], GateReport(len(batch), baseline, trials)
