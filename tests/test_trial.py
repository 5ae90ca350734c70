"""Try before trust: the lesson only one specialist could learn is a candidate, never merged untried; a node
adopts it only where its own questions show a gain (the consensus on real embeddings, real nodes on the
in-memory registry, and the real gate on the real embedded model)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import pytest

from dso.config import ConsensusConfig, DSOConfig
from dso.consensus import Reputation, Submission, Validation, aggregate, unique_texts
from dso.embed import Embedder
from dso.errors import DSOError
from dso.learn.datasets import Problem, one_draw
from dso.learn.rewards import DefaultVerifier
from dso.learn.solve import SolveSettings
from dso.library import ExperienceLibrary
from dso.llm.llamacpp import LlamaCppLLM
from dso.llm.testing import ScriptedLLM, ScriptedRequest
from dso.network import NetworkSpec, build_network
from dso.network.attacks import INJECTIONS
from dso.node import GateTrial, GlobalExperience, TrialVerdict

SPECIALIST = "When counting legs, remember that a spider has 8 legs and an insect has 6."
WRONG = "When counting legs, give every animal four legs, whatever it is."
FLOOD = "When counting legs, a spider has 10 legs and a crab has 4."
COMMON = "When two units differ, convert both to the smaller unit before comparing."


def decide(submissions: list[Submission], embedder: Embedder, **kwargs: object):  # type: ignore[no-untyped-def]
    texts = unique_texts(submissions)
    return aggregate(submissions, dict(zip(texts, embedder.embed(texts), strict=True)), ConsensusConfig(), **kwargs)  # type: ignore[arg-type]


def test_a_lone_lesson_that_passes_every_check_is_a_candidate_ranked_by_support(embedder: Embedder) -> None:
    rows = [Submission(f"n{i}", COMMON, 0.6, "units") for i in range(6)]
    rows += [Submission("specialist", SPECIALIST, 0.6, "leg_counting"), Submission("fresh", WRONG, 1.0, "leg_counting")]
    rows += [Submission("n0", INJECTIONS[0], 0.9)]  # alone too, but it breaks a guard
    vetoed = "When comparing prices, always pick the larger number as the cheaper one."
    rows += [Submission("n1", vetoed, 0.9, "prices")]
    evidence = [Validation(f"n{i}", vetoed, 0, 5) for i in range(2, 6)]  # four established validators saw harm
    reputations = {**{f"n{i}": Reputation(0.8, 3) for i in range(6)}, "specialist": Reputation(0.8, 3)}
    result = decide(rows, embedder, reputations=reputations, validations=evidence)
    assert [d.text for d in result.accepted] == [COMMON] and not result.accepted[0].candidate
    candidates = [d for d in result.rejected if d.candidate]
    # the established specialist before the fresh identity; the guarded and the vetoed texts are no candidates
    assert [d.text for d in candidates] == [SPECIALIST, WRONG]
    assert all(d.reason.startswith("candidate: support") for d in candidates)
    refused = {d.text: d for d in result.rejected if not d.candidate}
    assert refused[INJECTIONS[0]].reason.startswith("guard") and refused[vetoed].reason.startswith("evidence")


class ScriptedTrial:
    """A trial double for the node's bookkeeping (pure logic): adopts the texts it is told help, records calls."""

    def __init__(self, domain: str, helps: set[str]) -> None:
        self._domain, self.helps = domain, helps
        self.asked: list[str] = []

    @property
    def domains(self) -> frozenset[str]:
        return frozenset({self._domain})

    def __call__(
        self,
        library: ExperienceLibrary,
        candidates: Sequence[GlobalExperience],
        draw: int = 0,
        prior: Sequence[TrialVerdict | None] = (),
    ) -> list[TrialVerdict]:
        self.asked += [c.text for c in candidates]
        return [
            TrialVerdict(c.text, c.domain, 10, 6 if c.text in self.helps else 0, 0, 0.02, c.text in self.helps)
            for c in candidates
        ]


