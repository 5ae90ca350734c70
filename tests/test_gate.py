"""The lesson gate: only lessons that solve more of their own batch are kept; the library is only read."""

from __future__ import annotations

from pathlib import Path

from dso.embed import Embedder
from dso.learn.datasets import Problem
from dso.learn.gate import gate
from dso.learn.rewards import DefaultVerifier
from dso.learn.solve import SolveSettings
from dso.library import ExperienceLibrary, Operation
from dso.llm.base import Completion

HELPFUL = "When a brother's sisters are asked for, count the woman herself as well."
USELESS = "When reading a problem, read it carefully."

BATCH = [
    Problem(
        f"aiw-{i}", f"Alice has {n} sisters and 1 brother. How many sisters does her brother have?", str(n + 1), "aiw"
    )
    for i, n in enumerate([2, 3, 4])
]


class RuleFollower:
    """A deterministic solver for a pure-logic test: right exactly when the helpful rule is in its prompt."""

    name = "rule-follower"

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def chat(self, messages: list[dict[str, str]], **kwargs: object) -> Completion:
        system, question = messages[0]["content"], messages[1]["content"]
        self.prompts.append(system)
        sisters = int(question.split(" has ")[1].split()[0])
        answer = sisters + 1 if "count the woman herself" in system else sisters
        return Completion([f"ANSWER: {answer}"], 10, 3, ["stop"], 0.0)

    def close(self) -> None:
        pass


def test_gate_keeps_only_lessons_that_solve_more(tmp_path: Path, embedder: Embedder) -> None:
    library = ExperienceLibrary(tmp_path / "lib.db", embedder)
    old = library.add("When counting siblings, list every person named.", domain="aiw")
    stale = library.add("When asked about a brother, answer with the number of brothers.", domain="aiw")
    before = [(e.id, e.text) for e in library.all()]
    operations = [
        Operation("ADD", USELESS, domain="aiw"),
        Operation("ADD", HELPFUL, domain="aiw"),
        Operation("UPDATE", USELESS.replace("reading", "solving"), target=old.experience.id, domain="aiw"),
        Operation("DELETE", target=stale.experience.id, domain="aiw"),
    ]
    solver = RuleFollower()
    kept, report = gate(operations, library, BATCH, solver, DefaultVerifier(), SolveSettings(parallel=2))  # type: ignore[arg-type]

    assert [o.text for o in kept] == [HELPFUL, None]  # the helpful ADD, and the DELETE passes
    assert kept[1].op == "DELETE" and kept[1].target == stale.experience.id
    assert report.questions == 3 and report.baseline == 0.0
    assert [(t.op, t.score, t.kept) for t in report.trials] == [
        ("ADD", 0.0, False),
        ("ADD", 3.0, True),
        ("UPDATE", 0.0, False),
    ]
    assert len(solver.prompts) == 3 * 4  # one greedy pass without, one per candidate
    assert [(e.id, e.text) for e in library.all()] == before  # trials ran on copies


def test_gate_calls_nothing_without_candidates(tmp_path: Path, embedder: Embedder) -> None:
    library = ExperienceLibrary(tmp_path / "lib.db", embedder)
    stale = library.add("When asked about a brother, answer with the number of brothers.")
    solver = RuleFollower()
    operations = [Operation("DELETE", target=stale.experience.id)]
    kept, report = gate(operations, library, BATCH, solver, DefaultVerifier(), SolveSettings())  # type: ignore[arg-type]
    assert kept == operations and report.trials == [] and solver.prompts == []
