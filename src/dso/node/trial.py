"""Try before trust: a node adopts a stranger's candidate lesson only where its own questions show a gain.

The consensus accepts a lesson that enough reputation supports; a lesson that only one specialist could learn
never gets there, and no count can tell that specialist from a lone attacker. Such a lesson is a *candidate*
(`dso.consensus.aggregate`, step 6). A node that holds questions of the candidate's domain tries it on them
with the lesson gate (`dso.learn.gate`: the node's library as it stands, against the same library with the
candidate added; the solver's template carries the placebo instruction from solver.v3 on, so a lesson that
only restates it adds nothing) and adopts it only when it fixes more questions than it breaks, at the gate's
p-value. So a wrong or empty lesson reaches a node only by beating that node's own prompt on its own
questions, whatever share of the network is Byzantine; a node without questions of that kind never uses it.

What a node tried is kept in its state (one trial per text), so a candidate costs each node at most one
trial; at most `limit` are tried per call, strongest support first. An adopted lesson carries the trial's
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
from dso.learn.datasets import Problem
from dso.learn.gate import gate
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
    questions: int
    fixed: int
    broken: int
    p_value: float
    adopted: bool

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class LessonTrial(Protocol):
    """What a node needs to try candidates: the domains of the questions it holds, and a way to judge texts on
    them against its library."""

    @property
    def domains(self) -> frozenset[str]: ...

    def __call__(self, library: ExperienceLibrary, candidates: Sequence[GlobalExperience]) -> list[TrialVerdict]: ...


class GateTrial:
    """The real trial: the lesson gate on the node's validation questions of one domain, with its solver
    (made by `solver` on the first candidate, so a sync with nothing to try loads no model)."""

    def __init__(
        self,
        domain: str,
        questions: Sequence[Problem],
        solver: Callable[[], LLM],
        verifier: Callable[[LLM], Verifier],
        settings: SolveSettings,
        max_p: float,
    ) -> None:
        self._domain, self._questions = domain, list(questions)
        self._make_solver, self._make_verifier = solver, verifier
        self._settings, self._max_p = settings, max_p
        self._solver: tuple[LLM, Verifier] | None = None

    @property
    def domains(self) -> frozenset[str]:
        return frozenset({self._domain})

    def __call__(self, library: ExperienceLibrary, candidates: Sequence[GlobalExperience]) -> list[TrialVerdict]:
        """One gate over the candidates in their order: one pass without them, then each against the library
        plus those adopted before it (what is adopted must help together, as the learning gate demands)."""
        if not candidates:
            return []
        if self._solver is None:
            model = self._make_solver()
            self._solver = (model, self._make_verifier(model))
        operations = [Operation("ADD", text=c.text, domain=c.domain) for c in candidates]
        _, report = gate(operations, library, self._questions, *self._solver, self._settings, max_p=self._max_p)
        return [
            TrialVerdict(c.text, c.domain, t.asked, t.fixed, t.broken, t.p_value, t.kept)
            for c, t in zip(candidates, report.trials, strict=True)
        ]


@dataclasses.dataclass(frozen=True)
class TrialReport:
    tried: tuple[TrialVerdict, ...]
    waiting: int  # candidates of this node's domains left for a later call (over `limit`)
    adopted: int  # merged into the library this call

    def to_json(self) -> dict[str, Any]:
        return {"tried": [v.to_json() for v in self.tried], "waiting": self.waiting, "adopted": self.adopted}


def untried(ctx: NodeContext, domains: frozenset[str]) -> list[GlobalExperience]:
    """The global library's candidates of these domains that this node neither published nor tried yet, in the
    order it tries them: first those backed by a publisher none of whose candidates this node refused before,
    then by the consensus's order (support). A publisher whose lesson failed here once goes to the back of the
    queue with every later lesson, so a flood of fresh wrong candidates cannot starve a specialist's."""
    tried = ctx.state.tried_texts()
    refused: dict[str, int] = {}
    for verdict in ctx.state.trials():
        if not verdict.get("adopted"):
            for node in verdict.get("publishers") or ():
                refused[str(node)] = refused.get(str(node), 0) + 1
    waiting = [
        g
        for g in global_library(ctx).candidates
        if g.domain in domains and text_key(g.text) not in tried and not any(r.node == ctx.address for r in g.records)
    ]
    return sorted(waiting, key=lambda g: min((refused.get(r.node, 0) for r in g.records), default=0))


def try_candidates(ctx: NodeContext, trial: LessonTrial, limit: int) -> TrialReport:
    """Try up to `limit` untried candidates of the trial's domains; merge those it adopts, with provenance."""
    waiting = untried(ctx, trial.domains)
    chosen, rest = waiting[:limit], len(waiting) - min(limit, len(waiting))
    verdicts = trial(ctx.library, chosen) if chosen else []
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
        ctx.log(
            f"tried a candidate of {verdict.domain[:64]!r} on {verdict.questions} questions: {verdict.fixed} fixed / "
            f"{verdict.broken} broken (p = {verdict.p_value:.3g}): {'adopted' if verdict.adopted else 'not adopted'}"
        )
    return TrialReport(tuple(verdicts), rest, sum(r.op == "ADD" for r in results))


def gate_trial(config: DSOConfig, solver: Callable[[], LLM] | None = None) -> GateTrial | None:
    """The trial a learning node runs: its gate's validation questions (`train.validation_size`, apart from
    its training and held-out questions), of its task's domain, judged by the configured model (or `solver`'s);
    None without a gate."""
    questions = gate_questions(config.train)
    if not questions:
        return None
    settings = config.train
    return GateTrial(
        questions[0].task,
        questions,
        solver or (lambda: make_llm(config)),
        lambda model: make_verifier(settings.verifier, model),
        SolveSettings.from_train(
            settings, seed=settings.seed, parallel=config.llm.parallel, prompt_version=config.prompts.solver
        ),
        settings.gate_p,
    )
