"""Shared benchmark plumbing: medians, result files."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dso.machine import machine


def median_seconds(action: Callable[[], object], repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def write_result(result: dict[str, Any], output: Path | None) -> None:
    if output is None:
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def stamp(result: dict[str, Any], command: str) -> dict[str, Any]:
    """A result with the machine and the command that produced it, as every committed result file carries: the
    script's command (which sets the environment, seeds included) over the `dso` command the result names,
    kept as `dso_command`; a machine the result already records (when it was measured) stays."""
    inner = {"dso_command": result["command"]} if result.get("command") not in (None, command) else {}
    return {"machine": machine(), **result, **inner, "command": command}


if __name__ == "__main__":  # `dso train ... --json | python -m dso.bench.common "COMMAND" > result.json`
    import sys

    sys.stdout.write(json.dumps(stamp(json.load(sys.stdin), " ".join(sys.argv[1:])), indent=1) + "\n")
