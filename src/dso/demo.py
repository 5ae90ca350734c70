"""The main job on embedded defaults: a short real learning run, then before/after accuracy.

A frozen qwen2.5-1.5b answers family-relationship questions (reasoning-gym, generated offline); the
Training-Free GRPO loop turns its scored attempts into experiences; the held-out questions are then
answered without and with the learned library, same prompt and token budget.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from dso.config import DSOConfig
from dso.errors import DSOError
from dso.learn.run import Hooks, run_evaluation, run_training

MARKER = ".dso-demo-run"  # written into every run directory the demo makes; only such a directory is replaced

DEMO_TRAIN = {
    "train.dataset": "family_relationships",
    "train.train_size": 10,
    "train.heldout_size": 30,
    "train.batch_size": 5,
    "train.group_size": 4,
    "train.max_tokens": 64,
}


def fresh_run_dir(run_dir: Path) -> None:
    """Replace `run_dir` only if the demo made it (its marker file is there) or it is empty; refuse anything else."""
    if run_dir.is_symlink() or (run_dir.exists() and not run_dir.is_dir()):
        raise DSOError(f"{run_dir} is not a directory the demo made; pick another --run-dir")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not (run_dir / MARKER).is_file():
            raise DSOError(
                f"{run_dir} is not empty and was not made by dso demo; refusing to replace it (pick another --run-dir)"
            )
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / MARKER).write_text("made by dso demo; replaced by the next dso demo with this --run-dir\n")


def run_demo(config: DSOConfig, run_dir: Path, hooks: Hooks | None = None) -> dict[str, Any]:
    fresh_run_dir(run_dir)
    summary = run_training(config, run_dir, hooks=hooks)
    report = run_evaluation(config, run_dir, hooks=hooks)
    return {"train": summary, "eval": report}
