"""One embedding cache: each distinct text embedded once, for a node, a network of nodes in one process,
or a benchmark. Bounded (least recently used out first), so a stream of strangers' texts cannot grow it
without limit."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from dso.embed.base import Embedder, Vectors

DEFAULT_CAPACITY = 50_000  # texts; a MiniLM vector is 1.5 KB, so about 77 MB at most


class CachingEmbedder:
    """An embedder that remembers the vectors of the texts it embedded (the same text embeds the same)."""

    def __init__(self, inner: Embedder, capacity: int = DEFAULT_CAPACITY) -> None:
        self.inner: Embedder = inner.inner if isinstance(inner, CachingEmbedder) else inner
        self.capacity = capacity
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    @property
    def identity(self) -> str:
        return self.inner.identity

    @property
    def dim(self) -> int:
        return self.inner.dim

    def __len__(self) -> int:
        return len(self._cache)

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        fresh = dict(zip(missing, self.inner.embed(missing), strict=True)) if missing else {}
        rows = []
        for text in texts:
            vector = fresh.get(text)
            if vector is None:
                vector = self._cache[text]
                self._cache.move_to_end(text)
            rows.append(vector)
        for text, vector in fresh.items():
            self._cache[text] = vector
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        return np.stack(rows).astype(np.float32)

    def embed_map(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Each text's vector by text (what the consensus takes)."""
        unique = list(dict.fromkeys(texts))
        return dict(zip(unique, self.embed(unique), strict=True)) if unique else {}
