"""The trainer: epochs of batches; per batch, rollouts -> extraction -> one atomic library update.

A run directory holds ``config.json``, the library (``library.db``), the rollouts of every batch
(``rollouts/e<epoch>-b<batch>.jsonl``, written whole or not at all) and per-batch metrics
(``metrics.jsonl``). The cursor (last finished batch) is written in the same SQLite transaction as the
batch's library operations, so after a crash anywhere ``--resume`` neither repeats a finished batch nor
loses one; rollouts already written for the interrupted batch are reused instead of sampled again.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dso.config import DSOConfig, TrainConfig
from dso.errors import DSOError
from dso.faults import fault_point
from dso.files import write_text_atomic
from dso.learn.datasets import Problem
from dso.learn.evidence import PruneRule, to_prune
from dso.learn.extract import Extractor, Rollout
from dso.learn.gate import gate
from dso.learn.rewards import Verifier
from dso.learn.solve import SolveSettings, solve
from dso.library import ExperienceLibrary, Operation
from dso.llm import LLM

CURSOR_KEY = "train_cursor"


@dataclasses.dataclass
class BatchMetrics:
    epoch: int
    batch: int
    problems: int
    mean_reward: float
    operations: int
    library_size: int
    seconds: float
    rollouts_reused: bool
    gate: dict[str, Any] | None = None  # what each candidate lesson scored, with train.gate_lessons


def config_json(config: DSOConfig) -> dict[str, Any]:
    """What a run records of its configuration: the train settings (eval settings excluded: eval may be rerun
    differently), the solver model and the prompt versions."""
    recorded = dataclasses.asdict(config.train)
    recorded.pop("eval_samples")
    recorded.pop("eval_temperature")
    return {**recorded, "model": config.llm.model, "prompts": dataclasses.asdict(config.prompts)}


def group_evidence(groups: list[list[Rollout]]) -> dict[str, tuple[int, int, int]]:
    """(helped, hurt, neutral) per experience: each group whose prompt held it counts once, as better than,
    worse than or equal to the batch's mean reward. Weak evidence one group at a time; summed over many
    batches it separates lessons that travel with success from those that travel with failure.

    An experience that was in every group of the batch gets nothing from it: the mean is made of its own
    groups, so above or below it says how hard each question was, not what the lesson did. (Counting it
    once deleted, at an epoch's end, all four lessons a validation gate had kept at 4-8 fixed / 0 broken.)"""
    groups = [group for group in groups if group]
    rewards = [r.reward for group in groups for r in group]
    if not rewards:
        return {}
    mean = sum(rewards) / len(rewards)
    counts: dict[str, list[int]] = {}
    for group in groups:
        own = sum(r.reward for r in group) / len(group)
        slot = 0 if own > mean + 1e-9 else 1 if own < mean - 1e-9 else 2
        for experience_id in dict.fromkeys(group[0].experiences):
            counts.setdefault(experience_id, [0, 0, 0])[slot] += 1
    return {key: (c[0], c[1], c[2]) for key, c in counts.items() if sum(c) < len(groups)}


def _cursor(library: ExperienceLibrary) -> tuple[int, int]:
    value = library.get_meta(CURSOR_KEY)
    if value is None:
        return (-1, -1)
    epoch, batch = value.split(":")
    return int(epoch), int(batch)


def read_rollouts(path: Path) -> dict[str, list[Rollout]]:
    """A batch's written rollouts (``rollouts/e<epoch>-b<batch>.jsonl``), grouped by problem id."""
    rollouts: dict[str, list[Rollout]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line:
            row = Rollout.from_json(json.loads(line))
            rollouts.setdefault(row.problem_id, []).append(row)
    return rollouts


def check_run_dir(run_dir: Path, config: DSOConfig, resume: bool) -> None:
    """A run directory belongs to one configuration; --resume must match it, a new run must be empty."""
    saved = run_dir / "config.json"
    if saved.exists():
        if not resume:
            raise DSOError(f"{run_dir} already holds a run; pass --resume to continue it or pick another --run-dir")
        previous = json.loads(saved.read_text(encoding="utf-8"))
        if previous != json.loads(json.dumps(config_json(config))):
            raise DSOError(f"{run_dir} was started with another configuration; resume it with the same flags")
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "rollouts").mkdir(exist_ok=True)
        write_text_atomic(saved, json.dumps(config_json(config), indent=1, sort_keys=True) + "\n")


def train(
    config: TrainConfig,
    run_dir: Path,
    train_set: list[Problem],
    solver: LLM,
    extractor: Extractor,
    verifier: Verifier,
    *,
    parallel: int = 4,
    on_rollouts: Callable[[Problem, list[Rollout]], None] | None = None,
    on_batch: Callable[[BatchMetrics], None] | None = None,
    max_batches: int | None = None,
    validation: Sequence[Problem] = (),
) -> list[BatchMetrics]:
    """Learn batch by batch from the library's cursor; with `max_batches`, stop after that many (a later call
    goes on from the cursor: how a network node learns a round at a time).

    After each batch, experiences with clear harmful evidence are deleted by rule (`evidence.harmful`), in the
    batch's own transaction; after an epoch's last batch, those used often that never helped on net too.
    The gate judges candidates on `validation` (the batch's own questions when there are none)."""
    library = extractor.library
    solver_prompt = extractor.prompts.versions.solver
    done = _cursor(library)
    metrics: list[BatchMetrics] = []
    by_id = {p.id: p for p in train_set}
    for epoch in range(config.epochs):
        order = train_set[:]
        random.Random(config.seed * 1000 + epoch).shuffle(order)
        for batch_index, start in enumerate(range(0, len(order), config.batch_size)):
            if (epoch, batch_index) <= done:
                continue
            if max_batches is not None and len(metrics) >= max_batches:
                return metrics
            started = time.perf_counter()
            batch = order[start : start + config.batch_size]
            path = run_dir / "rollouts" / f"e{epoch}-b{batch_index}.jsonl"
            reused = path.exists()
            if reused:
                rollouts = read_rollouts(path)
            else:
                settings = SolveSettings.from_train(
                    config,
                    samples=config.group_size,
                    temperature=config.rollout_temperature,
                    seed=config.seed + 7919 * epoch,
                    parallel=parallel,
                    prompt_version=solver_prompt,
                )
                rollouts = solve(batch, solver, verifier, settings, library, on_done=on_rollouts)
                fault_point(f"before-rollouts-saved:{epoch}:{batch_index}")
                lines = [json.dumps(r.to_json()) for group in rollouts.values() for r in group]
                write_text_atomic(path, "\n".join(lines) + "\n")
                fault_point(f"after-rollouts:{epoch}:{batch_index}")
            groups = [(by_id[problem_id], group) for problem_id, group in rollouts.items()]
            operations = extractor.propose(groups, epoch, parallel=parallel)
            final = extractor.consolidate(operations)
            report = None
            if config.gate_lessons:
                greedy = SolveSettings.from_train(
                    config,
                    seed=config.seed,
                    parallel=parallel,
                    prompt_version=solver_prompt,
                )
                # on validation questions a sign test decides; a batch's 2-5 own questions only need fixed > broken
                questions, source, max_p = (
                    (validation, "validation", config.gate_p) if validation else (batch, "batch", 1.0)
                )
                final, gated = gate(final, library, questions, solver, verifier, greedy, max_p=max_p, source=source)
                report = gated.to_json()
            # One prompt per question: its first attempt names the experiences that were in it.
            used = [experience for group in rollouts.values() if group for experience in group[0].experiences]
            rewards = [r.reward for group in rollouts.values() for r in group]
            evidence = group_evidence(list(rollouts.values()))
            last_of_epoch = start + config.batch_size >= len(order)
            rule = PruneRule(config.prune_p, config.prune_min_uses)
            pruned = to_prune(library.all(), rule, epoch_end=last_of_epoch, pending=evidence)
            touched = {o.target for o in final if o.target}
            deletions = [Operation("DELETE", target=i, reason=why) for i, why in pruned if i not in touched]
            library.apply(
                [*final, *deletions],
                meta={CURSOR_KEY: f"{epoch}:{batch_index}"},
                usage=used,
                evidence=evidence,
            )
            entry = BatchMetrics(
                epoch,
                batch_index,
                len(batch),
                sum(rewards) / max(1, len(rewards)),
                len(final) + len(deletions),
                len(library),
                time.perf_counter() - started,
                reused,
                report,
            )
            with (run_dir / "metrics.jsonl").open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(dataclasses.asdict(entry)) + "\n")
            metrics.append(entry)
            if on_batch:
                on_batch(entry)
    return metrics
