"""The `dso` entry point: sub-command wiring and the one place user errors become one line."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any

import typer

try:  # typer 0.29 (constraints.txt) ships its own click; older typers (the flower extra's) use click itself
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - the flower environment
    from click import exceptions as click_errors  # type: ignore[no-redef]

from dso import __version__
from dso.cli import (
    aggregate,
    bench,
    chain,
    experiment,
    flower,
    learn,
    library,
    models,
    node,
    records,
    report,
    serve,
    simulate,
)
from dso.cli.common import AppState, console, get_config, print_json, printable, shown
from dso.errors import DSOError

app = typer.Typer(
    help="DSO: frozen-LLM agents that learn natural-language experiences and share them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(library.app, name="library")
app.add_typer(models.app, name="models")
app.add_typer(bench.app, name="bench")
app.add_typer(records.keys_app, name="keys")
app.add_typer(chain.app, name="chain")
app.add_typer(node.app, name="node")
app.add_typer(chain.ipfs_app, name="ipfs")
app.add_typer(flower.app, name="flower")
app.command("train")(learn.train_command)
app.command("eval")(learn.eval_command)
app.command("cid")(records.cid_command)
app.command("aggregate")(aggregate.aggregate_command)
app.command("simulate")(simulate.simulate_command)
app.command("serve")(serve.serve_command)
app.command("report")(report.report_command)
app.command("experiment")(experiment.experiment_command)


def _version(value: bool) -> None:
    if value:
        print(f"dso {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Path | None = typer.Option(None, "--config", "-c", help="TOML config file (default: ./dso.toml)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    ctx.obj = AppState(config_path=config)


@app.command()
def demo(
    ctx: typer.Context,
    model: str | None = typer.Option(None, help="Solver model (default qwen2.5-1.5b)."),
    questions: int = typer.Option(4, min=1, max=50, help="Node 0's training questions (chain sums)."),
    heldout_size: int = typer.Option(30, min=1, max=1000, help="Held-out leg-counting questions per arm."),
    validation_size: int = typer.Option(24, min=1, max=1000, help="Node 0's own leg-counting questions (trials)."),
    baseline: bool = typer.Option(False, "--baseline", help="Also answer with the bare prompt (no instruction)."),
    run_dir: Path = typer.Option(
        Path("runs/demo"), help="Where the demo run goes (replaced each time; only a directory the demo made)."
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """A small live network: a node learns, tries a specialist's lessons before adopting them; one node attacks."""
    from dso.cli.common import Bars, progress_bars
    from dso.demo import DEMO_TRAIN, DemoSettings, run_demo

    config = get_config(ctx, **{**DEMO_TRAIN, "llm.model": model})
    settings = DemoSettings(questions=questions, heldout=heldout_size, validation=validation_size, baseline=baseline)
    with progress_bars(as_json) as progress:
        result = run_demo(config, run_dir, Bars(progress).hooks(), settings)
    if as_json:
        print_json(result)
        return
    print_demo(result, run_dir)


