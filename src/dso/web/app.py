"""The reviewer page over HTTP: server-rendered HTML, no JavaScript, one token for anything that writes.

Security, in order of a request:
- only the Host names the server was started for are answered (no DNS rebinding onto 127.0.0.1);
- a request another site made a browser send (Fetch Metadata `Sec-Fetch-Site: cross-site` or `same-site`:
  an image, a form, a link on another page) is refused before any work: no page a stranger can make a
  browser load starts the node embedding, fetching or signing;
- reading needs nothing (the chain and the content store are public); writing needs a session: signing in
  with the token the server printed at start opens one kept on the server (a random id in an HttpOnly,
  SameSite=Strict cookie, `Secure` over HTTPS), which expires after `SESSION_SECONDS` and which logout
  revokes; a CSRF field derived from the session, and, when the browser sends one, an Origin equal to the
  server's own;
- every text from the network goes through Jinja's autoescaping; no template marks anything safe;
- every response carries a Content-Security-Policy that allows no script at all, no frames and forms only
  to this server, plus nosniff, a same-origin referrer policy and no-store.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dso.errors import DSOError
from dso.web.review import Reviewer, ReviewError

COOKIE = "dso_session"
SESSION_SECONDS = 8 * 3600  # a session's lifetime; signing in again opens a new one
MAX_SESSIONS = 32  # open sessions kept; the oldest is dropped beyond
MAX_BODY = 64 * 1024
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",  # with no-referrer, browsers send Origin: null on form posts
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


class _SecurityHeaders:
    """Adds the headers above to every response, and refuses bodies over MAX_BODY before reading them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if headers.get(b"sec-fetch-site", b"").lower() in (b"cross-site", b"same-site"):
            refused = Response("error: requests from other sites are refused\n", 403, media_type="text/plain")
            await refused(scope, receive, send)
            return
        length = headers.get(b"content-length")
        if length is None and scope["method"] == "POST":
            await Response("error: a body needs a Content-Length\n", 411, media_type="text/plain")(scope, receive, send)
            return
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            await Response("error: request body too large\n", 413, media_type="text/plain")(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.decode().lower() not in HEADERS]
                headers += [(k.encode(), v.encode()) for k, v in HEADERS.items()]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("dso.web", "templates"), autoescape=select_autoescape(default=True), auto_reload=False
    )


class _Sessions:
    """Signed-in sessions, kept on the server: a random id per sign-in, each with its expiry; logout and
    expiry remove it, so a copied cookie stops working. Bounded: the oldest session goes beyond MAX_SESSIONS."""

    def __init__(self, lifetime: float, clock: Callable[[], float]) -> None:
        self.lifetime, self.clock = lifetime, clock
        self.expiry: dict[str, float] = {}  # insertion order is opening order

    def open(self) -> str:
        now = self.clock()
        self.expiry = {sid: t for sid, t in self.expiry.items() if t > now}
        while len(self.expiry) >= MAX_SESSIONS:
            del self.expiry[next(iter(self.expiry))]
        sid = secrets.token_urlsafe(32)
        self.expiry[sid] = now + self.lifetime
        return sid

    def valid(self, sid: str) -> bool:
        expiry = self.expiry.get(sid)
        if expiry is not None and expiry <= self.clock():
            del self.expiry[sid]
            return False
        return expiry is not None

    def close(self, sid: str) -> None:
        self.expiry.pop(sid, None)


