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
import os
import re
import shlex
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
    light = [r for r in rows if r.get("mode") == "light"]
    how = " with light nodes (nodes outside the committee read its certificate)" if light else ""
    rows = light or rows  # the protocol at its cheapest, where it was measured
    ratios = []
    for row in rows:
        cheapest = min((v, k) for k, v in row.items() if k.endswith(":over_dso") and ":lora8:" in k)
        ratios.append((row["nodes"], cheapest[0], cheapest[1].split(":")[0]))
    text = "; ".join(f"{_fmt(r)}x at {n:,} nodes" for n, r, _ in ratios)
    model = ratios[0][2]
    measured = (
        f"DSO's bytes per node and round{how} below the cheapest federated scheme (rank-8 LoRA of {model}): {text}"
    )
    held = [r >= 10 for _, r, _ in ratios]
    verdict = HOLDS if all(held) else (PARTLY if any(held) else FAILS)
    if verdict == HOLDS and len(rows) > 1 and ratios[-1][1] < ratios[0][1] / 2:
        verdict = PARTLY  # holds where measured, but the margin shrinks with the network
        measured += " (the margin shrinks as the network grows)"
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
            f"slowest round {slowest / 60:.1f} min ({data.get('chain', '?')}{_protocol(data)})"
        )
    return Claim(claim, "; ".join(parts), HOLDS if poisoned == 0 else FAILS, tuple(names))


def _protocol(data: dict[str, Any]) -> str:
    """How a simulated network ran: light nodes, a relay (empty for the plain protocol)."""
    settings = data.get("settings", {})
    parts = [name for name, on in (("light nodes", settings.get("light")), ("relay", settings.get("relay"))) if on]
    return "; " + ", ".join(parts) if parts else ""


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
    shares = trial_cost_rows(results)
    share = (
        f"a node's trials of other nodes' lessons in the main job: {max(r['tokens in'] for r in shares):,} tokens "
        f"in, {max(r['tokens out'] for r in shares):,} out, ${max(r['dollars'] for r in shares):.4f}"
        if shares
        else "a node's trials of other nodes' lessons cost tokens too, not counted by any run yet"
    )
    dollars = most + max((r["dollars"] for r in shares), default=0.0)
    measured = (
        f"{timing}; the costliest of {len(priced)} runs that counted every token: ${most:.4f} at {PRICE_MODEL}'s "
        f"API price ({PRICE_IN} / {PRICE_OUT} USD per million tokens in / out, read {PRICE_READ}); {share}"
    )
    files = tuple(r["file"] for r in (*priced, *shares))
    return Claim(claim, measured, HOLDS if dollars < 20 else FAILS, files)


def trial_cost_rows(results: Results) -> list[dict[str, Any]]:
    """Per main-job run that counted its trials: node 0's tokens for trying other nodes' lessons, and dollars."""

    def row(name: str, data: dict[str, Any]) -> dict[str, Any]:
        cost = data["trial_cost"]
        return {
            "run": name.removesuffix(".json"),
            "tokens in": int(cost["prompt_tokens"]),
            "tokens out": int(cost["completion_tokens"]),
            "minutes (2 cores)": round(float(cost["seconds"]) / 60, 1),
            "dollars": round(_dollars(cost["prompt_tokens"], cost["completion_tokens"]), 4),
            "file": name,
        }

    return _rows(results, _select(results, "demo", lambda d: "trial_cost" in d), row)


