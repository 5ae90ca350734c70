"""Extraction of one finished batch, groups one by one vs side by side (`dso bench extraction RUN BATCH`).

Reads a batch of a run (its config and rollouts), then proposes that batch's operations into an empty
library twice per round, alternating the order, with the run's extractor model.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from dso.config import DSOConfig
from dso.embed import make_embedder
from dso.errors import DSOError
from dso.learn.datasets import train_heldout_split
from dso.learn.extract import Extractor
from dso.learn.prompts import PromptSet
from dso.learn.run import load_run_config
from dso.learn.trainer import read_rollouts
from dso.library import ExperienceLibrary
from dso.llm import make_llm
from dso.machine import machine


def run_extraction_bench(
    config: DSOConfig, run_dir: Path, batch: str, rounds: int = 1, *, quiet: bool = False
) -> dict[str, Any]:
    rollouts_file = run_dir / "rollouts" / f"{batch}.jsonl"
    recorded = load_run_config(run_dir)
    if not rollouts_file.is_file():
        raise DSOError(f"{run_dir} holds no finished batch {batch!r} (expected {rollouts_file})")
    settings = recorded.train
    train_set, _ = train_heldout_split(settings.dataset, settings.train_size, settings.heldout_size, settings.seed)
    by_id = {p.id: p for p in train_set}
    groups = [(by_id[i], g) for i, g in read_rollouts(rollouts_file).items() if i in by_id]
    model = settings.extractor_model or recorded.model
    prompts = PromptSet(recorded.prompts)  # the versions the run extracted with
    config.llm.model = model
    llm, embedder = make_llm(config), make_embedder(config.embedder)
    seconds: dict[int, list[float]] = {1: [], config.llm.parallel: []}
    calls: dict[int, int] = {}
    try:
        with tempfile.TemporaryDirectory() as home:
            for round_index in range(rounds):
                order = list(seconds) if round_index % 2 == 0 else list(seconds)[::-1]
                for parallel in order:
                    library = ExperienceLibrary(Path(home) / f"{round_index}-{parallel}.db", embedder)
                    extractor = Extractor.from_train(llm, library, settings, prompts=prompts)
                    started = time.perf_counter()
                    extractor.propose(groups, 0, parallel=parallel)
                    seconds[parallel].append(time.perf_counter() - started)
                    calls[parallel] = extractor.stats.llm_calls
                    library.close()
                    if not quiet:
                        print(parallel, round(seconds[parallel][-1], 1), extractor.stats, file=sys.stderr, flush=True)
    finally:
        llm.close()
    medians = {p: statistics.median(s) for p, s in seconds.items()}
    return {
        "machine": machine(),
        "run": str(run_dir),
        "batch": batch,
        "model": model,
        "groups": len(groups),
        "rounds": rounds,
        "llm_calls": calls,
        "seconds": seconds,
        "median_seconds": medians,
        "speedup": medians[1] / medians[config.llm.parallel],
    }
