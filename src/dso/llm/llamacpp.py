"""Embedded llama.cpp (xllamacpp): a GGUF model served in-process, no network, parallel slots.

xllamacpp runs llama.cpp's server in the process. Requests go straight to it as Python dicts; it
also listens on a loopback port (`base_url`), which lets the OpenAI-compatible backend be tested
against a real server.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from dso.errors import LLMError
from dso.llm.base import LLM


class LlamaCppLLM(LLM):
    def __init__(
        self,
        model_path: Path,
        *,
        name: str | None = None,
        threads: int = 2,
        n_ctx: int = 4096,
        parallel: int = 4,
    ) -> None:
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(model_path)
        params.n_parallel = max(1, parallel)
        params.n_ctx = n_ctx * params.n_parallel  # the context is shared by the slots
        params.cpuparams.n_threads = max(1, threads)
        params.cpuparams_batch.n_threads = max(1, threads)
        params.verbosity = -1  # llama.cpp logs every request to stderr otherwise
        try:
            self._server = xllamacpp.Server(params)
        except Exception as exc:
            raise LLMError(f"llama.cpp could not load {model_path}: {exc}") from None
        self._name = name or Path(model_path).stem
        self.max_samples_per_request = params.n_parallel

    @property
    def name(self) -> str:
        return self._name

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible HTTP endpoint of this in-process server (loopback only)."""
        return f"{self._server.listening_address}/v1"

    def _complete(self, body: dict[str, Any]) -> Mapping[str, Any]:
        try:
            reply = self._server.handle_chat_completions(body)
        except RuntimeError as exc:  # e.g. a reply that its chat-format parser rejects
            raise LLMError(f"llama.cpp failed on the request: {exc}") from None
        if not isinstance(reply, dict) or "choices" not in reply:
            message = reply.get("error", reply) if isinstance(reply, dict) else reply
            raise LLMError(f"llama.cpp refused the request: {message}")
        if len(reply["choices"]) > 1:
            # The server's usage counts one choice only; count every choice's tokens.
            reply["usage"] = dict(reply.get("usage") or {}, completion_tokens=self._completion_tokens(reply))
        return reply

    def _completion_tokens(self, reply: Mapping[str, Any]) -> int:
        total = 0
        for choice in reply["choices"]:
            text = str((choice.get("message") or {}).get("content") or "")
            try:
                answer = httpx.post(f"{self._server.listening_address}/tokenize", json={"content": text}, timeout=30)
                tokens = len(answer.json()["tokens"])
            except (httpx.HTTPError, ValueError, KeyError):
                tokens = max(1, len(text) // 4)  # a rough count beats none
            total += tokens + (1 if choice.get("finish_reason") == "stop" else 0)  # the end-of-turn token
        return total

    def close(self) -> None:
        self._server = None
