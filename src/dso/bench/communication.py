"""Communication per node and round: DSO's measured bytes beside federated learning's for the same models.

Federated learning moves a model update each round. The figures below are computed from each model's
published architecture (hidden size, layers, attention and KV heads, head size, MLP size, vocabulary),
counting parameters the way the reference implementations store them:

- full weights: every parameter (embeddings, attention, MLP, norms; the output head unless tied);
- LoRA rank 8 on every attention and MLP projection (q, k, v, o, gate, up, down) of every layer: r x (d_in +
  d_out) parameters per projection.

Three ways to move them, per node and synchronisation:

- **FedAvg, fp16**: upload an update and download the global one, 2 bytes a parameter each way;
- **FedAvg, int8**: the same with updates quantised to one byte a parameter (a scale per tensor is negligible);
- **DiLoCo-style**: nodes train locally for many steps and then average int8 pseudo-gradients by a ring
  all-reduce, which sends and receives 2 (N - 1) / N of the update per node (INTELLECT-1's scheme, which moved
  about 400x fewer bytes than synchronising fp32 gradients every step). One synchronisation is compared with
  one DSO round: both are one exchange of what the nodes learned since the last.

DSO's figures come from `dso simulate` reports: the median honest node's bytes sent and received in its busiest
round (records, manifests, signed transactions, signatures read back, certificates). Several reports of
different sizes give the scale table: DSO's bytes beside each baseline at each network size, for networks where
every node pulls every batch ("full") and where nodes outside the committee read its certificate ("light").
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from dso.errors import DSOError
from dso.files import read_input
from dso.machine import machine
from dso.network.fedavg import BYTES_PER_PARAMETER, LORA_RANK, MODELS


def dso_bytes(report: dict[str, Any]) -> dict[str, Any]:
    """Median honest node's bytes per round (sent + received), over the rounds of a simulate report."""
    rounds = report["rounds"]
    sent = [r["bytes_per_honest_node"]["sent_median"] for r in rounds]
    received = [r["bytes_per_honest_node"]["received_median"] for r in rounds]
    per_round = [s + r for s, r in zip(sent, received, strict=True)]
    settings = report["settings"]
    return {
        "nodes": settings["nodes"],
        # light: nodes outside the committee read the certificate (dso simulate --light); full: every node pulls
        "mode": "light" if settings.get("light") else "full",
        "rounds": len(rounds),
        "sent_per_round": sent,
        "received_per_round": received,
        "per_round_max": max(per_round),
        "per_round_mean": statistics.mean(per_round),
    }


INT8_BYTES_PER_PARAMETER = 1


def baselines(parameters: int, nodes: int) -> dict[str, float]:
    """Bytes per node and synchronisation (sent + received) of each federated scheme for `parameters`."""
    ring = 2 * (nodes - 1) / nodes if nodes > 1 else 0.0
    return {
        "fedavg_fp16": 2 * parameters * BYTES_PER_PARAMETER,
        "fedavg_int8": 2 * parameters * INT8_BYTES_PER_PARAMETER,
        "diloco_int8": ring * parameters * INT8_BYTES_PER_PARAMETER,
    }


def _measured(simulation: Path) -> dict[str, Any]:
    try:
        report = json.loads(read_input(simulation, DSOError))
        return {"file": simulation.name, **dso_bytes(report)}
    except (ValueError, KeyError, TypeError) as exc:
        raise DSOError(f"{simulation} is not a dso simulate report: {exc}") from None


def run_communication_bench(simulations: Path | list[Path]) -> dict[str, Any]:
    """The comparison per model (against the largest simulated network) and the scale table (every report)."""
    files = [simulations] if isinstance(simulations, Path) else list(simulations)
    if not files:
        raise DSOError("give at least one dso simulate report (--simulation FILE)")
    measured = sorted((_measured(f) for f in files), key=lambda m: (m["nodes"], m["mode"] == "light", m["file"]))
    largest = measured[-1]  # the largest network, with light nodes where it was run both ways
    dso = largest["per_round_max"]  # the busiest round: the one federated learning is compared with
    rows = []
    for model in MODELS:
        full = model.parameters() * BYTES_PER_PARAMETER
        lora = model.lora_parameters() * BYTES_PER_PARAMETER
        rows.append(
            {
                "model": model.name,
                "parameters": model.parameters(),
                "published": model.published,
                "fedavg_full_bytes": 2 * full,  # upload an update, download the global model
                "fedavg_lora8_bytes": 2 * lora,
                "dso_bytes": dso,
                "full_over_dso": round(2 * full / dso),
                "lora8_over_dso": round(2 * lora / dso),
            }
        )
    scale = []
    for m in measured:
        row: dict[str, Any] = {
            "nodes": m["nodes"], "mode": m["mode"], "file": m["file"], "dso_bytes": m["per_round_max"]
        }  # fmt: skip
        for model in MODELS:
            for weights, count in (("full", model.parameters()), ("lora8", model.lora_parameters())):
                for scheme, size in baselines(count, m["nodes"]).items():
                    row[f"{model.name}:{weights}:{scheme}"] = size
                    row[f"{model.name}:{weights}:{scheme}:over_dso"] = round(size / m["per_round_max"], 1)
        scale.append(row)
    return {
        "machine": machine(),
        "simulation": largest,
        "simulations": measured,
        "bytes_per_parameter": BYTES_PER_PARAMETER,
        "int8_bytes_per_parameter": INT8_BYTES_PER_PARAMETER,
        "lora_rank": LORA_RANK,
        "models": rows,
        "scale": scale,
    }


def scale_rows(result: dict[str, Any], model: str) -> list[dict[str, Any]]:
    """The scale table for one model, as a person reads it: DSO's bytes and each baseline's multiple of it."""
    out = []
    for row in result["scale"]:
        line: dict[str, Any] = {
            "nodes": row["nodes"], "nodes read": row.get("mode", "full"), "DSO bytes": round(row["dso_bytes"])
        }  # fmt: skip
        for weights in ("lora8", "full"):
            for scheme in ("fedavg_fp16", "fedavg_int8", "diloco_int8"):
                line[f"{weights} {scheme} / DSO"] = row[f"{model}:{weights}:{scheme}:over_dso"]
        out.append(line)
    return out