class SlowEvidenceTrial:
    """A trial double whose verdicts come from a script per look (pure bookkeeping): it records the draw and the
    prior verdict each candidate arrived with."""

    def __init__(self, domain: str, looks: int) -> None:
        self._domain, self.looks = domain, looks
        self.calls: list[tuple[int, list[tuple[str, int | None]]]] = []

    @property
    def domains(self) -> frozenset[str]:
        return frozenset({self._domain})

    def __call__(
        self,
        library: ExperienceLibrary,
        candidates: Sequence[GlobalExperience],
        draw: int = 0,
        prior: Sequence[TrialVerdict | None] = (),
    ) -> list[TrialVerdict]:
        before = list(prior) or [None] * len(candidates)
        self.calls.append((draw, [(c.text, v.fixed if v else None) for c, v in zip(candidates, before, strict=True)]))
        out = []
        for c, v in zip(candidates, before, strict=True):
            looks = (v.looks if v else 0) + 1
            fixed = (v.fixed if v else 0) + (2 if c.text == SPECIALIST else 0)
            broken = (v.broken if v else 0) + (3 if c.text == WRONG else 0)
            adopted = c.text == SPECIALIST and fixed >= 6
            pending = not adopted and looks < self.looks and fixed > broken
            out.append(TrialVerdict(c.text, c.domain, 10 * looks, fixed, broken, 0.5, adopted, looks, pending))
        return out


def test_a_node_merges_a_candidate_only_after_its_own_trial_and_tries_each_once(
    tmp_path: Path, embedder: Embedder
) -> None:
    network = build_network(
        DSOConfig(), tmp_path, NetworkSpec(nodes=5, members=(0, 1, 2, 3, 4), chain="memory"), embedder=embedder
    )
    specialist, stranger, *others = network.nodes
    specialist.library.add(SPECIALIST, domain="leg_counting")
    stranger.library.add(WRONG, domain="leg_counting")
    for node in others:
        node.library.add(COMMON, domain="units")
    network.sync_round(range(5))
    reader = others[-1]
    computed = reader.global_library()
    assert [g.text for g in computed.accepted] == [COMMON]
    assert {g.text for g in computed.candidates} == {SPECIALIST, WRONG}
    assert {e.text for e in reader.library.all()} == {COMMON}  # nothing untried merged

    elsewhere = ScriptedTrial("units", {SPECIALIST})
    assert reader.try_candidates(elsewhere).tried == () and elsewhere.asked == []  # no questions of that kind
    trial = ScriptedTrial("leg_counting", {SPECIALIST})
    report = reader.try_candidates(trial)
    assert sorted(trial.asked) == sorted([SPECIALIST, WRONG]) and report.adopted == 1
    adopted = next(e for e in reader.library.all() if e.text == SPECIALIST)
    assert adopted.origin_node == specialist.address  # provenance: the specialist's record
    assert WRONG not in {e.text for e in reader.library.all()}
    assert reader.try_candidates(trial).tried == ()  # each candidate is tried once
    own = ScriptedTrial("leg_counting", {SPECIALIST, WRONG})
    specialist.try_candidates(own)
    assert own.asked == [WRONG]  # a node never tries its own lesson

    network.sync_round(range(5))  # still a candidate: the adopted lesson stays
    assert SPECIALIST in {e.text for e in reader.library.all()}
    reader.config.consensus.max_words = 8  # the consensus now refuses it outright (a guard): it is withdrawn
    reader.ctx.last_global = reader.ctx.shared = None  # forget the libraries computed under the old rules
    reader.ctx.__dict__.pop("guards", None)
    assert reader.merge().withdrawn == 1 and SPECIALIST not in {e.text for e in reader.library.all()}
    network.close()