def print_demo(result: dict[str, Any], run_dir: Path) -> None:
    task = shown(result["untrained_task"].split(":")[0])
    console.print(
        f"\n[bold]DSO network[/bold] ({shown(result['model'])}): node 0 learned {shown(result['learned'])} "
        f"itself ({len(result['own_lessons'])} lessons) and never trained on {task}; node 1 is a {task} "
        f"specialist ({len(result['specialist_lessons']['texts'])} lessons, "
        f"{result['specialist_lessons']['source']}); node 2 is Byzantine"
    )
    for row in result["rounds"]:
        b, n = row["batches"], row["bytes_per_honest_node"]
        console.print(
            f"round {row['round']}: batches {b['accepted']} accepted / {b['rejected']} rejected; global library "
            f"{row['global_library']['accepted']} accepted, {row['global_library']['candidates']} candidates; a "
            f"node sent {int(n['sent_median']):,} B and received {int(n['received_median']):,} B"
        )
    validation = result["settings"]["validation"]
    for verdict in result["trials"]:  # the gate stops asking once a candidate can no longer pass
        looks = int(verdict.get("looks", 1))
        outcome = "adopted" if verdict["adopted"] else ("pending" if verdict.get("pending") else "refused")
        console.print(
            f"node 0, look {looks}: a candidate on {verdict['questions']} of its {validation * looks} {task} "
            f"questions: {verdict['fixed']} fixed / {verdict['broken']} broken (p = {verdict['p_value']:.2g}), "
            f"{outcome}: {shown(verdict['text'], 80)}"
        )
    evaluation = result["evaluation"]
    if evaluation is not None:
        console.print(f"node 0 on {evaluation['questions']} held-out {task} questions (greedy, same budget):")
        arms = {row["arm"]: row for row in evaluation["arms"]}
        for row in evaluation["arms"]:
            low, high = row["ci95"]
            paired = row["vs_placebo"]
            against = (
                ""
                if row["arm"] == "placebo"
                else f"; against the placebo {paired['fixed']} fixed / {paired['broken']} broken (p = "
                f"{paired['p_value']:.2g})"
            )
            console.print(f"  {row['arm']}: {row['accuracy']:.3f} (95% {low:.2f}-{high:.2f}){against}")
        network = arms.get("node 0 with the network")
        if network is not None:
            paired = network["vs_placebo"]
            if network["accuracy"] <= arms["placebo"]["accuracy"]:
                console.print(f"[yellow]on this run the network did not help node 0 on {task}")
            elif paired["p_value"] >= 0.05:
                console.print(f"[yellow]a gain on {task}, but within noise at this size (p >= 0.05)")
            else:
                console.print(f"[green]node 0 gained on {task}, a task it never trained on (p < 0.05)")
    untried = [c for c in result["candidates"] if c["text"] not in {v["text"] for v in result["trials"]}]
    console.print(
        f"candidates left, below the support threshold and not adopted: {len(result['candidates'])} "
        f"({len(untried)} untried: node 0's own, or of a kind it holds no questions of)"
    )
    console.print("rejected, and why:")
    for row in result["rejected_experiences"][:6]:
        who = "attacker" if row["from_attacker"] else "honest"
        console.print(f"  \\[{who}] {shown(row['text'], 90)} -- {shown(row['reason'], 100)}")
    for row in result["rejected_batches"][:4]:
        console.print(f"  \\[batch of {row['node'][:10]}] voted down: {shown(row['reason'], 120)}")
    console.print(
        f"attacker's lessons accepted by the network: {result['attacker_items_accepted']}; adopted by node 0: "
        f"{result['attacker_items_adopted']}"
    )
    fed = result["fedavg_bytes_per_node_round"]
    most = int(
        max(
            r["bytes_per_honest_node"]["sent_median"] + r["bytes_per_honest_node"]["received_median"]
            for r in result["rounds"]
        )
    )
    console.print(
        f"bytes per node and round: DSO {most:,} B; FedAvg of {fed['model']} {fed['lora8']:,} B (rank-8 LoRA, "
        f"{fed['lora8'] / max(1, most):,.0f}x) or {fed['full']:,} B (full fp16, {fed['full'] / max(1, most):,.0f}x)"
    )
    console.print(f"plots and details in {run_dir}: {', '.join(Path(p).name for p in result['plots'])}, demo.json")


def main() -> None:
    try:
        code = app(standalone_mode=False, prog_name="dso")
    except click_errors.NoArgsIsHelpError as exc:  # `dso` or `dso library` alone: the help, as before
        exc.show()
        sys.exit(exc.exit_code)
    except click_errors.ClickException as exc:  # a mistyped flag or value: one line, like every other user error
        where = f" (see {exc.ctx.command_path} --help)" if isinstance(exc, click_errors.UsageError) and exc.ctx else ""
        sys.stderr.write(f"error: {printable(exc.format_message(), 1000)}{where}\n")
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.stderr.write("aborted\n")
        sys.exit(1)
    except DSOError as exc:  # messages may quote a file, a reply or a record: never printed raw
        sys.stderr.write(f"error: {printable(exc, 1000)}\n")
        sys.exit(1)
    except sqlite3.DatabaseError as exc:  # damaged after it was opened: a library or a node's state file
        sys.stderr.write(
            f"error: a SQLite file of this command (the library, or the node's state) is damaged: "
            f"{printable(exc, 200)}; restore it from a backup, or move it away to start again\n"
        )
        sys.exit(1)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    if isinstance(code, int):  # `typer.Exit(code)` and `--help` come back as a code outside standalone mode
        sys.exit(code)
