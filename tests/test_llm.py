"""Both LLM backends against a real model: embedded llama.cpp, and its OpenAI-compatible HTTP server."""

from __future__ import annotations

import json
import socket

import pytest

from dso.endpoints import RetryPolicy
from dso.errors import LLMError
from dso.llm import ChatMessage
from dso.llm.llamacpp import LlamaCppLLM
from dso.llm.openai_http import OpenAICompatibleLLM

ASK: list[ChatMessage] = [{"role": "user", "content": "What is 2 + 3? Answer with a number."}]
SCHEMA = {
    "type": "object",
    "properties": {"tip": {"type": "string", "maxLength": 60}, "score": {"type": "integer", "maximum": 10}},
    "required": ["tip", "score"],
}


def test_embedded_chat_returns_text_and_usage(small_llm: LlamaCppLLM) -> None:
    reply = small_llm.chat(ASK, max_tokens=24)
    assert "5" in reply.text
    assert reply.prompt_tokens > 5 and 0 < reply.completion_tokens <= 24
    assert reply.finish_reasons[0] in ("stop", "length")


def test_a_repeated_prompt_prefix_is_served_from_the_cache(small_llm: LlamaCppLLM) -> None:
    messages: list[ChatMessage] = [{"role": "user", "content": "List three colours of the rainbow, comma separated."}]
    first = small_llm.chat(messages, max_tokens=4)
    again = small_llm.chat(messages, max_tokens=4)
    assert first.prompt_tokens == again.prompt_tokens > 10
    assert first.prompt_tokens - 1 <= again.cached_prompt_tokens < again.prompt_tokens  # all but the last token


def test_embedded_greedy_is_deterministic_and_max_tokens_caps(small_llm: LlamaCppLLM) -> None:
    story: list[ChatMessage] = [{"role": "user", "content": "Write a long story about a dragon."}]
    a = small_llm.chat(story, max_tokens=12, temperature=0.0)
    b = small_llm.chat(story, max_tokens=12, temperature=0.0)
    assert a.text == b.text
    assert a.finish_reasons == ["length"] and a.completion_tokens == 12


def test_embedded_n_samples(small_llm: LlamaCppLLM) -> None:
    story: list[ChatMessage] = [{"role": "user", "content": "Name a random animal and describe it."}]
    reply = small_llm.chat(story, n=3, temperature=1.0, max_tokens=16, seed=7)
    assert len(reply.texts) == 3 and len(reply.finish_reasons) == 3
    assert len(set(reply.texts)) > 1  # sampled, not copies
    # Usage covers every sample (the server itself reports one choice's tokens when n > 1).
    least = sum(16 if reason == "length" else 1 for reason in reply.finish_reasons)
    assert least <= reply.completion_tokens <= 3 * 17


def test_embedded_json_schema_constrains_output(small_llm: LlamaCppLLM) -> None:
    tip: list[ChatMessage] = [{"role": "user", "content": "Give one study tip and a score from 1 to 10 as JSON."}]
    reply = small_llm.chat(tip, n=2, temperature=0.7, max_tokens=120, json_schema=SCHEMA, seed=1)
    assert reply.finish_reasons == ["stop", "stop"]
    for text in reply.texts:
        parsed = json.loads(text)
        assert isinstance(parsed["tip"], str) and isinstance(parsed["score"], int)


def test_bad_request_is_refused_before_the_model(small_llm: LlamaCppLLM) -> None:
    with pytest.raises(ValueError):
        small_llm.chat([], max_tokens=5)
    with pytest.raises(ValueError):
        small_llm.chat(ASK, n=0)


def test_openai_backend_against_a_real_server(small_llm: LlamaCppLLM) -> None:
    client = OpenAICompatibleLLM(small_llm.base_url, "smollm2-135m", policy=RetryPolicy(timeout_s=60, retries=1))
    reply = client.chat(ASK, max_tokens=24)
    assert "5" in reply.text and reply.completion_tokens > 0
    greedy = small_llm.chat(ASK, max_tokens=24)
    assert reply.text == greedy.text  # same server, same greedy answer
    many = client.chat(ASK, n=2, temperature=0.9, max_tokens=8, seed=3)
    assert len(many.texts) == 2
    constrained = client.chat(
        [{"role": "user", "content": "A study tip with a score, as JSON."}], max_tokens=120, json_schema=SCHEMA
    )
    assert set(json.loads(constrained.text)) == {"tip", "score"}
    client.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_openai_backend_dead_endpoint_is_a_clear_error() -> None:
    client = OpenAICompatibleLLM(
        f"http://127.0.0.1:{_free_port()}/v1", "m", policy=RetryPolicy(timeout_s=2, retries=2, backoff_s=0.01)
    )
    with pytest.raises(LLMError, match=r"failed after 3 attempts: cannot connect") as info:
        client.chat(ASK)
    assert "\n" not in str(info.value)
    with pytest.raises(LLMError, match="must start with http"):
        OpenAICompatibleLLM("localhost:8000", "m")