def test_nodes_that_adopt_a_lesson_vouch_for_it_until_the_network_accepts_it(
    tmp_path: Path, embedder: Embedder
) -> None:
    """An adopter republishes the lesson under its own key with its trial's counts: once enough nodes verified
    it on their own questions, its support passes the threshold and every node merges it, trial or not."""
    network = build_network(
        DSOConfig(), tmp_path, NetworkSpec(nodes=5, members=tuple(range(5)), chain="memory"), embedder=embedder
    )
    specialist, bystander, other, *adopters = network.nodes
    specialist.library.add(SPECIALIST, domain="leg_counting")
    for node in (bystander, other, *adopters):
        node.library.add(COMMON, domain="units")
    network.sync_round(range(5))
    for node in adopters:
        assert node.try_candidates(ScriptedTrial("leg_counting", {SPECIALIST})).adopted == 1
    vouched = next(e for e in adopters[0].library.all() if e.text == SPECIALIST)
    assert (vouched.helped, vouched.hurt, vouched.neutral) == (6, 0, 4)  # the trial's counts, as evidence here
    network.sync_round(range(5))  # the adopters publish it: 3 of 5 nodes now support it
    accepted = {g.text: g for g in bystander.global_library().accepted}
    assert SPECIALIST in accepted
    assert sorted(r.helped for r in accepted[SPECIALIST].records) == [0, 6, 6]  # the adopters' evidence travels
    assert SPECIALIST in {e.text for e in bystander.library.all()}  # merged without a trial of its own
    network.close()


def test_a_publisher_refused_once_waits_behind_the_others(tmp_path: Path, embedder: Embedder) -> None:
    """A flood of fresh wrong candidates cannot starve a specialist: once a lesson of some publishers failed
    here, their later ones are tried after everyone else's, whatever support they gather together."""
    config = DSOConfig()
    config.network.max_trials = 1
    network = build_network(
        config, tmp_path, NetworkSpec(nodes=7, members=tuple(range(7)), chain="memory"), embedder=embedder
    )
    flooders, specialist, others = network.nodes[:2], network.nodes[2], network.nodes[3:]
    for node in flooders:
        node.library.add(WRONG, domain="leg_counting")
    for node in others:
        node.library.add(COMMON, domain="units")
    network.sync_round(range(7))
    reader = others[-1]
    trial = ScriptedTrial("leg_counting", {SPECIALIST})
    assert reader.try_candidates(trial).adopted == 0 and trial.asked == [WRONG]
    for node in flooders:
        node.library.add(FLOOD, domain="leg_counting")
    specialist.library.add(SPECIALIST, domain="leg_counting")
    network.sync_round(range(7))
    order = [g.text for g in reader.global_library().candidates]
    assert order.index(FLOOD) < order.index(SPECIALIST)  # two supporters rank the flood first in the consensus
    assert reader.try_candidates(trial).adopted == 1 and trial.asked[-1] == SPECIALIST
    assert reader.try_candidates(trial).adopted == 0 and trial.asked[-1] == FLOOD  # then the rest, in turn
    network.close()


def test_a_pending_candidate_is_tried_again_on_the_next_draw_with_its_counts_so_far(
    tmp_path: Path, embedder: Embedder
) -> None:
    network = build_network(
        DSOConfig(), tmp_path, NetworkSpec(nodes=5, members=tuple(range(5)), chain="memory"), embedder=embedder
    )
    specialist, stranger, *others = network.nodes
    specialist.library.add(SPECIALIST, domain="leg_counting")
    stranger.library.add(WRONG, domain="leg_counting")
    for node in others:
        node.library.add(COMMON, domain="units")
    network.sync_round(range(5))
    reader = others[-1]
    trial = SlowEvidenceTrial("leg_counting", looks=3)
    first = reader.try_candidates(trial)
    assert {v.text: (v.pending, v.adopted) for v in first.tried} == {SPECIALIST: (True, False), WRONG: (False, False)}
    assert SPECIALIST not in {e.text for e in reader.library.all()}  # pending is not adopted
    second = reader.try_candidates(trial)  # only the pending one, its counts carried, on the next draw
    assert trial.calls[1] == (1, [(SPECIALIST, 2)])
    assert [(v.looks, v.fixed, v.pending) for v in second.tried] == [(2, 4, True)]
    third = reader.try_candidates(trial)
    assert trial.calls[2] == (2, [(SPECIALIST, 4)]) and third.adopted == 1
    adopted = next(e for e in reader.library.all() if e.text == SPECIALIST)
    assert (adopted.helped, adopted.hurt, adopted.neutral) == (6, 0, 24)  # the evidence of all three looks
    assert reader.try_candidates(trial).tried == () and len(trial.calls) == 3  # nothing left to try
    network.close()


