"""The extraction pipeline: pure rules, and the real small model on fixed rollouts."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from dso.config import PromptConfig
from dso.embed import Embedder
from dso.learn.datasets import Problem
from dso.learn.extract import Extractor, Rollout, group_confidence, is_lesson, reconcile
from dso.learn.prompts import PromptSet
from dso.library import ExperienceLibrary, Operation
from dso.llm.llamacpp import LlamaCppLLM
from dso.llm.testing import ScriptedLLM, ScriptedRequest

PROBLEM = Problem(
    "fam-1",
    "David is married to Barbara. They have a child called Jacob. What relation is Jacob to Barbara? "
    "Answer with a single word.",
    "son",
    "family_relationships",
)


def rollouts(rewards: list[float]) -> list[Rollout]:
    texts = {1.0: "Jacob is the child of Barbara and male.\nANSWER: son", 0.0: "They are related.\nANSWER: child"}
    return [Rollout(PROBLEM.id, i, texts[r], r, 50, 20, "stop") for i, r in enumerate(rewards)]


def no_calls() -> ScriptedLLM:
    """An LLM that must not be called: only the skip rule is under test."""

    def refuse(request: ScriptedRequest) -> str:
        raise AssertionError("this case must not reach the LLM")

    return ScriptedLLM(refuse, name="none")


@pytest.mark.parametrize(("rewards", "from_failures"), [([1.0, 1.0, 1.0], True), ([0.0, 0.0, 0.0], False)])
def test_homogeneous_group_produces_no_experience(
    tmp_path: Path, embedder: Embedder, rewards: list[float], from_failures: bool
) -> None:
    library = ExperienceLibrary(tmp_path / "lib.db", embedder)
    extractor = Extractor(no_calls(), library, learn_from_failures=from_failures)
    assert extractor.group_operations(PROBLEM, rollouts(rewards), epoch=0) == []
    assert extractor.stats.skipped_homogeneous == 1 and len(library) == 0


def test_confidence_rule() -> None:
    assert group_confidence([1, 0, 1, 0]) == 1.0
    assert group_confidence([1, 0, 0, 0, 0]) == pytest.approx(0.8)
    assert group_confidence([1, 1]) == 0.0


def test_lessons_must_be_general_when_rules() -> None:
    assert is_lesson("When a question asks for a relation, answer with one kinship word.", 32)
    assert not is_lesson("Answer with one word.", 32)
    assert not is_lesson("When " + "very " * 40 + "long.", 32)
    quoted = PromptSet().quoted_lessons
    for echoed in quoted:  # a prompt's own examples handed back verbatim are not lessons
        assert not is_lesson(echoed.capitalize(), 32, quoted)
    assert quoted  # the templates do quote examples, so the loop above checked something
    worked = PromptSet(PromptConfig(contrast=4)).quoted_lessons - quoted  # contrast.v4's worked example
    example = next(text for text in worked if "celsius" in text)
    assert is_lesson(example.capitalize(), 32)  # a well-formed lesson in itself ...
    assert not is_lesson(example.capitalize(), 32, quoted | worked)  # ... dropped when handed back
    # Text about the extraction itself, which small extractors echo from their instructions.
    assert not is_lesson("When faced with a similar problem, compare the better attempts with the worse ones.", 32)
    assert not is_lesson("When attempting to solve a problem, read the question carefully.", 32)
    assert not is_lesson("When the solver provides a wrong answer, understand the kind of answer expected.", 32)
    assert not is_lesson("When a solver gives a wrong answer, analyze the question and consider other approaches.", 32)
    assert not is_lesson("When multiplying numbers, use the reference solution as a guide to ensure accuracy.", 32)


@pytest.mark.parametrize(
    ("version", "responses", "told"),
    [
        (5, ["ANSWER: child", "ANSWER: son", "ANSWER: daughter"], True),  # both wrong attempts answered at once
        (5, ["They are related by blood.\nANSWER: child", "ANSWER: son", "ANSWER: daughter"], True),  # half of them
        (5, ["They are related by blood.\nANSWER: child", "ANSWER: son", "Jacob is a girl.\nANSWER: a"], False),
        (4, ["ANSWER: child", "ANSWER: son", "ANSWER: daughter"], False),  # v4 has no such part
    ],
)
def test_advantage_v5_asks_for_the_steps_when_wrong_attempts_answered_at_once(
    tmp_path: Path, embedder: Embedder, version: int, responses: list[str], told: bool
) -> None:
    prompts: list[str] = []

    def record(request: ScriptedRequest) -> str:
        prompts.append(request.prompt)
        return json.dumps({"lessons": ["When asked a relation, name the child's relation to the parent."]})

    library = ExperienceLibrary(tmp_path / "lib.db", embedder)
    extractor = Extractor(ScriptedLLM(record), library, prompts=PromptSet(PromptConfig(advantage=version)))
    group = [
        Rollout(PROBLEM.id, i, text, 1.0 if text.endswith("son") else 0.0, 50, 5, "stop")
        for i, text in enumerate(responses)
    ]
    extractor.group_operations(PROBLEM, group, epoch=0)
    advantage = [p for p in prompts if "Correct answer:" in p]
    assert len(advantage) == 1
    assert ("never answer at once" in advantage[0]) is told
    assert "$working" not in advantage[0] and "---atonce---" not in advantage[0]


def test_reconcile_rules() -> None:
    ops = [
        Operation("UPDATE", "When A, do B.", "e1"),
        Operation("DELETE", None, "e1"),
        Operation("UPDATE", "When C, do D first.", "e2"),
        Operation("UPDATE", "When C, do D twice.", "e2"),
        Operation("ADD", "When E, do F."),
        Operation("ADD", "when e, do f."),
    ]
    result = reconcile(ops)
    assert [(o.op, o.target, o.text) for o in result] == [
        ("DELETE", "e1", None),
        ("UPDATE", "e2", "When C, do D twice."),
        ("ADD", None, "When E, do F."),
    ]


def test_real_model_output_parses_or_is_skipped_cleanly(
    tmp_path: Path, embedder: Embedder, small_llm: LlamaCppLLM
) -> None:
    library = ExperienceLibrary(tmp_path / "lib.db", embedder)
    library.add("When a question asks how two people are related, name the relation from the second person's side.")
    extractor = Extractor(small_llm, library, retries=1)
    operations = extractor.group_operations(PROBLEM, rollouts([1.0, 0.0, 0.0]), epoch=3)
    final = extractor.consolidate(operations)
    before = library.all()
    library.apply(final, meta={"train_cursor": "0:0"})
    assert extractor.stats.groups == 1 and extractor.stats.llm_calls >= 1  # short attempts need no summary call
    costs = extractor.stats.by_kind  # where the calls and tokens went, by prompt
    assert "summary" not in costs and costs["lessons"].calls >= 1
    assert sum(c.calls for c in costs.values()) == extractor.stats.llm_calls
    assert sum(c.prompt_tokens + c.completion_tokens for c in costs.values()) == extractor.stats.tokens
    assert all(0 <= c.cached_prompt_tokens <= c.prompt_tokens and c.seconds > 0 for c in costs.values())
    if extractor.stats.skipped_unparsable:
        assert operations == []  # an unparsable group contributes nothing, and nothing crashed
    for operation in final:  # whatever the tiny model said, only well-formed operations survive
        assert operation.op in ("ADD", "UPDATE", "DELETE") and operation.epoch == 3
        assert operation.op == "DELETE" or is_lesson(operation.text or "", library.word_cap)
    assert library.get_meta("train_cursor") == "0:0"
    assert len(library) >= len(before) - sum(o.op == "DELETE" for o in final)


def test_batch_contrast_calls_nothing_when_off_or_all_correct(tmp_path: Path, embedder: Embedder) -> None:
    library = ExperienceLibrary(tmp_path / "lib.db", embedder)
    groups = [(PROBLEM, rollouts([0.0, 1.0]))]
    assert Extractor(no_calls(), library).batch_operations(groups, 0) == []
    on = Extractor(no_calls(), library, contrast_batch=True)
    assert on.batch_operations([(PROBLEM, rollouts([1.0, 1.0]))], 0) == []


def test_batch_contrast_with_the_real_model(tmp_path: Path, embedder: Embedder, small_llm: LlamaCppLLM) -> None:
    library = ExperienceLibrary(tmp_path / "lib.db", embedder)
    other = Problem(
        "fam-2", "Ann is married to Tom. They have a child called Eve. How is Tom related to Eve?", "father", "x"
    )
    wrong = Rollout(other.id, 0, "ANSWER: daughter", 0.0, 40, 5, "stop")
    extractor = Extractor(small_llm, library, retries=1, contrast_batch=True)
    operations = extractor.batch_operations([(PROBLEM, rollouts([0.0, 1.0, 0.0])), (other, [wrong])], epoch=2)
    assert extractor.stats.llm_calls >= 1
    for operation in operations:
        assert operation.op in ("ADD", "UPDATE", "DELETE") and operation.epoch == 2
        assert operation.op == "DELETE" or is_lesson(operation.text or "", library.word_cap)
        assert 0 < operation.confidence <= 1 and operation.domain == "family_relationships"


def extractor_script(request: ScriptedRequest) -> str:
    """A deterministic extractor: only the ordering and counting of `propose` is under test."""
    prompt = request.prompt
    if "Candidate lessons:" in prompt:  # the update call: add every candidate
        candidates = re.findall(r"^- (When .*)$", prompt.split("Candidate lessons:")[1], re.MULTILINE)
        return json.dumps({"operations": [{"op": "ADD", "id": "", "text": c} for c in candidates]})
    if "Correct answer:" in prompt and "Problem:" in prompt:  # the group advantage call
        name = re.search(r"called (\w+)", prompt)
        return json.dumps({"lessons": [f"When a child is called {name[1] if name else 'X'}, name the relation."]})
    return "A summary."


def test_groups_extracted_side_by_side_match_one_by_one(tmp_path: Path, embedder: Embedder) -> None:
    library = ExperienceLibrary(tmp_path / "lib.db", embedder)
    groups = []
    for index, child in enumerate(["Jacob", "Emma", "Liam", "Noah", "Mia", "Zoe"]):
        problem = dataclasses.replace(PROBLEM, id=f"fam-{index}", question=PROBLEM.question.replace("Jacob", child))
        groups.append((problem, [dataclasses.replace(r, problem_id=problem.id) for r in rollouts([1.0, 0.0, 0.0])]))
    one_by_one, side_by_side = (
        Extractor(ScriptedLLM(extractor_script), library),
        Extractor(ScriptedLLM(extractor_script), library),
    )
    expected = one_by_one.propose(groups, epoch=1, parallel=1)
    assert [o.text for o in expected] == [
        f"When a child is called {c}, name the relation." for c in ["Jacob", "Emma", "Liam", "Noah", "Mia", "Zoe"]
    ]
    assert side_by_side.propose(groups, epoch=1, parallel=4) == expected  # same operations, in group order
    assert side_by_side.stats == one_by_one.stats and side_by_side.stats.groups == 6


def test_an_empty_library_needs_no_update_call(tmp_path: Path, embedder: Embedder) -> None:
    """With nothing to update or delete, candidates are added without asking the model to say ADD."""
    lesson = "When a question asks for a relation, answer with one kinship word."
    asked: list[str] = []

    def script(request: ScriptedRequest) -> str:
        schema = json.dumps(request.json_schema or {})
        asked.append("lessons" if '"lessons"' in schema else "operations" if '"operations"' in schema else "other")
        if '"lessons"' in schema:
            return json.dumps({"lessons": [lesson]})
        return json.dumps({"operations": [{"op": "NONE", "id": "", "text": ""}]})

    library = ExperienceLibrary(tmp_path / "lib.db", embedder)
    extractor = Extractor(ScriptedLLM(script), library)
    (added,) = extractor.group_operations(PROBLEM, rollouts([1.0, 0.0]), epoch=0)
    assert (added.op, added.text) == ("ADD", lesson) and "operations" not in asked
    assert extractor.stats.update_calls_skipped == 1
    library.add("When two people share a parent, they are siblings.")
    assert extractor.group_operations(PROBLEM, rollouts([1.0, 0.0]), epoch=0) == []  # the model said NONE
    assert asked.count("operations") == 1


def test_the_extractor_is_told_which_wrong_answers_left_out_the_answer_line_or_every_step(
    tmp_path: Path, embedder: Embedder
) -> None:
    """A right conclusion without its "ANSWER:" line scores 0: shown as a format miss, not a reasoning one.
    A bare "ANSWER: child" skipped every step: shown so, the fix is to write the steps, not to know a rule."""
    library = ExperienceLibrary(tmp_path / "lib.db", embedder)
    prose = "Yes.\nReasoning: all A are B and all B are C, so all A are C."
    group = [
        Rollout(PROBLEM.id, 0, prose, 0.0, 50, 20, "stop"),
        Rollout(PROBLEM.id, 1, "ANSWER: child", 0.0, 50, 5, "stop"),
        Rollout(PROBLEM.id, 2, "Jacob is the child of Barbara and male.\nANSWER: son", 1.0, 50, 20, "stop"),
    ]
    prompts: list[str] = []

    def reply(request: ScriptedRequest) -> str:
        prompts.append(request.prompt)
        return json.dumps({"lessons": []})

    extractor = Extractor(ScriptedLLM(reply), library, contrast_batch=True)
    assert extractor.propose([(PROBLEM, group)], epoch=0) == []
    lessons, contrast = prompts
    assert "attempt 0 (reward 0, no final ANSWER line)" in lessons
    assert "attempt 1 (reward 0, answered at once, no working):" in lessons
    assert "attempt 2 (reward 1):" in lessons  # one line of working before its answer line: not marked
    answered = re.search(r"Solver answered: (.*)", contrast)
    assert answered is not None
    assert answered.group(1) == (
        'Reasoning: all A are B and all B are C, so all A are C. [no "ANSWER:" line]; child [no working shown]'
    )
    assert "[no working shown] gave its final answer at once" in contrast  # the template explains the mark
