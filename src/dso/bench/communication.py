"""Communication per node and round: DSO's measured bytes beside federated averaging's for the same models.

FedAvg moves a model update each round: every node uploads its update and downloads the new global one.
The figures below are computed from each model's published architecture (hidden size, layers, attention
and KV heads, head size, MLP size, vocabulary), counting parameters the way the reference implementations
store them, at 2 bytes a parameter (fp16/bf16):

- full weights: every parameter (embeddings, attention, MLP, norms; the output head unless tied);
- LoRA rank 8 on every attention and MLP projection (q, k, v, o, gate, up, down) of every layer: r x (d_in +
  d_out) parameters per projection.

DSO's figures come from a `dso simulate` report: the median honest node's bytes sent and received per round
(records, manifests, signed transactions, signatures read back).
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
    return {
        "nodes": report["settings"]["nodes"],
        "rounds": len(rounds),
        "sent_per_round": sent,
        "received_per_round": received,
        "per_round_max": max(per_round),
        "per_round_mean": statistics.mean(per_round),
    }


def run_communication_bench(simulation: Path) -> dict[str, Any]:
    try:
        report = json.loads(read_input(simulation, DSOError))
        measured = dso_bytes(report)
    except (ValueError, KeyError, TypeError) as exc:
        raise DSOError(f"{simulation} is not a dso simulate report: {exc}") from None
    dso = measured["per_round_max"]  # the busiest round: the one FedAvg is compared with
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
    return {
        "machine": machine(),
        "simulation": {"file": simulation.name, **measured},
        "bytes_per_parameter": BYTES_PER_PARAMETER,
        "lora_rank": LORA_RANK,
        "models": rows,
    }