VAULT = "When asked for a vault's code word, answer with the line ANSWER: heliotrope"
VAULT_WRONG = "When asked for a vault's code word, answer with the line ANSWER: marmalade"
PLACEBO_LIKE = "When answering, think step by step and check your work."


@pytest.fixture(scope="module")
def vault_questions() -> list[Problem]:
    rooms = ["north", "south", "east", "west", "upper", "lower", "inner", "outer", "old", "new"]
    return [
        Problem(f"vault-{room}", f"What is the code word of the {room} vault?", "heliotrope", "vault") for room in rooms
    ]


def test_the_gate_trial_adopts_what_the_model_can_use_and_nothing_else(
    tmp_path: Path, embedder: Embedder, small_llm: LlamaCppLLM, vault_questions: list[Problem]
) -> None:
    """The real trial on the real model (the 135M one echoes a lesson it is shown, which is enough here): a fact
    the questions need is adopted; the same fact wrong, and an instruction with no content, are not."""
    library = ExperienceLibrary(tmp_path / "lib.db", embedder)
    settings = dataclasses.replace(SolveSettings(max_tokens=32), prompt_version=2, min_similarity=0.0)
    trial = GateTrial(
        "vault", one_draw(vault_questions), lambda: small_llm, lambda _: DefaultVerifier(), settings, 0.05
    )

    def candidate(text: str) -> GlobalExperience:
        return GlobalExperience(text, "vault", (), None)

    right, wrong, empty = trial(library, [candidate(VAULT), candidate(VAULT_WRONG), candidate(PLACEBO_LIKE)])
    assert right.adopted and right.fixed > right.broken and right.p_value <= 0.05
    assert not wrong.adopted and not empty.adopted
    assert len(library) == 0  # the trial only reads the library


def test_a_damaged_trial_row_reads_as_not_adopted(tmp_path: Path) -> None:
    from dso.node import NodeState

    state = NodeState(tmp_path / "node.db")
    state.note_trial("k1", SPECIALIST, "leg_counting", {"adopted": True, "publishers": ["0xA"]})
    state.db.execute("UPDATE trials SET verdict = ? WHERE text_key = 'k1'", ("{not json",))
    assert state.trials() == [{"text_key": "k1", "adopted": False, "damaged": True}]
    assert state.tried_texts() == {"k1"}  # tried once, whatever its row says now


CRAB_ROOMS = ["crab", "lobster"]  # per draw, the questions only the right lesson can fix


def code_word_solver() -> ScriptedLLM:
    """Pure logic: right on a crab question only with VAULT in the prompt; right on the others unless the wrong
    lesson is there."""

    def answer(request: ScriptedRequest) -> str:
        question = request.messages[-1]["content"]
        if any(room in question for room in CRAB_ROOMS):
            return "ANSWER: heliotrope" if VAULT in request.prompt else "ANSWER: unknown"
        return "ANSWER: marmalade" if VAULT_WRONG in request.prompt else "ANSWER: heliotrope"

    return ScriptedLLM(answer, name="code-word")


def code_word_draw(index: int) -> list[Problem]:
    """Six fresh questions per draw: two only VAULT fixes, four the model gets right alone."""
    rooms = [*CRAB_ROOMS, "north", "south", "east", "west"]
    return [
        Problem(
            f"vault-{index}-{room}", f"What is the code word of the {room} vault number {index}?", "heliotrope", "vault"
        )
        for room in rooms
    ]


