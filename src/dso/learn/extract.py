"""Semantic advantage extraction (Training-Free GRPO): from scored rollouts to library operations.

Per group (one problem, G scored attempts): groups whose rewards are all equal are skipped, except an
all-failed group (with `learn_from_failures`), where the correct answer and the dataset's reference
solution, if it has one, play the better attempt. (a) each attempt longer than `summarize_min_words` is
summarised (a shorter one is its own summary: summarising a one-word answer costs a call and adds
nothing); (b) one call compares better and worse attempts and proposes at most k
lessons "When <condition>, <strategy>."; (c) one call turns them into ADD / UPDATE / DELETE / NONE against
the most similar existing experiences. Per batch, (d) one call reconciles all groups' operations, and
fixed rules then make the result consistent (a DELETE beats an UPDATE of the same id; several UPDATEs
of one id keep the last; repeated ADDs are dropped). JSON outputs are requested with schema-constrained
decoding, parsed strictly and retried a bounded number of times; a group whose output never parses is
logged and skipped. Nothing here writes: the trainer applies the batch's operations in one transaction.
"""

from __future__ import annotations

import dataclasses
import json
import re
import statistics
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dso.config import TrainConfig
from dso.core.experience import normalise_text, word_count
from dso.errors import LLMError
from dso.learn.datasets import Problem
from dso.learn.prompts import PromptSet
from dso.learn.rewards import committed_answer, marked_answer
from dso.library import ExperienceLibrary, Operation
from dso.llm import LLM

LESSON_PATTERN = "^When [^.\\n]{10,180}\\.$"


@dataclasses.dataclass(frozen=True)
class Rollout:
    problem_id: str
    sample: int
    response: str
    reward: float
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    experiences: tuple[str, ...] = ()  # ids of the library experiences in this attempt's prompt

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> Rollout:
        values = {f.name: row[f.name] for f in dataclasses.fields(cls) if f.name in row}
        values["experiences"] = tuple(values.get("experiences", ()))
        return cls(**values)


@dataclasses.dataclass
class CallCost:
    """What one kind of extraction call cost: where a batch's tokens and seconds go."""

    calls: int = 0
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0  # reused from the server's prefix cache, not processed again
    completion_tokens: int = 0
    seconds: float = dataclasses.field(default=0.0, compare=False)  # summed over calls, side by side or not


@dataclasses.dataclass
class ExtractionStats:
    groups: int = 0
    skipped_homogeneous: int = 0
    skipped_unparsable: int = 0
    llm_calls: int = 0
    tokens: int = 0
    proposed: int = 0
    update_calls_skipped: int = 0  # candidates with no existing experience to weigh them against: added directly
    by_kind: dict[str, CallCost] = dataclasses.field(default_factory=dict)  # by prompt: summary, lessons, update...


def _lessons_schema(max_items: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "lessons": {
                "type": "array",
                "maxItems": max_items,
                # One sentence that starts with "When" and ends at its first period: decoding cannot
                # ramble past it, and a length cap never cuts a lesson mid-sentence.
                "items": {"type": "string", "pattern": LESSON_PATTERN},
            }
        },
        "required": ["lessons"],
    }


OPERATIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "operations": {
            "type": "array",
            "maxItems": 8,
            "items": {
                "type": "object",
                "properties": {
                    "op": {"enum": ["ADD", "UPDATE", "DELETE", "NONE"]},
                    "id": {"type": "string", "maxLength": 24},
                    "text": {"type": "string", "pattern": "^(When [^.\\n]{10,180}\\.)?$"},
                },
                "required": ["op", "id", "text"],
            },
        }
    },
    "required": ["operations"],
}


def group_confidence(rewards: Sequence[float]) -> float:
    """2 x the standard deviation of the group's rewards, capped at 1 (see README)."""
    return min(1.0, 2.0 * statistics.pstdev(rewards)) if len(rewards) > 1 else 0.0


# Lessons that speak about the extraction itself ("compare the better attempts ...") rather than about
# the task: a small extractor echoes its instructions, and such text helps no solver.
_ABOUT_EXTRACTION = re.compile(
    r"\b(attempts?|attempting|better ones?|worse ones?|similar problems?|solvers?|reference solutions?)\b",
    re.IGNORECASE,
)


def shown_answer(response: str, limit: int = 80) -> str:
    """The answer a response committed to, shortened for a table of answers."""
    return normalise_text(committed_answer(response))[:limit] or "(no answer)"


def _unmarked(response: str) -> bool:
    """The response ends without the "ANSWER:" line the solver is asked for (nor \\boxed{} or ####): it is
    scored on its last number or line, so a right conclusion stated elsewhere still scores 0. The extractor
    is told, or it reads a format miss as a reasoning miss and writes advice about reasoning."""
    return marked_answer(response) is None


