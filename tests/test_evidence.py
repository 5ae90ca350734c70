"""Evidence decides: the sign test, the deletion rules, and retrieval that ranks by evidence and stays silent."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from dso.core.experience import Experience
from dso.embed import Embedder
from dso.learn.evidence import PruneRule, harmful, sign_test, to_prune, unhelpful
from dso.library import ExperienceLibrary


def lesson(helped: int = 0, hurt: int = 0, neutral: int = 0, id_: str = "x") -> Experience:
    return Experience(id_, "When in doubt, check the units.", helped=helped, hurt=hurt, neutral=neutral)


@pytest.mark.parametrize(("wins", "losses"), [(0, 0), (3, 0), (5, 2), (1, 6), (10, 10)])
def test_sign_test_is_the_binomial_upper_tail(wins: int, losses: int) -> None:
    n = wins + losses
    expected = sum(math.comb(n, k) for k in range(wins, n + 1)) / 2**n if n else 1.0
    assert sign_test(wins, losses) == pytest.approx(expected)
    assert sign_test(4, 0) == 1 / 16


def test_a_lesson_is_deleted_for_clear_harm_only() -> None:
    rule = PruneRule(harm_p=0.1, min_uses=4)
    assert harmful(lesson(hurt=4), rule) is not None  # p = 1/16
    assert harmful(lesson(hurt=3), rule) is None  # p = 1/8: not clear yet
    assert harmful(lesson(helped=2, hurt=5), rule) is None  # p = 0.23
    assert harmful(lesson(helped=5, hurt=5), rule) is None
    assert harmful(lesson(hurt=9), PruneRule(harm_p=0.0)) is None  # 0 switches the rule off


def test_an_epoch_end_prunes_lessons_used_often_that_never_helped_on_net() -> None:
    rule = PruneRule(harm_p=0.1, min_uses=4)
    assert unhelpful(lesson(neutral=4), rule) is not None
    assert unhelpful(lesson(helped=1, hurt=1, neutral=2), rule) is not None
    assert unhelpful(lesson(helped=2, hurt=1, neutral=1), rule) is None  # a net help
    assert unhelpful(lesson(neutral=3), rule) is None  # too few uses to tell
    kept, gone = lesson(helped=3, id_="kept"), lesson(neutral=3, id_="gone")
    assert to_prune([kept, gone], rule, epoch_end=False, pending={"gone": (0, 0, 1)}) == []
    assert [i for i, _ in to_prune([kept, gone], rule, epoch_end=True, pending={"gone": (0, 0, 1)})] == ["gone"]
    assert [i for i, _ in to_prune([gone], rule, epoch_end=False, pending={"gone": (0, 4, 0)})] == ["gone"]


QUESTION = "Convert 3 kilometres into metres."
UNITS = "When a question mixes units, convert everything to one unit first."
UNITS_TOO = "When converting units, multiply by the factor between the two units."
FRACTIONS = "When adding fractions, find a common denominator first."


def test_retrieval_stays_silent_below_its_threshold_and_ranks_by_evidence(tmp_path: Path, embedder: Embedder) -> None:
    library = ExperienceLibrary(tmp_path / "lib.db", embedder)
    for text in (UNITS, UNITS_TOO, FRACTIONS):
        library.add(text)
    scores = {h.experience.text: h.score for h in library.search(QUESTION, k=3)}
    assert scores[FRACTIONS] < min(scores[UNITS], scores[UNITS_TOO])
    cut = (scores[FRACTIONS] + min(scores[UNITS], scores[UNITS_TOO])) / 2
    assert {h.experience.text for h in library.search(QUESTION, k=3, min_similarity=cut)} == {UNITS, UNITS_TOO}
    assert library.search(QUESTION, k=3, min_similarity=0.99) == []  # zero experiences is a valid prompt
    first, second = sorted((UNITS, UNITS_TOO), key=lambda t: -scores[t])
    ids = {e.text: e.id for e in library.all()}
    library.apply([], evidence={ids[first]: (0, 6, 0), ids[second]: (6, 0, 0)})
    assert library.search(QUESTION, k=1)[0].experience.text == first  # similarity alone
    assert library.search(QUESTION, k=1, evidence_weight=1.0)[0].experience.text == second


def test_the_cut_keeps_other_tasks_out_but_never_a_lesson_of_the_questions_own_task(
    tmp_path: Path, embedder: Embedder
) -> None:
    """A rule in general words sits far from a question made of names; its own task's label lets it in."""
    from dso.learn.datasets import Problem
    from dso.learn.solve import SolveSettings, solve
    from dso.llm.testing import ScriptedLLM, ScriptedRequest

    library = ExperienceLibrary(tmp_path / "lib.db", embedder)
    library.add(FRACTIONS, domain="units")
    library.add(UNITS, domain="fractions")
    far = max(h.score for h in library.search(QUESTION, k=2)) + 0.01  # above both lessons
    assert library.search(QUESTION, k=2, min_similarity=far) == []
    assert [h.experience.text for h in library.search(QUESTION, k=2, min_similarity=far, domain="units")] == [FRACTIONS]
    assert library.search(QUESTION, k=2, min_similarity=far, domain="chemistry") == []
    prompts: list[str] = []

    def answer(request: ScriptedRequest) -> str:
        prompts.append(request.prompt)
        return "ANSWER: 3000"

    problems = [Problem("u-1", QUESTION, "3000", "units"), Problem("c-1", QUESTION, "3000", "chemistry")]
    solved = solve(problems, ScriptedLLM(answer), lambda r, p: 1.0, SolveSettings(min_similarity=far), library)
    assert [len(solved[p.id][0].experiences) for p in problems] == [1, 0]
    assert sum(FRACTIONS in prompt for prompt in prompts) == 1


