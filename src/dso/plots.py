"""PNG figures of a network run, one function per figure (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

import matplotlib

matplotlib.use("Agg")  # no display: figures go to files

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

Target = TypeVar("Target", Path, IO[bytes])  # a file path, or an open binary stream (a web response)


def _save(figure: Any, path: Target) -> Target:
    if isinstance(path, Path):
        path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=120, format="png")
    plt.close(figure)
    return path


def batches_per_round(rounds: Sequence[dict[str, Any]], path: Path, title: str) -> Path:
    """Batches accepted and rejected by the registry, and the global library's size, per round."""
    numbers = [r["round"] for r in rounds]
    figure, axis = plt.subplots(figsize=(6, 3.5))
    width = 0.35
    axis.bar([n - width / 2 for n in numbers], [r["batches"]["accepted"] for r in rounds], width, label="accepted")
    axis.bar([n + width / 2 for n in numbers], [r["batches"]["rejected"] for r in rounds], width, label="rejected")
    axis.plot(numbers, [r["global_library"]["accepted"] for r in rounds], "k.-", label="global library (experiences)")
    axis.plot(numbers, [r["poisoned_accepted"] for r in rounds], "rx--", label="poisoned accepted")
    axis.set(xlabel="round", ylabel="count", title=title, xticks=numbers)
    axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    axis.legend(fontsize=8)
    return _save(figure, path)


def bytes_per_round(
    rounds: Sequence[dict[str, Any]], path: Path, title: str, references: Mapping[str, float] | None = None
) -> Path:
    """Bytes the median honest node sent and received per round, beside reference lines (log scale)."""
    numbers = [r["round"] for r in rounds]
    figure, axis = plt.subplots(figsize=(6, 3.5))
    sent = [max(1, r["bytes_per_honest_node"]["sent_median"]) for r in rounds]
    received = [max(1, r["bytes_per_honest_node"]["received_median"]) for r in rounds]
    axis.plot(numbers, sent, "o-", label="DSO: sent (median node)")
    axis.plot(numbers, received, "s-", label="DSO: received (median node)")
    for name, value in (references or {}).items():
        axis.axhline(value, linestyle=":", color="grey")
        axis.text(numbers[0], value / 2.5, name, fontsize=7, color="grey")
    axis.set_yscale("log")
    axis.set(xlabel="round", ylabel="bytes per node", title=title, xticks=numbers)
    axis.legend(fontsize=8, loc="center right")
    return _save(figure, path)


def node_training_accuracy(metrics: Sequence[dict[str, Any]], path: Target, title: str) -> Target:
    """A node's share of correct training attempts per learning batch, with its library's size."""
    figure, axis = plt.subplots(figsize=(6, 3.2))
    steps = list(range(1, len(metrics) + 1))
    axis.plot(steps, [m["mean_reward"] for m in metrics], "o-", label="correct attempts (training)")
    axis.set(xlabel="learning batch", ylabel="share correct", title=title, ylim=(0, 1))
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    sizes = axis.twinx()
    sizes.plot(steps, [m["library_size"] for m in metrics], "k.--", label="library size")
    sizes.set_ylabel("experiences")
    sizes.yaxis.set_major_locator(MaxNLocator(integer=True))
    lines = axis.get_legend_handles_labels()
    more = sizes.get_legend_handles_labels()
    axis.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="lower right")
    return _save(figure, path)


def node_bytes_per_sync(traffic: Sequence[tuple[int, int, int]], path: Target, title: str) -> Target:
    """Bytes a node sent and received in each of its syncs (log scale)."""
    figure, axis = plt.subplots(figsize=(6, 3.2))
    syncs = [t[0] for t in traffic]
    axis.plot(syncs, [max(1, t[1]) for t in traffic], "o-", label="sent")
    axis.plot(syncs, [max(1, t[2]) for t in traffic], "s-", label="received")
    axis.set_yscale("log")
    axis.set(xlabel="sync", ylabel="bytes", title=title)
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.legend(fontsize=8)
    return _save(figure, path)


