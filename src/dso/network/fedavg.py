"""What federated averaging would move per node and round, from each model's published architecture.

Counted the way the reference implementations store parameters, at 2 bytes a parameter (fp16/bf16): full
weights (embeddings, attention, MLP, norms; the output head unless tied) and LoRA of rank 8 on every
attention and MLP projection (q, k, v, o, gate, up, down): r x (d_in + d_out) parameters per projection.
Used by the demo's and the simulation's comparisons and by `dso bench communication`.
"""

from __future__ import annotations

import dataclasses

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
