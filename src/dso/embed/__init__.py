"""Embedders: an interface and its two implementations, picked by configuration."""

from __future__ import annotations

from dso.config import EmbedderConfig
from dso.embed.base import Embedder, Vectors, l2_normalise
from dso.errors import ConfigError

__all__ = ["Embedder", "Vectors", "l2_normalise", "make_embedder"]


def make_embedder(config: EmbedderConfig | None = None) -> Embedder:
    config = config or EmbedderConfig()
    if config.backend == "onnx":
        from dso.embed.minilm_onnx import MiniLMOnnxEmbedder

        return MiniLMOnnxEmbedder(threads=config.threads, batch_size=config.batch_size)
    if config.backend == "sentence-transformers":
        from dso.embed.sentence_transformers import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder(threads=config.threads, batch_size=config.batch_size)
    raise ConfigError(f"unknown embedder backend {config.backend!r} (use 'onnx' or 'sentence-transformers')")
