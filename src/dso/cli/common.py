"""What every command shares: the loaded configuration, JSON output, and one-line errors."""

from __future__ import annotations

import dataclasses
import json
import sys
import unicodedata
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from dso.config import DSOConfig, load_config

console = Console(stderr=False, highlight=False)
err_console = Console(stderr=True, highlight=False)


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
