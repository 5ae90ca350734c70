"""The DSO trainer: local learning (Training-Free GRPO) with a network sync every `sync_frequency` batches."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from dso.config import DSOConfig
from dso.learn.run import Hooks, run_training
from dso.learn.trainer import BatchMetrics
from dso.node.node import Node
from dso.node.reports import SyncReport
from dso.node.trial import LessonTrial, TrialReport


class DSOTrainer:
    """Runs `dso.learn`'s loop on the node's own library and syncs the node as it goes.

    A sync follows every `network.sync_frequency` learning batches and one more at the end, so what the
    last batches learned is published too. Restarted on the same run directory it resumes the learning
    where it stopped; the node's outbox and cursors make the syncs safe to repeat."""

    def __init__(
        self,
        config: DSOConfig,
        node: Node,
        run_dir: Path,
        *,
        hooks: Hooks | None = None,
        trial: LessonTrial | None = None,
    ) -> None:
        """`trial` tries the network's candidate lessons after each sync (`gate_trial`: the run's validation
        questions and solver); None adopts none."""
        self.config, self.node, self.run_dir = config, node, run_dir
        self.hooks = hooks or Hooks()
        self.trial = trial
        self.syncs: list[SyncReport] = []
        self.trials: list[TrialReport] = []
        self._batches = 0

    def _on_batch(self, metrics: BatchMetrics) -> None:
        if self.hooks.on_batch:
            self.hooks.on_batch(metrics)
        self._batches += 1
        if self._batches % self.config.network.sync_frequency == 0:
            self.sync()

    def sync(self) -> SyncReport:
        report = self.node.sync()
        self.syncs.append(report)
        if self.hooks.log:
            merged = report.merged
            self.hooks.log(
                f"sync {report.sync}: published {report.records_published}, voted on {len(report.votes)}, merged "
                f"{merged.added} new and {merged.supported} supporting; global library {merged.global_size}"
            )
        if self.trial is not None and self.config.network.max_trials > 0:
            tried = self.node.try_candidates(self.trial)
            self.trials.append(tried)
            if self.hooks.log and tried.tried:
                self.hooks.log(f"tried {len(tried.tried)} candidate lessons, adopted {tried.adopted}")
        return report

    def run(self) -> dict[str, Any]:
        hooks = dataclasses.replace(self.hooks, on_batch=self._on_batch)
        summary = run_training(self.config, self.run_dir, resume=True, hooks=hooks, library=self.node.library)
        if self._batches == 0 or self._batches % self.config.network.sync_frequency:
            self.sync()
        summary["syncs"] = [s.to_json() for s in self.syncs]
        summary["trials"] = [t.to_json() for t in self.trials]
        summary["library_size"] = len(self.node.library)
        return summary
