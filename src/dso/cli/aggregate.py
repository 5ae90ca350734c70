"""`dso aggregate`: the consensus over a file of submissions, for audit."""

from __future__ import annotations

import dataclasses
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
    from dso.consensus.policy import GuardPolicy
    from dso.consensus.submissions import parse_lines
    from dso.embed import make_embedder
    from dso.errors import DataError
    from dso.files import read_input

    config = get_config(ctx)
    submissions, validations = parse_lines(read_input(input_file, DataError).splitlines())
    embedder = make_embedder(config.embedder)
    texts = unique_texts(submissions)
    vectors = dict(zip(texts, embedder.embed(texts), strict=True)) if texts else {}
    settings = dataclasses.replace(config.consensus, semantic_guard=semantic_guard)
    guards = GuardPolicy.for_embedder(settings, embedder)  # the policy a node's votes and merges run
    result = aggregate(submissions, vectors, settings, validations=validations, guards=guards)
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
