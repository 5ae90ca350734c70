"""`dso flower simulate`: DSO rounds on Flower's simulation engine (needs the `flower` extra)."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import typer

from dso.cli.common import console, err_console, print_json
from dso.errors import ConfigError, DSOError
from dso.files import check_output

app = typer.Typer(help="DSO rounds on Flower (the `flower` extra).", no_args_is_help=True)


@contextlib.contextmanager
def _chain(rpc: str, workdir: Path) -> Iterator[str]:
    """The chain every Flower worker reaches: `rpc`, or an anvil node started here for the run."""
    if rpc:
        yield rpc
        return
    from dso.services import start_anvil

    with start_anvil(workdir / "anvil") as node:
        yield node.url


@app.command("simulate")
def simulate_command(
    nodes: int = typer.Option(4, help="Nodes (Flower SuperNodes)."),
    committee: int = typer.Option(3, help="Registry members (voters), drawn at random among the nodes."),
    byzantine: float = typer.Option(0.0, help="Share of Byzantine nodes, in [0, 0.5)."),
    attack: str = typer.Option("wrong", help="What the Byzantine nodes publish (as dso simulate; not vote-collusion)."),
    rounds: int = typer.Option(2, help="DSO rounds (each: publish, vote, pull and merge)."),
    draws: int = typer.Option(3, help="Lessons each node learns per round from the replay pool."),
    rpc: str = typer.Option("", help="A JSON-RPC chain all workers reach (default: an anvil node started here)."),
    store: str = typer.Option("", help="An IPFS HTTP API URL (default: a block folder in --run-dir)."),
    run_dir: Path | None = typer.Option(None, help="Where the nodes keep their files (default: a temporary folder)."),
    workers: int = typer.Option(2, help="Flower simulation workers (CPUs given to clients at once)."),
    seed: int = typer.Option(0),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the run's summary (JSON) here."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The network `dso simulate` runs for the same settings, with every node a Flower ClientApp and the rounds
    sequenced by a ServerApp on Flower's simulation engine; the same global library comes out."""
    from dso.simulate import SimulationSettings

    SimulationSettings(nodes, byzantine, attack, rounds, committee, draws, seed=seed).check()  # the same ranges
    if attack == "vote-collusion" and byzantine > 0:
        raise ConfigError("--attack vote-collusion needs voters in one process: run it with dso simulate")
    if not 1 <= workers <= 64:
        raise ConfigError("--workers must lie in [1, 64]")
    if output is not None:
        check_output(output, force=False)
    try:
        from flwr.simulation import run_simulation

        from dso.flower.app import FlowerSettings, client_app, server_app_for
    except ImportError as exc:
        missing = exc.name or "flwr"
        raise DSOError(
            f"the Flower app needs the flower extra: pip install 'dso[flower]' ({missing} missing)"
        ) from None

    with contextlib.ExitStack() as stack:
        folder = run_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dso-flower-")))
        folder.mkdir(parents=True, exist_ok=True)
        summary_path = output or folder / "summary.json"
        url = stack.enter_context(_chain(rpc, folder))
        settings = FlowerSettings(
            nodes=nodes,
            rounds=rounds,
            committee=committee,
            byzantine=byzantine,
            attack=attack,
            draws=draws,
            rpc=url,
            store=store,
            folder=str(folder.resolve()),
            seed=seed,
            output=str(summary_path.resolve()),
        )
        err_console.print(f"flower simulation: {nodes} nodes, {committee} members, {rounds} rounds, chain {url}")
        run_simulation(
            server_app=server_app_for(settings),
            client_app=client_app,
            num_supernodes=nodes,
            backend_config={
                "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                "init_args": {"num_cpus": workers, "include_dashboard": False},
            },
        )
        if not summary_path.is_file():
            raise DSOError("the Flower run ended without a summary: see the log lines above")
        import json

        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    if as_json:
        print_json(summary)
        return
    for entry in summary["rounds"]:
        console.print(
            f"round {entry['round']}: {entry['published']} published, {entry['votes']} votes, {entry['merged']} "
            f"merged; {entry['global_digests']} distinct global librar{'y' if entry['global_digests'] == 1 else 'ies'} "
            f"among {entry['pull']['replies']} nodes",
            highlight=False,
        )
