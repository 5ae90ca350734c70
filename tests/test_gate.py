"""The lesson gate: only lessons that solve more of their own batch are kept; the library is only read."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from rich.progress import Progress

from dso.cli.common import Bars
from dso.embed import Embedder
from dso.learn.datasets import Problem
from dso.learn.gate import GateReport, GateTrial, gate
from dso.learn.rewards import DefaultVerifier
from dso.learn.solve import SolveSettings
from dso.learn.trainer import BatchMetrics
from dso.library import ExperienceLibrary, Operation
from dso.llm.testing import ScriptedLLM, ScriptedRequest

HELPFUL = "When a brother's sisters are asked for, count the woman herself as well."
USELESS = "When reading a problem, read it carefully."


def sisters_questions(counts: Iterable[int]) -> list[Problem]:
    return [
        Problem(
            f"aiw-{n}",
            f"Alice has {n} sisters and 1 brother. How many sisters does her brother have?",
            str(n + 1),
            "aiw",
        )
        for n in counts
    ]


BATCH = sisters_questions([2, 3, 4])


def sisters_solver(name: str, right: Callable[[int, str], bool]) -> ScriptedLLM:
    """A deterministic solver for a pure-logic test: right(sisters, prompt) says whether it answers right, the
    prompt being every message, wherever the solver template puts the experiences."""

    def answer(request: ScriptedRequest) -> str:
        sisters = int(request.messages[1]["content"].split(" has ")[1].split()[0])
        return f"ANSWER: {sisters + 1 if right(sisters, request.prompt) else sisters}"

    return ScriptedLLM(answer, name=name)


def rule_follower() -> ScriptedLLM:
    """Right exactly when the helpful rule is in its prompt."""
    return sisters_solver("rule-follower", lambda _, prompt: "count the woman herself" in prompt)


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
    assert [(t.op, t.against, t.score, t.asked, t.kept) for t in report.trials] == [
        ("ADD", 0.0, 0.0, 3, False),
        ("ADD", 0.0, 3.0, 3, True),
        ("UPDATE", 3.0, 2.0, 2, False),  # on top of the kept lesson nothing is left to fix: dropped after 2
    ]
    assert report.kept_score == 3.0
    # one greedy pass without, at most one per candidate; a stopped candidate's answers already in flight (at
    # most the 2 slots) are answered and dropped, so they change nothing above
    assert 3 * 3 + 2 <= len(solver.requests) <= 3 * 3 + 2 + 2
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
    questions = sisters_questions(range(2, 10))
    solver = sisters_solver(
        "half-right",
        lambda n, prompt: "count the woman herself as well" in prompt or (n % 2 == 0 and "never count" not in prompt),
    )
    library = ExperienceLibrary(tmp_path / "lib.db", embedder)
    operations = [Operation("ADD", misleading, domain="aiw"), Operation("ADD", HELPFUL, domain="aiw")]
    settings = SolveSettings(parallel=2, min_similarity=-1.0)
    kept, report = gate(operations, library, questions, solver, DefaultVerifier(), settings, max_p=0.1)
    assert [o.text for o in kept] == [HELPFUL] and report.baseline == 4.0
    first, second = report.trials
    # the misleading lesson fixed none of the first two it could fix: 2 left can never reach p <= 0.1 (4 of 4 needed)
    assert (first.asked, first.fixed, first.kept) == (2, 0, False)
    assert (second.asked, second.fixed, second.broken, second.kept) == (8, 4, 0, True) and second.p_value == 0.0625
    assert 8 + 2 + 8 <= len(solver.requests) <= 8 + 2 + 8 + 2  # and at most the slots' answers in flight


SHOW_WORK = "When counting sisters, write every sister's name out before answering."
NAME_HERSELF = "When a brother's sisters are asked for, name the woman herself among them."
ODD_RULE = "When the number of sisters is odd, count the woman herself as well."


def test_each_candidate_is_judged_on_top_of_those_kept_before_it(tmp_path: Path, embedder: Embedder) -> None:
    """Two lessons that each fix every question, but break them together: only the first is kept."""
    solver = sisters_solver(
        "one-lesson-at-a-time",
        lambda _, prompt: ("write every sister's name" in prompt) != ("name the woman herself" in prompt),
    )
    library = ExperienceLibrary(tmp_path / "lib.db", embedder)
    operations = [Operation("ADD", SHOW_WORK, domain="aiw"), Operation("ADD", NAME_HERSELF, domain="aiw")]
    settings = SolveSettings(parallel=3, min_similarity=-1.0)
    kept, report = gate(operations, library, BATCH, solver, DefaultVerifier(), settings)

    assert [o.text for o in kept] == [SHOW_WORK]
    first, second = report.trials
    assert (first.against, first.score, first.fixed, first.broken, first.kept) == (0.0, 3.0, 3, 0, True)
    # alone, the second fixes all three too; on top of the first it breaks all three
    assert (second.against, second.score, second.fixed, second.broken, second.kept) == (3.0, 0.0, 0, 3, False)
    assert (report.baseline, report.kept_score) == (0.0, 3.0)
    assert len(library) == 0  # the library itself is only read
    alone, _ = gate(operations[1:], library, BATCH, solver, DefaultVerifier(), settings)
    assert [o.text for o in alone] == [NAME_HERSELF]


def test_lessons_that_add_up_are_all_kept(tmp_path: Path, embedder: Embedder) -> None:
    """The second lesson fixes what the first left wrong; it is judged against the first's answers."""
    questions = sisters_questions(range(2, 10))
    solver = sisters_solver(
        "half-rules",
        lambda n, prompt: (
            ("name the woman herself" in prompt and n % 2 == 0) or ("number of sisters is odd" in prompt and n % 2 == 1)
        ),
    )
    library = ExperienceLibrary(tmp_path / "lib.db", embedder)
    operations = [Operation("ADD", NAME_HERSELF, domain="aiw"), Operation("ADD", ODD_RULE, domain="aiw")]
    settings = SolveSettings(parallel=4, min_similarity=-1.0)
    kept, report = gate(operations, library, questions, solver, DefaultVerifier(), settings, max_p=0.1)

    assert [o.text for o in kept] == [NAME_HERSELF, ODD_RULE]
    first, second = report.trials
    assert (first.against, first.score, first.fixed, first.broken) == (0.0, 4.0, 4, 0)
    assert (second.against, second.score, second.fixed, second.broken) == (4.0, 8.0, 4, 0)
    assert second.asked == 8 and report.kept_score == 8.0
    # one pass without, the first candidate on all 8, the second on all 8 (its 4 fixable first): no re-baseline
    assert len(solver.requests) == 8 + 8 + 8


