"""The LLM interface every backend implements: chat messages in, n texts + token usage out."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypedDict, runtime_checkable


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

    @property
    def text(self) -> str:
        return self.texts[0]

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0


@runtime_checkable
class LLM(Protocol):
    @property
    def name(self) -> str: ...

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
        ...

    def close(self) -> None: ...


def check_request(messages: Sequence[ChatMessage], n: int, temperature: float, max_tokens: int) -> None:
    """Reject malformed requests before they reach a backend."""
    if not messages:
        raise ValueError("at least one message is required")
    for message in messages:
        if message.get("role") not in ("system", "user", "assistant") or not isinstance(message.get("content"), str):
            raise ValueError(f"bad chat message: {message!r}")
    if n < 1 or max_tokens < 1 or temperature < 0:
        raise ValueError(f"bad sampling parameters: n={n}, max_tokens={max_tokens}, temperature={temperature}")


def parse_choices(reply: Mapping[str, Any]) -> tuple[list[str], list[str], int, int]:
    """Texts, finish reasons and token usage from an OpenAI-shaped chat completion."""
    choices = sorted(reply.get("choices") or [], key=lambda c: c.get("index", 0))
    texts = [str((c.get("message") or {}).get("content") or "") for c in choices]
    reasons = [str(c.get("finish_reason") or "stop") for c in choices]
    usage = reply.get("usage") or {}
    return texts, reasons, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
