"""`dso bench ...`: benchmarks, printed as tables or JSON and optionally saved."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from dso.bench.common import write_result
from dso.cli.common import console, get_config, print_json, shown
from dso.errors import DSOError
from dso.files import check_output

app = typer.Typer(help="Benchmarks (figures go to bench/results and the README).", no_args_is_help=True)

OutputOpt = typer.Option(None, "--output", "-o", help="Also write the JSON result here.")
JsonOpt = typer.Option(False, "--json", help="Print the result as JSON.")


def _rows_table(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=title)
    for column in rows[0]:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*(f"{v:,.4g}" if isinstance(v, float) else str(v) for v in row.values()))
    return table


def _finish(
    result: dict[str, Any], output: Path | None, as_json: bool, tables: dict[str, list[dict[str, Any]]]
) -> None:
    result.setdefault("command", "dso " + shlex.join(sys.argv[1:]))  # what regenerates the file
    write_result(result, output)
    if as_json:
        print_json(result)
        return
    machine = result["machine"]
    for title, rows in tables.items():
        console.print(_rows_table(f"{title} ({machine['cpu']}, {machine['cores']} cores, {machine['date']})", rows))


@app.command()
def foundation(
    ctx: typer.Context,
    models: list[str] = typer.Option(["smollm2-135m", "qwen2.5-0.5b"], "--model", help="Models to time."),
    output: Path | None = OutputOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Embedder sentences/s, LLM tokens/s, library search latency at 10k experiences."""
    from dso.bench.foundation import run_foundation_bench

    result = run_foundation_bench(get_config(ctx), models, quiet=as_json)
    _finish(
        result, output, as_json, {"embedder": result["embedder"], "library": [result["library"]], "llm": result["llm"]}
    )


