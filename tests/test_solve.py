"""The solver's prompt: where the experiences go, and that both arms differ by the experiences alone."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from dso.config import PromptConfig
from dso.learn.datasets import Problem
from dso.learn.prompts import load_prompt
from dso.learn.solve import solver_messages

PROBLEM = Problem(
    "chain_sum-0", "State the final answer to the following arithmetic problem: 4 - 1 - 7 =", "-4", "chain_sum"
)
LESSON = "- When adding a chain of numbers, write each running total on its own line."


def test_the_default_solver_prompt_puts_the_experiences_after_the_question() -> None:
    version = PromptConfig().solver
    with_lessons = solver_messages(PROBLEM, LESSON, version)
    without = solver_messages(PROBLEM, "", version)
    assert [m["role"] for m in with_lessons] == ["system", "user"]
    assert with_lessons[0] == without[0]  # one system prompt for both arms, with no experiences in it
    assert "Experiences" not in with_lessons[0]["content"]
    user = with_lessons[1]["content"]
    assert user.startswith(PROBLEM.question) and user.index(PROBLEM.question) < user.index(LESSON)
    assert user.rstrip().endswith(LESSON)  # the last thing the solver reads before answering
    assert without[1]["content"].strip() == PROBLEM.question  # no heading without experiences


def test_version_1_keeps_the_experiences_in_the_system_prompt() -> None:
    system, user = solver_messages(PROBLEM, LESSON, 1)
    assert LESSON in system["content"] and user["content"] == PROBLEM.question
    assert solver_messages(PROBLEM, "", 1)[0]["content"].count("Experiences") == 0


@pytest.mark.parametrize("version", [1, 2])
def test_a_template_splits_into_its_parts(version: int) -> None:
    parts = load_prompt("solver", version).sections()
    assert parts["system"].render(experiences="").startswith("Solve the problem below.")
    assert set(parts) == ({"system"} if version == 1 else {"system", "user", "experiences"})


def test_the_placebo_instruction_follows_the_question_before_the_experiences() -> None:
    from dso.learn.solve import placebo_instruction

    placebo = placebo_instruction()
    assert placebo and "\n" not in placebo
    user = solver_messages(PROBLEM, "- When X, do Y.", 3)[1]["content"]
    assert user.index(PROBLEM.question) < user.index(placebo) < user.index("When X, do Y.")
    bare = solver_messages(PROBLEM, "", 3, instruction="")[1]["content"]
    assert placebo not in bare and bare.strip() == PROBLEM.question
    assert placebo not in solver_messages(PROBLEM, "", 2)[1]["content"]  # solver.v2 carries no instruction
    candidate = solver_messages(PROBLEM, "", 2, instruction="Check twice.")[1]["content"]
    assert candidate.strip() == f"{PROBLEM.question}\n\nCheck twice."


def test_solve_until_returns_the_same_prefix_whatever_the_timing() -> None:
    """`until` stops in the questions' order: the wrong third answer stops it although it arrives before the
    slow second one, later answers already in flight are dropped, and those not started never start."""
    import threading
    import time

    from dso.learn.extract import Rollout
    from dso.learn.rewards import DefaultVerifier
    from dso.learn.solve import SolveSettings, solve
    from dso.llm.testing import ScriptedLLM, ScriptedRequest

    questions = [Problem(f"q{i}", f"What is {i} + 0?", str(i), "chain_sum") for i in range(8)]
    started: list[str] = []
    lock = threading.Lock()
    later_ones_running = threading.Event()

    def number_of(messages: list[dict[str, str]]) -> int:
        return int(messages[-1]["content"].split("What is ")[1].split()[0])

    class TimedLLM(ScriptedLLM):
        """Waits outside the scripted double's lock, so that the answers really overlap."""

        def _complete(self, body: dict[str, Any]) -> Mapping[str, Any]:
            number = number_of(body["messages"])
            with lock:
                started.append(str(number))
                if {"3", "4"} <= set(started):
                    later_ones_running.set()
            if number == 1:
                later_ones_running.wait(timeout=10)  # arrives after the third, once freed slots took q3 and q4
            elif number >= 3:
                time.sleep(1.0)  # still in flight at the stop, however slowly a loaded machine wakes the caller
            return super()._complete(body)

    def answer(request: ScriptedRequest) -> str:
        number = number_of(list(request.messages))
        return f"ANSWER: {number if number != 2 else 99}"

    seen: list[str] = []

    def until(problem: Problem, rollouts: list[Rollout]) -> bool:
        seen.append(problem.id)
        return bool(rollouts[0].reward > 0)  # stop at the first wrong answer

    result = solve(questions, TimedLLM(answer), DefaultVerifier(), SolveSettings(parallel=3), until=until)
    assert list(result) == ["q0", "q1", "q2"] and seen == ["q0", "q1", "q2"]
    assert 3 < len(started) < 8  # the slots kept busy past the stop, and the rest never started
