"""Robust aggregation under adversarial inputs."""

from __future__ import annotations

import numpy as np
import pytest

from dso.core import codec
from dso.core.robust import METHODS, aggregate, aggregate_codes, krum, krum_scores, multi_krum, trimmed_mean
from dso.errors import AggregationError

DIM = 32


def honest_and_byzantine(n_honest: int, n_byz: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.standard_normal(DIM).astype(np.float32)
    honest = truth + 0.1 * rng.standard_normal((n_honest, DIM)).astype(np.float32)
    byzantine = np.full((n_byz, DIM), 1e3, np.float32) * np.sign(-truth)  # large, pointing away
    return truth, np.concatenate([honest, byzantine])


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.mark.parametrize("method", ["median", "trimmed_mean", "krum", "multi_krum"])
def test_robust_rules_survive_30_percent_byzantine(method: str) -> None:
    truth, vectors = honest_and_byzantine(7, 3)
    result = aggregate(vectors, method, f=3)  # type: ignore[arg-type]
    assert cosine(result, truth) > 0.95
    assert float(np.abs(result).max()) < 10


def test_mean_is_not_robust() -> None:
    truth, vectors = honest_and_byzantine(7, 3)
    assert cosine(aggregate(vectors, "mean"), truth) < 0


def test_krum_needs_2f_plus_2_lt_n() -> None:
    _, vectors = honest_and_byzantine(4, 2)
    with pytest.raises(AggregationError, match=r"n > 2f \+ 2"):
        krum(vectors, 2)
    assert krum_scores(vectors, 1).shape == (6,)
    with pytest.raises(AggregationError, match="n > 2f"):
        trimmed_mean(vectors, 3)


def test_krum_picks_an_honest_vector_against_a_colluding_cluster() -> None:
    truth, vectors = honest_and_byzantine(7, 2)
    chosen = krum(vectors, 2)
    assert any(np.array_equal(chosen, v) for v in vectors[:7])
    assert cosine(multi_krum(vectors, 2), truth) > 0.99


def test_code_median_is_a_sign_majority_with_median_scale() -> None:
    truth, vectors = honest_and_byzantine(7, 3, seed=4)
    batch = codec.encode(vectors, 1)
    merged = aggregate_codes(batch, "median")
    assert len(merged) == 1 and merged.bits == 1
    assert merged.scales[0] == pytest.approx(float(np.median(batch.scales)))
    signs = np.unpackbits(merged.payload[0], count=DIM).astype(bool)
    clear = np.abs(truth) > 0.3  # coordinates where the honest nodes agree: 7 votes beat 3
    np.testing.assert_array_equal(signs[clear], truth[clear] >= 0)
    assert clear.sum() > DIM // 2
    mean_code = aggregate_codes(batch, "mean")  # the 3 huge vectors flip the re-binarised mean
    assert not np.array_equal(mean_code.payload, merged.payload)


def test_all_methods_run_on_codes_and_reject_bad_input() -> None:
    _, vectors = honest_and_byzantine(7, 2)
    batch = codec.encode(vectors, 1)
    for method in METHODS:
        assert aggregate_codes(batch, method, f=2).payload.shape == (1, DIM // 8)  # type: ignore[arg-type]
    with pytest.raises(codec.CodecError, match="1-bit"):
        aggregate_codes(codec.encode(vectors, 2))
    with pytest.raises(AggregationError, match="unknown aggregation"):
        aggregate(vectors, "vote")  # type: ignore[arg-type]
    with pytest.raises(AggregationError, match="NaN"):
        aggregate(np.full((3, 2), np.nan))
