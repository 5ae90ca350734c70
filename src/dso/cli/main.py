"""The `dso` entry point: sub-command wiring and the one place user errors become one line."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from dso import __version__
from dso.cli import bench, chain, learn, library, models, records
from dso.cli.common import AppState, get_config, print_json
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
app.command("train")(learn.train_command)
app.command("eval")(learn.eval_command)
app.command("cid")(records.cid_command)


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
    model: str | None = typer.Option(None, help="Model pack or .gguf (default: llm.model)."),
    run_dir: Path = typer.Option(Path("runs/demo"), help="Where the demo library and export go."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """A short end-to-end run: library, de-duplication, retrieval, and the embedded LLM."""
    from dso.demo import run_demo

    summary = run_demo(get_config(ctx, **{"llm.model": model}), run_dir, quiet=as_json)
    if as_json:
        print_json(summary)


def main() -> None:
    try:
        app()
    except DSOError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
