"""The lesson gate: only lessons that solve more of their own batch are kept; the library is only read."""

from __future__ import annotations

from pathlib import Path

from dso.embed import Embedder
from dso.learn.datasets import Problem
from dso.learn.gate import gate
from dso.learn.rewards import DefaultVerifier
from dso.learn.solve import SolveSettings
from dso.library import ExperienceLibrary, Operation
from dso.llm.testing import ScriptedLLM, ScriptedRequest

HELPFUL = "When a brother's sisters are asked for, count the woman herself as well."
USELESS = "When reading a problem, read it carefully."

BATCH = [
    Problem(
        f"aiw-{i}", f"Alice has {n} sisters and 1 brother. How many sisters does her brother have?", str(n + 1), "aiw"
    )
    for i, n in enumerate([2, 3, 4])
]


def rule_follower() -> ScriptedLLM:
    """A deterministic solver for a pure-logic test: right exactly when the helpful rule is in its prompt."""

    def answer(request: ScriptedRequest) -> str:
        sisters = int(request.messages[1]["content"].split(" has ")[1].split()[0])
        return f"ANSWER: {sisters + 1 if 'count the woman herself' in request.messages[0]['content'] else sisters}"

    return ScriptedLLM(answer, name="rule-follower")


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
    solver = rule_follower()
    kept, report = gate(operations, library, BATCH, solver, DefaultVerifier(), SolveSettings(parallel=2))

    assert [o.text for o in kept] == [HELPFUL, None]  # the helpful ADD, and the DELETE passes
    assert kept[1].op == "DELETE" and kept[1].target == stale.experience.id
    assert report.questions == 3 and report.baseline == 0.0
    assert [(t.op, t.score, t.kept) for t in report.trials] == [
        ("ADD", 0.0, False),
        ("ADD", 3.0, True),
        ("UPDATE", 0.0, False),
    ]
    assert len(solver.requests) == 3 * 4  # one greedy pass without, one per candidate
    assert [(e.id, e.text) for e in library.all()] == before  # trials ran on copies


def test_gate_calls_nothing_without_candidates(tmp_path: Path, embedder: Embedder) -> None:
    library = ExperienceLibrary(tmp_path / "lib.db", embedder)
    stale = library.add("When asked about a brother, answer with the number of brothers.")
    solver = rule_follower()
    operations = [Operation("DELETE", target=stale.experience.id)]
    kept, report = gate(operations, library, BATCH, solver, DefaultVerifier(), SolveSettings())
    assert kept == operations and report.trials == [] and solver.requests == []


def test_a_candidate_is_dropped_as_soon_as_its_result_can_no_longer_pass(tmp_path: Path, embedder: Embedder) -> None:
    """Greedy answers make stopping early exact: the decision is the one all questions would give."""
    misleading = "When a woman's sisters are counted, never count the woman herself."
    questions = [
        Problem(
            f"aiw-{n}",
            f"Alice has {n} sisters and 1 brother. How many sisters does her brother have?",
            str(n + 1),
            "aiw",
        )
        for n in range(2, 10)
    ]

    def answer(request: ScriptedRequest) -> str:
        sisters = int(request.messages[1]["content"].split(" has ")[1].split()[0])
        system = request.messages[0]["content"]
        right = "count the woman herself as well" in system or (sisters % 2 == 0 and "never count" not in system)
        return f"ANSWER: {sisters + 1 if right else sisters}"

    solver = ScriptedLLM(answer, name="half-right")
    library = ExperienceLibrary(tmp_path / "lib.db", embedder)
    operations = [Operation("ADD", misleading, domain="aiw"), Operation("ADD", HELPFUL, domain="aiw")]
    settings = SolveSettings(parallel=2, min_similarity=-1.0)
    kept, report = gate(operations, library, questions, solver, DefaultVerifier(), settings, max_p=0.1)
    assert [o.text for o in kept] == [HELPFUL] and report.baseline == 4.0
    first, second = report.trials
    # the misleading lesson fixed none of the first two it could fix: 2 left can never reach p <= 0.1 (4 of 4 needed)
    assert (first.asked, first.fixed, first.kept) == (2, 0, False)
    assert (second.asked, second.fixed, second.broken, second.kept) == (8, 4, 0, True) and second.p_value == 0.0625
    assert len(solver.requests) == 8 + 2 + 8
