"""Any OpenAI-compatible chat endpoint (vLLM, Ollama, llama.cpp server, DeepSeek, OpenAI).

The key is read from an environment variable whose *name* is configured, so it never lands in a
config file. Transient failures (connection errors, 429, 5xx) are retried with exponential backoff;
a semaphore bounds how many requests this process has in flight.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

import httpx

from dso.core.untrusted import load_json
from dso.endpoints import RetryPolicy, http_base_url, post_with_retries
from dso.errors import LLMError
from dso.llm.base import LLM

_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAICompatibleLLM(LLM):
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        policy: RetryPolicy = RetryPolicy(timeout_s=120.0, retries=3, backoff_s=0.5),
        max_concurrency: int = 4,
    ) -> None:
        self._base_url = http_base_url(base_url, "LLM base", LLMError)
        self._model = model
        self.request_model = model
        self._policy = policy
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(api_key_env, "")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        limits = httpx.Limits(max_connections=max(1, max_concurrency))
        self._client = httpx.Client(headers=headers, timeout=policy.timeout_s, limits=limits)
        self._slots = threading.BoundedSemaphore(max(1, max_concurrency))

    @property
    def name(self) -> str:
        return self._model

    def _complete(self, body: dict[str, Any]) -> Mapping[str, Any]:
        # Some servers (Ollama) ignore n: `chat` asks again for what is still missing.
        return self._post("/chat/completions", body)

    def _post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        url = self._base_url + path
        response = post_with_retries(
            self._client,
            url,
            policy=self._policy,
            transient=_RETRY_STATUS,
            error=LLMError,
            what="LLM endpoint",
            slot=self._slots,
            json=body,
        )
        if response.status_code >= 400:
            raise LLMError(f"{url} refused the request: HTTP {response.status_code}: {response.text[:200]}")
        reply = load_json(response.content, LLMError, f"the reply of {url}")
        if not isinstance(reply, dict):
            raise LLMError(f"{url} answered with unexpected JSON: {str(reply)[:120]}")
        return reply

    def close(self) -> None:
        self._client.close()
