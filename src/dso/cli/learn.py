"""`dso train` and `dso eval`: the learning loop and its held-out evaluation, with progress bars."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from dso.cli.common import Bars, console, get_config, print_json, progress_bars, shown
from dso.config import DSOConfig
from dso.errors import DSOError
from dso.learn.run import EVAL_ARMS, open_run_library, run_evaluation, run_training
from dso.learn.trainer import check_run_dir

TRAIN_FLAGS = {
    "dataset": "train.dataset",
    "train_size": "train.train_size",
    "heldout_size": "train.heldout_size",
    "seed": "train.seed",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "group_size": "train.group_size",
    "temperature": "train.rollout_temperature",
    "max_tokens": "train.max_tokens",
    "top_k": "train.top_k",
    "model": "llm.model",
    "verifier": "train.verifier",
    "extractor_model": "train.extractor_model",
    "extractor_url": "train.extractor_base_url",
    "samples": "train.eval_samples",
    "gate": "train.gate_lessons",
    "validation_size": "train.validation_size",
    "min_similarity": "train.min_similarity",
}


def _overrides(**flags: Any) -> dict[str, Any]:
    return {TRAIN_FLAGS[name]: value for name, value in flags.items() if name in TRAIN_FLAGS}


def eval_table(report: dict[str, Any]) -> Table:
    table = Table(
        title=f"{report['model']} on {report['dataset']}, {report['heldout']} held-out questions"
        + (f" (seed {report['heldout_seed']})" if "heldout_seed" in report else "")
    )
    for column in (
        "arm",
        "accuracy",
        "95% CI",
        "prompt tok/q",
        "completion tok/q",
        "truncated",
        "marked",
        "Psi",
        "Theta",
    ):
        table.add_column(column, justify="right")
    for arm, r in report["arms"].items():
        theta = f"{r['tokens_per_solved']:.0f}" if r["tokens_per_solved"] else "-"
        table.add_row(
            arm,
            f"{r['accuracy']:.3f}",
            f"[{r['ci95_low']:.3f}, {r['ci95_high']:.3f}]",
            f"{r['prompt_tokens_per_question']:.0f}",
            f"{r['completion_tokens_per_question']:.0f}",
            f"{r['truncated_fraction']:.0%}",
            f"{r['marked_fraction']:.0%}" if "marked_fraction" in r else "-",
            str(r["library_size"]),
            theta,
        )
    return table


def print_eval(report: dict[str, Any]) -> None:
    console.print(eval_table(report))
    for key, against in (("paired", "the bare prompt"), ("paired_placebo", "the placebo instruction")):
        paired = report.get(key)
        if paired:
            console.print(
                f"same questions, the library against {against}: {paired['fixed']} fixed and {paired['broken']} "
                f"broken (exact sign test p = {paired['p_value']:.2g})"
            )
    floor = report.get("constant_answer")
    if floor:
        console.print(
            f"the same reply to every question, {shown(floor['answer'], 40)!r}, would score {floor['accuracy']:.3f}"
        )


def train_command(
    ctx: typer.Context,
    run_dir: Path = typer.Option(Path("runs/train"), help="Run directory (config, library, rollouts, metrics)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --run-dir where it stopped."),
    evaluate: bool = typer.Option(
        False, "--eval", help="Evaluate the held-out split afterwards: bare prompt, placebo, library."
    ),
    dataset: str | None = typer.Option(None, help="reasoning-gym task, 'champ', or a .jsonl file."),
    train_size: int | None = typer.Option(None),
    heldout_size: int | None = typer.Option(None),
    seed: int | None = typer.Option(None),
    epochs: int | None = typer.Option(None),
    batch_size: int | None = typer.Option(None),
    group_size: int | None = typer.Option(None, help="G: attempts per question."),
    temperature: float | None = typer.Option(None, help="Rollout temperature."),
    max_tokens: int | None = typer.Option(None),
    top_k: int | None = typer.Option(None, help="Experiences injected per question."),
    model: str | None = typer.Option(None, help="Solver model (llm.model)."),
    verifier: str | None = typer.Option(None, help="default, math, words or llm-judge (train.verifier)."),
    extractor_model: str | None = typer.Option(None, help="Extractor model (default: the solver)."),
    extractor_url: str | None = typer.Option(
        None, help="OpenAI-compatible endpoint for the extractor (train.extractor_base_url; default: the solver's)."
    ),
    samples: int | None = typer.Option(None, help="k for Mean@k in --eval."),
    gate: bool | None = typer.Option(
        None, "--gate/--no-gate", help="Keep a lesson only if it fixes more validation questions than it breaks."
    ),
    validation_size: int | None = typer.Option(None, help="Validation questions for the gate (train.validation_size)."),
    min_similarity: float | None = typer.Option(
        None, help="Inject no experience below this cosine to the question (train.min_similarity; -1: always)."
    ),
    dso: bool = typer.Option(
        False, "--dso", help="Share through the network while learning (network.enable_dso; a node from dso node init)."
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Learn experiences from rollouts (Training-Free GRPO); no weight changes."""
    overrides = _overrides(
        dataset=dataset,
        train_size=train_size,
        heldout_size=heldout_size,
        seed=seed,
        epochs=epochs,
        batch_size=batch_size,
        group_size=group_size,
        temperature=temperature,
        max_tokens=max_tokens,
        top_k=top_k,
        model=model,
        verifier=verifier,
        extractor_model=extractor_model,
        extractor_url=extractor_url,
        samples=samples,
        gate=gate,
        validation_size=validation_size,
        min_similarity=min_similarity,
    )
    config = get_config(ctx, **overrides, **({"network.enable_dso": True} if dso else {}))
    with progress_bars(as_json) as progress:
        bars = Bars(progress)
        if config.network.enable_dso:
            summary = _train_with_network(config, run_dir, resume, bars)
        else:
            summary = run_training(config, run_dir, resume=resume, hooks=bars.hooks())
        report = run_evaluation(config, run_dir, hooks=bars.hooks()) if evaluate else None
    if as_json:
        print_json({"train": summary, "eval": report})
        return
    console.print(
        f"{len(summary['batches'])} batches this session; library: {summary['library_size']} experiences "
        f"({summary['extraction']['skipped_homogeneous']} homogeneous groups skipped, "
        f"{summary['extraction']['skipped_unparsable']} unparsable)"
    )
    trials = [t for b in summary["batches"] if b.get("gate") for t in b["gate"]["trials"]]
    if trials:
        console.print(
            f"gate: {sum(t['kept'] for t in trials)} of {len(trials)} candidate lessons solved more of their batch"
        )
    for index, text in enumerate(summary["experiences"]):
        console.print(f"  \\[G{index}] {shown(text)}")
    if report:
        print_eval(report)


