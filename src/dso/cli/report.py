"""`dso report`: the page that says which claims hold, generated from result files."""

from __future__ import annotations

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
    from dso.report import page

    text, files = page(paths, output)
    if output is None:
        console.print(text, markup=False, highlight=False)
        return
    write_output(output, text, force)
    console.print(f"wrote {output} ({files} result files)", markup=False)
