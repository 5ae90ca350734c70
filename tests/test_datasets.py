"""The train / held-out split: deterministic, disjoint, and independent of the train size."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dso.errors import DSOError
from dso.learn.datasets import fresh_heldout, load_problems, train_heldout_split, validation_split


@pytest.mark.parametrize("source", ["basic_arithmetic", pytest.param("champ", marks=pytest.mark.slow)])
def test_heldout_does_not_depend_on_train_size(source: str) -> None:
    small_train, heldout = train_heldout_split(source, 5, 20, seed=3)
    large_train, same_heldout = train_heldout_split(source, 40, 20, seed=3)
    assert heldout == same_heldout
    assert large_train[:5] == small_train
    questions = {p.question for p in heldout}
    assert not questions & {p.question for p in large_train}
    assert train_heldout_split(source, 5, 20, seed=4)[1] != heldout  # the seed matters


def test_repeating_generator_is_extended_to_distinct_questions() -> None:
    raw = load_problems("aiw", 120, seed=0)
    assert len({p.question for p in raw}) < 120  # the generator repeats itself at this size
    train, heldout = train_heldout_split("aiw", 20, 100, seed=0)
    questions = [p.question for p in heldout + train]
    assert len(set(questions)) == 120
    assert heldout == train_heldout_split("aiw", 5, 100, seed=0)[1]


def test_jsonl_split_is_shuffled_and_refuses_too_few(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(
        "".join(json.dumps({"question": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n" for i in range(30))
    )
    train, heldout = train_heldout_split(str(path), 10, 10, seed=0)
    assert len(train) == len(heldout) == 10
    assert [p.question for p in heldout] != [f"What is {i} + 1?" for i in range(10)]  # not file order
    with pytest.raises(DSOError, match="31 requested"):
        train_heldout_split(str(path), 21, 10, seed=0)


def test_generator_parameters_and_bad_specs() -> None:
    problems = load_problems("leg_counting:max_animals=3,max_instances=2", 30, seed=1)
    assert all(p.task == "leg_counting" and p.question.split("if you have")[1].count(",") <= 2 for p in problems)
    two_kinds = load_problems("aiw:task_types=['siblings','friends'],task_type_weights=[0.5,0.5]", 40, seed=0)
    assert {p.question.split(" and she also has")[0].split()[-1] for p in two_kinds} == {
        "sisters",
        "brothers",
        "friends",
    }
    for spec in [
        "aiw:task_types=['cousins']",
        "leg_counting:bogus=1",
        "leg_counting:max_animals=99",
        "leg_counting:max_animals",
        "no_such_task",
    ]:
        with pytest.raises(DSOError, match="dataset"):
            load_problems(spec, 3)


def test_leg_counting_reference_adds_up_to_the_answer() -> None:
    for problem in load_problems("leg_counting", 50, seed=2):
        assert problem.reference is not None
        assert problem.reference.endswith(f"Total: {problem.answer} legs.")


def test_aiw_reference_counts_the_woman_herself() -> None:
    problems = load_problems("aiw", 60, seed=2)
    kinds = {p.question.split(" and she also has")[0].split()[-1] for p in problems}
    assert kinds == {"sisters", "brothers", "friends", "colleagues"}  # every template is covered
    for problem in problems:
        assert problem.reference and problem.reference.endswith(f"+ 1 = {problem.answer}.")
        assert "herself" in problem.reference


def test_word_sorting_reference_shows_the_codes_that_decide_the_order() -> None:
    for problem in load_problems("word_sorting:max_words=6", 20, seed=3):
        assert problem.reference and problem.reference.endswith(f"by code: {problem.answer}.")
        words = problem.answer.split(", ")
        codes = [int(re.search(rf"\b{re.escape(w)} .=(\d+)", problem.reference)[1]) for w in words]  # type: ignore[index]
        assert codes in (sorted(codes), sorted(codes, reverse=True))


def test_products_reference_adds_up_the_place_value_parts() -> None:
    for problem in load_problems("products:min_digits=2,max_digits=3", 30, seed=4):
        assert problem.reference and problem.reference.endswith(f" = {problem.answer}.")
        first, second = re.findall(r"\d+", problem.question)[:2]
        parts = re.findall(rf"\b{first} x (\d+) = (\d+)", problem.reference)
        assert sum(int(part) for part, _ in parts) == int(second)  # the place values make up the second factor
        assert all(int(first) * int(part) == int(product) for part, product in parts)
        assert sum(int(product) for _, product in parts) == int(problem.answer)


def test_letter_counting_reference_adds_up_to_the_answer() -> None:
    for problem in load_problems("letter_counting", 20, seed=3):
        assert problem.reference and problem.reference.endswith(f"Total: {problem.answer}.")
        assert sum(int(n) for n in re.findall(r"\((\d+)\)", problem.reference)) == int(problem.answer)


def test_validation_questions_are_apart_from_train_and_heldout_and_change_neither() -> None:
    train, heldout = train_heldout_split("aiw", 20, 30, seed=5)
    validation = validation_split("aiw", 20, 30, 25, seed=5)
    assert len(validation) == 25
    questions = {p.question for p in validation}
    assert not questions & {p.question for p in train + heldout}
    assert validation == validation_split("aiw", 20, 30, 25, seed=5)  # deterministic by seed
    assert validation_split("aiw", 20, 30, 10, seed=5) == validation[:10]
    assert train_heldout_split("aiw", 20, 30, seed=5) == (train, heldout)
    assert validation_split("aiw", 20, 30, 0, seed=5) == []


def test_heldout_of_another_seed_skips_every_question_the_run_saw() -> None:
    """One or two animals of a short list repeat across seeds: a repeat is not a new question."""
    source = "leg_counting:min_animals=1,max_animals=2,max_instances=4"
    train, heldout = train_heldout_split(source, 30, 100, seed=0)
    seen = {p.question for p in train + heldout + validation_split(source, 30, 100, 20, seed=0)}
    other = fresh_heldout(source, 100, 11, seen)
    assert len(other) == 100 and len({p.question for p in other}) == 100
    assert not {p.question for p in other} & seen
    unfiltered = train_heldout_split(source, 0, 100, seed=11)[1]
    assert {p.question for p in unfiltered} & seen  # without the filter some would be repeats
    assert fresh_heldout(source, 100, 11, seen) == other  # deterministic by seed
    tiny = "leg_counting:min_animals=1,max_animals=1,max_instances=1"
    with pytest.raises(DSOError, match="requested"):  # a space the run has seen whole
        fresh_heldout(tiny, 5, 1, {p.question for p in load_problems(tiny, 400, 1)})
