"""The binary Hamming index, alone and inside the library."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dso.embed import Embedder
from dso.errors import IndexFileError
from dso.library import ExperienceLibrary, NewExperience
from dso.library.index import BinaryIndex, sign_words


def clustered(n: int, seed: int = 0, dim: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n // 20), dim))
    v = centres[rng.integers(0, len(centres), n)] + 0.5 * rng.standard_normal((n, dim))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def exact(vectors: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    scores = vectors @ query
    return sorted(range(len(vectors)), key=lambda i: (-scores[i], i))[:k]


def test_hamming_distance_counts_differing_signs() -> None:
    index = BinaryIndex(70)  # not a multiple of 64: padding must not count
    a = np.ones(70, np.float32)
    b = a.copy()
    b[[0, 5, 69]] = -1
    index.add(["a", "b"], np.stack([a, b]))
    assert index.hamming(a).tolist() == [0, 3]
    assert sign_words(a[None, :], np.zeros(70, np.float32)).shape == (1, 2)


def test_rerank_with_all_candidates_equals_exact_search() -> None:
    v = clustered(500)
    index = BinaryIndex.build([f"id{i}" for i in range(500)], v)
    for q in v[:10] + 0.05:
        got = [item for item, _ in index.search(q, 10, candidates=500)]
        assert got == [f"id{i}" for i in exact(v, q, 10)]


def test_recall_with_rerank_is_high() -> None:
    v = clustered(5000, seed=1)
    index = BinaryIndex.build([str(i) for i in range(5000)], v)
    rng = np.random.default_rng(9)
    queries = v[rng.integers(0, 5000, 30)] + 0.1 * rng.standard_normal((30, 64)).astype(np.float32)
    recall = np.mean(
        [len({int(i) for i, _ in index.search(q, 10, candidates=400)} & set(exact(v, q, 10))) / 10 for q in queries]
    )
    assert recall >= 0.95


def test_incremental_add_replace_remove() -> None:
    v = clustered(100)
    index = BinaryIndex.build([str(i) for i in range(50)], v[:50])
    index.add([str(i) for i in range(50, 100)], v[50:])
    assert len(index) == 100
    index.remove(["3", "99", "missing"])
    assert len(index) == 98 and "3" not in index and "98" in index
    assert index.search(v[3], 1, candidates=100)[0][0] != "3"
    index.add(["7"], v[3][None, :])  # replace: id 7 now holds vector 3
    assert index.search(v[3], 1, candidates=100)[0] == ("7", pytest.approx(1.0, abs=1e-5))
    assert len(index) == 98


def test_save_load_round_trip_and_damage(tmp_path: Path) -> None:
    v = clustered(200)
    index = BinaryIndex.build([str(i) for i in range(200)], v)
    index.remove(["5"])
    index.save(tmp_path / "i.npz", stamp="abc")
    loaded, stamp = BinaryIndex.load(tmp_path / "i.npz")
    assert stamp == "abc" and len(loaded) == 199
    assert loaded.search(v[10], 5) == index.search(v[10], 5)
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(IndexFileError, match="unreadable"):
        BinaryIndex.load(tmp_path / "bad.npz")


def test_library_switches_to_the_index_and_persists_it(tmp_path: Path, embedder: Embedder) -> None:
    texts = [
        "When adding fractions, find a common denominator first.",
        "When units differ, convert everything to one unit before computing.",
        "When a quantity is a percentage, turn it into a fraction of the base.",
        "When a train problem gives speed and time, multiply them for distance.",
    ]
    rng = np.random.default_rng(0)
    filler = rng.standard_normal((300, embedder.dim)).astype(np.float32)
    filler /= np.linalg.norm(filler, axis=1, keepdims=True)
    path = tmp_path / "big.db"
    lib = ExperienceLibrary(path, embedder, index_min_size=100, index_candidates=50)
    lib.add_many([NewExperience(f"filler {i}") for i in range(300)], filler)
    lib.add_many([NewExperience(t) for t in texts])
    exact_lib = ExperienceLibrary(path, embedder, index_min_size=10**9)
    for query in ("how to add 1/2 and 1/3", "convert feet to inches", "how far does the train go"):
        assert [h.experience.id for h in lib.search(query, 3)] == [h.experience.id for h in exact_lib.search(query, 3)]
    assert lib.index_path.is_file()
    added = lib.add("When a discount is applied twice, multiply the remaining fractions.")
    assert lib.search("two discounts in a row", 1)[0].experience.id == added.experience.id  # incremental add
    lib.close()
    reopened = ExperienceLibrary(path, embedder, index_min_size=100)
    assert reopened.search("two discounts in a row", 1)[0].experience.id == added.experience.id
