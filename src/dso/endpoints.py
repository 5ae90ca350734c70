"""Talking to endpoints users configure (an LLM server, an IPFS API, a chain node): the URL check and
the one retry loop.

Connection errors, timeouts and the statuses a caller names as transient are retried with exponential
backoff (capped at 30 s, and a server's ``Retry-After`` seconds are honoured); any other answer is the
caller's to read. After the last attempt the caller's error type names what failed, once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Collection
from typing import Any

import httpx

from dso.errors import DSOError


def http_base_url(url: str, what: str, error: type[DSOError]) -> str:
    """`url` without a trailing slash, if it is http(s); otherwise `error` naming `what` the URL is for."""
    if not url.startswith(("http://", "https://")):
        raise error(f"{what} URL must start with http:// or https://, got {url!r}")
    return url.rstrip("/")


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How long one request may take, and how often and how patiently a failed one is sent again."""

    timeout_s: float = 30.0
    retries: int = 2
    backoff_s: float = 0.3


def post_with_retries(
    client: httpx.Client,
    url: str,
    *,
    policy: RetryPolicy,
    transient: Collection[int],
    error: type[DSOError],
    what: str,
    slot: contextlib.AbstractContextManager[Any] | None = None,
    **request: Any,
) -> httpx.Response:
    """POST until an answer that is not transient; `slot` (a semaphore) is held only while a request is out."""
    problem = ""
    attempts = max(0, policy.retries) + 1
    for attempt in range(attempts):
        if attempt:
            time.sleep(min(policy.backoff_s * 2 ** (attempt - 1), 30.0))
        try:
            with slot or contextlib.nullcontext():
                response = client.post(url, **request)
        except httpx.TimeoutException:
            problem = "timed out"
            continue
        except httpx.TransportError as exc:
            problem = f"cannot connect ({exc.__class__.__name__}: {exc})"
            continue
        if response.status_code in transient:
            problem = f"HTTP {response.status_code}"
            wait = response.headers.get("retry-after", "")
            if wait.isdigit():
                time.sleep(min(float(wait), 30.0))
            continue
        return response
    raise error(f"{what} {url} failed after {attempts} attempts: {problem}")
