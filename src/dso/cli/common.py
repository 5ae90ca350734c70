"""What every command shares: the loaded configuration, JSON output, and one-line errors."""

from __future__ import annotations

import dataclasses
import getpass
import json
import os
import sys
import time
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from dso.config import DSOConfig, load_config
from dso.errors import DSOError
from dso.keys import PASSWORD_ENV

if TYPE_CHECKING:  # the learning loop loads only for the commands that run it
    from dso.learn.extract import Rollout
    from dso.learn.run import Hooks
    from dso.learn.trainer import BatchMetrics

# soft_wrap: a long line stays one line (off a terminal rich would break it at 80 columns, mid-word: a progress
# line split in two, a Markdown table row cut); tables still fit the width
console = Console(stderr=False, highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


@dataclasses.dataclass
class AppState:
    config_path: Path | None = None


def get_config(ctx: typer.Context, **overrides: Any) -> DSOConfig:
    state: AppState = ctx.find_root().obj or AppState()
    return load_config(state.config_path, overrides)


def printable(value: object, limit: int = 400) -> str:
    """Text made safe for a terminal: control and format characters replaced, length capped, one line."""
    text = "".join("\ufffd" if unicodedata.category(ch)[0] == "C" else ch for ch in str(value))
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def shown(value: object, limit: int = 400) -> str:
    """`printable`, with rich markup escaped: everything a command prints from a library, a run or the
    network goes through it."""
    return escape(printable(value, limit))


def _default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, default=_default, ensure_ascii=False, indent=2) + "\n")


def report(as_json: bool, payload: Any, shown: Any) -> None:
    """A command's result: `payload` as JSON for scripts, or `shown` (a line or a table) for a person."""
    if as_json:
        print_json(payload)
    else:
        console.print(shown)


# -- keys and progress, shared by the commands that sign or run long ------------------------------


def password(confirm: bool) -> str:
    secret = os.environ.get(PASSWORD_ENV)
    if secret:
        return secret
    if not os.isatty(0):
        raise DSOError(f"no password: set {PASSWORD_ENV} or run in a terminal")
    secret = getpass.getpass("keystore password: ")
    if confirm and getpass.getpass("repeat password: ") != secret:
        raise DSOError("passwords differ")
    return secret


class Bars:
    """One rich progress bar per stage, with the solver's tokens/s."""

    def __init__(self, progress: Progress) -> None:
        self.progress, self.tokens, self.started = progress, 0, time.perf_counter()
        self.task: TaskID | None = None

    def stage(self, name: str, total: int) -> None:
        self.task = self.progress.add_task(name, total=total, rate="")
        if self.progress.disable:  # no terminal to draw bars on: one line per stage (stderr; --json stays clean)
            err_console.print(f"{shown(name)} ({total} items)")
        self.tokens, self.started = 0, time.perf_counter()

    def rollouts(self, _problem: Any, rollouts: list[Rollout]) -> None:
        self.tokens += sum(r.completion_tokens for r in rollouts)
        rate = self.tokens / max(1e-6, time.perf_counter() - self.started)
        if self.task is not None:
            self.progress.update(self.task, advance=1, rate=f"{len(rollouts)} rollouts, {rate:.1f} tok/s")

    def batch(self, metrics: BatchMetrics) -> None:
        """A line per finished batch (training runs for hours on a CPU; this says how far and how well)."""
        gate = ""
        if metrics.gate and metrics.gate.get("trials"):
            report = metrics.gate
            trials = report["trials"]
            gate = (
                f", gate kept {sum(t['kept'] for t in trials)} of {len(trials)} "
                f"({report['source']} {report['baseline']:g} -> {report.get('kept_score', report['baseline']):g} "
                f"of {report['questions']})"
            )
        err_console.print(
            f"epoch {metrics.epoch} batch {metrics.batch}: reward {metrics.mean_reward:.2f}, "
            f"{metrics.operations} operations, library {metrics.library_size}{gate}, {metrics.seconds:.0f} s",
            soft_wrap=True,  # one line per batch in a log, whatever its width
        )

    def hooks(self) -> Hooks:
        from dso.learn.run import Hooks

        def log(message: str) -> None:
            err_console.print(f"[yellow]{shown(message)}")

        return Hooks(on_rollouts=self.rollouts, on_stage=self.stage, on_batch=self.batch, log=log)


def progress_bars(quiet: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=quiet or not err_console.is_terminal,
    )