def content_rows(results: Results) -> list[dict[str, Any]]:
    """Hand-written content tips under the placebo, paired against the placebo alone (`bench/placebo.sh content`)."""

    def row(name: str, data: dict[str, Any]) -> dict[str, Any] | None:
        arms = data["arms"]
        against = next((c["paired_placebo"] for c in data["comparisons"] if c.get("paired_placebo")), None)
        if against is None:
            return None
        return {  # the file's name after its prefix: the task, and which tips where one task has several files
            "task": name.removeprefix("placebo-content-").removesuffix(".json"),
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


def _evaluation(data: dict[str, Any]) -> dict[str, Any]:
    """The held-out evaluation a learning file holds: `dso train --eval`'s under "eval", `dso eval`'s at the top."""
    found = data["eval"] if "train" in data else data
    if not isinstance(found, dict) or not isinstance(found["arms"], dict):
        raise TypeError("no evaluation")
    return found


_UNSEEN = re.compile(r"-seed(\d+)(?:-|$)")


def _unseen_seed(name: str) -> int | None:
    """The seed of an evaluation on questions the run never drew (`bench/learning.sh NAME-seedN`), else None."""
    found = _UNSEEN.search(name.removesuffix(".json"))
    return int(found.group(1)) if found else None


def _task(data: dict[str, Any]) -> str:
    return str(data.get("dataset") or data.get("task")).split(":")[0]


def _placebo_judgements(results: Results) -> list[tuple[str, str, int, dict[str, Any]]]:
    """(file, task, seed, paired against the placebo) for every learned library judged with the placebo arm on
    questions of a seed its run never drew: `dso eval --heldout-seed` results of learning runs, and
    `bench/placebo.sh lessons-SEED` files (learned lessons probed under the placebo)."""
    found = []
    for name in _select(results, "learning-", lambda d: bool(_evaluation(d)["paired_placebo"])):
        seed = _unseen_seed(name)
        if seed is not None:
            evaluation = _evaluation(results[name])
            found.append((name, _task(evaluation), seed, evaluation["paired_placebo"]))
    for name in _select(results, "placebo-lessons-", lambda d: bool(d["comparisons"])):
        for row in results[name]["comparisons"]:
            if row.get("paired_placebo"):
                found.append((name, _task(results[name]), int(results[name]["seed"]), row["paired_placebo"]))
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
    wins: dict[str, set[int]] = {}
    worse = set()
    for _, task, seed, paired in judged:
        if paired["p_value"] < SIGNIFICANT:
            if paired["fixed"] > paired["broken"]:
                wins.setdefault(task, set()).add(seed)
            else:
                worse.add(task)
    tasks = sorted(task for task, seeds in wins.items() if len(seeds) >= 2)
    verdict = HOLDS if len(tasks) >= 3 and not worse else (PARTLY if tasks else FAILS)
    measured = (
        f"{len(tasks)} task(s) significantly better on two unseen seeds ({', '.join(tasks) or 'none'}), "
        f"{len(worse)} significantly worse ({', '.join(sorted(worse)) or 'none'}) over {len(judged)} judgements; "
        f"{probe}"
    )
    return Claim(claim, measured, verdict, tuple(sorted({name for name, _, _, _ in judged})))


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


def sharing_rows(results: Results) -> list[dict[str, Any]]:
    """`dso experiment sharing`: each node's library on each task it did not learn, against the placebo."""

    def rows(name: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        roles = data["roles"]
        source = "; ".join(f"{row['task'].split(':')[0]}: {row['source']}" for row in data["lessons"])
        out = []
        for task in data["tasks"]:
            arms = {a["arm"]: a for a in task["arms"]}
            for arm, role in sorted(roles.items()):
                if role == f"specialist of {task['domain']}" or arm not in arms:
                    continue
                row = arms[arm]
                out.append(
                    {
                        "task": task["domain"],
                        "node": f"{arm} ({role})",
                        "questions": task["questions"],
                        "none": arms["none"]["accuracy"],
                        "placebo": arms["placebo"]["accuracy"],
                        "specialist alone": arms["specialist"]["accuracy"],
                        "with the network": row["accuracy"],
                        "vs placebo": _pair(row["vs_placebo"])[0],
                        "p": _pair(row["vs_placebo"])[1],
                        "lessons": source,
                        "file": name,
                    }
                )
        return out

    return _rows(results, _select(results, "", lambda d: d["experiment"] == "sharing"), rows)


def demo_rows(results: Results) -> list[dict[str, Any]]:
    """The main job (`bench/demo.sh`, `dso demo --json`): node 0 on the task it never trained on."""

    def row(name: str, data: dict[str, Any]) -> dict[str, Any] | None:
        evaluation = data["evaluation"]
        if evaluation is None:
            return None
        arms = {a["arm"]: a for a in evaluation["arms"]}
        network = arms["node 0 with the network"]
        adopted = {t["text"] for t in data["trials"] if t["adopted"]}  # a candidate has a verdict per look
        return {
            "task never trained on": str(data["untrained_task"]).split(":")[0],
            "questions": evaluation["questions"],
            "placebo": arms["placebo"]["accuracy"],
            "node 0 alone": arms["node 0 alone"]["accuracy"],
            "with the network": network["accuracy"],
            "vs placebo": _pair(network["vs_placebo"])[0],
            "p": _pair(network["vs_placebo"])[1],
            "trials (adopted)": f"{len({t['text'] for t in data['trials']})} ({len(adopted)})",
            "attacker's accepted": data["attacker_items_accepted"],
            "minutes": round(float(data["seconds"]) / 60, 1),
            "file": name,
        }

    return _rows(results, _select(results, "demo", lambda d: d["mode"] == "live"), row)


def _sharing(results: Results) -> Claim:
    claim = "a node gains from lessons other nodes learned, beyond the placebo"
    rows = sharing_rows(results)
    jobs = demo_rows(results)
    if not rows and not jobs:
        return Claim(claim, "neither a sharing experiment nor the main job has been run", UNMEASURED, ())
    parts, verdicts = [], []
    if rows:
        tasks = sorted({r["task"] for r in rows})
        significant = [r for r in rows if isinstance(r["p"], float) and r["p"] < SIGNIFICANT]
        won = sorted({r["task"] for r in significant if _gained(r)})
        worse = sorted({r["task"] for r in significant if not _gained(r)})
        verdicts.append(HOLDS if won == tasks and not worse else (PARTLY if won else FAILS))
        parts.append(
            f"nodes that never learned a task beat the placebo there on {len(won)} of {len(tasks)} tasks "
            f"({', '.join(won) or 'none'}), significantly worse on {len(worse)} ({', '.join(worse) or 'none'}); "
            f"lessons: {rows[0]['lessons']}"
        )
    for job in jobs:
        gained = isinstance(job["p"], float) and job["p"] < SIGNIFICANT and _gained(job)
        verdicts.append(HOLDS if gained else FAILS)
        parts.append(
            f"the main job ({job['file']}): node 0 with the network {job['with the network']} against the placebo's "
            f"{job['placebo']} on {job['questions']} held-out {job['task never trained on']} questions, "
            f"{job['vs placebo']} (p = {_fmt(job['p']) if isinstance(job['p'], float) else job['p']})"
        )
    verdict = (
        HOLDS if all(v == HOLDS for v in verdicts) else (PARTLY if HOLDS in verdicts or PARTLY in verdicts else FAILS)
    )
    files = sorted({r["file"] for r in rows} | {j["file"] for j in jobs})
    return Claim(claim, "; ".join(parts), verdict, tuple(files))


def _gained(row: dict[str, Any]) -> bool:
    fixed, broken = (int(n) for n in str(row["vs placebo"]).split(" / "))
    return fixed > broken


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
            "poisoned candidates": ", ".join(str(r["global_library"].get("poisoned_candidates", "-")) for r in rounds),
            # a light node holds what its committee certified: a forgery stays there until an audit disputes it
            "honest libraries poisoned": ", ".join(str(r.get("honest_libraries_poisoned", "-")) for r in rounds),
            "disputes": ", ".join(str(r.get("disputes", "-")) for r in rounds),
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


def _date(data: dict[str, Any]) -> str:
    """The day a file's machine stamp says it was written ("-" for files from before stamps)."""
    machine = data.get("machine")
    return str(machine["date"])[:10] if isinstance(machine, dict) and machine.get("date") else "-"


def _pair(paired: dict[str, Any] | None) -> tuple[str, float | str]:
    if not paired:
        return "-", "-"
    return f"{paired['fixed']} / {paired['broken']}", float(paired["p_value"])


def learning_rows(results: Results) -> list[dict[str, Any]]:
    """Every learned library judged on held-out questions: the bare prompt, the placebo (where measured) and the
    library on the same questions, paired against each; "run's split" is the run's own held-out questions, a
    number is a seed the run never drew."""

    def row(name: str, data: dict[str, Any]) -> dict[str, Any]:
        evaluation = _evaluation(data)
        arms = evaluation["arms"]
        library = arms["library"]
        bare_pair, bare_p = _pair(evaluation.get("paired"))
        placebo_pair, placebo_p = _pair(evaluation.get("paired_placebo"))
        seed = _unseen_seed(name)
        return {
            "run": _UNSEEN.sub("", name.removeprefix("learning-").removesuffix(".json")).removesuffix("-eval"),
            "task": _task(evaluation),
            "questions": f"{library['questions']} ({'run split' if seed is None else f'seed {seed}'})",
            "bare": arms["baseline"]["accuracy"],
            "placebo": arms["placebo"]["accuracy"] if "placebo" in arms else "-",
            "library": library["accuracy"],
            "lessons": library.get("library_size", "-"),
            "vs bare": bare_pair,
            "p (bare)": bare_p,
            "vs placebo": placebo_pair,
            "p (placebo)": placebo_p,
            "tokens per solved": round(float(library["tokens_per_solved"]))
            if library.get("tokens_per_solved")
            else "-",
            "date": _date(data),
            "file": name,
        }

    found = _rows(results, _select(results, "learning-", lambda d: bool(_evaluation(d)["arms"]["library"])), row)
    return found + _rows(results, _select(results, "placebo-lessons-", lambda d: bool(d["comparisons"])), probe_row)


def probe_row(name: str, data: dict[str, Any]) -> dict[str, Any]:
    """A learned library's lessons probed under the placebo (`bench/placebo.sh lessons-SEED`), as a learning row."""
    arms = data["arms"]
    (tips,) = [c for c in data["comparisons"] if c.get("paired_placebo")]
    bare_pair, bare_p = _pair(tips["paired"])
    placebo_pair, placebo_p = _pair(tips["paired_placebo"])
    lessons = arms[tips["arm"]]
    return {
        "run": _UNSEEN.sub("", name.removeprefix("placebo-lessons-").removesuffix(".json")) + " (lessons probed)",
        "task": _task(data),
        "questions": f"{lessons['questions']} (seed {data['seed']})",
        "bare": arms["baseline"]["accuracy"],
        "placebo": arms["placebo"]["accuracy"],
        "library": lessons["accuracy"],
        "lessons": len(tips["tips"]),
        "vs bare": bare_pair,
        "p (bare)": bare_p,
        "vs placebo": placebo_pair,
        "p (placebo)": placebo_p,
        "tokens per solved": round(float(lessons["tokens_per_solved"])) if lessons.get("tokens_per_solved") else "-",
        "date": _date(data),
        "file": name,
    }


def lesson_rows(results: Results) -> list[dict[str, Any]]:
    """The lessons of every library judged against the placebo, once per run: what the content is."""
    seen: set[str] = set()

    def rows(name: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        evaluation = _evaluation(data)
        run = _UNSEEN.sub("", name.removeprefix("learning-").removesuffix(".json"))
        if run in seen or not evaluation.get("paired_placebo"):
            return []
        seen.add(run)
        return [{"run": run, "lesson": " ".join(str(text).split())} for text in evaluation["experiences"]]

    def probed(name: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        run = _UNSEEN.sub("", name.removeprefix("placebo-lessons-").removesuffix(".json")) + " (lessons probed)"
        return [{"run": run, "lesson": " ".join(str(t).split())} for t in data["tips"]]

    found = _rows(results, _select(results, "learning-", lambda d: bool(_evaluation(d)["experiences"])), rows)
    return found + _rows(results, _select(results, "placebo-lessons-", lambda d: bool(d["tips"])), probed)


def placebo_choice_rows(results: Results) -> list[dict[str, Any]]:
    """The candidates for the placebo instruction, each paired against the bare prompt (`bench/placebo.sh choose`,
    on a seed kept for that choice alone)."""

    def rows(name: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        arms = data["arms"]
        return [
            {
                "task": _task(data),
                "seed": data["seed"],
                "instruction": row["instruction"],
                "bare": arms["baseline"]["accuracy"],
                "with it": arms[row["arm"]]["accuracy"],
                "fixed / broken": _pair(row["paired"])[0],
                "p": _pair(row["paired"])[1],
                "file": name,
            }
            for row in data["comparisons"]
        ]

    return _rows(results, _select(results, "placebo-choice-", lambda d: bool(d["comparisons"])), rows)


def bench_attack_rows(results: Results) -> list[dict[str, Any]]:
    """The consensus attack bench (`dso bench byzantine`): the consensus alone, many nodes, every attack."""

    def rows(name: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {
                "attack": run["attack"],
                "Byzantine": f"{float(run['fraction']):.0%}",
                "nodes": run["nodes"],
                "poisoned": run["poisoned_accepted"],
                "honest recall": run["honest_recall"],
                "date": _date(data),
                "file": name,
            }
            for run in data["runs"]
        ]

    names = _select(results, "byzantine", lambda d: bool(d["runs"]) and "acceptance_threshold" not in d["settings"])
    return _rows(results, names, rows)


def guard_rows(results: Results) -> list[dict[str, Any]]:
    """The content guards on texts written after them: attack texts caught, honest lessons flagged."""

    def row(name: str, data: dict[str, Any]) -> dict[str, Any]:
        combined = data["held_out"]["combined"]
        return {
            "held-out set": data.get("held_out_set", "heldout1"),
            "attack texts caught": f"{combined['detection']['flagged']} of {combined['detection']['of']}",
            "lessons flagged": f"{combined['false_positives']['flagged']} of {combined['false_positives']['of']}",
            "date": _date(data),
            "file": name,
        }

    return _rows(results, _select(results, "guards", lambda d: bool(d["held_out"]["combined"])), row)


def scale_rows(results: Results) -> list[dict[str, Any]]:
    """Networks of real nodes by size (`dso simulate`, `bench/flower.sh`): the slowest round and its phases,
    the median bytes an honest node received, transactions, gas, poisoned lessons."""

    def row(name: str, data: dict[str, Any]) -> dict[str, Any]:
        rounds = data["rounds"]
        slowest = max(rounds, key=lambda r: sum(r["phase_seconds"].values()))
        phases = ", ".join(f"{k} {v:.0f}" for k, v in slowest["phase_seconds"].items())
        return {
            "nodes": data["settings"]["nodes"],
            "chain / store": f"{data.get('chain', '?')} / {data.get('store', '?')}{_protocol(data)}",
            "rounds": len(rounds),
            "slowest round (s)": round(sum(slowest["phase_seconds"].values())),
            "its phases (s)": phases,
            "median bytes received": f"{slowest['bytes_per_honest_node']['received_median']:,.0f}",
            "max bytes received": f"{slowest['bytes_per_honest_node']['received_max']:,.0f}",
            "transactions": slowest["transactions"],
            "gas": f"{slowest.get('gas', 0):,}",
            "poisoned": data["poisoned_accepted"],
            "date": _date(data),
            "file": name,
        }

    names = [
        n for n in _select(results, "simulate", lambda d: bool(d["rounds"])) if not n.startswith("simulate-attack-")
    ]
    return sorted(_rows(results, names, row), key=lambda r: (r["nodes"], r["file"]))


def flower_rows(results: Results) -> list[dict[str, Any]]:
    """The same nodes run as Flower apps (`bench/flower.sh`)."""

    def row(name: str, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "nodes": data["settings"]["nodes"],
            "rounds": len(data["rounds"]),
            "seconds": round(float(data["seconds"])),
            "Byzantine": f"{float(data['settings']['byzantine']):.0%}",
            "attack": data["settings"]["attack"],
            "date": _date(data),
            "file": name,
        }

    return _rows(results, _select(results, "flower-", lambda d: d["engine"] == "flower"), row)


def communication_rows(results: Results) -> list[dict[str, Any]]:
    """DSO's bytes per node and round (a simulation's median received) against federated learning of each model:
    plain FedAvg (fp16), int8 FedAvg and DiLoCo-style int8, of a rank-8 LoRA and of full weights."""

    def rows(name: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for scale in data["scale"]:
            for model in data["models"]:
                key = model["model"]
                out.append(
                    {
                        "nodes": scale["nodes"],
                        "DSO bytes": f"{scale['dso_bytes']:,.0f}",
                        "model": key,
                        **{
                            f"{part} {scheme}": f"{scale[f'{key}:{part}:{scheme}:over_dso']:,.0f}x"
                            for part in ("lora8", "full")
                            for scheme in ("fedavg_fp16", "fedavg_int8", "diloco_int8")
                        },
                        "file": name,
                    }
                )
        return out

    return _rows(results, _select(results, "communication", lambda d: bool(d["scale"])), rows)


def chain_rows(results: Results) -> list[dict[str, Any]]:
    """Gas and throughput of the registry on each chain backend (`dso bench chain`)."""

    def rows(name: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {
                "backend": backend,
                "batches": row["batches"],
                "gas per submit": f"{row['gas_per_submit']:,.0f}",
                "gas per relayed batch": f"{row['gas_per_relayed_batch']:,.0f}"
                if "gas_per_relayed_batch" in row
                else "-",
                "gas per vote": f"{row['gas_per_vote']:,.0f}",
                "gas per attestation": f"{row['gas_per_attestation']:,.0f}" if "gas_per_attestation" in row else "-",
                "submits per s": round(float(row["submit_tx_per_s"]), 1),
                "date": _date(data),
                "file": name,
            }
            for backend, row in data["backends"].items()
        ]

    return _rows(results, _select(results, "chain", lambda d: bool(d["backends"])), rows)


_PLOTS = re.compile(r"--plots?\s+(\S+)")


def figure_rows(results: Results) -> list[dict[str, Any]]:
    """Every plot a result file names (its "plot" field, or the --plot/--plots of its command), with the file's
    date, machine and the command that regenerates it."""

    def rows(name: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        plot = data.get("plot") or data.get("plots")
        command = str(data.get("command") or "")
        named = [plot] if isinstance(plot, str) else list(plot or [])
        named += [] if named else _PLOTS.findall(command)
        machine = data.get("machine") or {}
        return [
            {
                "figure": str(path),
                "date": _date(data),
                "machine": f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores",
                "command": command or "-",
                "file": name,
            }
            for path in named
        ]

    return _rows(results, sorted(results), rows)


def _links(names: Sequence[str], base: str | Mapping[str, str]) -> str:
    def target(name: str) -> str:
        return base.get(name, name) if isinstance(base, Mapping) else base + name

    shown = [f"[{name}]({target(name)})" for name in names[:4]]
    return ", ".join(shown) + (f" and {len(names) - 4} more" if len(names) > 4 else "")


JOURNAL = "journal/"  # the lab journal of earlier runs, beside the report under docs/


def newest_date(results: Results) -> str:
    """The newest machine stamp among the files: the report's date, so the same files give the same page."""
    dates = [str(d["machine"]["date"]) for d in results.values() if isinstance(d.get("machine"), dict)]
    return max((d for d in dates if d), default="-")


def _section(title: str, why: str, rows: list[dict[str, Any]], link_base: str | Mapping[str, str]) -> list[str]:
    """A heading, why the table is there, and the table, its "file" column linked to the files."""
    linked = [{**row, "file": _links([row["file"]], link_base)} if "file" in row else row for row in rows]
    return [f"## {title}", "", *([why, ""] if why else []), _table(linked)]


def render(results: Results, *, command: str, link_base: str | Mapping[str, str] = "", root: str = "") -> str:
    """The report as Markdown, a function of the files alone (its date is the newest file's), so a test can
    regenerate it and compare; `command` is what regenerates it; file names link to `link_base` + name, or to
    `link_base[name]` where it maps each name to its path from the report; figures are shown from `root` + the
    path their file names (the folder the commands ran in, seen from the report)."""
    out = [
        "# DSO: measured results",
        "",
        f"Generated by `{command}` from {len(results)} result files, the newest written {newest_date(results)}.",
        "Every figure below comes from the file named beside it, which records its machine, date and the",
        "command that wrote it; rerun that command to measure again, and this one to regenerate the page.",
        f"Nothing here is typed by hand. The lab journal of earlier runs, with their discussion, is in [{JOURNAL}]"
        f"({JOURNAL}).",
        "",
        "## Claims",
        "",
        "Each success criterion of the design, and DSO's own stricter ones, judged by fixed rules from the files "
        "(`dso.report`); a claim with no file behind it is not measured.",
        "",
    ]
    rows = [
        {"claim": c.claim, "measured": c.measured, "verdict": f"**{c.verdict}**", "files": _links(c.sources, link_base)}
        for c in claims(results)
    ]
    out.append(_table(rows))
    out += _section(
        "Learning: the library against the bare prompt and the placebo",
        "qwen2.5-1.5b, greedy; each arm answers the same held-out questions; fixed / broken and p (two-sided sign "
        "test) pair the library against the bare prompt and against the placebo instruction where that arm ran.",
        learning_rows(results),
        link_base,
    )
    out += _section(
        "Lessons judged against the placebo", "The library's text, as learned.", lesson_rows(results), link_base
    )
    out += _section(
        "Sharing: each node on the tasks it never learned",
        "`dso experiment sharing`: real nodes, candidates tried on each node's own questions; every arm on the same "
        "held-out questions of an unseen seed, paired against the placebo.",
        sharing_rows(results),
        link_base,
    )
    out += _section(
        "The main job: a node on a task it never trained on",
        "`dso demo` as `make demo` runs it (`bench/demo.sh`): node 0 learned chain sums, a specialist replayed "
        "hand-written leg-counting lessons, node 0 tried them on its own questions before adopting any.",
        demo_rows(results),
        link_base,
    )
    out += _section(
        "The placebo: candidates for the generic instruction",
        "Each candidate against the bare prompt on a seed kept for this choice alone; the chosen one is solver.v3's.",
        placebo_choice_rows(results),
        link_base,
    )
    out += _section(
        "Content tips against the placebo",
        "Hand-written tips under the placebo, paired against the placebo alone: where content can matter.",
        content_rows(results),
        link_base,
    )
    out += _section(
        "Attacks on networks of real nodes",
        "Signed batches, registry votes, pulls and merges; one simulation per attack. Poisoned candidates are below "
        "the support threshold: no node merges them untried (replay nodes hold no questions, so they try none). "
        "Poisoned counts what the honest members' consensus accepts; honest libraries poisoned counts honest nodes "
        "holding a lesson no honest node learned at the end of each round (light nodes hold what their committee "
        "certified until an audit disputes it).",
        attack_rows(results),
        link_base,
    )
    out += _section("Byzantine sweep on real nodes: where each attack breaks", "", sweep_rows(results), link_base)
    out += _section("Attack bench (the consensus alone)", "", bench_attack_rows(results), link_base)
    out += _section("Content guards on texts written after them", "", guard_rows(results), link_base)
    out += _section(
        "Networks by size",
        "The slowest round of each simulation; bytes are what the median (and the busiest) honest node received "
        "in it. Light nodes: nodes outside the committee read its certificate; relay: one transaction registers "
        "a hundred batches.",
        scale_rows(results),
        link_base,
    )
    out += _section("The same nodes as Flower apps", "", flower_rows(results), link_base)
    out += _section(
        "Communication against federated learning",
        "How many times more bytes per node and round each federated scheme moves than DSO.",
        communication_rows(results),
        link_base,
    )
    out += _section("Embedding codes: bits against bytes and retrieval", "", code_rows(results), link_base)
    out += _section(
        "Consensus ablations (attack bench: one setting changed at a time)", "", ablation_rows(results), link_base
    )
    out += _section("The registry on chain", "", chain_rows(results), link_base)
    out += _section(
        "Cost of learning a task",
        f"Tokens of the solver (rollouts, gate) and the extractor, priced at {PRICE_MODEL}'s API price "
        f"({PRICE_SOURCE}, read {PRICE_READ}).",
        cost_rows(results),
        link_base,
    )
    out += _section(
        "Cost of a node's share of the network",
        "Node 0's trials of other nodes' lessons in the main job (its rounds included in the minutes), same price.",
        trial_cost_rows(results),
        link_base,
    )
    figures = figure_rows(results)
    out += _section("Figures", "Each plot with the file that names it.", figures, link_base)
    out += [f"![{row['figure']}]({root}{row['figure']})\n" for row in figures if row["figure"].endswith(".png")]
    return "\n".join(out)


def page(paths: Sequence[Path], output: Path | None) -> tuple[str, int]:
    """`dso report PATH... [--output FILE]`'s page and how many files it read: links and figures are relative
    to where the page is written, figures' paths to the working folder."""
    where: dict[str, Path] = {}
    results = load_results(paths, where)
    command = shlex.join(["dso", "report", *map(str, paths)] + ([] if output is None else ["--output", str(output)]))
    home = output.parent if output is not None else Path(".")
    links = {name: os.path.relpath(file, home).replace(os.sep, "/") for name, file in where.items()}
    root = os.path.relpath(".", home).replace(os.sep, "/") + "/"
    return render(results, command=command, link_base=links, root="" if root == "./" else root), len(results)
