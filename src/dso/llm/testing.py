"""A scripted LLM double for tests: it satisfies the `LLM` protocol and answers from your script.

Use it where the model is not the point (parsing, ordering, bookkeeping, a crash mid-run), so that a
test checks the logic instead of what a small model happens to write::

    from dso.llm.testing import ScriptedLLM

    llm = ScriptedLLM(lambda request: "ANSWER: 4" if "2 + 2" in request.prompt else "ANSWER: ?")
    assert llm.chat([{"role": "user", "content": "What is 2 + 2?"}]).text == "ANSWER: 4"
    assert llm.requests[0].max_tokens == 256

The script is a string (every reply), a list of strings (replies in order, then an `LLMError`), or a
function of the `ScriptedRequest` that returns one string (used for every sample) or one per sample.
Token counts are words, so token bookkeeping can be checked too. Requests are recorded in order.
`serve_openai` puts any `LLM` behind an OpenAI-compatible HTTP endpoint on loopback, for commands that
run in another process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from dso.errors import LLMError
from dso.llm.base import LLM, ChatMessage

Reply = str | Sequence[str]


@dataclasses.dataclass(frozen=True)
class ScriptedRequest:
    messages: list[ChatMessage]
    n: int
    temperature: float
    max_tokens: int
    seed: int | None
    json_schema: Mapping[str, Any] | None

    @property
    def prompt(self) -> str:
        """Every message's content, joined: what most scripts match on."""
        return "\n".join(m["content"] for m in self.messages)


class ScriptedLLM(LLM):
    def __init__(self, script: str | Sequence[str] | Callable[[ScriptedRequest], Reply], *, name: str = "scripted"):
        self._name = name
        self._lock = threading.Lock()
        self._queue: list[str] | None = None
        if isinstance(script, str):
            text = script
            self._respond: Callable[[ScriptedRequest], Reply] = lambda request: text
        elif callable(script):
            self._respond = script
        else:
            self._queue = list(script)
            self._respond = self._next
        self.requests: list[ScriptedRequest] = []
        self.closed = False

    @property
    def name(self) -> str:
        return self._name

    def _next(self, request: ScriptedRequest) -> Reply:
        assert self._queue is not None
        if len(self._queue) < request.n:
            raise LLMError(f"scripted LLM {self._name} has no reply left for this request")
        replies, self._queue[: request.n] = self._queue[: request.n], []
        return replies

    def _complete(self, body: dict[str, Any]) -> Mapping[str, Any]:
        schema = (body.get("response_format") or {}).get("json_schema", {}).get("schema")
        request = ScriptedRequest(
            body["messages"], body["n"], body["temperature"], body["max_tokens"], body.get("seed"), schema
        )
        with self._lock:
            self.requests.append(request)
            reply = self._respond(request)
        texts = [reply] * request.n if isinstance(reply, str) else list(reply)
        if len(texts) != request.n:
            raise LLMError(f"scripted LLM {self._name} gave {len(texts)} replies for n={request.n}")
        cap = request.max_tokens
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": " ".join(text.split(" ")[:cap])},
                "finish_reason": "length" if len(text.split()) > cap else "stop",
            }
            for i, text in enumerate(texts)
        ]
        completion = sum(min(cap, len(text.split())) for text in texts)
        return {
            "choices": choices,
            "usage": {"prompt_tokens": len(request.prompt.split()), "completion_tokens": completion},
        }

    def close(self) -> None:
        self.closed = True


@contextlib.contextmanager
def serve_openai(llm: LLM, *, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve any `LLM` (a `ScriptedLLM` above all) as an OpenAI-compatible endpoint on loopback.

    Yields the base URL (``http://127.0.0.1:PORT/v1``) for `llm.backend = "openai"`, so that commands
    run in another process (``dso train`` killed mid-batch, say) can be driven by a script.
    """

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet
            pass

        def do_POST(self) -> None:
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                schema = (body.get("response_format") or {}).get("json_schema", {}).get("schema")
                reply = llm.chat(
                    body["messages"],
                    n=int(body.get("n", 1)),
                    temperature=float(body.get("temperature", 0.0)),
                    max_tokens=int(body.get("max_tokens", 256)),
                    seed=body.get("seed"),
                    json_schema=schema,
                )
                payload = {
                    "choices": [
                        {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": r}
                        for i, (t, r) in enumerate(zip(reply.texts, reply.finish_reasons, strict=True))
                    ],
                    "usage": {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens},
                }
                status = 200
            except (LLMError, ValueError, KeyError, TypeError) as exc:
                payload, status = {"error": {"message": str(exc)}}, 400
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = http.server.ThreadingHTTPServer((host, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
