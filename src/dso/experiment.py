"""Experiments: named, resumable runs that write raw results, a summary and plots under one run folder.

A run folder holds `cells.jsonl` (one raw result per line, appended as each cell finishes, so a stopped run
resumes where it stopped), `summary.json` (what the experiment concludes, with the machine, date, commit,
command and seeds) and PNG plots. `dso report` reads summaries like any other result file.

- `byzantine-sweep`: every attack of the network suite at several Byzantine shares, each a `dso simulate` run
  of real nodes (signed batches, votes, pulls, the robust consensus, merges) on the in-memory registry; the
  breaking point of each attack (the smallest share at which an honest library takes a poisoned lesson) and
  what broke it.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dso.config import DSOConfig
from dso.errors import ConfigError, DSOError
from dso.files import write_text_atomic
from dso.machine import machine
from dso.network.attacks import NETWORK_ATTACKS
from dso.simulate import SimulationSettings, simulate

Progress = Callable[[str], None]
CELLS, SUMMARY, MARKER = "cells.jsonl", "summary.json", ".dso-experiment"


@dataclasses.dataclass(frozen=True)
class SweepSettings:
    nodes: int = 20
    rounds: int = 2
    committee: int = 7
    fractions: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.45)
    attacks: tuple[str, ...] = NETWORK_ATTACKS
    seed: int = 0
    chain: str = "memory"

    def check(self) -> None:
        for attack in self.attacks:
            if attack not in NETWORK_ATTACKS:
                raise ConfigError(f"unknown attack {attack!r}; known: {', '.join(NETWORK_ATTACKS)}")
        for fraction in self.fractions:
            SimulationSettings(self.nodes, fraction, self.attacks[0], self.rounds, self.committee).check()
        if not self.attacks or not self.fractions:
            raise ConfigError("give at least one attack and one Byzantine share")


def commit_id() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).parent,
        )
    except OSError:
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def _cell(attack: str, fraction: float, settings: SweepSettings, report: dict[str, Any]) -> dict[str, Any]:
    """One cell's raw result: what the network accepted, poisoned and agreed on, from a simulate report."""
    rounds = report["rounds"]
    poisoned = [t for r in rounds for t in r.get("poisoned_texts", [])]
    return {
        "attack": attack,
        "fraction": fraction,
        "byzantine_nodes": round(fraction * settings.nodes),
        "nodes": settings.nodes,
        "committee": settings.committee,
        "byzantine_members": report["committee"]["byzantine_members"],
        "poisoned_accepted": report["poisoned_accepted"],
        "poisoned_texts": poisoned[:3],
        "batches": [r["batches"] for r in rounds],
        "global_library": [r["global_library"]["accepted"] for r in rounds],
        "honest_agreeing": all(r["honest_nodes_agreeing"] == "True" for r in rounds),
        "seconds": report["seconds"],
    }


def _reason(cell: dict[str, Any]) -> str:
    """Why a cell broke: a captured committee (it votes), or the consensus outvoted (support)."""
    members = cell["byzantine_members"]
    if 3 * members >= 2 * cell["committee"]:
        return f"{members} of {cell['committee']} committee members Byzantine: they accept their own batches"
    return (
        f"{cell['byzantine_nodes']} of {cell['nodes']} nodes Byzantine: their shared wording reaches the support "
        "threshold"
    )


def summarise(cells: Sequence[dict[str, Any]], settings: SweepSettings) -> dict[str, Any]:
    """Per attack: poisoned per share, and the breaking point (the smallest share with a poisoned lesson)."""
    attacks = []
    for attack in settings.attacks:
        mine = sorted((c for c in cells if c["attack"] == attack), key=lambda c: c["fraction"])
        broken = next((c for c in mine if c["poisoned_accepted"] > 0), None)
        if broken is not None:
            reason = _reason(broken)
        else:
            reason = f"no poisoned lesson up to {mine[-1]['fraction']:.0%}" if mine else "not run"
        attacks.append(
            {
                "attack": attack,
                "poisoned_by_fraction": {f"{c['fraction']:g}": c["poisoned_accepted"] for c in mine},
                "censored_by_fraction": {f"{c['fraction']:g}": sum(b["rejected"] for b in c["batches"]) for c in mine},
                "breaking_point": broken["fraction"] if broken else None,
                "reason": reason,
            }
        )
    return {"experiment": "byzantine-sweep", "settings": dataclasses.asdict(settings), "attacks": attacks}


