"""Extraction of one batch, groups one by one vs side by side -> bench/results/extraction.json.

Reads a finished batch of a run (its config and rollouts), then proposes that batch's operations into an
empty library twice per round, alternating the order, with the run's extractor model:

    python bench/extraction.py runs/learning-aiw e0-b0 [rounds]
"""

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from dso.config import load_config
from dso.embed import make_embedder
from dso.learn.datasets import train_heldout_split
from dso.learn.extract import Extractor
from dso.learn.trainer import read_rollouts
from dso.library import ExperienceLibrary
from dso.llm import make_llm

run_dir, batch = Path(sys.argv[1]), sys.argv[2]
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 1
saved = json.loads((run_dir / "config.json").read_text())
train_set, _ = train_heldout_split(saved["dataset"], saved["train_size"], saved["heldout_size"], saved["seed"])
by_id = {p.id: p for p in train_set}
groups = read_rollouts(run_dir / "rollouts" / f"{batch}.jsonl")
config = load_config()
config.llm.model = saved["extractor_model"] or saved["solver_model"]
llm, embedder = make_llm(config), make_embedder()
seconds: dict[int, list[float]] = {1: [], config.llm.parallel: []}
calls: dict[int, int] = {}
with tempfile.TemporaryDirectory() as home:
    for round_index in range(rounds):
        order = list(seconds) if round_index % 2 == 0 else list(seconds)[::-1]
        for parallel in order:
            library = ExperienceLibrary(Path(home) / f"{round_index}-{parallel}.db", embedder)
            extractor = Extractor(
                llm,
                library,
                max_items=saved["max_new_per_group"],
                learn_from_failures=saved["learn_from_failures"],
                contrast_batch=saved.get("contrast_batch", True),
            )
            started = time.perf_counter()
            extractor.propose([(by_id[i], g) for i, g in groups.items()], 0, parallel=parallel)
            seconds[parallel].append(time.perf_counter() - started)
            calls[parallel] = extractor.stats.llm_calls
            print(parallel, round(seconds[parallel][-1], 1), extractor.stats, flush=True)
llm.close()
medians = {p: statistics.median(s) for p, s in seconds.items()}
report = {
    "run": str(run_dir),
    "batch": batch,
    "model": config.llm.model,
    "groups": len(groups),
    "rounds": rounds,
    "llm_calls": calls,
    "seconds": seconds,
    "median_seconds": medians,
    "speedup": medians[1] / medians[config.llm.parallel],
}
Path("bench/results/extraction.json").write_text(json.dumps(report, indent=1) + "\n")
print(json.dumps(report))
