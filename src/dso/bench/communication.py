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

import dataclasses
import json
import statistics
from pathlib import Path
from typing import Any

from dso.bench.common import machine
from dso.errors import DSOError
from dso.files import read_input

BYTES_PER_PARAMETER = 2
LORA_RANK = 8


@dataclasses.dataclass(frozen=True)
class Architecture:
    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    mlp: int
    vocab: int
    tied_embeddings: bool
    qk_norm: bool
    published: str  # the parameter count its publisher states

    def projections(self) -> list[tuple[int, int]]:
        """(d_in, d_out) of each attention and MLP projection of one layer."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        h = self.hidden
        return [(h, q), (h, kv), (h, kv), (q, h), (h, self.mlp), (h, self.mlp), (self.mlp, h)]

    def parameters(self) -> int:
        per_layer = sum(a * b for a, b in self.projections()) + 2 * self.hidden
        per_layer += 2 * self.head_dim if self.qk_norm else 0
        embeddings = self.vocab * self.hidden * (1 if self.tied_embeddings else 2)
        return self.layers * per_layer + embeddings + self.hidden

    def lora_parameters(self, rank: int = LORA_RANK) -> int:
        return self.layers * sum(rank * (a + b) for a, b in self.projections())


QWEN25_1_5B = Architecture("Qwen2.5-1.5B", 1536, 28, 12, 2, 128, 8960, 151_936, True, False, "1.54B")
MODELS = (
    Architecture("Qwen3-4B", 2560, 36, 32, 8, 128, 9728, 151_936, True, True, "4.0B"),
    Architecture("Qwen3-32B", 5120, 64, 64, 8, 128, 25_600, 151_936, False, True, "32.8B"),
    Architecture("Llama-2-7B", 4096, 32, 32, 32, 128, 11_008, 32_000, False, False, "6.7B"),
)


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
