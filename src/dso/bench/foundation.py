"""Foundation benchmark: embedder sentences/s, LLM tokens/s, library latency at 10k experiences."""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from dso.bench.common import median_seconds
from dso.config import DSOConfig, EmbedderConfig
from dso.core.experience import top_k
from dso.embed import Embedder, make_embedder
from dso.library import ExperienceLibrary, NewExperience
from dso.llm import ChatMessage, make_llm
from dso.machine import machine

_SUBJECTS = ["a percentage", "a ratio", "a total", "a unit price", "an average", "a time span", "a discount", "an area"]
_ACTIONS = [
    "convert it to a fraction first",
    "write every known quantity down before computing",
    "check the units of the answer",
    "compute each part separately and add them once",
    "re-read which quantity the question actually asks for",
    "estimate the answer to catch arithmetic slips",
    "set up one equation per unknown",
    "keep intermediate results as exact fractions",
]


def experience_sentences(count: int) -> list[str]:
    """Distinct experience-like sentences, deterministic."""
    sentences = []
    for i in range(count):
        subject = _SUBJECTS[i % len(_SUBJECTS)]
        action = _ACTIONS[(i // len(_SUBJECTS)) % len(_ACTIONS)]
        sentences.append(f"When a problem involves {subject} (case {i}), {action}.")
    return sentences


def bench_embedder(config: EmbedderConfig, sentences: list[str], repeats: int = 3) -> list[dict[str, Any]]:
    rows = []
    for threads in (1, 2):
        embedder = make_embedder(dataclasses.replace(config, threads=threads))
        embedder.embed(sentences[:32])  # warm-up
        seconds = median_seconds(lambda e=embedder: e.embed(sentences), repeats)  # type: ignore[misc]
        rows.append({"threads": threads, "sentences": len(sentences), "sentences_per_s": len(sentences) / seconds})
    return rows


def bench_llm(config: DSOConfig, model: str, max_tokens: int = 128) -> dict[str, Any]:
    settings = dataclasses.replace(config, llm=dataclasses.replace(config.llm, model=model, parallel=4))
    started = time.perf_counter()
    llm = make_llm(settings)
    load_s = time.perf_counter() - started
    messages: list[ChatMessage] = [
        {"role": "user", "content": "Explain step by step, in plain prose, how to add 3/4 and 5/6."}
    ]
    llm.chat(messages, max_tokens=16)  # warm-up
    single = []
    for seed in range(3):
        reply = llm.chat(messages, max_tokens=max_tokens, temperature=0.7, seed=seed)
        single.append(reply.completion_tokens / reply.seconds)
    with ThreadPoolExecutor(4) as pool:
        started = time.perf_counter()
        replies = list(pool.map(lambda s: llm.chat(messages, max_tokens=max_tokens, temperature=0.7, seed=s), range(4)))
        wall = time.perf_counter() - started
    llm.close()
    return {
        "model": model,
        "threads": settings.llm.threads,
        "load_s": load_s,
        "tokens_per_s_single": statistics.median(single),
        "tokens_per_s_4_parallel": sum(r.completion_tokens for r in replies) / wall,
    }


def bench_library(embedder: Embedder, size: int = 10_000, queries: int = 100) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    # Stored vectors are random unit vectors: search cost depends on the count, not the content.
    vectors = rng.standard_normal((size, embedder.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    texts = experience_sentences(size)
    with tempfile.TemporaryDirectory() as scratch, ExperienceLibrary(Path(scratch) / "lib.db", embedder) as lib:
        started = time.perf_counter()
        lib.add_many([NewExperience(t) for t in texts], vectors)
        bulk_s = time.perf_counter() - started
        questions = [f"How do I handle {s} in a word problem? ({i})" for i, s in enumerate(_SUBJECTS * 13)][:queries]
        query_vectors = embedder.embed(questions)
        lib.search(questions[0], 10)  # warm the vector cache
        search = [median_seconds(lambda q=q: lib.search(q, 10), 1) for q in questions]  # type: ignore[misc]
        _, matrix = lib.vectors()
        scan = [median_seconds(lambda v=v: top_k(matrix, v, 10), 1) for v in query_vectors]  # type: ignore[misc]
        add = [
            median_seconds(lambda i=i: lib.add(f"When benchmarking add number {i}, time it."), 1)  # type: ignore[misc]
            for i in range(20)
        ]
    return {
        "experiences": size,
        "bulk_insert_s": bulk_s,
        "search_ms_median": 1000 * statistics.median(search),
        "topk_scan_ms_median": 1000 * statistics.median(scan),
        "add_ms_median": 1000 * statistics.median(add),
    }


def run_foundation_bench(config: DSOConfig, models: list[str], *, quiet: bool = False) -> dict[str, Any]:
    console = Console(quiet=quiet, stderr=True)
    embedder = make_embedder(config.embedder)
    console.print("embedder ...")
    result: dict[str, Any] = {"machine": machine(), "embedder_id": embedder.identity}
    result["embedder"] = bench_embedder(config.embedder, experience_sentences(512))
    console.print("library at 10k ...")
    result["library"] = bench_library(embedder)
    result["llm"] = []
    for model in models:
        console.print(f"llm {model} ...")
        result["llm"].append(bench_llm(config, model))
    return result
