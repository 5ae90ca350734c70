"""The LLM interface every backend implements: chat messages in, n texts + token usage out."""

from __future__ import annotations

import abc
import dataclasses
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypedDict

from dso.errors import LLMError


class ChatMessage(TypedDict):
    role: str  # "system", "user" or "assistant"
    content: str


@dataclasses.dataclass(frozen=True)
class Completion:
    texts: list[str]  # one per sample
    prompt_tokens: int
    completion_tokens: int  # summed over samples
    finish_reasons: list[str]  # "stop" or "length" (hit max_tokens), one per sample
    seconds: float
    cached_prompt_tokens: int = 0  # of prompt_tokens, those the server reused from an earlier request's prefix

    @property
    def text(self) -> str:
        return self.texts[0]

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0


class LLM(abc.ABC):
    """A chat model. Every backend speaks OpenAI-shaped chat completions, so `chat` is written once here:
    it checks the request, builds the body, and gathers `n` samples over as many requests as the backend
    needs. A backend supplies its `name` and `_complete` (one body in, one OpenAI-shaped reply out)."""

    max_samples_per_request: int | None = None  # llama.cpp serves one sample per slot
    request_model: str | None = None  # the body's "model" field, for endpoints that serve several

    @property
    @abc.abstractmethod
    def name(self) -> str: ...

    @abc.abstractmethod
    def _complete(self, body: dict[str, Any]) -> Mapping[str, Any]:
        """Send one request body; the reply's ``choices`` and ``usage`` as an OpenAI server shapes them."""

    def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int = 256,
        seed: int | None = None,
        json_schema: Mapping[str, Any] | None = None,
    ) -> Completion:
        """Sample `n` replies. With `json_schema`, decoding is constrained to that schema where the
        backend supports it; the caller still parses and validates the text."""
        check_request(messages, n, temperature, max_tokens)
        started = time.perf_counter()

        def ask(missing: int, done: int) -> Mapping[str, Any]:
            body = chat_request(
                messages,
                n=min(missing, self.max_samples_per_request or missing),
                temperature=temperature,
                max_tokens=max_tokens,
                seed=None if seed is None else seed + done,
                json_schema=json_schema,
                model=self.request_model,
            )
            return self._complete(body)

        texts, reasons, usage = collect_samples(n, ask, self.name)
        return Completion(texts, usage.prompt, usage.completion, reasons, time.perf_counter() - started, usage.cached)

    def close(self) -> None:  # noqa: B027 (a backend that holds nothing needs no close)
        """Release what the backend holds (a loaded model, connections)."""


class CountingLLM(LLM):
    """Another LLM that counts what every chat through it costs: requests, prompt and completion tokens (what a
    run's rollouts and validation gate spend, beside the extractor's own count). Thread-safe."""

    def __init__(self, inner: LLM) -> None:
        self.inner = inner
        self.max_samples_per_request = inner.max_samples_per_request
        self.request_model = inner.request_model
        self.chats = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.inner.name

    def _complete(self, body: dict[str, Any]) -> Mapping[str, Any]:
        raise NotImplementedError("CountingLLM forwards whole chats to the LLM it wraps")

    def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int = 256,
        seed: int | None = None,
        json_schema: Mapping[str, Any] | None = None,
    ) -> Completion:
        completion = self.inner.chat(
            messages, n=n, temperature=temperature, max_tokens=max_tokens, seed=seed, json_schema=json_schema
        )
        with self._lock:
            self.chats += 1
            self.prompt_tokens += completion.prompt_tokens
            self.completion_tokens += completion.completion_tokens
        return completion

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {
                "chats": self.chats,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
            }

    def close(self) -> None:
        self.inner.close()


def check_request(messages: Sequence[ChatMessage], n: int, temperature: float, max_tokens: int) -> None:
    """Reject malformed requests before they reach a backend."""
    if not messages:
        raise ValueError("at least one message is required")
    for message in messages:
        if message.get("role") not in ("system", "user", "assistant") or not isinstance(message.get("content"), str):
            raise ValueError(f"bad chat message: {message!r}")
    if n < 1 or max_tokens < 1 or temperature < 0:
        raise ValueError(f"bad sampling parameters: n={n}, max_tokens={max_tokens}, temperature={temperature}")


def chat_request(
    messages: Sequence[ChatMessage],
    *,
    n: int,
    temperature: float,
    max_tokens: int,
    seed: int | None,
    json_schema: Mapping[str, Any] | None,
    model: str | None = None,
) -> dict[str, Any]:
    """The OpenAI-style chat completion body every backend sends (llama.cpp's server reads the same shape)."""
    body: dict[str, Any] = {
        "messages": [dict(m) for m in messages],
        "n": n,
        "temperature": temperature,
        "max_tokens": max_tokens,
    }
    if model is not None:
        body["model"] = model
    if seed is not None:
        body["seed"] = seed
    if json_schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "strict": True, "schema": dict(json_schema)},
        }
    return body


@dataclasses.dataclass(frozen=True)
class Usage:
    prompt: int
    completion: int
    cached: int = 0  # prompt tokens served from the server's prefix cache


def collect_samples(
    n: int, ask: Callable[[int, int], Mapping[str, Any]], where: str
) -> tuple[list[str], list[str], Usage]:
    """Gather `n` samples over as many requests as the backend needs (slot limits, servers that ignore n).

    `ask(missing, done)` sends one request for up to `missing` samples; `done` lets it vary the seed.
    """
    texts: list[str] = []
    reasons: list[str] = []
    total = Usage(0, 0)
    while len(texts) < n:
        more, why, usage = parse_choices(ask(n - len(texts), len(texts)))
        if not more:
            raise LLMError(f"{where} answered with no choices")
        texts += more
        reasons += why
        # The prompt is the same in every request: counted once, from the first request that reports it.
        prompt = total if total.prompt else usage
        total = Usage(prompt.prompt, total.completion + usage.completion, prompt.cached)
    return texts[:n], reasons[:n], total


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def parse_choices(reply: Mapping[str, Any]) -> tuple[list[str], list[str], Usage]:
    """Texts, finish reasons and token usage from an OpenAI-shaped chat completion."""
    choices = sorted(reply.get("choices") or [], key=lambda c: c.get("index", 0))
    texts = [str((c.get("message") or {}).get("content") or "") for c in choices]
    reasons = [str(c.get("finish_reason") or "stop") for c in choices]
    usage = reply.get("usage")
    usage = usage if isinstance(usage, Mapping) else {}
    details = usage.get("prompt_tokens_details")
    prompt = _count(usage.get("prompt_tokens"))
    cached = min(prompt, _count(details.get("cached_tokens"))) if isinstance(details, Mapping) else 0
    return texts, reasons, Usage(prompt, _count(usage.get("completion_tokens")), cached)
