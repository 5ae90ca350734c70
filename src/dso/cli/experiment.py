"""`dso experiment NAME`: a named, resumable experiment into one run folder (raw cells, summary, plots)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from dso.cli.common import err_console, get_config, print_json, shown
from dso.errors import DSOError


def experiment_command(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="byzantine-sweep"),
    run_dir: Path = typer.Option(..., "--run-dir", help="The experiment's folder; run again to resume."),
    nodes: int = typer.Option(20, help="Nodes per simulated network."),
    rounds: int = typer.Option(2, help="Rounds per simulated network."),
    committee: int = typer.Option(7, help="Registry members drawn among the nodes."),
    fractions: list[float] = typer.Option(
        [0.0, 0.1, 0.2, 0.3, 0.4, 0.45], "--byzantine", help="Byzantine shares to sweep (repeat)."
    ),
    attacks: list[str] = typer.Option([], "--attack", help="Attacks to sweep (repeat; default: all)."),
    seed: int = typer.Option(0),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Run (or resume) an experiment; its summary is printed and written to RUN_DIR/summary.json."""
    from dso.experiment import EXPERIMENTS, SweepSettings, byzantine_sweep
    from dso.network.attacks import NETWORK_ATTACKS

    if name not in EXPERIMENTS:
        raise DSOError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
    if run_dir.exists() and not run_dir.is_dir():
        raise DSOError(f"--run-dir {run_dir} is not a folder")
    settings = SweepSettings(
        nodes, rounds, committee, tuple(fractions), tuple(attacks) or NETWORK_ATTACKS, seed=seed, chain="memory"
    )
    summary = byzantine_sweep(
        settings,
        get_config(ctx),
        run_dir,
        command="dso experiment " + " ".join(sys.argv[2:]),
        progress=lambda line: err_console.print(shown(line, 1000)),
    )
    if as_json:
        print_json(summary)
        return
    for row in summary["attacks"]:
        point = "none" if row["breaking_point"] is None else f"{row['breaking_point']:.0%}"
        err_console.print(shown(f"{row['attack']}: breaks at {point} ({row['reason']})", 1000))