def communication_against_nodes(result: dict[str, Any], model: str, path: Path) -> Path:
    """Bytes per node and round against network size: DSO's measured points beside each federated scheme's
    line for `model` (full weights and rank-8 LoRA), log-log."""
    scale = result["scale"]
    figure, axis = plt.subplots(figsize=(7, 4.2))
    labels = {"full": "DSO, every node pulls every batch", "light": "DSO, light nodes read the certificate"}
    for mode, style in (("full", "ko-"), ("light", "gs-")):
        mine = [row for row in scale if row.get("mode", "full") == mode]
        if mine:
            axis.plot(
                [r["nodes"] for r in mine], [r["dso_bytes"] for r in mine], style, label=f"{labels[mode]} (median)"
            )
    scale = list({row["nodes"]: row for row in scale}.values())  # one row per size for the baselines
    nodes = [row["nodes"] for row in scale]
    span = [min(nodes), max(10_000, max(nodes))]
    names = {"fedavg_fp16": "FedAvg fp16", "fedavg_int8": "FedAvg int8", "diloco_int8": "DiLoCo-style int8"}
    styles = {"fedavg_fp16": "-", "fedavg_int8": "--", "diloco_int8": ":"}
    for weights, colour in (("lora8", "tab:blue"), ("full", "tab:red")):
        for scheme, label in names.items():
            values = [row[f"{model}:{weights}:{scheme}"] for row in scale]
            axis.plot(nodes, values, styles[scheme], color=colour, label=f"{label}, {weights} of {model}")
            axis.plot(span, [values[-1]] * 2, styles[scheme], color=colour, alpha=0.25)
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set(xlabel="nodes", ylabel="bytes per node and round", title=f"Communication per node: DSO and {model}")
    axis.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _save(figure, path)


def poisoned_against_share(cells: Sequence[dict[str, Any]], attacks: Sequence[str], path: Path) -> Path:
    """Poisoned lessons accepted against the Byzantine share, one line per attack (the Byzantine sweep)."""
    figure, axis = plt.subplots(figsize=(7, 4))
    for attack in attacks:
        mine = sorted((c for c in cells if c["attack"] == attack), key=lambda c: c["fraction"])
        if mine:
            axis.plot([100 * c["fraction"] for c in mine], [c["poisoned_accepted"] for c in mine], "o-", label=attack)
    axis.axvline(30, linestyle=":", color="grey")
    axis.set(xlabel="Byzantine nodes (%)", ylabel="poisoned lessons accepted", title="Attacks on real nodes")
    axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    axis.legend(fontsize=7, loc="upper left")
    return _save(figure, path)


def sharing_gains(summary: Mapping[str, Any], path: Path) -> Path:
    """The node x task matrix of `dso experiment sharing`: accuracy with the node's library minus the placebo."""
    gains: Mapping[str, Mapping[str, float | None]] = summary["gains"]
    nodes = sorted(gains)
    tasks = sorted({task for row in gains.values() for task in row})
    values = [[gains[n].get(t) for t in tasks] for n in nodes]
    grid = [[float("nan") if v is None else float(v) for v in row] for row in values]
    figure, axis = plt.subplots(figsize=(1.6 + 1.4 * max(1, len(tasks)), 1.2 + 0.6 * max(1, len(nodes))))
    image = axis.imshow(grid, cmap="RdBu", vmin=-0.5, vmax=0.5, aspect="auto")
    axis.set_xticks(range(len(tasks)), tasks, rotation=20)
    axis.set_yticks(range(len(nodes)), nodes)
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            axis.text(j, i, "-" if value is None else f"{value:+.2f}", ha="center", va="center", fontsize=9)
    figure.colorbar(image, ax=axis, label="accuracy minus placebo")
    axis.set_title("Each node's library on each task, against the placebo")
    return _save(figure, path)


def sharing_accuracy(summary: Mapping[str, Any], path: Path) -> Path:
    """Accuracy per arm and task of `dso experiment sharing`, with 95% intervals."""
    tasks = summary["tasks"]
    figure, axes = plt.subplots(1, max(1, len(tasks)), figsize=(4.5 * max(1, len(tasks)), 3.6), squeeze=False)
    for axis, task in zip(axes[0], tasks, strict=False):
        arms = task["arms"]
        names = [a["arm"] for a in arms]
        values = [a["accuracy"] for a in arms]
        below = [a["accuracy"] - a["ci95"][0] for a in arms]
        above = [a["ci95"][1] - a["accuracy"] for a in arms]
        axis.bar(range(len(arms)), values, yerr=[below, above], capsize=3, color="#4C72B0")
        axis.set_xticks(range(len(arms)), names, rotation=30, ha="right")
        axis.set_ylim(0, 1)
        axis.set_title(f"{task['domain']} ({task['questions']} questions)")
        axis.set_ylabel("accuracy")
    return _save(figure, path)
