"""Semantic grouping: paraphrases of one experience become one group, identically on every node.

Leader clustering in a canonical order: texts are taken by descending number of supporting nodes, then
by the sha256 of the text; each joins the most similar existing group whose leader it matches at cosine
>= threshold (ties: the earlier group), or leads a new one. The leader is the group's canonical text.
Cosines are rounded to 6 decimals before the comparison, so tiny floating-point differences between
machines cannot move a text across the threshold unless it sits within 1e-6 of it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt


def cluster(
    texts: Sequence[str], vectors: Mapping[str, npt.ArrayLike], support: Mapping[str, int], threshold: float
) -> list[list[str]]:
    """Groups of `texts`, each led by its canonical text, in canonical order."""
    order = sorted(texts, key=lambda t: (-support.get(t, 0), hashlib.sha256(t.encode("utf-8")).hexdigest()))
    groups: list[list[str]] = []
    leaders: list[npt.NDArray[np.float64]] = []
    for text in order:
        vector = np.asarray(vectors[text], dtype=np.float64)
        if leaders:
            scores = np.round(np.stack(leaders) @ vector, 6)
            best = int(np.argmax(scores))
            if scores[best] >= threshold:
                groups[best].append(text)
                continue
        groups.append([text])
        leaders.append(vector)
    return groups
