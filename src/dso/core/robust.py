"""Robust aggregation of several nodes' vectors or codes for the same item ("DeltaSoup").

Each node sends its version of one vector (an experience embedding, or a layer delta). A mean lets
one Byzantine node move the result anywhere; the rules here bound what f of n nodes can do:

- coordinate-wise median: tolerates f < n/2 per coordinate;
- trimmed mean: drops the f largest and f smallest values per coordinate (needs n > 2f);
- Krum (Blanchard et al., 2017): the vector whose n - f - 2 nearest neighbours are closest; needs
  n > 2f + 2; Multi-Krum averages the m best-scored vectors.

On 1-bit codes, `aggregate_codes` takes the median of the signs (a majority vote, ties to +) and of the
scales, or the mean of the dequantised vectors re-binarised into a sign code.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from dso.core.codec import CodeBatch, decode, encode
from dso.errors import AggregationError, CodecError

Floats = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Method = Literal["median", "mean", "trimmed_mean", "krum", "multi_krum"]
METHODS: tuple[Method, ...] = ("median", "mean", "trimmed_mean", "krum", "multi_krum")


def _matrix(vectors: npt.ArrayLike) -> F64:
    matrix: F64 = np.asarray(vectors, dtype=np.float64)
    if matrix.ndim != 2 or len(matrix) == 0:
        raise AggregationError(f"expected a non-empty (n, dim) array, got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        raise AggregationError("vectors contain NaN or infinity")
    if np.any(np.abs(matrix) > np.finfo(np.float32).max):
        raise AggregationError("vectors hold values beyond float32 range")
    return matrix


def _f32(values: npt.ArrayLike) -> Floats:
    return np.asarray(values, dtype=np.float32)


def coordinate_median(vectors: npt.ArrayLike) -> Floats:
    return _f32(np.median(_matrix(vectors), axis=0))


def trimmed_mean(vectors: npt.ArrayLike, f: int) -> Floats:
    matrix = _matrix(vectors)
    if f < 0 or len(matrix) <= 2 * f:
        raise AggregationError(f"trimmed mean needs n > 2f, got n={len(matrix)}, f={f}")
    ordered = np.sort(matrix, axis=0)
    return _f32(ordered[f : len(matrix) - f].mean(axis=0))


def krum_scores(vectors: npt.ArrayLike, f: int) -> npt.NDArray[np.float64]:
    """Each vector's summed squared distance to its n - f - 2 nearest neighbours (lower is better)."""
    matrix = _matrix(vectors)
    n = len(matrix)
    if f < 0 or n <= 2 * f + 2:
        raise AggregationError(f"Krum needs n > 2f + 2, got n={n}, f={f}")
    squared = np.square(matrix).sum(axis=1)
    distances = np.maximum(squared[:, None] + squared[None, :] - 2 * matrix @ matrix.T, 0.0)
    np.fill_diagonal(distances, np.inf)
    nearest = np.sort(distances, axis=1)[:, : n - f - 2]
    scores: npt.NDArray[np.float64] = nearest.sum(axis=1)
    return scores


def krum(vectors: npt.ArrayLike, f: int) -> Floats:
    matrix = _matrix(vectors)
    return _f32(matrix[int(np.argmin(krum_scores(matrix, f)))])


def multi_krum(vectors: npt.ArrayLike, f: int, m: int | None = None) -> Floats:
    """Mean of the m best Krum-scored vectors (default m = n - f)."""
    matrix = _matrix(vectors)
    m = len(matrix) - f if m is None else m
    if not 1 <= m <= len(matrix):
        raise AggregationError(f"multi-Krum needs 1 <= m <= n, got m={m}")
    chosen = np.argsort(krum_scores(matrix, f), kind="stable")[:m]
    return _f32(matrix[chosen].mean(axis=0))


def aggregate(vectors: npt.ArrayLike, method: Method = "median", f: int = 0) -> Floats:
    """One vector from many, by the named rule; `f` is the number of Byzantine inputs to tolerate."""
    if method == "median":
        return coordinate_median(vectors)
    if method == "mean":
        return _f32(_matrix(vectors).mean(axis=0))
    if method == "trimmed_mean":
        return trimmed_mean(vectors, f)
    if method == "krum":
        return krum(vectors, f)
    if method == "multi_krum":
        return multi_krum(vectors, f)
    raise AggregationError(f"unknown aggregation method {method!r}; use one of {METHODS}")


def aggregate_codes(
    batch: CodeBatch, method: Method = "median", f: int = 0, reference: Floats | None = None
) -> CodeBatch:
    """Aggregate n nodes' 1-bit codes of one item into one 1-bit code."""
    if batch.bits != 1:
        raise CodecError("code aggregation is defined for 1-bit codes")
    if len(batch) == 0:
        raise CodecError("no codes to aggregate")
    if method == "median":
        signs = np.unpackbits(batch.payload, axis=1, count=batch.dim).astype(np.int32) * 2 - 1
        majority = signs.sum(axis=0) >= 0
        scale = np.float32(np.median(batch.scales))
        return CodeBatch(
            1, batch.dim, np.packbits(majority)[None, :], np.array([scale], np.float32), batch.reference_id
        )
    vectors = decode(batch, reference)
    combined = aggregate(vectors, method, f)
    return encode(combined[None, :], 1, reference)
