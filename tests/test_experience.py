"""Pure core: text normalisation and top-k ranking."""

import re

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dso.core.experience import normalise_text, top_k, word_count


def test_normalise_text_folds_space_and_controls() -> None:
    assert normalise_text("  When\tX,\n\n do\x00 Y  ") == "When X, do Y"
    assert normalise_text("Cafe\u0301") == "Caf\u00e9"  # NFC


def test_word_count() -> None:
    assert word_count("When X, do Y.") == 4
    assert word_count("") == 0


def test_top_k_orders_by_score_then_index() -> None:
    matrix = np.array([[1, 0], [0, 1], [1, 0], [0.6, 0.8]], dtype=np.float32)
    query = np.array([1, 0], dtype=np.float32)
    ranked = top_k(matrix, query, 3)
    assert [i for i, _ in ranked] == [0, 2, 3]  # rows 0 and 2 tie; lower index first
    assert ranked[2][1] == np.float32(0.6)
    assert top_k(matrix, query, 1) == [(0, 1.0)]
    assert top_k(matrix[:0], query, 3) == []
    assert len(top_k(matrix, query, 10)) == 4


@given(st.integers(1, 40), st.integers(1, 10), st.integers(0, 2**31 - 1))
def test_top_k_matches_full_sort(rows: int, k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((rows, 8)).astype(np.float32)
    query = rng.standard_normal(8).astype(np.float32)
    scores = matrix @ query
    expected = sorted(range(rows), key=lambda i: (-scores[i], i))[:k]
    assert [i for i, _ in top_k(matrix, query, k)] == expected


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=60))
def test_the_ascii_fast_path_normalises_like_the_general_one(text: str) -> None:
    import unicodedata

    general = "".join(
        ch for ch in unicodedata.normalize("NFC", text) if ch in "\t\n" or unicodedata.category(ch)[0] != "C"
    )
    assert normalise_text(text) == re.sub(r"\s+", " ", general).strip()
