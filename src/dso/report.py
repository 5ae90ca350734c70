"""One Markdown page that answers "which claims hold?", generated from result files, never typed by hand.

`dso report PATH...` reads the JSON result files under each path (the committed `bench/results`, or a run's
folder) and renders:

- the claims table: each success criterion of the design DSO implements, and DSO's own stricter ones, with
  what was measured, a verdict (holds / holds in part / fails / not measured) and the files it comes from;
- the tables behind the verdicts, each row from one file.

Verdicts follow fixed rules stated next to each claim (`_claims`); a claim with no file behind it is "not
measured", never assumed. Pure: the files are read by `load_results`, everything else is a function of them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dso.errors import DSOError
from dso.files import read_input

Results = Mapping[str, dict[str, Any]]  # file name -> its JSON object

HOLDS, PARTLY, FAILS, UNMEASURED = "holds", "holds in part", "fails", "not measured"
SIGNIFICANT = 0.05


@dataclasses.dataclass(frozen=True)
class Claim:
    claim: str
    measured: str
    verdict: str
    sources: tuple[str, ...]


def load_results(paths: Sequence[Path], where: dict[str, Path] | None = None) -> dict[str, dict[str, Any]]:
    """Every JSON object file under `paths` (files or folders, not recursive), by file name; empty files (a
    run still writing) and files that are not a JSON object are skipped. `where` receives each name's file."""
    found: dict[str, dict[str, Any]] = {}
    for path in paths:
        if not path.exists():
            raise DSOError(f"{path} does not exist")
        files = sorted(path.glob("*.json")) if path.is_dir() else [path]
        for file in files:
            try:
                data = json.loads(read_input(file, DSOError) or b"null")
            except ValueError:
                continue
            if isinstance(data, dict):  # an experiment's summary.json is named by its run folder
                name = f"{file.parent.name}/{file.name}" if file.name == "summary.json" else file.name
                found[name] = data
                if where is not None:
                    where[name] = file
    return found


SHAPE_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError)  # a file not of the expected shape


def _select(results: Results, prefix: str, test: Callable[[dict[str, Any]], bool] = lambda d: True) -> list[str]:
    """Files named `prefix...` for which `test` holds; a file of another shape is left out, never a crash."""

    def fits(data: dict[str, Any]) -> bool:
        try:
            return test(data)
        except SHAPE_ERRORS:
            return False

    return sorted(name for name, data in results.items() if name.startswith(prefix) and fits(data))


Rows = dict[str, Any] | list[dict[str, Any]] | None


def _rows(results: Results, names: Sequence[str], row: Callable[[str, dict[str, Any]], Rows]) -> list[dict[str, Any]]:
    """The table rows each file gives (one, several or none); a file of another shape gives none."""
    out: list[dict[str, Any]] = []
    for name in names:
        try:
            made = row(name, results[name])
        except SHAPE_ERRORS:
            continue
        out += [] if made is None else made if isinstance(made, list) else [made]
    return out


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _communication(results: Results) -> Claim:
    claim = "10-100x less communication than federated learning"
    names = _select(results, "communication", lambda d: bool(d.get("scale")))
    if not names:
        return Claim(claim, "no communication bench with a scale table", UNMEASURED, ())
    rows = results[names[0]]["scale"]
    ratios = []
    for row in rows:
        cheapest = min((v, k) for k, v in row.items() if k.endswith(":over_dso") and ":lora8:" in k)
        ratios.append((row["nodes"], cheapest[0], cheapest[1].split(":")[0]))
    text = "; ".join(f"{_fmt(r)}x at {n:,} nodes" for n, r, _ in ratios)
    model = ratios[0][2]
    measured = f"DSO's bytes per node and round below the cheapest federated scheme (rank-8 LoRA of {model}): {text}"
    held = [r >= 10 for _, r, _ in ratios]
    verdict = HOLDS if all(held) else (PARTLY if any(held) else FAILS)
    if verdict == HOLDS and len(rows) > 1 and ratios[-1][1] < ratios[0][1] / 2:
        verdict = PARTLY  # holds where measured, but the margin shrinks with the network
        measured += " (the margin shrinks as the network grows: every node fetches every batch)"
    return Claim(claim, measured, verdict, tuple(names))


