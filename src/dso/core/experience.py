"""An experience: one short natural-language lesson ("When X, do Y") with its bookkeeping."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
import unicodedata
from typing import Any

import numpy as np
import numpy.typing as npt

from dso.core.untrusted import is_int
from dso.errors import DSOError, LibraryError

_SPACE = re.compile(r"\s+")


@dataclasses.dataclass(frozen=True)
class Experience:
    id: str
    text: str
    confidence: float = 0.5
    domain: str = "general"
    epoch: int = 0
    usage_count: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0
    origin_node: str = "local"
    content_id: str | None = None  # the record's CID once it has been shared
    embedder_id: str = ""
    # evidence from this node's own training: groups whose prompt held it that did better / worse / the same
    # as their batch's mean reward
    helped: int = 0
    hurt: int = 0
    neutral: int = 0

    @property
    def net_help(self) -> float:
        """(helped - hurt) / (uses + 2): in (-1, 1), shrunk toward 0 while there are few uses."""
        return (self.helped - self.hurt) / (self.helped + self.hurt + self.neutral + 2)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def normalise_text(text: str) -> str:
    """NFC, single spaces, no control characters: equal-looking texts become equal strings."""
    if text.isascii():  # the common case, 20x faster: NFC changes nothing, the controls are these
        return _SPACE.sub(" ", _ASCII_CONTROL.sub("", text)).strip()
    text = unicodedata.normalize("NFC", text)
    text = "".join(ch for ch in text if ch in "\t\n" or unicodedata.category(ch)[0] != "C")
    return _SPACE.sub(" ", text).strip()


def text_key(text: str) -> str:
    """sha256 of a text: how a node names a lesson it published and how the consensus orders texts."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def word_count(text: str) -> int:
    return len(text.split())


MAX_TEXT_BYTES = 1_024  # an experience is one sentence; words are capped by the library, bytes here


def check_label(value: object, name: str, limit: int = 128, error: type[DSOError] = LibraryError) -> None:
    """A short printable label (domain, node, content id): what a terminal shows must be what it is."""
    if not isinstance(value, str) or not value.strip() or len(value) > limit or normalise_text(value) != value:
        raise error(
            f"{name} must be a printable string of 1 to {limit} characters without control characters, "
            f"got {value!r:.80}"
        )


def check_fields(confidence: float, domain: str, epoch: int) -> None:
    """An experience's bookkeeping fields are in range, whoever supplies them."""
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)):
        raise LibraryError(f"confidence must be a number, got {confidence!r}")
    if not (math.isfinite(confidence) and 0.0 <= confidence <= 1.0):
        raise LibraryError(f"confidence must lie in [0, 1], got {confidence!r}")
    check_label(domain, "domain", 64)
    if not is_int(epoch) or epoch < 0:
        raise LibraryError(f"epoch must be a non-negative integer, got {epoch!r}")


def top_k(matrix: npt.NDArray[np.float32], query: npt.NDArray[np.float32], k: int) -> list[tuple[int, float]]:
    """Rows of `matrix` (unit vectors) nearest to `query` by cosine, best first; ties by row index."""
    if k <= 0 or len(matrix) == 0:
        return []
    scores = matrix @ query
    if k == 1:  # the de-duplication check: argmax already prefers the lowest index on ties
        best = int(np.argmax(scores))
        return [(best, float(scores[best]))]
    k = min(k, len(scores))
    candidates = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    # lexsort: last key is primary. Stable, deterministic order for equal scores.
    ranked = candidates[np.lexsort((candidates, -scores[candidates]))]
    return [(int(i), float(scores[i])) for i in ranked]
