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
from dso.learn.run import Hooks, run_evaluation, run_training

DEMO_TRAIN = {
    "train.dataset": "family_relationships",
    "train.train_size": 10,
    "train.heldout_size": 30,
    "train.batch_size": 5,
    "train.group_size": 4,
    "train.max_tokens": 64,
}


def run_demo(config: DSOConfig, run_dir: Path, hooks: Hooks | None = None) -> dict[str, Any]:
    shutil.rmtree(run_dir, ignore_errors=True)
    summary = run_training(config, run_dir, hooks=hooks)
    report = run_evaluation(config, run_dir, hooks=hooks)
    return {"train": summary, "eval": report}
