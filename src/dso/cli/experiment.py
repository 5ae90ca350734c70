"""`dso experiment NAME`: a named, resumable experiment into one run folder (raw cells, summary, plots)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from dso.cli.common import err_console, get_config, print_json, shown
from dso.errors import DSOError


def experiment_command(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="byzantine-sweep | sharing"),
    run_dir: Path = typer.Option(..., "--run-dir", help="The experiment's folder; run again to resume."),
    nodes: int = typer.Option(20, help="Nodes per simulated network."),
    rounds: int = typer.Option(2, help="Rounds per simulated network."),
    committee: int = typer.Option(7, help="Registry members drawn among the nodes."),
    fractions: list[float] = typer.Option(
        [0.0, 0.1, 0.2, 0.3, 0.4, 0.45], "--byzantine", help="Byzantine shares to sweep (repeat)."
    ),
    attacks: list[str] = typer.Option([], "--attack", help="Attacks to sweep (repeat; default: all)."),
    seed: int = typer.Option(0),
    tasks: list[str] = typer.Option([], "--task", help="sharing: a specialist's task (repeat; default two)."),
    lessons: list[Path] = typer.Option(
        [], "--lessons", help="sharing: each task's lessons, one per line (repeat, in --task order); none: the tips."
    ),
    readers: int = typer.Option(1, help="sharing: honest nodes that learned nothing."),
    attackers: int = typer.Option(1, help="sharing: Byzantine nodes (a specialist's wrong lesson, a placebo claim)."),
    heldout: int = typer.Option(100, help="sharing: held-out questions per task."),
    validation: int = typer.Option(40, help="sharing: validation questions per task each node tries lessons on."),
    max_tokens: int = typer.Option(256, "--max-tokens", help="sharing: the solver's budget per answer."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Run (or resume) an experiment; its summary is printed and written to RUN_DIR/summary.json."""
    from dso.experiment import EXPERIMENTS, SweepSettings, byzantine_sweep
    from dso.network.attacks import NETWORK_ATTACKS

    if name not in EXPERIMENTS:
        raise DSOError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
    if run_dir.exists() and not run_dir.is_dir():
        raise DSOError(f"--run-dir {run_dir} is not a folder")
    command = "dso experiment " + " ".join(sys.argv[2:])
    if name == "sharing":
        _sharing(ctx, run_dir, command, tasks, lessons, readers, attackers, heldout, validation, max_tokens, as_json)
        return
    settings = SweepSettings(
        nodes, rounds, committee, tuple(fractions), tuple(attacks) or NETWORK_ATTACKS, seed=seed, chain="memory"
    )
    summary = byzantine_sweep(
        settings,
        get_config(ctx),
        run_dir,
        command=command,
        progress=lambda line: err_console.print(shown(line, 1000)),
    )
    if as_json:
        print_json(summary)
        return
    for row in summary["attacks"]:
        point = "none" if row["breaking_point"] is None else f"{row['breaking_point']:.0%}"
        err_console.print(shown(f"{row['attack']}: breaks at {point} ({row['reason']})", 1000))


def _sharing(
    ctx: typer.Context,
    run_dir: Path,
    command: str,
    tasks: list[str],
    lessons: list[Path],
    readers: int,
    attackers: int,
    heldout: int,
    validation: int,
    max_tokens: int,
    as_json: bool,
) -> None:
    from dso.sharing import SharingSettings, sharing_experiment

    defaults = SharingSettings()
    settings = SharingSettings(
        tuple(tasks) or defaults.tasks,
        tuple(str(p) for p in lessons),
        readers,
        attackers,
        heldout,
        validation=validation,
        max_tokens=max_tokens,
    )
    summary = sharing_experiment(
        settings, get_config(ctx), run_dir, command=command, progress=lambda line: err_console.print(shown(line, 1000))
    )
    if as_json:
        print_json(summary)
        return
    for task in summary["tasks"]:
        for arm in task["arms"]:
            against = arm["vs_placebo"]
            err_console.print(
                shown(
                    f"{task['domain']}: {arm['arm']} {arm['accuracy']:.3f} (vs placebo {against['fixed']} fixed / "
                    f"{against['broken']} broken, p = {against['p_value']:.3g})",
                    1000,
                )
            )
