"""`dso simulate`: many nodes on one machine, running the real node code against one chain and one store."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import typer

from dso.cli.common import console, err_console, get_config, print_json, shown
from dso.errors import DSOError
from dso.files import check_output, fresh_run_dir, write_output
from dso.simulate import ATTACKS, SimulationSettings, simulate

MARKER = ".dso-simulate-run"  # written into every --run-dir the simulation makes; only such a folder is replaced


def draw_plots(report: dict[str, Any], folder: Path) -> list[Path]:
    from dso.network.fedavg import BYTES_PER_PARAMETER, MODELS
    from dso.plots import batches_per_round, bytes_per_round

    settings = report["settings"]
    title = f"{settings['nodes']} nodes, {settings['byzantine']:.0%} Byzantine ({settings['attack']})"
    lora = {f"FedAvg, rank-8 LoRA of {m.name}": 2 * m.lora_parameters() * BYTES_PER_PARAMETER for m in MODELS[:1]}
    return [
        batches_per_round(report["rounds"], folder / "batches.png", title),
        bytes_per_round(report["rounds"], folder / "bytes.png", title, lora),
    ]


def simulate_command(
    ctx: typer.Context,
    nodes: int = typer.Option(20, help="Nodes in the network."),
    byzantine: float = typer.Option(0.0, help="Share of Byzantine nodes, in [0, 0.5)."),
    attack: str = typer.Option("wrong", help=f"What the Byzantine nodes do: {', '.join(ATTACKS)}."),
    rounds: int = typer.Option(3),
    committee: int = typer.Option(9, help="Registry members (voters), drawn at random among the nodes."),
    draws: int = typer.Option(3, help="Lessons each node learns per round from the replay pool."),
    chain: str = typer.Option(
        "embedded",
        help="'embedded' (the contract on an in-process EVM), 'memory' (the in-memory registry) or a "
        "JSON-RPC URL (anvil: dso chain up).",
    ),
    store: str = typer.Option("embedded", help="'embedded' or an IPFS HTTP API URL (dso ipfs up)."),
    seed: int = typer.Option(0),
    light: bool = typer.Option(
        False, "--light", help="Nodes outside the committee read the members' certificate, not every batch."
    ),
    audit_rate: float = typer.Option(0.05, help="With --light: the chance a light node audits a certificate."),
    relay: bool = typer.Option(
        False, "--relay", help="Nodes hand their signed batches to one relay (100 per submitBatches transaction)."
    ),
    run_dir: Path | None = typer.Option(None, help="Where the nodes keep their state (default: a temporary folder)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Also write the report (JSON) here."),
    force: bool = typer.Option(False, "--force", help="Replace --output if it exists (a regular file only)."),
    plots: Path | None = typer.Option(None, help="Write PNG figures (batches, bytes per round) into this folder."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Run N nodes through R rounds of learn, publish, vote, pull and merge; per-round figures out."""
    settings = SimulationSettings(
        nodes=nodes,
        byzantine=byzantine,
        attack=attack,
        rounds=rounds,
        committee=min(committee, nodes),
        draws=draws,
        chain="" if chain == "embedded" else chain,
        store="" if store == "embedded" else store,
        seed=seed,
        light=light,
        audit_rate=audit_rate,
        relay=relay,
    )
    settings.check()
    config = get_config(ctx)
    if output is not None:  # refused now, not after the run
        check_output(output, force)
    if plots is not None and (plots.is_symlink() or (plots.exists() and not plots.is_dir())):
        raise DSOError(f"--plots {plots} is not a folder")

    def progress(line: str) -> None:
        err_console.print(shown(line, 1000))

    if run_dir is not None:  # the simulation's own folder: never one holding anything else, never `/`
        fresh_run_dir(run_dir, MARKER, "dso simulate")
    report = simulate(settings, config, workdir=run_dir, progress=progress)
    report["command"] = "dso " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if output is not None:
        write_output(output, json.dumps(report, indent=1) + "\n", force)
    if plots is not None:
        report["plots"] = [str(p) for p in draw_plots(report, plots)]
    if as_json:
        print_json(report)
        return
    console.print(
        f"{report['mode']} mode, {nodes} nodes ({byzantine:.0%} Byzantine, attack {attack}), committee "
        f"{report['committee']['members']} ({report['committee']['byzantine_members']} Byzantine), {report['chain']}, "
        f"{report['store']}"
    )
    for row in report["rounds"]:
        b = row["batches"]
        bytes_ = row["bytes_per_honest_node"]
        console.print(
            f"round {row['round']}: {row['experiences_submitted']} submitted; batches {b['accepted']} accepted, "
            f"{b['rejected']} rejected, {b['pending']} pending; global library {row['global_library']['accepted']} "
            f"({row['poisoned_accepted']} poisoned); per honest node {bytes_['sent_median']} B sent, "
            f"{bytes_['received_median']} B received (median); {row['transactions']} transactions, {row['gas']} gas; "
            f"phases {row['phase_seconds']}"
        )
    console.print(f"{report['seconds']} s in all; poisoned accepted: {report['poisoned_accepted']}")