def test_the_batch_line_says_what_the_kept_lessons_scored_together(capsys: pytest.CaptureFixture[str]) -> None:
    trials = [
        GateTrial("ADD", SHOW_WORK, None, 5.0, 12.0, 20, 7, 0, 0.0078, True),
        GateTrial("ADD", NAME_HERSELF, None, 12.0, 9.0, 20, 1, 4, 0.9688, False),
    ]
    report = GateReport(20, 5.0, trials, "validation", 12.0)
    bars = Bars(Progress(disable=True))
    bars.batch(BatchMetrics(0, 1, 5, 0.4, 1, 3, 60.0, False, report.to_json()))
    line = capsys.readouterr().err
    assert "epoch 0 batch 1:" in line and "gate kept 1 of 2 (validation 5 -> 12 of 20)" in line


SAY_YES = "When asked whether a conclusion follows, reply Yes."
RULE = "When asked whether a conclusion follows, check each premise against it."


def test_a_lesson_that_wins_only_by_giving_the_majority_answer_everywhere_is_dropped(
    tmp_path: Path, embedder: Embedder
) -> None:
    """8 of 10 answers are Yes: replying Yes fixes 8 and breaks the 2 No questions the solver had right, which
    passes the sign test (p = 0.055) but breaks more than it fixes outside the majority answer."""
    answers = ["No", "No"] + ["Yes"] * 8
    questions = [Problem(f"s-{i}", f"Premises {i}. Does it follow?", a, "syllogism") for i, a in enumerate(answers)]

    def answer(request: ScriptedRequest) -> str:
        prompt = request.prompt
        number = int(prompt.split("Premises ")[1].split(".")[0])
        if "reply Yes" in prompt:
            return "ANSWER: Yes"
        if "check each premise" in prompt or number < 2:
            return f"ANSWER: {answers[number]}"
        return "It depends on the premises."

    solver = ScriptedLLM(answer, name="yes-sayer")
    library = ExperienceLibrary(tmp_path / "lib.db", embedder)
    settings = SolveSettings(parallel=4, min_similarity=-1.0)
    operations = [Operation("ADD", SAY_YES, domain="syllogism"), Operation("ADD", RULE, domain="syllogism")]
    kept, report = gate(operations, library, questions, solver, DefaultVerifier(), settings, max_p=0.1)
    yes, rule = report.trials
    assert (yes.fixed, yes.broken, yes.p_value) == (8, 2, 0.0547)  # the sign test alone would keep it
    assert (yes.minority_fixed, yes.minority_broken, yes.kept) == (0, 2, False)
    assert (rule.fixed, rule.broken, rule.minority_broken, rule.kept) == (8, 0, 0, True)
    assert [o.text for o in kept] == [RULE]


PLACEBO_LIKE = "When solving a problem, show your working and double-check every calculation before the final answer."


def careful_solver() -> ScriptedLLM:
    """Right whenever anything in its prompt tells it to double-check: what a generic instruction buys."""
    return sisters_solver("careful", lambda _, prompt: "double-check" in prompt.lower())


@pytest.mark.parametrize("version", [2, 3])
def test_the_gate_refuses_a_lesson_that_only_restates_the_placebo(
    tmp_path: Path, embedder: Embedder, version: int
) -> None:
    """Under the bare prompt (solver.v2) a lesson that only says "double-check" fixes every question; under
    solver.v3, whose prompt already carries the placebo instruction, it adds nothing and is refused."""
    library = ExperienceLibrary(tmp_path / "lib.db", embedder)
    settings = SolveSettings(parallel=2, prompt_version=version)
    kept, report = gate(
        [Operation("ADD", PLACEBO_LIKE, domain="aiw")], library, BATCH, careful_solver(), DefaultVerifier(), settings
    )
    (trial,) = report.trials
    if version == 2:
        assert [o.text for o in kept] == [PLACEBO_LIKE] and (trial.fixed, trial.broken) == (3, 0)
    else:
        assert kept == [] and report.baseline == 3.0 and trial.fixed == 0 and not trial.kept
