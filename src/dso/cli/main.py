"""The `dso` entry point: sub-command wiring and the one place user errors become one line."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from dso import __version__
from dso.cli import aggregate, bench, chain, learn, library, models, node, records, simulate
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
app.command("train")(learn.train_command)
app.command("eval")(learn.eval_command)
app.command("cid")(records.cid_command)
app.command("aggregate")(aggregate.aggregate_command)
app.command("simulate")(simulate.simulate_command)


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
    train_size: int | None = typer.Option(None, help="Training questions (default 10)."),
    heldout_size: int | None = typer.Option(None, help="Held-out questions (default 30)."),
    run_dir: Path = typer.Option(
        Path("runs/demo"), help="Where the demo run goes (replaced each time; only a directory the demo made)."
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """A short real learning run on the embedded model, then held-out accuracy before and after."""
    from dso.cli.learn import _Bars, _progress, print_eval
    from dso.demo import DEMO_TRAIN, run_demo

    overrides = {
        **DEMO_TRAIN,
        "llm.model": model,
        "train.train_size": train_size or 10,
        "train.heldout_size": heldout_size or 30,
    }
    config = get_config(ctx, **overrides)
    with _progress(as_json) as progress:
        result = run_demo(config, run_dir, _Bars(progress).hooks())
    if as_json:
        print_json(result)
        return
    console.print(f"learned {result['train']['library_size']} experiences in {run_dir}:")
    for index, text in enumerate(result["train"]["experiences"]):
        console.print(f"  \\[G{index}] {shown(text)}")
    print_eval(result["eval"])
    gain = result["eval"].get("gain", 0.0)
    console.print(
        f"held-out accuracy: {result['eval']['arms']['baseline']['accuracy']:.3f} without experiences, "
        f"{result['eval']['arms']['library']['accuracy']:.3f} with them ({gain:+.3f})"
    )


def main() -> None:
    try:
        app()
    except DSOError as exc:  # messages may quote a file, a reply or a record: never printed raw
        sys.stderr.write(f"error: {printable(exc, 1000)}\n")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
