"""Try before trust: a node adopts a stranger's candidate lesson only where its own questions show a gain.

The consensus accepts a lesson that enough reputation supports; a lesson that only one specialist could learn
never gets there, and no count can tell that specialist from a lone attacker. Such a lesson is a *candidate*
(`dso.consensus.aggregate`, step 6). A node that holds questions of the candidate's domain tries it on them
with the lesson gate (`dso.learn.gate`: the node's library as it stands, against the same library with the
candidate added; the solver's template carries the placebo instruction from solver.v3 on, so a lesson that
only restates it adds nothing) and adopts it only when it fixes more questions than it breaks, at the gate's
p-value. So a wrong or empty lesson reaches a node only by beating that node's own prompt on its own
questions, whatever share of the network is Byzantine; a node without questions of that kind never uses it.

A trial has up to `network.trial_looks` looks, one per sync, each on questions the node has not asked before
(its validation questions first, then fresh draws of the same task): a lesson that fixes a question in ten,
like a fact about a few animals, shows too few fixes on one small draw, and counts that add up across draws
give it the evidence one draw cannot. Each look is judged at `gate_p / trial_looks`, so a lesson with no
effect is adopted with a probability of at most `gate_p` over all its looks together (a union bound: no look
has more than its share). A candidate not adopted stays *pending* for its next look only while its counts so
far favour it (more fixed than broken) and looks are left; otherwise it is refused for good.

What a node tried is kept in its state (one row per text, its counts over the looks so far), so a candidate
costs each node at most `trial_looks` looks; at most `limit` are tried per call, pending ones first, then by
support. An adopted lesson carries the trial's
counts as its evidence, and the node republishes it under its own key (`dso.node.publish`): support grows
with every node that verified it, until the consensus accepts it for everybody. A lesson adopted here stays while the
consensus still lists it as a candidate or accepts it, and is withdrawn like any merged lesson when the
consensus rejects it outright (a guard, or validators' evidence of harm).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from dso.config import DSOConfig
from dso.core.experience import text_key
from dso.errors import DSOError
from dso.learn.datasets import Problem, QuestionDraws, train_heldout_split
from dso.learn.gate import GateTrial as GateLook
from dso.learn.gate import Tally, gate
from dso.learn.rewards import Verifier
from dso.learn.run import gate_questions, make_verifier
from dso.learn.solve import SolveSettings
from dso.library import ExperienceLibrary, Operation
from dso.llm import LLM, make_llm
from dso.node.context import NodeContext
from dso.node.pull import global_library, remote_experience
from dso.node.share import GlobalExperience


@dataclasses.dataclass(frozen=True)
class TrialVerdict:
    """One candidate tried on a node's own questions: the gate's paired count and its decision."""

    text: str
    domain: str
    questions: int  # over every look so far, like the counts
    fixed: int
    broken: int
    p_value: float
    adopted: bool
    looks: int = 1  # looks so far, this one included
    pending: bool = False  # not adopted yet, to be tried again on fresh questions
    minority_fixed: int = 0
    minority_broken: int = 0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def tally(self) -> Tally:
        """The counts a next look adds its own to."""
        return Tally(self.fixed, self.broken, self.questions, self.minority_fixed, self.minority_broken)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> TrialVerdict | None:
        """A verdict as this node's state recorded it; None for a row not of that shape (damaged)."""
        try:
            fields = {f.name: row[f.name] for f in dataclasses.fields(cls) if f.name in row}
            verdict = cls(**fields)
        except (TypeError, KeyError):
            return None
        counts = (verdict.questions, verdict.fixed, verdict.broken, verdict.looks)
        if not all(isinstance(n, int) and n >= 0 for n in counts):
            return None
        if not (isinstance(verdict.text, str) and isinstance(verdict.domain, str)):
            return None
        if not (isinstance(verdict.pending, bool) and isinstance(verdict.adopted, bool)):
            return None
        return verdict


class LessonTrial(Protocol):
    """What a node needs to try candidates: the domains of the questions it holds, and a way to judge texts on
    them against its library. `draw` numbers the node's looks (0 first), so that each look asks questions no
    look asked before; `prior` holds each candidate's verdict from its earlier looks (None for a new one)."""

    @property
    def domains(self) -> frozenset[str]: ...

    def __call__(
        self,
        library: ExperienceLibrary,
        candidates: Sequence[GlobalExperience],
        draw: int = 0,
        prior: Sequence[TrialVerdict | None] = (),
    ) -> list[TrialVerdict]: ...


