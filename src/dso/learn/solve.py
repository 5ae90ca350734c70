"""Rollouts: the frozen solver answers with retrieved experiences in its prompt.

Both arms of every comparison (with and without the library) use this one prompt and one token budget;
only the experiences block differs, so a difference measures the experiences, not the prompt or
truncation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dso.config import PromptConfig, TrainConfig
from dso.learn.datasets import Problem
from dso.learn.extract import Rollout
from dso.learn.prompts import load_prompt
from dso.learn.rewards import Verifier
from dso.library import ExperienceLibrary, SearchHit, render_for_prompt
from dso.llm import LLM, ChatMessage

PLACEBO_TEMPLATE = 3  # the solver template whose instruction is the placebo


@dataclasses.dataclass(frozen=True)
class SolveSettings:
    samples: int = 1
    temperature: float = 0.0
    max_tokens: int = 512
    top_k: int = 5  # experiences injected per question
    min_similarity: float = -1.0  # none injected below this cosine to the question
    evidence_weight: float = 0.0  # rank by similarity + this x net evidence (Experience.net_help)
    seed: int = 0
    parallel: int = 4
    prompt_version: int = PromptConfig.solver  # of the solver template; a run passes its configured one
    # a generic instruction right after the question: None = the template's own (from solver.v3 on, the
    # placebo instruction), "" = none (the bare prompt), a text = that text (candidates, probes)
    instruction: str | None = None

    @classmethod
    def from_train(cls, train: TrainConfig, **fields: Any) -> SolveSettings:
        """The budget and retrieval of a training configuration (the same for training, the gate and every
        evaluation arm), with the sampling given in `fields`."""
        retrieval = {
            "max_tokens": train.max_tokens,
            "top_k": train.top_k,
            "min_similarity": train.min_similarity,
            "evidence_weight": train.evidence_weight,
        }
        return cls(**{**retrieval, **fields})


def template_instruction(prompt_version: int) -> str:
    """The generic instruction a solver template carries in its part ``---instruction---`` ("" if none)."""
    parts = load_prompt("solver", prompt_version).sections()
    return parts["instruction"].render().strip() if "instruction" in parts else ""


def placebo_instruction() -> str:
    """The placebo: the generic instruction of the first solver template that carries one (solver.v3), chosen
    by measurement on a seed kept for that choice (docs/results.md). Every lesson is judged against it."""
    return template_instruction(PLACEBO_TEMPLATE)


def solver_messages(
    problem: Problem, experiences: str, prompt_version: int, instruction: str | None = None
) -> list[ChatMessage]:
    """The solver's chat: a system prompt and the question, with the experiences where the template puts them.

    Version 1 lists them in the system prompt. From version 2 they follow the question in the user turn,
    under the template's own heading: a small solver heeds the end of the user turn and ignores advice
    placed before the question (docs/design.md, "Where the experiences go"). A generic instruction
    (`SolveSettings.instruction`) follows the question, before the experiences.
    """
    text = template_instruction(prompt_version) if instruction is None else instruction.strip()
    question = f"{problem.question}\n\n{text}" if text else problem.question
    parts = load_prompt("solver", prompt_version).sections()
    if "user" not in parts:
        block = f"\nExperiences that helped on similar problems:\n{experiences}\n" if experiences else ""
        return [{"role": "system", "content": parts["system"].render(experiences=block)}, _user(question)]
    listed = parts["experiences"].render(experiences=experiences) if experiences else ""
    user = parts["user"].render(question=question, experiences=listed)
    return [{"role": "system", "content": parts["system"].render()}, _user(user)]


def _user(text: str) -> ChatMessage:
    return {"role": "user", "content": text}


def retrieved(
    problems: Sequence[Problem], settings: SolveSettings, library: ExperienceLibrary | None
) -> dict[str, list[SearchHit]]:
    """The experiences each question's prompt carries: its own domain's first, another's only above
    `min_similarity`, at most `top_k`."""
    return {
        p.id: library.search(
            p.question,
            settings.top_k,
            min_similarity=settings.min_similarity,
            evidence_weight=settings.evidence_weight,
            domain=p.task,
        )
        if library
        else []
        for p in problems
    }


def solve(
    problems: Sequence[Problem],
    solver: LLM,
    verifier: Verifier,
    settings: SolveSettings,
    library: ExperienceLibrary | None = None,
    *,
    on_done: Callable[[Problem, list[Rollout]], None] | None = None,
    until: Callable[[Problem, list[Rollout]], bool] | None = None,
) -> dict[str, list[Rollout]]:
    """`samples` scored attempts per problem, several problems in flight at once.

    Nothing is written: each rollout names the experiences that were in its prompt, and whoever keeps
    the rollouts counts their usage (the trainer does so in the batch's own transaction).

    `until` sees each problem's rollouts in the problems' order; once it returns False no further problem
    is started and those after it are left out of the result (the ones already in flight are answered and
    dropped), so the result is the same prefix however the answers' timing falls. The slots stay busy
    meanwhile: a caller deciding every few answers whether to go on no longer waits for the slowest answer
    of each few before the next start.
    """
    used = retrieved(problems, settings, library)
    prompts = {
        p.id: solver_messages(
            p, render_for_prompt([h.experience.text for h in used[p.id]]), settings.prompt_version, settings.instruction
        )
        for p in problems
    }

    def attempt(problem: Problem) -> tuple[Problem, list[Rollout]]:
        seed = settings.seed + int.from_bytes(problem.id.encode()[-4:], "little")
        reply = solver.chat(
            prompts[problem.id],
            n=settings.samples,
            temperature=settings.temperature,
            max_tokens=settings.max_tokens,
            seed=seed,
        )
        per_sample = reply.completion_tokens // max(1, len(reply.texts))
        rollouts = [
            Rollout(
                problem.id,
                i,
                text,
                verifier(text, problem),
                reply.prompt_tokens,
                per_sample,
                reason,
                tuple(h.experience.id for h in used[problem.id]),
            )
            for i, (text, reason) in enumerate(zip(reply.texts, reply.finish_reasons, strict=True))
        ]
        return problem, rollouts

    results: dict[str, list[Rollout]] = {}
    with ThreadPoolExecutor(max(1, settings.parallel)) as pool:
        futures = [pool.submit(attempt, p) for p in problems]
        for future in futures:
            problem, rollouts = future.result()
            results[problem.id] = rollouts
            if on_done:
                on_done(problem, rollouts)
            if until is not None and not until(problem, rollouts):
                for rest in futures:
                    rest.cancel()  # those not started; the running ones finish and are dropped
                break
    return results
