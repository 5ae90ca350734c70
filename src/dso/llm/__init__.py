"""LLM backends behind one interface; `make_llm` picks one from the configuration."""

from __future__ import annotations

from dso.config import DSOConfig
from dso.endpoints import RetryPolicy
from dso.errors import ConfigError
from dso.llm.base import LLM, ChatMessage, Completion

__all__ = ["LLM", "ChatMessage", "Completion", "make_llm"]


def make_llm(config: DSOConfig) -> LLM:
    settings = config.llm
    if settings.backend == "llamacpp":
        from dso.llm.llamacpp import LlamaCppLLM
        from dso.llm.models import resolve_model

        path = resolve_model(settings.model, config.models_dir)
        return LlamaCppLLM(
            path,
            name=settings.model,
            threads=settings.threads,
            n_ctx=settings.n_ctx,
            parallel=settings.parallel,
        )
    if settings.backend == "openai":
        from dso.llm.openai_http import OpenAICompatibleLLM

        if not settings.base_url:
            raise ConfigError("llm.backend 'openai' needs llm.base_url (or DSO_LLM_BASE_URL)")
        return OpenAICompatibleLLM(
            settings.base_url,
            settings.model,
            api_key_env=settings.api_key_env,
            policy=RetryPolicy(timeout_s=settings.timeout_s, retries=settings.retries, backoff_s=0.5),
            max_concurrency=settings.max_concurrency,
        )
    raise ConfigError(f"unknown llm backend {settings.backend!r} (use 'llamacpp' or 'openai')")
