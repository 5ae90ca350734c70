"""Hostile endpoints: an LLM server or IPFS node that answers junk gives one-line errors, never a crash."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from dso.endpoints import RetryPolicy
from dso.errors import LLMError, StoreError
from dso.llm.openai_http import OpenAICompatibleLLM
from dso.store.ipfs import IPFSStore

ANSWERS = {
    "deep": b"[" * 300_000,
    "not json": b"<html>oops</html>",
    "wrong type": b'["choices"]',
    "no choices": b'{"choices": []}',
    "nan": b'{"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens": NaN}}',
    "escapes": b'{"Message": "\\u001b[2J\\u001b[31mred"}',
}


@pytest.fixture()
def junk_server(request: pytest.FixtureRequest) -> Iterator[str]:
    body = ANSWERS[request.param]

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200 if request.param != "escapes" else 500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("junk_server", sorted(ANSWERS), indirect=True)
def test_junk_answers_are_one_line_errors(junk_server: str) -> None:
    llm = OpenAICompatibleLLM(junk_server + "/v1", "m", policy=RetryPolicy(timeout_s=5, retries=0))
    with pytest.raises(LLMError) as info:
        llm.chat([{"role": "user", "content": "hi"}])
    assert "\n" not in str(info.value)
    store = IPFSStore(junk_server, policy=RetryPolicy(timeout_s=5, retries=0))
    with pytest.raises(StoreError) as stored:
        store.put(b"block")
    assert "\n" not in str(stored.value) and "\x1b" not in str(stored.value)  # quoted, not raw


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": "12", "completion_tokens": -3},
        {"prompt_tokens": 5, "prompt_tokens_details": {"cached_tokens": 10**12}},
        {"prompt_tokens": True, "prompt_tokens_details": ["cached_tokens", 3]},
        {"prompt_tokens": 7, "prompt_tokens_details": {"cached_tokens": -1}},
        ["prompt_tokens"],
    ],
)
def test_junk_usage_counts_nothing_it_cannot_trust(usage: object) -> None:
    from dso.llm.base import parse_choices

    texts, _, counted = parse_choices({"choices": [{"message": {"content": "x"}}], "usage": usage})
    assert texts == ["x"]
    assert counted.prompt >= 0 and counted.completion >= 0 and 0 <= counted.cached <= counted.prompt
