"""Codec and retrieval benchmarks on real MiniLM embeddings of experience-like sentences."""

from __future__ import annotations

import contextlib
import importlib
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.progress import Progress

from dso.bench.common import median_seconds
from dso.bench.corpus import experience_corpus, query_corpus
from dso.core import codec
from dso.embed import Embedder
from dso.library.index import BinaryIndex
from dso.machine import machine

Floats = npt.NDArray[np.float32]


def _cosines(a: Floats, b: Floats) -> Floats:
    out: Floats = (a * b).sum(axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return out


def embed_corpus(embedder: Embedder, count: int, queries: int, console: Console) -> tuple[Floats, Floats]:
    sentences, questions = experience_corpus(count), query_corpus(queries)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(f"embedding {count} sentences", total=count + queries)
        chunks = []
        for start in range(0, count, 512):
            chunks.append(embedder.embed(sentences[start : start + 512]))
            bar.advance(task, len(chunks[-1]))
        query_vectors = embedder.embed(questions)
    return np.concatenate(chunks), query_vectors


def bench_codec(vectors: Floats, throughput_n: int = 100_000) -> list[dict[str, Any]]:
    rows = []
    reference = vectors.mean(axis=0)
    tiled = np.resize(vectors, (throughput_n, vectors.shape[1]))
    for bits in codec.SUPPORTED_BITS:
        for mode, ref in (("plain", None), ("delta", reference)):
            batch = codec.encode(vectors, bits, ref)
            cos = _cosines(codec.decode(batch, ref), vectors)
            big = codec.encode(tiled, bits, ref)
            encode_s = median_seconds(lambda b=bits, r=ref: codec.encode(tiled, b, r), 3)  # type: ignore[misc]
            decode_s = median_seconds(lambda g=big, r=ref: codec.decode(g, r), 3)  # type: ignore[misc]
            rows.append(
                {
                    "bits": bits,
                    "mode": mode,
                    "code_bytes": batch.code_bytes,
                    "record_bytes": codec.record_size(batch.dim, bits, batch.mode),
                    "ratio_vs_float32": 4 * batch.dim / batch.code_bytes,
                    "reconstruction_cosine_mean": float(cos.mean()),
                    "reconstruction_cosine_min": float(cos.min()),
                    "encode_vectors_per_s": throughput_n / encode_s,
                    "decode_vectors_per_s": throughput_n / decode_s,
                }
            )
    return rows


def _exact_top(matrix: Floats, query: Floats, k: int) -> set[int]:
    scores = matrix @ query
    return {int(i) for i in np.argpartition(-scores, k)[:k]}


def recall_rows(vectors: Floats, queries: Floats, k: int = 10) -> list[dict[str, Any]]:
    """recall@k of Hamming search (plain and centred codes), with and without float re-ranking."""
    ids = [str(i) for i in range(len(vectors))]
    centred = BinaryIndex.build(ids, vectors)
    plain = BinaryIndex(vectors.shape[1])
    plain.add(ids, vectors)
    truth = [_exact_top(vectors, q, k) for q in queries]
    rows = []
    for name, index in (("plain", plain), ("centred", centred)):
        for candidates in (k, 100, 200, 400, 1000):
            found = [{int(i) for i, _ in index.search(q, k, candidates=candidates)} for q in queries]
            recall = statistics.mean(len(f & t) / k for f, t in zip(found, truth, strict=True))
            rows.append(
                {"codes": name, "rerank_candidates": 0 if candidates == k else candidates, "recall_at_10": recall}
            )
    return rows


def bits_recall_rows(vectors: Floats, queries: Floats, k: int = 10) -> list[dict[str, Any]]:
    """recall@k against float search when the search runs on decoded codes of each bit width (no re-ranking),
    with what each code costs: the bit-width ablation of retrieval."""
    truth = [_exact_top(vectors, q, k) for q in queries]
    rows = []
    for bits in codec.SUPPORTED_BITS:
        batch = codec.encode(vectors, bits)
        decoded = codec.decode(batch).astype(np.float32)
        found = [_exact_top(decoded, q, k) for q in queries]
        rows.append(
            {
                "bits": bits,
                "code_bytes": batch.code_bytes,
                f"recall_at_{k}": statistics.mean(len(f & t) / k for f, t in zip(found, truth, strict=True)),
            }
        )
    return rows


def scale_vectors(base: Floats, n: int, seed: int = 0) -> Floats:
    """n vectors shaped like real ones: real embeddings plus small noise, re-normalised."""
    rng = np.random.default_rng(seed)
    out = base[rng.integers(0, len(base), n)] + 0.05 * rng.standard_normal((n, base.shape[1])).astype(np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def _faiss_search(flat: Any, code: npt.NDArray[np.uint8], k: int) -> object:
    return flat.search(code[None, :], k)


def _median_ms(action: Callable[[Any], object], inputs: npt.NDArray[Any]) -> float:
    """Median milliseconds of one call per input."""
    timings = []
    for item in inputs:
        started = time.perf_counter()
        action(item)
        timings.append(time.perf_counter() - started)
    return 1000 * statistics.median(timings)


def latency_rows(
    base: Floats, queries: Floats, sizes: tuple[int, ...], candidates: tuple[int, ...] = (400, 2000, 10000)
) -> list[dict[str, Any]]:
    faiss: Any = None
    with contextlib.suppress(ImportError):  # optional: measured side by side when installed
        faiss = importlib.import_module("faiss")
    rows = []
    qs = queries[:50]
    for size in sizes:
        vectors = scale_vectors(base, size)
        index = BinaryIndex.build([str(i) for i in range(size)], vectors)
        truth = [_exact_top(vectors, q, 10) for q in qs]
        row: dict[str, Any] = {
            "codes": size,
            "hamming_scan_ms": _median_ms(index.hamming, qs),
            "exact_float_ms": _median_ms(partial(_exact_top, vectors, k=10), qs),
        }
        for pool in candidates:
            row[f"binary_rerank{pool}_ms"] = _median_ms(partial(index.search, k=10, candidates=pool), qs)
            found = [{int(i) for i, _ in index.search(q, 10, candidates=pool)} for q in qs]
            row[f"recall_rerank{pool}"] = statistics.mean(len(f & t) / 10 for f, t in zip(found, truth, strict=True))
        row["code_megabytes"] = index.nbytes / 1e6 - vectors.nbytes / 1e6
        row["float_megabytes"] = vectors.nbytes / 1e6
        if faiss is not None:
            flat = faiss.IndexBinaryFlat(vectors.shape[1])
            flat.add(np.packbits(vectors - index.reference >= 0, axis=1))
            codes = np.packbits(qs - index.reference >= 0, axis=1)
            row["faiss_binary_flat_ms"] = _median_ms(partial(_faiss_search, flat, k=candidates[0]), codes)
        rows.append(row)
        del index, vectors
    return rows


def run_codec_bench(embedder: Embedder, *, count: int = 10_000, quiet: bool = False) -> dict[str, Any]:
    console = Console(quiet=quiet, stderr=True)
    vectors, _ = embed_corpus(embedder, count, 0, console)
    return {
        "machine": machine(),
        "embedder_id": embedder.identity,
        "vectors": len(vectors),
        "rows": bench_codec(vectors),
    }


def run_retrieval_bench(
    embedder: Embedder,
    *,
    count: int = 10_000,
    sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000),
    quiet: bool = False,
) -> dict[str, Any]:
    console = Console(quiet=quiet, stderr=True)
    vectors, queries = embed_corpus(embedder, count, 200, console)
    started = time.perf_counter()
    recall = recall_rows(vectors, queries)
    console.print(f"recall measured in {time.perf_counter() - started:.1f} s; latency ...")
    return {
        "machine": machine(),
        "embedder_id": embedder.identity,
        "corpus": count,
        "queries": len(queries),
        "recall": recall,
        "recall_by_bits": bits_recall_rows(vectors, queries),
        "latency": latency_rows(vectors, queries, sizes),
    }