def _scale(results: Results) -> Claim:
    claim = "1,000+ nodes"
    names = _select(results, "simulate", lambda d: d.get("settings", {}).get("nodes", 0) >= 1000)
    if not names:
        return Claim(claim, "no simulation of 1,000 nodes or more", UNMEASURED, ())
    parts, poisoned = [], 0
    for name in names:
        data = results[name]
        rounds = data["rounds"]
        slowest = max(sum(r.get("phase_seconds", {}).values()) for r in rounds)
        poisoned += int(data["poisoned_accepted"])
        parts.append(
            f"{data['settings']['nodes']:,} nodes, {len(rounds)} rounds, {data['poisoned_accepted']} poisoned, "
            f"slowest round {slowest / 60:.0f} min ({data.get('chain', '?')})"
        )
    return Claim(claim, "; ".join(parts), HOLDS if poisoned == 0 else FAILS, tuple(names))


def _byzantine(results: Results) -> Claim:
    claim = "robust to 30% Byzantine nodes"
    bench = _select(results, "byzantine", lambda d: bool(d.get("runs")))
    runs = [(n, r) for n in bench for r in results[n]["runs"] if 0 < r.get("fraction", 0) <= 0.3 + 1e-9]
    live = _select(results, "simulate", lambda d: 0 < d.get("settings", {}).get("byzantine", 0) <= 0.3 + 1e-9)
    if not runs and not live and not _select(results, "", lambda d: d["experiment"] == "byzantine-sweep"):
        return Claim(claim, "no attack run at 30% or fewer Byzantine nodes", UNMEASURED, ())
    bad_bench = sum(int(r["poisoned_accepted"]) for _, r in runs)
    bad_live = sum(int(results[n]["poisoned_accepted"]) for n in live)
    sweeps = _select(results, "", lambda d: d["experiment"] == "byzantine-sweep")
    cells = [
        (share, poisoned)
        for n in sweeps
        for row in results[n]["attacks"]
        for share, poisoned in row["poisoned_by_fraction"].items()
        if 0 < float(share) <= 0.3 + 1e-9
    ]
    bad_live += sum(int(p) for _, p in cells)
    measured = (
        f"{bad_bench} poisoned lessons accepted in {len(runs)} attack-bench runs (consensus only) and {bad_live} "
        f"in {len(live) + len(cells)} simulations of real nodes (signed batches, votes, pulls, merges), up to 30% "
        "Byzantine"
    )
    sources = tuple(sorted({n for n, _ in runs} | set(live) | set(sweeps)))
    return Claim(claim, measured, HOLDS if bad_bench + bad_live == 0 else FAILS, sources)


def _finetuned(results: Results) -> Claim:
    claim = "at least 95% of a fine-tuned model's accuracy"
    names = _select(results, "finetune")
    if not names:
        return Claim(claim, "no fine-tuned baseline has been run", UNMEASURED, ())
    ratios = [float(results[n]["dso_over_finetuned"]) for n in names if "dso_over_finetuned" in results[n]]
    if not ratios:
        return Claim(claim, "fine-tuning files hold no comparison", UNMEASURED, tuple(names))
    verdict = HOLDS if min(ratios) >= 0.95 else (PARTLY if max(ratios) >= 0.95 else FAILS)
    return Claim(claim, f"DSO at {min(ratios):.0%}-{max(ratios):.0%} of fine-tuned", verdict, tuple(names))


# The API price a run's tokens are priced at: an open model larger than the one DSO runs (so an upper bound
# for it), as its provider's documentation page stated it when read.
PRICE_MODEL = "Qwen3-32B"
PRICE_IN, PRICE_OUT = 0.165, 0.187  # USD per million tokens in, out
PRICE_SOURCE = "https://fptcloud.com/en/documents/ai-factory-billing/?doc=modas-billing"
PRICE_READ = "2026-12-07"


def _dollars(prompt_tokens: float, completion_tokens: float) -> float:
    return (prompt_tokens * PRICE_IN + completion_tokens * PRICE_OUT) / 1e6