def create_app(
    reviewer: Reviewer,
    token: str | None = None,
    *,
    hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
    session_seconds: float = SESSION_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> Starlette:
    """The ASGI application for one node; `token` opens sessions that may write (a fresh one when None:
    `app.state.token`); `clock` is what sessions expire by."""
    token = token or secrets.token_urlsafe(32)
    sessions = _Sessions(session_seconds, clock)
    templates = _environment()

    def session(request: Request) -> str | None:
        sid = request.cookies.get(COOKIE, "")
        return sid if sid and sessions.valid(sid) else None

    def signed_in(request: Request) -> bool:
        return session(request) is not None

    def csrf_of(sid: str | None) -> str:
        return hmac.new(token.encode(), f"csrf:{sid}".encode(), hashlib.sha256).hexdigest() if sid else ""

    def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        sid = session(request)
        context.update(node_address=reviewer.node.address, signed_in=sid is not None, csrf=csrf_of(sid))
        return HTMLResponse(templates.get_template(name).render(**context), status)

    def same_origin(request: Request) -> bool:
        origin = request.headers.get("origin")
        return origin is None or origin == str(request.base_url).rstrip("/")

    async def checked_form(request: Request) -> Any:
        """The posted form if the request may write (session, CSRF field, origin); None otherwise."""
        sid = session(request)
        if sid is None or not same_origin(request):
            return None
        form = await request.form(max_files=0, max_fields=600, max_part_size=MAX_BODY)
        sent = form.get("csrf")
        if not isinstance(sent, str) or not hmac.compare_digest(sent, csrf_of(sid)):
            return None
        return form

    def forbidden(request: Request) -> HTMLResponse:
        return page(request, "message.html", 403, title="Not allowed", error="sign in with the node's token first")

    async def pending_page(request: Request, status: int = 200, error: str = "", message: str = "") -> HTMLResponse:
        try:
            number = request.query_params.get("page", "1")[:6]
            shown = await run_in_threadpool(reviewer.pending, int(number) if number.isdigit() else 1)
            member = await run_in_threadpool(reviewer.is_member)
        except DSOError as exc:
            return page(request, "message.html", 502, title="Pending batches", error=str(exc))
        return page(
            request,
            "pending.html",
            status,
            title="Pending batches",
            batches=shown.batches,
            shown=shown,
            member=member,
            error=error,
            message=message,
        )

    async def pending(request: Request) -> Response:
        voted, decision = request.query_params.get("voted", ""), request.query_params.get("decision", "")
        message = ""
        if voted.isdigit() and decision in ("approve", "reject"):
            message = f"{voted} vote{'s' if voted != '1' else ''} cast: {decision}"
        return await pending_page(request, message=message)

    async def vote(request: Request) -> Response:
        form = await checked_form(request)
        if form is None:
            return forbidden(request)
        decision = form.get("decision")
        if decision not in ("approve", "reject"):
            return await pending_page(request, 400, error="choose approve or reject")
        batch_ids = [b for b in form.getlist("batch") if isinstance(b, str)]
        password = form.get("password")
        try:
            secret = password if isinstance(password, str) else ""
            done = await run_in_threadpool(reviewer.vote, batch_ids, decision == "approve", secret)
        except DSOError as exc:  # ReviewError, a wrong password (KeystoreError), the chain refusing
            return await pending_page(request, 400, error=str(exc))
        return RedirectResponse(f"/?voted={len(done)}&decision={decision}", 303)

    async def login(request: Request) -> Response:
        if request.method == "GET":
            offered = request.query_params.get("token")
            if offered is None:
                return page(request, "login.html", title="Sign in")
        else:
            if not same_origin(request):
                return forbidden(request)
            form = await request.form(max_files=0, max_fields=5, max_part_size=4096)
            value = form.get("token")
            offered = value if isinstance(value, str) else ""
        if not hmac.compare_digest(offered.encode(), token.encode()):
            return page(request, "login.html", 403, title="Sign in", error="that is not this server's token")
        response = RedirectResponse("/", 303)  # the token leaves the address bar at once
        response.set_cookie(
            COOKIE,
            sessions.open(),
            max_age=int(sessions.lifetime),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    async def logout(request: Request) -> Response:
        if await checked_form(request) is None:
            return forbidden(request)
        sessions.close(request.cookies.get(COOKIE, ""))  # revoked on the server: a copied cookie is dead too
        response = RedirectResponse("/", 303)
        response.delete_cookie(COOKIE, path="/")
        return response

    def _filters(request: Request) -> dict[str, Any]:
        params = request.query_params
        round_text = params.get("round", "").strip()
        if round_text and not round_text.isdigit():
            raise ReviewError("round is a whole number")
        return {
            "query": params.get("q", "")[:500],
            "domain": params.get("domain", "")[:100],
            "node": params.get("node", "").strip()[:64],
            "round_": int(round_text) if round_text else None,
        }

    async def library(request: Request) -> Response:
        try:
            filters = _filters(request)
            rows = await run_in_threadpool(lambda: reviewer.library(**filters))
            domains = await run_in_threadpool(reviewer.domains)
        except DSOError as exc:
            return page(request, "message.html", 400, title="Global library", error=str(exc))
        return page(
            request,
            "library.html",
            title="Global library",
            rows=rows,
            domains=domains,
            filters=filters,
            export=request.url.replace(path="/library/export.json").path
            + ("?" + request.url.query if request.url.query else ""),
        )

    async def export(request: Request) -> Response:
        try:
            filters = _filters(request)
            rows = await run_in_threadpool(lambda: reviewer.library(**filters, limit=100_000))
        except DSOError as exc:
            return Response(f"error: {exc}\n", 400, media_type="text/plain")
        body = json.dumps([row.to_json() for row in rows], indent=1, ensure_ascii=True) + "\n"
        return Response(
            body,
            media_type="application/json",
            headers={"content-disposition": 'attachment; filename="global-library.json"'},
        )

    async def status(request: Request) -> Response:
        try:
            state = await run_in_threadpool(reviewer.status)
        except DSOError as exc:
            return page(request, "message.html", 502, title="Status", error=str(exc))
        trained = bool(reviewer.training_metrics())
        return page(request, "status.html", title="Node status", node=state, has_training=trained)

    async def plot(request: Request) -> Response:
        data = await run_in_threadpool(reviewer.plot, str(request.path_params["name"]))
        if data is None:
            return Response("error: no such plot or no data yet\n", 404, media_type="text/plain")
        return Response(data, media_type="image/png")

    routes = [
        Route("/", pending),
        Route("/vote", vote, methods=["POST"]),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/library", library),
        Route("/library/export.json", export),
        Route("/status", status),
        Route("/plots/{name}.png", plot),
        Mount("/static", StaticFiles(packages=[("dso.web", "static")]), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(_SecurityHeaders), Middleware(TrustedHostMiddleware, allowed_hosts=list(hosts))],
    )
    app.state.token = token
    app.state.sessions = sessions
    return app
