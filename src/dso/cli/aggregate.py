"""`dso aggregate`: the consensus over a file of submissions, for audit."""

from __future__ import annotations

from pathlib import Path

import typer

from dso.cli.common import console, get_config, print_json, shown


def aggregate_command(
    ctx: typer.Context,
    input_file: Path = typer.Option(..., "--input", "-i", help="JSON lines: submissions and validations."),
    semantic_guard: bool = typer.Option(True, "--semantic-guard/--no-semantic-guard", help="Also the semantic guard."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Decide every experience in a submissions file: accepted and rejected, each with its numbers and rule."""
    from dso.consensus import aggregate, unique_texts
    from dso.consensus.semantic_guard import SemanticGuard
    from dso.consensus.submissions import parse_lines
    from dso.embed import make_embedder
    from dso.errors import DataError
    from dso.files import read_input

    config = get_config(ctx)
    submissions, validations = parse_lines(read_input(input_file, DataError).splitlines())
    embedder = make_embedder(config.embedder)
    texts = unique_texts(submissions)
    vectors = dict(zip(texts, embedder.embed(texts), strict=True)) if texts else {}
    guard = SemanticGuard.shipped(embedder) if semantic_guard else None
    result = aggregate(submissions, vectors, config.consensus, validations=validations, semantic_guard=guard)
    if as_json:
        print_json(result.to_json())
        return
    for title, decisions in (("accepted", result.accepted), ("rejected", result.rejected)):
        console.print(f"[bold]{title}[/bold] ({len(decisions)})")
        for d in decisions:
            console.print(f"  {shown(d.text)}\n    {shown(d.reason)}")
    if result.dropped:
        console.print(f"[bold]not counted[/bold] ({len(result.dropped)})")
        for row in result.dropped:
            console.print(f"  {shown(row['node'])}: {shown(row['text'])} ({shown(row['reason'])})")
