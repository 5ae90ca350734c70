"""Evaluation statistics: the interval and the paired comparison of two arms on the same questions."""

from __future__ import annotations

import pytest

from dso.learn.datasets import Problem
from dso.learn.evaluate import ConstantAnswer, confidence_interval, constant_answer, paired_comparison, summarise
from dso.learn.extract import Rollout


def arm(scores: list[list[float]]) -> dict[str, list[Rollout]]:
    return {
        f"q{i}": [Rollout(f"q{i}", s, "", r, 10, 5, "stop") for s, r in enumerate(rs)] for i, rs in enumerate(scores)
    }


def test_wilson_interval_for_zero_one_scores() -> None:
    low, high = confidence_interval([1.0] * 28 + [0.0] * 72)
    assert low == pytest.approx(0.2014, abs=1e-3) and high == pytest.approx(0.3750, abs=1e-3)
    assert confidence_interval([0.0] * 10)[0] == 0.0 and confidence_interval([]) == (0.0, 0.0)


def test_paired_comparison_counts_changed_questions_and_tests_them() -> None:
    baseline = arm([[0.0]] * 18 + [[1.0]] * 10 + [[0.0]] * 72)
    library = arm([[1.0]] * 18 + [[1.0]] * 10 + [[0.0]] * 72)
    result = paired_comparison(baseline, library)
    assert (result.fixed, result.broken) == (18, 0)
    assert result.p_value == pytest.approx(2 / 2**18)
    balanced = paired_comparison(arm([[1.0], [0.0], [1.0], [0.0]]), arm([[0.0], [1.0], [1.0], [0.0]]))
    assert (balanced.fixed, balanced.broken, balanced.p_value) == (1, 1, 1.0)
    unchanged = paired_comparison(baseline, baseline)
    assert (unchanged.fixed, unchanged.broken, unchanged.p_value) == (0, 0, 1.0)


def test_paired_comparison_uses_mean_at_k_per_question() -> None:
    result = paired_comparison(arm([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]]), arm([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))
    assert (result.fixed, result.broken) == (1, 1)


def test_marked_fraction_counts_answers_that_say_where_their_result_is() -> None:
    responses = ["so it follows.\nANSWER: Yes", "It does follow.", "x = 4, \\boxed{4}", "I think 12"]
    rollouts = {f"q{i}": [Rollout(f"q{i}", 0, text, 0.0, 10, 5, "stop")] for i, text in enumerate(responses)}
    assert summarise("baseline", rollouts, 0).marked_fraction == 0.5


def test_constant_answer_is_the_floor_of_one_reply_to_every_question() -> None:
    answers = ["Yes", "yes", "No", "Yes ", "No"]
    problems = [Problem(f"q{i}", "Does it follow?", a, "syllogism") for i, a in enumerate(answers)]
    floor = constant_answer(problems)
    assert floor is not None and floor.answer == "yes" and floor.accuracy == pytest.approx(3 / 5)
    assert constant_answer([]) is None
    numbers = [Problem(f"n{i}", "How many?", str(i), "gsm") for i in range(4)]
    assert constant_answer(numbers) == ConstantAnswer("0", 0.25)
