"""The real int8 MiniLM embedder."""

import numpy as np

from dso.embed import Embedder


def test_vectors_are_384_dim_unit_length(embedder: Embedder) -> None:
    vectors = embedder.embed(["When adding fractions, find a common denominator first.", "Hello"])
    assert vectors.shape == (2, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)


def test_meaning_not_spelling_decides_similarity(embedder: Embedder) -> None:
    a, b, c = embedder.embed(
        [
            "When adding fractions, find a common denominator first.",
            "To add fractions, first convert them to a common denominator.",
            "The train leaves the station at noon.",
        ]
    )
    assert float(a @ b) > 0.7
    assert float(a @ c) < 0.3


def test_batching_does_not_change_vectors(embedder: Embedder) -> None:
    texts = [f"Experience number {i} says: check the units {'twice ' * (i % 5)}." for i in range(70)]
    together = embedder.embed(texts)
    alone = np.stack([embedder.embed([t])[0] for t in texts[:5]])
    np.testing.assert_allclose(together[:5], alone, atol=1e-4)


def test_identity_names_model_and_hash(embedder: Embedder) -> None:
    assert embedder.identity.startswith("all-MiniLM-L6-v2/onnx-int8@")
    assert len(embedder.identity.split("@")[1]) == 12