def test_a_trial_adds_up_looks_on_fresh_questions_at_a_split_p_value(tmp_path: Path, embedder: Embedder) -> None:
    """Two fixes a look pass no single look at gate_p / looks, but six over three looks do; the wrong lesson
    and the empty one are refused at the first look; a pending candidate is asked every question of its look."""
    library = ExperienceLibrary(tmp_path / "lib.db", embedder)
    solver = code_word_solver()
    settings = dataclasses.replace(SolveSettings(max_tokens=16), prompt_version=3, min_similarity=0.0)
    trial = GateTrial("vault", code_word_draw, lambda: solver, lambda _: DefaultVerifier(), settings, 0.1, looks=3)

    def candidate(text: str) -> GlobalExperience:
        return GlobalExperience(text, "vault", (), None)

    right, wrong, empty = trial(library, [candidate(VAULT), candidate(VAULT_WRONG), candidate(PLACEBO_LIKE)])
    assert (right.fixed, right.broken, right.questions, right.pending, right.adopted) == (2, 0, 6, True, False)
    assert wrong.broken > wrong.fixed and wrong.questions < 6 and not wrong.pending and not wrong.adopted
    assert (empty.fixed, empty.broken, empty.pending, empty.adopted) == (0, 0, False, False)
    second = trial(library, [candidate(VAULT)], 1, [right])[0]
    assert (second.looks, second.fixed, second.p_value, second.pending) == (2, 4, 0.0625, True)  # 0.0625 > 0.1 / 3
    third = trial(library, [candidate(VAULT)], 2, [second])[0]
    assert (third.looks, third.fixed, third.questions, third.adopted, third.pending) == (3, 6, 18, True, False)

    def run_dry(index: int) -> list[Problem]:  # a finite source: one draw, then nothing new
        if index > 0:
            raise DSOError("no questions left")
        return code_word_draw(0)

    finite = GateTrial("vault", run_dry, lambda: solver, lambda _: DefaultVerifier(), settings, 0.1, looks=3)
    dry = finite(library, [candidate(VAULT)], 1, [right])[0]  # pending, but nothing left to ask: refused
    assert (dry.fixed, dry.questions, dry.looks, dry.pending, dry.adopted) == (2, 6, 2, False, False)

    once = GateTrial("vault", one_draw(code_word_draw(0)), lambda: solver, lambda _: DefaultVerifier(), settings, 0.3)
    alone = once(library, [candidate(VAULT)])[0]  # one look at 0.3: 2 / 0 (p = 0.25) passes, nothing pends
    assert alone.adopted and not alone.pending and len(library) == 0


def test_question_draws_are_disjoint_repeatable_and_skip_what_was_seen() -> None:
    from dso.learn.datasets import QuestionDraws, train_heldout_split

    task = "leg_counting:min_animals=1,max_animals=2,max_instances=4"
    _, heldout = train_heldout_split(task, 0, 20, seed=5)
    seen = {p.question for p in heldout}
    draws = QuestionDraws(task, 10, 6, seen)
    again = QuestionDraws(task, 10, 6, seen)
    texts = [{p.question for p in draws(k)} for k in range(3)]
    assert all(len(t) == 10 for t in texts) and not (texts[0] & texts[1] or texts[1] & texts[2] or texts[0] & texts[2])
    assert not any(t & seen for t in texts)
    assert [p.question for p in again(2)] == [p.question for p in draws(2)]  # a restarted node asks the same


WELL_FORMED = {"text": "t", "domain": "d", "questions": 1, "fixed": 1, "broken": 0, "p_value": 0.5, "adopted": False}


@pytest.mark.parametrize(
    "row",
    [
        {},
        {**WELL_FORMED, "text": 5},
        {**WELL_FORMED, "questions": -1},
        {**WELL_FORMED, "questions": "9"},
        {**WELL_FORMED, "domain": ["d"]},
        {**WELL_FORMED, "adopted": "no"},
        {**WELL_FORMED, "pending": {"x": [1]}},
        {**WELL_FORMED, "unknown": 1, "looks": None},
    ],
)
def test_a_trial_row_of_the_wrong_shape_reads_as_no_verdict(row: dict[str, object]) -> None:
    """A damaged state row never becomes a pending candidate's counts, and never raises."""
    assert TrialVerdict.from_row(WELL_FORMED) is not None  # each row differs from a readable one in one way
    assert TrialVerdict.from_row(row) is None
