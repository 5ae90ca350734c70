"""`dso report`: the page that says which claims hold, generated from result files."""

from __future__ import annotations

import os
import time
from pathlib import Path

import typer

from dso.cli.common import console
from dso.files import write_output


def report_command(
    paths: list[Path] = typer.Argument(..., help="Result files or folders of them (e.g. bench/results)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the Markdown here (else print it)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --output file."),
) -> None:
    """Render the claims table (claim, measured, verdict, files) and the tables behind it as Markdown."""
    from dso.report import load_results, render

    where: dict[str, Path] = {}
    results = load_results(paths, where)
    stamp = f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, `dso report {' '.join(str(p) for p in paths)}`"
    home = output.parent if output is not None else Path(".")
    links = {name: os.path.relpath(file, home).replace(os.sep, "/") for name, file in where.items()}
    text = render(results, generated=stamp, link_base=links)
    if output is None:
        console.print(text, markup=False, highlight=False)
        return
    write_output(output, text, force)
    console.print(f"wrote {output} ({len(results)} result files)", markup=False)