def judged(candidate: GlobalExperience, prior: TrialVerdict | None, look: GateLook | None, looks: int) -> TrialVerdict:
    """A candidate's verdict after one more look (the gate's trial of it, None when there was nothing to ask):
    its counts added to those of its earlier looks, and whether it stays pending (not kept, looks left, more
    fixed than broken)."""
    before = prior.tally() if prior is not None else Tally()
    now = Tally(look.fixed, look.broken, look.asked, look.minority_fixed, look.minority_broken) if look else Tally()
    kept = look is not None and look.kept
    p_value = look.p_value if look is not None else (prior.p_value if prior is not None else 1.0)
    number = (prior.looks if prior is not None else 0) + 1
    fixed, broken = before.fixed + now.fixed, before.broken + now.broken
    return TrialVerdict(
        candidate.text,
        candidate.domain,
        before.asked + now.asked,
        fixed,
        broken,
        p_value,
        kept,
        number,
        look is not None and not kept and number < looks and fixed > broken,
        before.minority_fixed + now.minority_fixed,
        before.minority_broken + now.minority_broken,
    )


class GateTrial:
    """The real trial: the lesson gate on the node's questions of one domain (`questions(draw)`: the draw-th
    set, none of whose questions an earlier draw held), with its solver (made by `solver` on the first
    candidate, so a sync with nothing to try loads no model). With `looks` = 1 every call judges on its own."""

    def __init__(
        self,
        domain: str,
        questions: Callable[[int], Sequence[Problem]],
        solver: Callable[[], LLM],
        verifier: Callable[[LLM], Verifier],
        settings: SolveSettings,
        max_p: float,
        looks: int = 1,
    ) -> None:
        if looks < 1:
            raise ValueError("a trial has at least one look")
        self._domain, self._questions = domain, questions
        self._make_solver, self._make_verifier = solver, verifier
        self._settings, self._max_p, self.looks = settings, max_p, looks
        self._solver: tuple[LLM, Verifier] | None = None

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
        """One gate over the candidates in their order: one pass without them, then each against the library
        plus those adopted before it (what is adopted must help together, as the learning gate demands), at
        `max_p / looks`, each candidate's counts of earlier looks included."""
        if not candidates:
            return []
        before = list(prior) or [None] * len(candidates)
        if len(before) != len(candidates):
            raise ValueError("give one prior verdict (or None) per candidate")
        try:
            questions = self._questions(draw)
        except DSOError:  # a finite source ran out of questions no look asked
            questions = []
        if not questions:  # nothing new to ask: a pending candidate ends refused, on the counts it has
            return [judged(c, v, None, self.looks) for c, v in zip(candidates, before, strict=True)]
        if self._solver is None:
            model = self._make_solver()
            self._solver = (model, self._make_verifier(model))
        operations = [Operation("ADD", text=c.text, domain=c.domain) for c in candidates]
        _, report = gate(
            operations,
            library,
            questions,
            *self._solver,
            self._settings,
            max_p=self._max_p / self.looks,
            prior=[v.tally() if v is not None else Tally() for v in before],
            finish=self.looks > 1,
        )
        return [judged(c, v, t, self.looks) for c, v, t in zip(candidates, before, report.trials, strict=True)]


@dataclasses.dataclass(frozen=True)
class TrialReport:
    tried: tuple[TrialVerdict, ...]
    waiting: int  # candidates of this node's domains left for a later call (over `limit`)
    adopted: int  # merged into the library this call

    def to_json(self) -> dict[str, Any]:
        return {"tried": [v.to_json() for v in self.tried], "waiting": self.waiting, "adopted": self.adopted}