def _train_with_network(config: DSOConfig, run_dir: Path, resume: bool, bars: Bars) -> dict[str, Any]:
    """`dso train --dso`: the run's library is the node's; a sync every network.sync_frequency batches."""
    from dso.cli.common import password
    from dso.network import open_node
    from dso.node import DSOTrainer
    from dso.node.trial import gate_trial

    check_run_dir(run_dir, config, resume)
    if not config.chain.keystore.is_file():
        raise DSOError(f"--dso needs a node key at {config.chain.keystore}; set a node up with: dso node init")
    node = open_node(config, password(confirm=False), library=open_run_library(config, run_dir), log=bars.hooks().log)
    try:
        return DSOTrainer(config, node, run_dir, hooks=bars.hooks(), trial=gate_trial(config)).run()
    finally:
        node.close()


def eval_command(
    ctx: typer.Context,
    run_dir: Path = typer.Option(Path("runs/train"), help="A run directory made by dso train."),
    samples: int | None = typer.Option(None, help="k for Mean@k."),
    temperature: float | None = typer.Option(None, help="Sampling temperature (default 0 for k = 1)."),
    arm: list[str] = typer.Option(
        list(EVAL_ARMS), help="Arms to evaluate: baseline (bare prompt), placebo (the generic instruction), library."
    ),
    heldout_seed: int | None = typer.Option(
        None, help="Draw the held-out questions with this seed instead (none the run saw); eval-seedN.json."
    ),
    heldout_size: int | None = typer.Option(
        None, help="With --heldout-seed: how many questions to draw (default: the run's held-out size)."
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Held-out accuracy without and with the run's library, with 95% CI and token cost."""
    config = get_config(ctx, **{"train.eval_samples": samples, "train.eval_temperature": temperature})
    with progress_bars(as_json) as progress:
        report = run_evaluation(
            config,
            run_dir,
            arms=tuple(arm),
            heldout_seed=heldout_seed,
            heldout_size=heldout_size,
            hooks=Bars(progress).hooks(),
        )
    if as_json:
        print_json(report)
    else:
        print_eval(report)
