"""The library's vectors in memory and the Hamming index over them, behind one `invalidate()`.

Reading every embedding from SQLite for each search would dominate retrieval, so the matrix is cached
until another connection commits (SQLite's `data_version`) or this one changes vectors. From
`index_min_size` experiences on, searches go through the binary index (1-bit codes, re-ranked with
floats), which is kept in step with this connection's inserts and saved beside the library file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dso.core.experience import top_k
from dso.embed.base import Vectors
from dso.errors import LibraryError
from dso.library._storage import Storage
from dso.library.index import BinaryIndex


class VectorCache:
    def __init__(self, storage: Storage, index_path: Path, *, index_min_size: int, index_candidates: int) -> None:
        self._storage = storage
        self.index_path = index_path
        self.index_min_size = index_min_size
        self.index_candidates = index_candidates
        self._cached: tuple[int, list[str], Vectors] | None = None
        self._index: BinaryIndex | None = None
        self._index_dirty = False

    def invalidate(self) -> None:
        """Forget the matrix and the index; both are rebuilt (or the index reloaded) when next needed."""
        self._cached = None
        self._index = None

    def load(self, embedder_id: str, dim: int) -> tuple[list[str], Vectors]:
        """All (id, embedding) rows of this embedder, from the cache while it is current."""
        version = self._storage.data_version()
        if self._cached is not None and self._cached[0] == version:
            return self._cached[1], self._cached[2]
        ids, matrix = self._storage.vectors(embedder_id, dim)
        self._cached = (version, ids, matrix)
        self._index = None  # rebuilt (or loaded) from these vectors when a search needs it
        return ids, matrix

    def replace(self, ids: list[str], matrix: Vectors, changed_rows: Sequence[int]) -> None:
        """This connection wrote `changed_rows` of (ids, matrix): keep the cache and the index in step."""
        self._cached = (self._storage.data_version(), ids, matrix)
        if self._index is not None and changed_rows:
            self._index.add([ids[r] for r in changed_rows], matrix[list(changed_rows)])
            self._index_dirty = True

    def nearest(self, vector: Vectors, k: int, embedder_id: str, dim: int) -> list[tuple[str, float]]:
        """The k stored ids closest to `vector` by cosine, best first."""
        ids, matrix = self.load(embedder_id, dim)
        if len(ids) >= self.index_min_size:
            # 1% of the library, at least index_candidates: recall@10 >= 0.99 up to 1M (bench/results)
            pool = max(self.index_candidates, len(ids) // 100)
            return self._binary_index(ids, matrix).search(vector, k, candidates=pool)
        return [(ids[i], score) for i, score in top_k(matrix, vector, k)]

    def _binary_index(self, ids: list[str], matrix: Vectors) -> BinaryIndex:
        """The Hamming index over the current vectors: kept, loaded from disk if current, or built."""
        if self._index is not None:
            return self._index
        stamp = self._storage.stamp()
        if self.index_path.is_file():
            try:
                index, saved = BinaryIndex.load(self.index_path)
                if saved == stamp and len(index) == len(ids):
                    self._index = index
                    return index
            except LibraryError:
                pass  # a damaged or stale file is rebuilt below
        self._index = BinaryIndex.build(ids, np.asarray(matrix))
        self._index.save(self.index_path, stamp=stamp)
        self._index_dirty = False
        return self._index

    def save(self) -> None:
        """Write the index if this connection changed it since it was loaded or built."""
        if self._index is not None and self._index_dirty:
            self._index.save(self.index_path, stamp=self._storage.stamp())
            self._index_dirty = False
