"""What one learning batch costs, before and after extraction's cuts, side by side in one run.

`dso bench batch-cost gsm_symbolic`: the first training batch of a task is answered G times once (the
rollouts every setting shares), then extracted into a copy of the same starting library under each
setting, in alternating order over rounds, on the same loaded model:

- ``before``: how batches ran when a gsm_symbolic batch of 10 took 15-19 minutes on 2 cores: groups one
  at a time, every attempt over ``train.summarize_min_words`` words summarized by its own call;
- ``side by side``: groups extracted at once on the backend's parallel slots (the default);
- ``no summaries``: side by side, and attempts compared whole instead of summarized first.

Per setting: seconds (median over rounds), calls and tokens by prompt (summary, lessons, contrast,
update, consolidate), prompt tokens reused from llama.cpp's prefix cache, and the operations proposed.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from dso.config import DSOConfig
from dso.embed import make_embedder
from dso.errors import ConfigError
from dso.learn.datasets import train_heldout_split
from dso.learn.extract import Extractor
from dso.learn.prompts import PromptSet
from dso.learn.run import make_verifier
from dso.learn.solve import SolveSettings, solve
from dso.library import ExperienceLibrary
from dso.llm import make_llm
from dso.machine import machine

NEVER = 1_000_000  # summarize_min_words above any answer: no summary calls


def _settings(config: DSOConfig) -> dict[str, tuple[int, int]]:
    """Setting name -> (groups side by side, summarize_min_words)."""
    words = config.train.summarize_min_words
    return {
        "before": (1, words),
        "side by side": (config.llm.parallel, words),
        "no summaries": (config.llm.parallel, NEVER),
    }


def run_batch_cost_bench(
    config: DSOConfig,
    task: str,
    *,
    batch_size: int = 10,
    group_size: int = 4,
    max_tokens: int = 512,
    library_file: Path | None = None,
    rounds: int = 1,
    quiet: bool = False,
) -> dict[str, Any]:
    if not 1 <= batch_size <= 100 or not 2 <= group_size <= 16 or not 1 <= rounds <= 10:
        raise ConfigError("batch size 1-100, group size 2-16 and rounds 1-10, please")
    train = dataclasses.replace(config.train, max_tokens=max_tokens, group_size=group_size)
    problems, _ = train_heldout_split(task, batch_size, train.heldout_size, train.seed)
    prompts = PromptSet(config.prompts)
    settings = _settings(config)
    solver, embedder = make_llm(config), make_embedder(config.embedder)
    seconds: dict[str, list[float]] = {name: [] for name in settings}
    costs: dict[str, dict[str, Any]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="dso-batch-cost-") as home:
            start = ExperienceLibrary.from_config(config.library, embedder, Path(home) / "start.db")
            if library_file is not None:
                start.import_json(library_file)
            starting_size = len(start)
            rollout_settings = SolveSettings.from_train(
                train,
                samples=group_size,
                temperature=train.rollout_temperature,
                seed=train.seed,
                parallel=config.llm.parallel,
                prompt_version=config.prompts.solver,
            )
            began = time.perf_counter()
            rollouts = solve(problems, solver, make_verifier(train.verifier, solver), rollout_settings, start)
            rollout_seconds = time.perf_counter() - began
            flat = [r for group in rollouts.values() for r in group]
            if not quiet:
                print(f"rollouts: {len(flat)} in {rollout_seconds:.0f} s", file=sys.stderr, flush=True)
            groups = [(p, rollouts[p.id]) for p in problems]
            for round_index in range(rounds):
                order = list(settings) if round_index % 2 == 0 else list(settings)[::-1]
                for name in order:
                    parallel, words = settings[name]
                    library = start.copy_to(Path(home) / f"{round_index}-{len(seconds[name])}-{parallel}-{words}.db")
                    extractor = Extractor.from_train(
                        solver, library, dataclasses.replace(train, summarize_min_words=words), prompts=prompts
                    )
                    began = time.perf_counter()
                    operations = extractor.consolidate(extractor.propose(groups, 0, parallel=parallel))
                    seconds[name].append(time.perf_counter() - began)
                    library.close()
                    stats = extractor.stats
                    costs[name] = {
                        "groups_side_by_side": parallel,
                        "summarize_min_words": words,
                        "groups_skipped": stats.skipped_homogeneous,
                        "llm_calls": stats.llm_calls,
                        "tokens": stats.tokens,
                        "by_kind": {kind: dataclasses.asdict(cost) for kind, cost in stats.by_kind.items()},
                        "operations": len(operations),
                    }
                    if not quiet:
                        print(
                            f"{name}: {seconds[name][-1]:.0f} s, {stats.llm_calls} calls, {stats.tokens} tokens",
                            file=sys.stderr,
                            flush=True,
                        )
            start.close()
    finally:
        solver.close()
    medians = {name: statistics.median(s) for name, s in seconds.items()}
    return {
        "machine": machine(),
        "task": task,
        "model": config.llm.model,
        "seed": train.seed,
        "batch_size": batch_size,
        "group_size": group_size,
        "max_tokens": max_tokens,
        "starting_library": starting_size,
        "rollouts": {
            "seconds": rollout_seconds,
            "attempts": len(flat),
            "prompt_tokens": sum(r.prompt_tokens for r in flat),
            "completion_tokens": sum(r.completion_tokens for r in flat),
            "solved": sum(r.reward for r in flat),
        },
        "rounds": rounds,
        "extraction_seconds": seconds,
        "median_extraction_seconds": medians,
        "batch_seconds": {name: rollout_seconds + m for name, m in medians.items()},
        "extraction": costs,
    }
