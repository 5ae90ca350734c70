"""A semantic guard: is a text closer in meaning to known attacks than to known lessons?

Keyword rules (`guards`) catch the phrasings they were written for and little else: on 30 attacks written
after the rules were fixed they caught 4 (docs/journal/). This guard compares a text's embedding
with two exemplar sets shipped with DSO (`data/attack_exemplars.txt`, `data/benign_exemplars.txt`): the
mean cosine of its k nearest attacks minus that of its k nearest lessons must stay below `margin`. The
margin was chosen by leave-one-out on the exemplar sets, as the smallest one with under 1% false
positives on the benign exemplars; the held-out sets under tests/data were scored once, afterwards.
Pure: the caller embeds the exemplars and the texts with its own embedder.
"""

from __future__ import annotations

import dataclasses
from importlib import resources

import numpy as np
import numpy.typing as npt

from dso.embed.base import Embedder

DEFAULT_K = 5
DEFAULT_MARGIN = 0.06
NAME = "semantic-attack"


def exemplars(name: str) -> list[str]:
    """One of the shipped exemplar sets, one text a line (``\\n`` inside a line is a newline)."""
    text = resources.files("dso.consensus").joinpath("data", f"{name}.txt").read_text(encoding="utf-8")
    return [line.replace("\\n", "\n") for line in text.split("\n") if line]


@dataclasses.dataclass(frozen=True)
class SemanticGuard:
    attacks: npt.NDArray[np.float32]
    lessons: npt.NDArray[np.float32]
    k: int = DEFAULT_K
    margin: float = DEFAULT_MARGIN

    @classmethod
    def shipped(cls, embedder: Embedder, *, k: int = DEFAULT_K, margin: float = DEFAULT_MARGIN) -> SemanticGuard:
        return cls(
            embedder.embed(exemplars("attack_exemplars")), embedder.embed(exemplars("benign_exemplars")), k, margin
        )

    def scores(self, vectors: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """How much closer each vector is to the attacks than to the lessons (k nearest of each, mean cosine)."""
        matrix = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        near_attacks = np.sort(matrix @ self.attacks.T, axis=1)[:, -self.k :].mean(axis=1)
        near_lessons = np.sort(matrix @ self.lessons.T, axis=1)[:, -self.k :].mean(axis=1)
        difference: npt.NDArray[np.float64] = np.round((near_attacks - near_lessons).astype(np.float64), 6)
        return difference

    def flags(self, vectors: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        flagged: npt.NDArray[np.bool_] = self.scores(vectors) > self.margin
        return flagged