def _no_working(response: str) -> bool:
    """The response gives its answer at once: fewer than 4 words besides its "ANSWER:" line (or, unmarked,
    besides its last word). A small solver often answers a short question without a single step; told so,
    the extractor can ask for the steps instead of restating rules the solver knows and skipped."""
    lines = response.strip().splitlines()
    if lines and marked_answer(lines[-1]) is not None:
        return len(" ".join(lines[:-1]).split()) < 4
    return len(response.split()) - 1 < 4


# What a wrong answer's form says, as the contrast table marks it and as the group prompt's attempt list says it.
_MARKS = (
    (_unmarked, 'no "ANSWER:" line', "no final ANSWER line"),
    (_no_working, "no working shown", "answered at once, no working"),
)


def _attempt_marks(response: str) -> str:
    return "".join(f", {said}" for applies, _, said in _MARKS if applies(response))


def _contrast_answer(response: str) -> str:
    return " ".join([shown_answer(response), *(f"[{mark}]" for applies, mark, _ in _MARKS if applies(response))])


def _mostly_at_once(rollouts: Sequence[Rollout]) -> bool:
    """At least half of the wrong attempts (and at least one) gave their answer with no working."""
    wrong = [r for r in rollouts if r.reward < 1.0]
    return bool(wrong) and 2 * sum(_no_working(r.response) for r in wrong) >= len(wrong)


def is_lesson(text: str, word_cap: int, quoted: Collection[str] = ()) -> bool:
    """A "When ..." sentence of 5 to `word_cap` words about the task, not one of the prompts' `quoted` examples."""
    clean = normalise_text(text)
    return (
        clean.lower().startswith("when ")
        and 5 <= word_count(clean) <= word_cap
        and not _ABOUT_EXTRACTION.search(clean)
        and " ".join(clean.lower().split()) not in quoted
    )


