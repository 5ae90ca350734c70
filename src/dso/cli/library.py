"""`dso library ...`: manage a persistent experience library."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from dso.cli.common import console, get_config, print_json, report, shown
from dso.core.experience import Experience
from dso.embed import make_embedder
from dso.library import ExperienceLibrary

app = typer.Typer(help="Add, search, import and export experiences.", no_args_is_help=True)

LibraryOpt = typer.Option(None, "--library", "-l", help="Library file (default: library.path from config).")
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON.")


def _open(ctx: typer.Context, library: Path | None, *, embed: bool, create: bool = False) -> ExperienceLibrary:
    """The library the command names (--library, else library.path); an embedder only if it needs vectors.
    Only commands that add experiences create a library; the others refuse a path that holds none."""
    config = get_config(ctx, **{"library.path": library})
    embedder = make_embedder(config.embedder) if embed else None
    return ExperienceLibrary.from_config(config.library, embedder, create=create)


def _table(experiences: list[Experience], scores: list[float] | None = None) -> Table:
    table = Table(show_lines=False)
    table.add_column("id", style="cyan", no_wrap=True)
    if scores is not None:
        table.add_column("score", justify="right")
    table.add_column("text")
    for column in ("conf", "domain", "epoch", "used"):
        table.add_column(column, justify="right")
    for index, exp in enumerate(experiences):
        row = [shown(exp.id), shown(exp.text), f"{exp.confidence:.2f}", shown(exp.domain), str(exp.epoch)]
        row.append(str(exp.usage_count))
        if scores is not None:
            row.insert(1, f"{scores[index]:.3f}")
        table.add_row(*row)
    return table


@app.command()
def add(
    ctx: typer.Context,
    text: str = typer.Argument(..., help="The experience, e.g. 'When X, do Y'."),
    confidence: float = typer.Option(0.5, help="Confidence in [0, 1]."),
    domain: str = typer.Option("general"),
    epoch: int = typer.Option(0),
    library: Path | None = LibraryOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Add an experience (a close paraphrase of an existing one is merged into it)."""
    with _open(ctx, library, embed=True, create=True) as lib:
        result = lib.add(text, confidence=confidence, domain=domain, epoch=epoch)
    if as_json:
        print_json({"op": result.op, "similarity": result.similarity, "experience": result.experience.to_json()})
    else:
        note = f" (paraphrase, cosine {result.similarity:.3f})" if result.similarity is not None else ""
        console.print(f"{result.op} {shown(result.experience.id)}{note}: {shown(result.experience.text)}")


@app.command()
def show(
    ctx: typer.Context,
    experience_id: str | None = typer.Argument(None, help="Show one experience and its history."),
    library: Path | None = LibraryOpt,
    as_json: bool = JsonOpt,
) -> None:
    """List the library, or one experience with its history."""
    with _open(ctx, library, embed=False) as lib:
        if experience_id is None:
            items = lib.all()
            if as_json:
                print_json({"count": len(items), "experiences": [e.to_json() for e in items]})
            else:
                console.print(_table(items))
                console.print(f"{len(items)} experiences in {lib.path}")
            return
        exp = lib.get(experience_id)
        history = lib.history(experience_id)
    if as_json:
        print_json({"experience": exp.to_json(), "history": history})
    else:
        console.print(_table([exp]))
        for entry in history:
            change = f"{entry.old_text!r} -> {entry.new_text!r} {entry.detail}"
            console.print(f"  #{entry.seq} {entry.op}: {shown(change)}")


@app.command()
def search(
    ctx: typer.Context,
    query: str = typer.Argument(...),
    k: int = typer.Option(5, "-k", "--top-k", min=1, help="How many experiences to return."),
    library: Path | None = LibraryOpt,
    as_json: bool = JsonOpt,
) -> None:
    """The experiences closest in meaning to QUERY, best first."""
    with _open(ctx, library, embed=True) as lib:
        hits = lib.search(query, k)
    found = [{"score": h.score, **h.experience.to_json()} for h in hits]
    report(as_json, {"query": query, "hits": found}, _table([h.experience for h in hits], [h.score for h in hits]))


@app.command()
def context(
    ctx: typer.Context,
    question: str = typer.Argument(..., help="The question an agent is about to answer."),
    k: int = typer.Option(5, "-k", min=1, max=50, help="How many experiences at most."),
    format_: str = typer.Option(
        "tfgrpo", "--format", help="tfgrpo ([G0]. lines), ace (a playbook with counts) or plain (- lines)."
    ),
    min_similarity: float = typer.Option(-1.0, help="Leave out experiences less similar than this (cosine)."),
    library: Path | None = LibraryOpt,
    as_json: bool = JsonOpt,
) -> None:
    """The experiences block to put in any agent's prompt for QUESTION (for agents that do not use DSO's solver)."""
    with _open(ctx, library, embed=True) as lib:
        block = lib.format_for_prompt(question, k, format=format_, min_similarity=min_similarity)
    if as_json:
        print_json({"question": question, "format": format_, "context": block})
    else:
        for line in block.splitlines():  # each line made safe for the terminal, the block's layout kept
            console.print(shown(line, 2_000), highlight=False, soft_wrap=True)


@app.command("export")
def export_(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="File to write."),
    grpo: bool = typer.Option(False, "--grpo", help='Texts only, as Training-Free GRPO keeps them: {"G0": ...}.'),
    format_: str | None = typer.Option(
        None,
        "--format",
        help="dso (every field, with embeddings), tfgrpo-json, tfgrpo-agent (with --template) or ace.",
    ),
    template: Path | None = typer.Option(
        None, "--template", help="The Training-Free GRPO agent file whose experiences the export replaces."
    ),
    force: bool = typer.Option(False, "--force", help="Replace FILE if it exists."),
    library: Path | None = LibraryOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Write every experience to a file: DSO's export, or a file Training-Free GRPO or ACE loads."""
    with _open(ctx, library, embed=False) as lib:
        count = lib.export_json(file, grpo=grpo, overwrite=force, format=format_, template=template)
    report(as_json, {"exported": count, "file": str(file)}, f"exported {count} experiences to {file}")


@app.command("import")
def import_(
    ctx: typer.Context,
    file: Path = typer.Argument(
        ...,
        help='A dso export, a JSON list of strings, {"G0": text}, "[G0]. text" lines, a Training-Free GRPO agent '
        "file (YAML) or an ACE playbook.",
    ),
    library: Path | None = LibraryOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Import experiences; the whole file is validated first and applied in one transaction."""
    with _open(ctx, library, embed=True, create=True) as lib:
        results = lib.import_json(file)
    added = sum(r.op == "ADD" for r in results)
    report(
        as_json,
        {"added": added, "merged": len(results) - added, "ids": [r.experience.id for r in results]},
        f"imported {len(results)} experiences: {added} added, {len(results) - added} merged",
    )


@app.command()
def delete(
    ctx: typer.Context,
    experience_id: str = typer.Argument(...),
    library: Path | None = LibraryOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Delete one experience (its history is kept)."""
    with _open(ctx, library, embed=False) as lib:
        removed = lib.delete(experience_id)
    report(as_json, {"deleted": removed.to_json()}, f"deleted {shown(removed.id)}: {shown(removed.text)}")