def untried(ctx: NodeContext, domains: frozenset[str]) -> list[tuple[GlobalExperience, TrialVerdict | None]]:
    """The global library's candidates of these domains that this node did not publish and either never tried
    or holds pending, each with its verdict so far, in the order it tries them: pending ones first (their
    evidence is on its way), then those backed by a publisher none of whose candidates this node refused,
    then by the consensus's order (support). A publisher whose lesson failed here once goes to the back of the
    queue with every later lesson, so a flood of fresh wrong candidates cannot starve a specialist's."""
    tried = ctx.state.tried_texts()
    pending: dict[str, TrialVerdict] = {}
    refused: dict[str, int] = {}
    for row in ctx.state.trials():
        verdict = TrialVerdict.from_row(row)
        if verdict is not None and verdict.pending and not verdict.adopted:
            pending[text_key(verdict.text)] = verdict
        elif not row.get("adopted"):
            for node in row.get("publishers") or ():
                refused[str(node)] = refused.get(str(node), 0) + 1
    waiting = [
        (g, pending.get(text_key(g.text)))
        for g in global_library(ctx).candidates
        if g.domain in domains
        and (text_key(g.text) not in tried or text_key(g.text) in pending)
        and not any(r.node == ctx.address for r in g.records)
    ]
    return sorted(
        waiting,
        key=lambda item: (item[1] is None, min((refused.get(r.node, 0) for r in item[0].records), default=0)),
    )


def try_candidates(ctx: NodeContext, trial: LessonTrial, limit: int) -> TrialReport:
    """Try up to `limit` untried candidates of the trial's domains; merge those it adopts, with provenance."""
    waiting = untried(ctx, trial.domains)
    rest = len(waiting) - min(limit, len(waiting))
    chosen, prior = [c for c, _ in waiting[:limit]], [v for _, v in waiting[:limit]]
    verdicts: list[TrialVerdict] = []
    if chosen:
        draw = ctx.state.cursor("trial_draw")
        verdicts = trial(ctx.library, chosen, draw, prior)
        ctx.state.set_cursor("trial_draw", draw + 1)
    items = [remote_experience(c) for c, v in zip(chosen, verdicts, strict=True) if v.adopted]
    results, _ = ctx.library.merge_remote(items) if items else ([], [])
    counts = {v.text: (v.fixed, v.broken, v.questions - v.fixed - v.broken) for v in verdicts if v.adopted}
    evidence = {r.experience.id: counts[r.experience.text] for r in results if r.experience.text in counts}
    if evidence:  # the trial's counts become the lesson's evidence here, and travel when this node republishes it
        ctx.library.apply([], evidence=evidence)
    with ctx.state.transaction():
        for candidate, verdict in zip(chosen, verdicts, strict=True):
            publishers = sorted({r.node for r in candidate.records})
            row = {**verdict.to_json(), "publishers": publishers}
            ctx.state.note_trial(text_key(verdict.text), verdict.text, verdict.domain, row)
    for verdict in verdicts:
        outcome = "adopted" if verdict.adopted else ("pending" if verdict.pending else "not adopted")
        ctx.log(
            f"tried a candidate of {verdict.domain[:64]!r} (look {verdict.looks}) on {verdict.questions} questions: "
            f"{verdict.fixed} fixed / {verdict.broken} broken (p = {verdict.p_value:.3g}): {outcome}"
        )
    return TrialReport(tuple(verdicts), rest, sum(r.op == "ADD" for r in results))


def gate_trial(config: DSOConfig, solver: Callable[[], LLM] | None = None) -> GateTrial | None:
    """The trial a learning node runs: its gate's validation questions (`train.validation_size`, apart from
    its training and held-out questions) for the first look, fresh draws of its task for the next ones, judged
    by the configured model (or `solver`'s); None without a gate."""
    questions = gate_questions(config.train)
    if not questions:
        return None
    settings = config.train
    train_set, heldout = train_heldout_split(
        settings.dataset, settings.train_size, settings.heldout_size, settings.seed
    )
    seen = {p.question for p in (*train_set, *heldout)}
    return GateTrial(
        questions[0].task,
        QuestionDraws(settings.dataset, len(questions), settings.seed, seen, first=questions),
        solver or (lambda: make_llm(config)),
        lambda model: make_verifier(settings.verifier, model),
        SolveSettings.from_train(
            settings, seed=settings.seed, parallel=config.llm.parallel, prompt_version=config.prompts.solver
        ),
        settings.gate_p,
        config.network.trial_looks,
    )