def cost_rows(results: Results) -> list[dict[str, Any]]:
    """Per learning run that counted its solver's tokens: tokens in and out, CPU minutes, and dollars at `PRICE`."""

    def row(name: str, data: dict[str, Any]) -> dict[str, Any]:
        train = data["train"]
        solver = train["solver_tokens"]
        kinds = train["extraction"]["by_kind"].values()
        prompt = solver["prompt_tokens"] + sum(k["prompt_tokens"] for k in kinds)
        completion = solver["completion_tokens"] + sum(k["completion_tokens"] for k in kinds)
        return {
            "run": name.removeprefix("learning-").removesuffix(".json"),
            "tokens in": prompt,
            "tokens out": completion,
            "CPU minutes (2 cores)": round(sum(b["seconds"] for b in train["batches"]) / 60, 1),
            "dollars": round(_dollars(prompt, completion), 4),
            "file": name,
        }

    return _rows(results, _select(results, "learning-", lambda d: bool(d["train"]["solver_tokens"])), row)


def _cost(results: Results) -> Claim:
    claim = "under $20 of compute per agent"
    names = _select(results, "learning-", lambda d: bool(d["train"]["batches"]))
    if not names:
        return Claim(claim, "no learning run", UNMEASURED, ())
    minutes = sorted(sum(b["seconds"] for b in results[n]["train"]["batches"]) / 60 for n in names)
    middle = minutes[len(minutes) // 2]
    timing = f"a learning run took {minutes[0]:.0f}-{minutes[-1]:.0f} min (median {middle:.0f}) of a 2-core CPU"
    priced = cost_rows(results)
    if not priced:
        return Claim(
            claim, f"{timing}; no run counted its solver's tokens yet, so no dollar figure", UNMEASURED, tuple(names)
        )
    most = max(r["dollars"] for r in priced)
    measured = (
        f"{timing}; the costliest of {len(priced)} runs that counted every token: ${most:.4f} at {PRICE_MODEL}'s "
        f"API price ({PRICE_IN} / {PRICE_OUT} USD per million tokens in / out, read {PRICE_READ}); a node's "
        "network share costs no tokens (CPU and gas only)"
    )
    return Claim(claim, measured, HOLDS if most < 20 else FAILS, tuple(r["file"] for r in priced))


def content_rows(results: Results) -> list[dict[str, Any]]:
    """Hand-written content tips under the placebo, paired against the placebo alone (`bench/placebo.sh content`)."""

    def row(name: str, data: dict[str, Any]) -> dict[str, Any] | None:
        arms = data["arms"]
        against = next((c["paired_placebo"] for c in data["comparisons"] if c.get("paired_placebo")), None)
        if against is None:
            return None
        return {
            "task": str(data["task"]).split(":")[0],
            "questions": arms["placebo"]["questions"],
            "seed": data["seed"],
            "bare": arms["baseline"]["accuracy"],
            "placebo": arms["placebo"]["accuracy"],
            "placebo + tips": arms["tips"]["accuracy"],
            "fixed / broken": f"{against['fixed']} / {against['broken']}",
            "p": float(against["p_value"]),
            "file": name,
        }

    return _rows(results, _select(results, "placebo-content-"), row)


def _placebo_judgements(results: Results) -> list[tuple[str, str, dict[str, Any]]]:
    """(file, task, paired against the placebo) for every learned library judged with the placebo arm: `dso eval`
    results of learning runs, and `bench/placebo.sh lessons-SEED` files (the lessons under the placebo)."""
    found = []
    for name in _select(results, "learning-", lambda d: bool(d["eval"]["paired_placebo"])):
        found.append((name, name.removeprefix("learning-").split("-seed")[0], results[name]["eval"]["paired_placebo"]))
    for name in _select(results, "placebo-lessons-", lambda d: bool(d["comparisons"])):
        for row in results[name]["comparisons"]:
            if row.get("paired_placebo"):
                found.append((name, str(results[name]["task"]).split(":")[0], row["paired_placebo"]))
    return found


def _placebo(results: Results) -> Claim:
    claim = "learned lessons beat a placebo instruction (3 tasks, 2 unseen seeds each, p < 0.05)"
    content = content_rows(results)
    probe = "; ".join(
        f"hand tips on {r['task']}: {r['fixed / broken']} against the placebo (p = {r['p']:.2g})" for r in content
    )
    judged = _placebo_judgements(results)
    if not judged:
        return Claim(
            claim,
            f"no learned library judged against the placebo yet; {probe or 'no content probe'}",
            UNMEASURED,
            tuple(r["file"] for r in content),
        )
    wins: dict[str, int] = {}
    worse = set()
    for _, task, paired in judged:
        better = paired["fixed"] > paired["broken"]
        if paired["p_value"] < SIGNIFICANT:
            if better:
                wins[task] = wins.get(task, 0) + 1
            else:
                worse.add(task)
    tasks = sorted(task for task, seeds in wins.items() if seeds >= 2)
    verdict = HOLDS if len(tasks) >= 3 and not worse else (PARTLY if tasks else FAILS)
    measured = (
        f"{len(tasks)} task(s) significantly better on two seeds ({', '.join(tasks) or 'none'}), "
        f"{len(worse)} significantly worse ({', '.join(sorted(worse)) or 'none'}) over {len(judged)} judgements; "
        f"{probe}"
    )
    return Claim(claim, measured, verdict, tuple(sorted({name for name, _, _ in judged})))


def _guards(results: Results) -> Claim:
    claim = "content guards catch hostile texts written after them (>= 90% caught, <= 5% of lessons flagged)"
    names = _select(results, "guards-heldout", lambda d: bool(d["held_out"]["combined"]))
    if not names:
        return Claim(claim, "no held-out guard set", UNMEASURED, ())
    newest = names[-1]  # held-out sets are numbered in the order they were written
    combined = results[newest]["held_out"]["combined"]
    caught, flagged = combined["detection"], combined["false_positives"]
    measured = (
        f"newest held-out set ({results[newest]['held_out_set']}): {caught['flagged']} of {caught['of']} attack texts "
        f"caught, {flagged['flagged']} of {flagged['of']} lessons flagged"
    )
    good_fp = flagged["flagged"] <= 0.05 * flagged["of"]
    if caught["flagged"] >= 0.9 * caught["of"] and good_fp:
        verdict = HOLDS
    else:
        verdict = PARTLY if caught["flagged"] >= 0.5 * caught["of"] and good_fp else FAILS
    return Claim(claim, measured, verdict, (newest,))


def _sharing(results: Results) -> Claim:
    claim = "a node gains from lessons other nodes learned, beyond the placebo"
    names = _select(results, "sharing-")
    if not names:
        return Claim(claim, "no sharing experiment has been run", UNMEASURED, ())
    return Claim(claim, f"{len(names)} sharing result files, not read by this report yet", UNMEASURED, tuple(names))


def claims(results: Results) -> list[Claim]:
    """The design's success criteria, then DSO's own: each with its verdict from the files (a claim whose files
    are not of the expected shape is not measured, and says so)."""
    out = []
    for judge in (_finetuned, _communication, _cost, _scale, _byzantine, _guards, _placebo, _sharing):
        try:
            out.append(judge(results))
        except SHAPE_ERRORS as exc:
            name = judge.__name__.strip("_")
            out.append(Claim(name, f"its result files are not of the expected shape ({exc!r:.80})", UNMEASURED, ()))
    return out


def _table(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "(no file)\n"
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
    for row in rows:
        cells = []
        for key in keys:
            value = row[key]
            cells.append(f"{value:.3g}" if isinstance(value, float) else str(value).replace("|", "\\|"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def attack_rows(results: Results) -> list[dict[str, Any]]:
    def row(name: str, data: dict[str, Any]) -> dict[str, Any]:
        rounds = data["rounds"]
        return {
            "attack": data["settings"]["attack"],
            "nodes": data["settings"]["nodes"],
            "Byzantine": f"{data['settings']['byzantine']:.0%}",
            "batches accepted / rejected": ", ".join(
                f"{r['batches']['accepted']}/{r['batches']['rejected']}" for r in rounds
            ),
            "global library": ", ".join(str(r["global_library"]["accepted"]) for r in rounds),
            "poisoned": data["poisoned_accepted"],
            "file": name,
        }

    return _rows(results, _select(results, "simulate-attack-"), row)


def sweep_rows(results: Results) -> list[dict[str, Any]]:
    """Each attack's breaking point in each Byzantine sweep (`dso experiment byzantine-sweep`)."""

    def rows(name: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for row in data["attacks"]:
            point = row["breaking_point"]
            out.append(
                {
                    "attack": row["attack"],
                    "poisoned by Byzantine share": ", ".join(
                        f"{float(k):.0%}: {v}" for k, v in row["poisoned_by_fraction"].items()
                    ),
                    "breaks at": "-" if point is None else f"{float(point):.0%}",
                    "why": row["reason"],
                    "file": name,
                }
            )
        return out

    return _rows(results, _select(results, "", lambda d: d["experiment"] == "byzantine-sweep"), rows)


def ablation_rows(results: Results) -> list[dict[str, Any]]:
    """Consensus ablations (`bench/ablation.sh`: the attack bench with one setting changed): per file and attack,
    poisoned lessons, honest recall and the accepted lessons' combined confidence."""

    def rows(name: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        settings = data["settings"]
        out = []
        for run in data["runs"]:
            confidences = [r["accepted_confidence_mean"] for r in run["rounds"] if r.get("accepted_confidence_mean")]
            out.append(
                {
                    "acceptance threshold": settings["acceptance_threshold"],
                    "confidence rule": settings["confidence_rule"],
                    "attack": run["attack"],
                    "Byzantine": f"{run['fraction']:.0%}",
                    "poisoned": run["poisoned_accepted"],
                    "honest recall": run["honest_recall"],
                    "accepted confidence": round(sum(confidences) / len(confidences), 3) if confidences else "-",
                    "file": name,
                }
            )
        return out

    return _rows(results, _select(results, "ablation-", lambda d: bool(d["runs"])), rows)


def code_rows(results: Results) -> list[dict[str, Any]]:
    """The bit-width ablation of embedding codes: bytes, reconstruction cosine (`dso bench codec`) and recall@10
    of search on decoded codes against float search (`dso bench retrieval`)."""
    recall: dict[int, float] = {}
    for name in _select(results, "retrieval", lambda d: bool(d["recall_by_bits"])):
        try:
            for measured in results[name]["recall_by_bits"]:
                recall[int(measured["bits"])] = float(measured["recall_at_10"])
        except SHAPE_ERRORS:
            continue

    def row(name: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {
                "bits": r["bits"],
                "code bytes (384 dims)": r["code_bytes"],
                "less than float32": f"{r['ratio_vs_float32']:.1f}x",
                "reconstruction cosine": round(float(r["reconstruction_cosine_mean"]), 3),
                "recall@10 on decoded codes": recall.get(int(r["bits"]), "-"),
                "file": name,
            }
            for r in data["rows"]
            if r["mode"] == "plain"
        ]

    return _rows(results, _select(results, "codec", lambda d: bool(d["rows"])), row)


def _links(names: Sequence[str], base: str | Mapping[str, str]) -> str:
    def target(name: str) -> str:
        return base.get(name, name) if isinstance(base, Mapping) else base + name

    shown = [f"[{name}]({target(name)})" for name in names[:4]]
    return ", ".join(shown) + (f" and {len(names) - 4} more" if len(names) > 4 else "")


def render(results: Results, *, generated: str, link_base: str | Mapping[str, str] = "") -> str:
    """The report as Markdown; `generated` says when and by which command (a line of the header); file names
    link to `link_base` + name, or to `link_base[name]` where it maps each name to its path from the report."""
    out = [
        "# DSO: which claims hold",
        "",
        f"Generated by `dso report` from {len(results)} result files ({generated}). Every figure below comes from",
        "the file named beside it; rerun the command to regenerate this page.",
        "",
        "## Claims",
        "",
    ]
    rows = [
        {"claim": c.claim, "measured": c.measured, "verdict": f"**{c.verdict}**", "files": _links(c.sources, link_base)}
        for c in claims(results)
    ]
    out += [_table(rows), "## Content tips against the placebo", "", _table(content_rows(results))]
    out += ["## Attacks on networks of real nodes", "", _table(attack_rows(results))]
    out += ["## Byzantine sweep on real nodes: where each attack breaks", "", _table(sweep_rows(results))]
    out += ["## Embedding codes: bits against bytes and retrieval", "", _table(code_rows(results))]
    out += ["## Consensus ablations (attack bench: one setting changed at a time)", "", _table(ablation_rows(results))]
    out += [
        "## Cost of learning a task",
        "",
        f"Tokens of the solver (rollouts, gate) and the extractor, priced at {PRICE_MODEL}'s API price "
        f"({PRICE_SOURCE}, read {PRICE_READ}).",
        "",
        _table(cost_rows(results)),
    ]
    return "\n".join(out)