@app.command()
def relevance(
    ctx: typer.Context,
    questions: int = typer.Option(50, min=5, max=1000, help="Questions drawn per task."),
    seed: int = typer.Option(9173, min=0, help="Seed of the drawn questions (none a learning run used)."),
    eval_result: Path | None = typer.Option(
        None, "--eval", help="A learning result (bench/results/learning-*.json): evaluate its library with the LLM."
    ),
    threshold: float = typer.Option(0.45, min=-1.0, max=1.0, help="With --eval: the cut to compare."),
    output: Path | None = OutputOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Similarity of questions to lessons of their own task and of other tasks: the train.min_similarity figure.

    With --eval, the accuracy cost of injecting experiences below --threshold, on that run's held-out questions."""
    from dso.bench.relevance import run_relevance_bench, run_threshold_eval
    from dso.embed import make_embedder

    config = get_config(ctx)
    if eval_result is not None:
        result = run_threshold_eval(config, eval_result, threshold, log=None if as_json else console.print)
        rows = [
            {"arm": arm, **{k: r[k] for k in ("accuracy", "completion_tokens_per_question")}}
            for arm, r in result["arms"].items()
        ]
        _finish(result, output, as_json, {f"{result['dataset']}: threshold {threshold:g}": rows})
        return
    result = run_relevance_bench(make_embedder(config.embedder), questions=questions, seed=seed)
    _finish(result, output, as_json, {"retrieval threshold": result["thresholds"]})


@app.command("codec")
def codec_(
    ctx: typer.Context,
    count: int = typer.Option(10_000, help="Real sentences to embed (at most 10,080)."),
    output: Path | None = OutputOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Bytes, compression ratio, reconstruction cosine and throughput for 1/2/4/8-bit codes."""
    from dso.bench.codec_bench import run_codec_bench
    from dso.embed import make_embedder

    result = run_codec_bench(make_embedder(get_config(ctx).embedder), count=count, quiet=as_json)
    _finish(result, output, as_json, {"codec": result["rows"]})


@app.command()
def retrieval(
    ctx: typer.Context,
    count: int = typer.Option(10_000, help="Real sentences to embed (at most 10,080)."),
    sizes: list[int] = typer.Option([10_000, 100_000, 1_000_000], "--size", help="Index sizes to time."),
    output: Path | None = OutputOpt,
    as_json: bool = JsonOpt,
) -> None:
    """recall@10 of binary search vs exact cosine, and latency/memory at 10k-1M codes."""
    from dso.bench.codec_bench import run_retrieval_bench
    from dso.embed import make_embedder

    embedder = make_embedder(get_config(ctx).embedder)
    result = run_retrieval_bench(embedder, count=count, sizes=tuple(sizes), quiet=as_json)
    _finish(result, output, as_json, {"recall@10": result["recall"], "latency": result["latency"]})


@app.command()
def records(
    count: int = typer.Option(10_000, help="Records in the batch."),
    ipfs: bool = typer.Option(True, help="Also time a js-ipfs daemon started on loopback."),
    output: Path | None = OutputOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Records encoded + CID'd per second, Merkle build and proof checks, store put/get per second."""
    from dso.bench.records import run_records_bench

    result = run_records_bench(count, ipfs=ipfs)
    stores = [{"store": name, **rates} for name, rates in result["stores"].items()]
    flat = {k: v for k, v in result.items() if k not in ("machine", "stores")}
    _finish(result, output, as_json, {"records": [flat], "stores": stores})


@app.command("chain")
def chain_(
    batches: int = typer.Option(1_000, help="Batches to submit and vote on, per backend."),
    chunk: int = typer.Option(250, help="Batches per voteMany transaction (a 30M block gas limit fits ~500)."),
    output: Path | None = OutputOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Gas per submit / vote / voteMany and transactions per second on the embedded EVM and anvil."""
    from dso.bench.chain import run_chain_bench

    result = run_chain_bench(batches, chunk, quiet=as_json)
    rows = [{"backend": name, **row} for name, row in result["backends"].items()]
    _finish(result, output, as_json, {"chain": rows})


@app.command()
def tips(
    ctx: typer.Context,
    task: str = typer.Argument(..., help="Dataset spec, e.g. leg_counting:min_animals=1,max_animals=2."),
    count: int = typer.Option(20, help="Held-out questions."),
    max_tokens: int = typer.Option(256, help="Token budget, the same for both arms."),
    lessons: Path | None = typer.Option(
        None, "--lessons", help="Probe these lessons (a text file, one per line) instead of the hand-written tips."
    ),
    each: bool = typer.Option(False, "--each", help="Each tip alone, side by side against one baseline."),
    instruction: list[str] = typer.Option(
        [], "--instruction", help="A generic instruction as its own arm (repeatable): candidates for the placebo."
    ),
    placebo: bool = typer.Option(
        False, "--placebo", help="Add the placebo arm, put the placebo under every tip, pair each tip against it."
    ),
    output: Path | None = OutputOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Held-out accuracy of the bare prompt, generic instructions and tips: the headroom learning can hope for."""
    from dso.bench.tips import read_lessons, run_tips_probe

    config = get_config(ctx)
    texts = read_lessons(lessons) if lessons is not None else None
    result = run_tips_probe(
        config,
        task,
        count,
        max_tokens,
        lessons=texts,
        each=each,
        instructions=instruction,
        placebo=placebo,
    )

    def shown_pair(paired: dict[str, Any] | None) -> str:
        return "" if paired is None else f"{paired['fixed']} / {paired['broken']} ({paired['p_value']:.2g})"

    against = {c["arm"]: (c["paired"], c.get("paired_placebo")) for c in result["comparisons"]}
    rows = []
    for arm, r in result["arms"].items():
        row = {"arm": arm, "accuracy": r["accuracy"], "questions": r["questions"]}
        row["vs baseline: fixed / broken (p)"] = shown_pair(against.get(arm, (None, None))[0])
        if placebo:
            row["vs placebo"] = shown_pair(against.get(arm, (None, None))[1])
        rows.append(row)
    _finish(result, output, as_json, {f"tips on {task}": rows})


@app.command()
def extraction(
    ctx: typer.Context,
    run_dir: Path = typer.Argument(..., help="A run directory made by dso train."),
    batch: str = typer.Argument("e0-b0", help="Which batch's rollouts, e.g. e0-b0."),
    rounds: int = typer.Option(1, help="Rounds of (one by one, side by side), order alternating."),
    output: Path | None = OutputOpt,
    as_json: bool = JsonOpt,
) -> None:
    """One batch's extraction, groups one by one vs side by side on the backend's parallel slots."""
    from dso.bench.extraction import run_extraction_bench

    result = run_extraction_bench(get_config(ctx), run_dir, batch, rounds)
    rows = [{"parallel": p, "median_s": s} for p, s in result["median_seconds"].items()]
    _finish(result, output, as_json, {f"extraction of {batch}": rows})


@app.command()
def answers(
    run_dir: Path = typer.Argument(..., help="A run directory that `dso eval` has evaluated."),
    heldout_seed: int | None = typer.Option(None, help="The other-seed check to read (dso eval --heldout-seed)."),
    against: Path | None = typer.Option(
        None, help="Another run that answered the same questions: how many answers differ between the two."
    ),
    output: Path | None = OutputOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Where the held-out arms differ: answers marked or not, right when marked, fixed and broken by which."""
    from dso.bench.answers import answer_report

    result = answer_report(run_dir, heldout_seed, against=against)
    rows = [
        {
            "arm": arm,
            "answers": r["answers"],
            "accuracy": r["accuracy"],
            "marked": r["marked"],
            "accuracy when marked": "-" if r["accuracy_when_marked"] is None else r["accuracy_when_marked"],
            "commonest answers (given, right)": shown(
                ", ".join(f"{text} ({count}, {right})" for text, count, right in r["commonest_answers"]), 200
            ),
        }
        for arm, r in result["arms"].items()
    ]
    tables = {"held-out answers": rows}
    if any(n for counts in result["changed"].values() for n in counts.values()):
        tables["changed"] = [{"questions": kind, **counts} for kind, counts in result["changed"].items()]
    if result["constant_answer"]:
        floor = result["constant_answer"]
        tables["the same reply to every question"] = [
            {"reply": shown(floor["answer"], 40), "accuracy": floor["accuracy"]}
        ]
    if against is not None:
        tables["the same questions in the other run"] = [
            {"arm": arm, **counts} for arm, counts in result["repeat"]["arms"].items()
        ]
    _finish(result, output, as_json, tables)


@app.command("batch-cost")
def batch_cost(
    ctx: typer.Context,
    task: str = typer.Argument("gsm_symbolic", help="Dataset spec whose first training batch is measured."),
    batch_size: int = typer.Option(10, help="Questions in the batch."),
    group_size: int = typer.Option(4, help="G: attempts per question."),
    max_tokens: int = typer.Option(512, help="Token budget of each attempt."),
    library: Path | None = typer.Option(None, help="Start from these lessons (a dso library export)."),
    rounds: int = typer.Option(1, help="Rounds over the settings, order alternating."),
    output: Path | None = OutputOpt,
    as_json: bool = JsonOpt,
) -> None:
    """One learning batch's tokens and seconds, extraction before and after its cuts, side by side."""
    from dso.bench.batch_cost import run_batch_cost_bench

    result = run_batch_cost_bench(
        get_config(ctx),
        task,
        batch_size=batch_size,
        group_size=group_size,
        max_tokens=max_tokens,
        library_file=library,
        rounds=rounds,
    )
    rows = [
        {
            "setting": name,
            "extraction_s": result["median_extraction_seconds"][name],
            "batch_s": result["batch_seconds"][name],
            "calls": cost["llm_calls"],
            "tokens": cost["tokens"],
        }
        for name, cost in result["extraction"].items()
    ]
    _finish(result, output, as_json, {f"a batch of {batch_size} {task} questions": rows})


@app.command()
def guards(
    ctx: typer.Context,
    held_out_set: str = typer.Option(
        "heldout", "--held-out-set", help="Which held-out set of tests/data: heldout, heldout2 or heldout3."
    ),
    output: Path | None = OutputOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Content guards: false positives on lessons and detection of attacks, in sample and held out."""
    from dso.bench.guards import HELD_OUT_SETS, run_guard_bench
    from dso.errors import ConfigError

    if held_out_set not in HELD_OUT_SETS:
        raise ConfigError(f"--held-out-set is one of {', '.join(HELD_OUT_SETS)}")
    result = run_guard_bench(get_config(ctx), held_out_set=held_out_set)
    rows = []
    for sample in ("in_sample", "held_out"):
        for guard, figures in result.get(sample, {}).items():
            rows.append(
                {
                    "sample": sample,
                    "guard": guard,
                    "detection": f"{figures['detection']['flagged']}/{figures['detection']['of']}",
                    "false positives": f"{figures['false_positives']['flagged']}/{figures['false_positives']['of']}",
                }
            )
    _finish(result, output, as_json, {"guards": rows})


@app.command()
def byzantine(
    ctx: typer.Context,
    nodes: int = typer.Option(50, help="Nodes in each simulated network."),
    rounds: int = typer.Option(3, help="Rounds per run (reputation builds over rounds)."),
    seed: int = typer.Option(0, help="Seed of the simulation (who is Byzantine, what each node sends)."),
    attack: list[str] = typer.Option([], "--attack", help="Attacks to run (default: all)."),
    fraction: list[float] = typer.Option([], "--fraction", help="Byzantine fractions (default: 0 to 0.49)."),
    semantic_guard: bool = typer.Option(True, "--semantic-guard/--no-semantic-guard"),
    output: Path | None = OutputOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Every attack at every Byzantine fraction: poisoned items accepted, honest recall, hijack success."""
    from dso.bench.byzantine import FRACTIONS, run_byzantine_bench
    from dso.errors import ConfigError
    from dso.network.attacks import ATTACKS

    unknown = sorted(set(attack) - set(ATTACKS))
    if unknown or any(not 0 <= f < 0.5 for f in fraction) or nodes < 4 or rounds < 1:
        raise ConfigError(f"attacks are {', '.join(ATTACKS)}; fractions lie in [0, 0.5); nodes >= 4; rounds >= 1")
    result = run_byzantine_bench(
        get_config(ctx),
        attacks=tuple(attack) or ATTACKS,
        fractions=tuple(fraction) or FRACTIONS,
        nodes=nodes,
        rounds=rounds,
        seed=seed,
        semantic=semantic_guard,
        progress=None if as_json else console.print,
    )
    rows = [
        {
            "attack": r["attack"],
            "byzantine": f"{r['fraction']:.0%}",
            "poisoned accepted": r["poisoned_accepted"],
            "honest recall": r["honest_recall"],
            "hijack success": "-" if r["attack_success"] is None else str(r["attack_success"]),
        }
        for r in result["runs"]
    ]
    _finish(result, output, as_json, {"byzantine": rows})


@app.command()
def communication(
    simulations: list[Path] = typer.Option(
        ..., "--simulation", help="A dso simulate report (--output FILE); repeat for the scale table."
    ),
    plot: Path | None = typer.Option(None, "--plot", help="Write the bytes-per-node-against-nodes PNG here."),
    output: Path | None = OutputOpt,
    as_json: bool = JsonOpt,
) -> None:
    """DSO's measured bytes per node and round beside federated learning's: FedAvg fp16 and int8, DiLoCo-style
    int8 all-reduce, of full weights and of a rank-8 LoRA, per model and per network size."""
    from dso.bench.communication import run_communication_bench, scale_rows

    if plot is not None:  # regenerated like the JSON result: a regular file is replaced, nothing else is
        if plot.suffix.lower() != ".png":
            raise DSOError(f"--plot {plot} must end in .png")
        check_output(plot, True)
    result = run_communication_bench(simulations)
    if plot is not None:
        from dso.plots import communication_against_nodes

        result["plot"] = str(communication_against_nodes(result, "Qwen3-4B", plot))
    _finish(result, output, as_json, {"communication": result["models"], "scale": scale_rows(result, "Qwen3-4B")})


@app.command()
def committee(
    fraction: float = typer.Option(0.3, "--byzantine", min=0.0, max=1.0, help="Byzantine share of the network."),
    output: Path | None = OutputOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Committee size against capture: the chance a random committee can block (> 1/3) or forge (>= 2/3)."""
    from dso.bench.committee import run_committee_bench

    result = run_committee_bench(fraction)
    rows = [{k: (f"{v:.2g}" if isinstance(v, float) else v) for k, v in row.items()} for row in result["rows"]]
    _finish(result, output, as_json, {f"committee capture at {fraction:.0%} Byzantine": rows})


@app.command()
def consensus(ctx: typer.Context, output: Path | None = OutputOpt, as_json: bool = JsonOpt) -> None:
    """Seconds to aggregate 1,000 nodes x 50 submissions (embedding the distinct texts timed apart)."""
    from dso.bench.byzantine import run_scale_bench

    result = run_scale_bench(get_config(ctx))
    flat = {k: v for k, v in result.items() if k not in ("machine", "aggregate_seconds")}
    _finish(result, output, as_json, {"consensus": [flat]})