def byzantine_sweep(
    settings: SweepSettings, config: DSOConfig, run_dir: Path, *, command: str, progress: Progress | None = None
) -> dict[str, Any]:
    """Run every (attack, share) cell not yet in `run_dir/cells.jsonl`, then write the summary and the plot."""
    settings.check()
    say = progress or (lambda line: None)
    own_run_dir(run_dir)
    done = read_cells(run_dir / CELLS, _sweep_cell)
    have = {(c["attack"], c["fraction"]) for c in done}
    todo = [(a, f) for a in settings.attacks for f in settings.fractions if (a, f) not in have]
    say(f"{len(have)} cells done, {len(todo)} to run")
    for number, (attack, fraction) in enumerate(todo, 1):
        simulation = SimulationSettings(
            settings.nodes, fraction, attack, settings.rounds, settings.committee, seed=settings.seed,
            chain=settings.chain,
        )  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="dso-sweep-") as scratch:
            report = simulate(simulation, config, workdir=Path(scratch))
        cell = _cell(attack, fraction, settings, report)
        with (run_dir / CELLS).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(cell, sort_keys=True) + "\n")
        done.append(cell)
        say(f"{number}/{len(todo)}: {attack} at {fraction:.0%}: {cell['poisoned_accepted']} poisoned")
    summary = summarise(done, settings) | {
        "machine": machine(),
        "commit": commit_id(),
        "command": command,
        "seeds": [settings.seed],
        "cells": len(done),
    }
    from dso.plots import poisoned_against_share

    summary["plot"] = str(poisoned_against_share(done, settings.attacks, run_dir / "sweep.png"))
    write_text_atomic(run_dir / SUMMARY, json.dumps(summary, indent=1, sort_keys=True) + "\n")
    return summary


def own_run_dir(run_dir: Path) -> None:
    """An experiment's folder: a new or empty one, or one an experiment made (its marker file): never a folder
    holding other things, a file or a link (`/`, a home folder, a source tree)."""
    if run_dir.is_symlink() or (run_dir.exists() and not run_dir.is_dir()):
        raise DSOError(f"--run-dir {run_dir} is not a folder an experiment made; pick another")
    made = (run_dir / MARKER).is_file() or (run_dir / CELLS).is_file()
    if run_dir.is_dir() and any(run_dir.iterdir()) and not made:
        raise DSOError(f"--run-dir {run_dir} holds other things and was not made by an experiment; pick another")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / MARKER).write_text("made by dso experiment; run it again with this --run-dir to resume\n")
    except OSError as exc:
        raise DSOError(f"cannot use --run-dir {run_dir}: {exc.strerror or exc}") from None


def read_cells(path: Path, check: Callable[[dict[str, Any]], object]) -> list[dict[str, Any]]:
    """An experiment's raw cells, one JSON object a line; `check` reads the fields the experiment needs and
    raises (KeyError, TypeError, ValueError) on a line of another shape, which stops the run with one error."""
    if not path.exists():
        return []
    cells = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            cell = json.loads(line)
            check(cell)
        except (ValueError, KeyError, TypeError):
            raise DSOError(f"{path}:{number} is not a cell of this experiment; move the run folder away") from None
        cells.append(cell)
    return cells


def _sweep_cell(cell: dict[str, Any]) -> None:
    (cell["attack"], float(cell["fraction"]), int(cell["poisoned_accepted"]))


EXPERIMENTS = ("byzantine-sweep", "sharing")  # sharing: dso.sharing