class Extractor:
    def __init__(
        self,
        llm: LLM,
        library: ExperienceLibrary,
        *,
        max_items: int = 2,
        retries: int = 2,
        temperature: float = 0.3,
        learn_from_failures: bool = True,
        contrast_batch: bool = False,
        summarize_min_words: int = 60,
        prompts: PromptSet | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.prompts = prompts or PromptSet()
        self.summarize_min_words = summarize_min_words
        self.llm, self.library = llm, library
        self.max_items, self.retries, self.temperature = max_items, retries, temperature
        self.learn_from_failures = learn_from_failures
        self.contrast_batch = contrast_batch
        self.stats = ExtractionStats()
        self._stats_lock = threading.Lock()  # groups of a batch are extracted from worker threads
        self._log = log or (lambda message: None)

    @classmethod
    def from_train(
        cls,
        llm: LLM,
        library: ExperienceLibrary,
        train: TrainConfig,
        *,
        prompts: PromptSet | None = None,
        log: Callable[[str], None] | None = None,
    ) -> Extractor:
        """The extractor a training configuration describes (training runs, the main job, the cost bench)."""
        return cls(
            llm,
            library,
            max_items=train.max_new_per_group,
            learn_from_failures=train.learn_from_failures,
            contrast_batch=train.contrast_batch,
            summarize_min_words=train.summarize_min_words,
            prompts=prompts,
            log=log,
        )

    def _is_lesson(self, text: str) -> bool:
        return is_lesson(text, self.library.word_cap, self.prompts.quoted_lessons)

    def _count(self, **deltas: int) -> None:
        with self._stats_lock:
            for field, delta in deltas.items():
                setattr(self.stats, field, getattr(self.stats, field) + delta)

    def _chat(
        self, kind: str, prompt: str, max_tokens: int, schema: Mapping[str, Any] | None = None, seed: int = 0
    ) -> str:
        reply = self.llm.chat(
            [{"role": "user", "content": prompt}],
            temperature=self.temperature,
            max_tokens=max_tokens,
            seed=seed,
            json_schema=schema,
        )
        with self._stats_lock:
            self.stats.llm_calls += 1
            self.stats.tokens += reply.prompt_tokens + reply.completion_tokens
            cost = self.stats.by_kind.setdefault(kind, CallCost())
            cost.calls += 1
            cost.prompt_tokens += reply.prompt_tokens
            cost.cached_prompt_tokens += reply.cached_prompt_tokens
            cost.completion_tokens += reply.completion_tokens
            cost.seconds += reply.seconds
        return reply.text

    def _summary(self, prompt: str, response: str) -> str:
        """A short attempt is its own summary (its last 2,500 characters, what a summary call would read too);
        a failed summary call falls back to the attempt's tail."""
        if word_count(response) <= self.summarize_min_words:
            return response[-2500:]
        try:
            return self._chat("summary", prompt, 160)
        except LLMError:
            return response[-600:]

    def _json(
        self, kind: str, prompt: str, schema: Mapping[str, Any], key: str, max_tokens: int = 512
    ) -> list[Any] | None:
        for attempt in range(self.retries + 1):
            try:
                text = self._chat(kind, prompt, max_tokens, schema, seed=attempt)
            except LLMError as exc:
                self._log(f"extraction call failed ({exc}); retrying")
                continue
            try:
                value = json.loads(text)
            except ValueError:
                continue
            if isinstance(value, dict) and isinstance(value.get(key), list):
                return list(value[key])
        return None

    def _existing(self, texts: Sequence[str], per_text: int = 3) -> dict[str, str]:
        shown: dict[str, str] = {}
        for text in texts:
            for hit in self.library.search(text, per_text):
                shown[hit.experience.id] = hit.experience.text
        return shown

    def group_operations(self, problem: Problem, rollouts: Sequence[Rollout], epoch: int) -> list[Operation]:
        """Operations proposed by one group; [] when the group is skipped."""
        self._count(groups=1)
        rewards = [r.reward for r in rollouts]
        uniform = max(rewards) == min(rewards)
        if uniform and not (self.learn_from_failures and max(rewards) == 0):
            self._count(skipped_homogeneous=1)
            return []
        summarize = self.prompts.get("summarize")
        summaries = [
            f"- attempt {r.sample} (reward {r.reward:g}{_attempt_marks(r.response)}): "
            + normalise_text(
                self._summary(
                    summarize.render(question=problem.question, reward=f"{r.reward:g}", attempt=r.response[-2500:]),
                    r.response,
                )
            )
            for r in rollouts
        ]
        reference = f"Reference solution: {problem.reference}\n" if problem.reference else ""
        if problem.reference:
            focus = "The wrong attempts missed the key step of the reference solution."
        elif not uniform:
            focus = "The wrong attempts missed what the right ones did."
        else:
            focus = "The wrong attempts missed what the correct answer depends on."
        # advantage.v5 adds its part "atonce" when the wrong attempts answered without a step: what made a
        # hand-written tip work on products and chain_sum was the order not to answer at once
        parts = self.prompts.get("advantage").sections()
        working = parts["atonce"].render().strip() if "atonce" in parts and _mostly_at_once(rollouts) else ""
        advantage = parts["system"].render(
            question=problem.question,
            answer=problem.answer,
            reference=reference,
            summaries="\n".join(summaries),
            max_items=self.max_items,
            focus=focus,
            working=working,  # a placeholder of advantage.v5 on; earlier versions have none
        )
        lessons = self._json("lessons", advantage, _lessons_schema(self.max_items), "lessons", max_tokens=400)
        if lessons is None:
            self._count(skipped_unparsable=1)
            self._log(f"group {problem.id}: lessons never parsed; skipped")
            return []
        confidence = group_confidence(rewards) if not uniform else 0.5
        return self._update(lessons, confidence, problem.task, epoch, f"group {problem.id}")

    def propose(
        self, groups: Sequence[tuple[Problem, Sequence[Rollout]]], epoch: int, *, parallel: int = 1
    ) -> list[Operation]:
        """Every group's operations, then the batch contrast's, before consolidation.

        Groups only read the library until the batch is applied, so they are extracted side by side: on
        llama.cpp's parallel slots the token-by-token part of several calls shares each step.
        """
        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            per_group = pool.map(lambda item: self.group_operations(item[0], item[1], epoch), groups)
            operations = [operation for group_operations in per_group for operation in group_operations]
        return operations + self.batch_operations(groups, epoch)

    def batch_operations(self, groups: Sequence[tuple[Problem, Sequence[Rollout]]], epoch: int) -> list[Operation]:
        """One call over the whole batch: the wrong answers of every problem beside its correct answer.

        A convention the solver keeps breaking (the kind of answer a question expects, a reversed
        relation) shows across problems far more plainly than inside one group, and a small extractor
        names it from such a table where per-group comparison stays vague. [] unless `contrast_batch`.
        """
        failed = [(p, g) for p, g in groups if any(r.reward < 1 for r in g)]
        if not self.contrast_batch or not failed:
            return []
        cases = []
        for number, (problem, group) in enumerate(failed[:8], 1):
            wrong = list(dict.fromkeys(_contrast_answer(r.response) for r in group if r.reward < 1))
            cases.append(
                f"Problem {number}: {problem.question[-600:].strip()}\n"
                f"Solver answered: {'; '.join(wrong)}\nCorrect answer: {problem.answer}"
            )
        prompt = self.prompts.get("contrast").render(cases="\n\n".join(cases), max_items=self.max_items)
        lessons = self._json("contrast", prompt, _lessons_schema(self.max_items), "lessons", max_tokens=400)
        if lessons is None:
            self._count(skipped_unparsable=1)
            self._log(f"batch contrast of epoch {epoch}: lessons never parsed; skipped")
            return []
        share_wrong = statistics.fmean(r.reward < 1 for _, g in failed for r in g)
        return self._update(lessons, share_wrong, failed[0][0].task, epoch, "batch contrast")

    def _update(
        self, lessons: Sequence[Any], confidence: float, domain: str, epoch: int, where: str
    ) -> list[Operation]:
        """Candidate lessons -> ADD / UPDATE / DELETE against the most similar existing experiences."""
        candidates = [normalise_text(t) for t in lessons if isinstance(t, str) and self._is_lesson(t)]
        if not candidates:
            return []
        existing = self._existing(candidates)
        if not existing:  # an empty library: nothing to update or delete, so the call could only say ADD
            self._count(update_calls_skipped=1, proposed=len(candidates))
            return [Operation("ADD", c, None, confidence, domain, epoch) for c in candidates]
        raw = self._operations(existing, "\n".join(f"- {c}" for c in candidates), "update")
        if raw is None:
            self._count(skipped_unparsable=1)
            self._log(f"{where}: operations never parsed; skipped")
            return []
        operations = self._to_operations(raw, existing, confidence, domain, epoch)
        self._count(proposed=len(operations))
        return operations

    def _operations(self, existing: Mapping[str, str], listing: str, template: str) -> list[Any] | None:
        shown = "\n".join(f"{i}: {t}" for i, t in existing.items()) or "(none yet)"
        values = {"existing": shown, "candidates": listing, "operations": listing}
        return self._json(
            template, self.prompts.get(template).render(**values), OPERATIONS_SCHEMA, "operations", max_tokens=700
        )

    def _to_operations(
        self, raw: Sequence[Any], existing: Mapping[str, str], confidence: float, domain: str, epoch: int
    ) -> list[Operation]:
        operations = []
        for item in raw:
            if not isinstance(item, dict):
                continue
            op, target, text = item.get("op"), str(item.get("id") or ""), normalise_text(str(item.get("text") or ""))
            if op == "ADD" and self._is_lesson(text):
                operations.append(Operation("ADD", text, None, confidence, domain, epoch))
            elif op == "UPDATE" and target in existing and self._is_lesson(text):
                operations.append(Operation("UPDATE", text, target, confidence, domain, epoch))
            elif op == "DELETE" and target in existing:
                operations.append(Operation("DELETE", None, target, confidence, domain, epoch))
        return operations

    def consolidate(self, operations: Sequence[Operation]) -> list[Operation]:
        """One call reconciles a batch's operations; fixed rules then make them consistent."""
        if len(operations) > 1:
            listing = "\n".join(f"- {o.op} {o.target or ''} {o.text or ''}".replace("  ", " ") for o in operations)
            existing = {o.target: self.library.get(o.target).text for o in operations if o.target}
            raw = self._operations(existing, listing, "consolidate")
            if raw is not None:
                # A kept text keeps its group's confidence; a reworded one gets the batch's mean, never
                # the batch's maximum (that would inflate every merged lesson).
                by_text = {o.text: o.confidence for o in operations if o.text}
                mean = statistics.fmean(o.confidence for o in operations)
                first = operations[0]
                merged = [
                    dataclasses.replace(o, confidence=by_text.get(o.text or "", mean))
                    for o in self._to_operations(raw, existing, mean, first.domain, first.epoch)
                ]
                if merged or not any(o.op == "ADD" for o in operations):
                    operations = merged
            else:
                self._log("batch consolidation never parsed; applying the groups' operations as proposed")
        return reconcile(operations)


def reconcile(operations: Sequence[Operation]) -> list[Operation]:
    """DELETE beats UPDATE of the same id; the last UPDATE of an id wins; repeated ADDs are dropped."""
    deleted = {o.target for o in operations if o.op == "DELETE"}
    last_update: dict[str, Operation] = {}
    seen_adds: set[str] = set()
    result: list[Operation] = []
    for operation in operations:
        if operation.op == "UPDATE" and operation.target and operation.target not in deleted:
            last_update[operation.target] = operation
        elif operation.op == "ADD" and operation.text and operation.text.lower() not in seen_adds:
            seen_adds.add(operation.text.lower())
            result.append(operation)
    deletes = [o for o in operations if o.op == "DELETE"]
    unique_deletes = list({o.target: o for o in deletes}.values())
    return unique_deletes + list(last_update.values()) + result