def test_the_threshold_evaluation_compares_three_arms_on_the_same_questions(tmp_path: Path) -> None:
    """`dso bench relevance --eval`: a lesson far from every question is injected without the cut, never with it."""
    import json

    from dso.bench.relevance import run_threshold_eval
    from dso.config import load_config
    from dso.llm.testing import ScriptedLLM, ScriptedRequest, serve_openai

    off_topic = "When a recipe doubles, double every ingredient as well."

    def solver(request: ScriptedRequest) -> str:
        return "ANSWER: wrong" if "recipe" in request.prompt else "ANSWER: 3"  # the off-topic lesson misleads

    result_file = tmp_path / "learning-aiw.json"
    run = {"dataset": "aiw", "heldout_size": 6, "seed": 0, "max_tokens": 16, "top_k": 5}
    result_file.write_text(json.dumps({"train": {"config": run, "experiences": [off_topic]}}))
    with serve_openai(ScriptedLLM(solver)) as url:
        config = load_config(environ={}, overrides={"llm.backend": "openai", "llm.base_url": url, "llm.retries": 0})
        result = run_threshold_eval(config, result_file, 0.45)
    assert result["experiences_per_question"] == {"baseline": 0.0, "library": 1.0, "thresholded": 0.0}
    arms = result["arms"]
    assert arms["thresholded"]["accuracy"] == arms["baseline"]["accuracy"]
    assert result["paired"]["thresholded vs library"]["broken"] == 0
    if result["harm"] > 0:
        assert result["harm_recovered_share"] == 1.0


@pytest.mark.parametrize(
    ("recorded", "lesson_role"), [(None, "system"), ({"solver": 1}, "system"), ({"solver": 2}, "user")]
)
def test_the_threshold_evaluation_uses_the_solver_prompt_the_run_recorded(
    tmp_path: Path, recorded: dict[str, int] | None, lesson_role: str
) -> None:
    """A run's library is judged with the prompt it was learned under; runs without a record used v1."""
    import json

    from dso.bench.relevance import run_threshold_eval
    from dso.config import load_config
    from dso.llm.testing import ScriptedLLM, ScriptedRequest, serve_openai

    lesson = "When counting sisters, count the girl herself."
    roles: list[str] = []

    def solver(request: ScriptedRequest) -> str:
        roles.extend(m["role"] for m in request.messages if lesson in m["content"])
        return "ANSWER: 3"

    run: dict[str, object] = {"dataset": "aiw", "heldout_size": 3, "seed": 0, "max_tokens": 16, "top_k": 5}
    if recorded is not None:
        run["prompts"] = recorded
    result_file = tmp_path / "learning-aiw.json"
    result_file.write_text(json.dumps({"train": {"config": run, "experiences": [lesson]}}))
    with serve_openai(ScriptedLLM(solver)) as url:
        config = load_config(environ={}, overrides={"llm.backend": "openai", "llm.base_url": url, "llm.retries": 0})
        result = run_threshold_eval(config, result_file, 0.99)
    assert result["solver_prompt"] == (recorded or {"solver": 1})["solver"]
    assert roles and set(roles) == {lesson_role}  # the library arm injected it, where that version puts it


_AIW_RUN = b'"dataset": "aiw", "heldout_size": 5, "seed": 0, "max_tokens": 16, "top_k": 5'


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\xff\xfe not json",
        b"[1, 2, 3]",
        b'{"train": 7}',
        b'{"train": {"config": {}, "experiences": []}}',
        b'{"train": {"config": {"dataset": "aiw", "heldout_size": 1e12, "seed": 0, "max_tokens": 16, "top_k": 5},'
        b' "experiences": ["When in doubt, check."]}}',
        b'{"train": {"config": {"dataset": "aiw", "heldout_size": 5, "seed": 0, "max_tokens": 16, "top_k": 5},'
        b' "experiences": "When in doubt, check."}}',
        b'{"train": {"config": {"dataset": "aiw", "heldout_size": 5, "seed": 0, "max_tokens": 16, "top_k": 5},'
        b' "experiences": []}}',
        b"[" * 5000 + b"]" * 5000,
        b'{"train": {"config": {' + _AIW_RUN + b', "prompts": 7}, "experiences": ["When in doubt, check."]}}',
        b'{"train": {"config": {' + _AIW_RUN + b', "prompts": {"solver": "two"}}, "experiences": ["Check."]}}',
        b'{"train": {"config": {' + _AIW_RUN + b', "prompts": {"solver": 1e300}}, "experiences": ["Check."]}}',
        b'{"train": {"config": {' + _AIW_RUN + b', "prompts": {"solver": 57}}, "experiences": ["Check."]}}',
    ],
)
def test_the_threshold_evaluation_refuses_junk_result_files_in_one_error(tmp_path: Path, content: bytes) -> None:
    """The file is read before any model loads: junk is one DSOError, and the file is left as it was."""
    from dso.bench.relevance import run_threshold_eval
    from dso.config import load_config
    from dso.errors import DSOError

    path = tmp_path / "learning-junk.json"
    path.write_bytes(content)
    with pytest.raises(DSOError):
        run_threshold_eval(load_config(environ={}), path, 0.45)
    assert path.read_bytes() == content
