"""The console's ASGI application: sessions, roles, CSRF, language, rendering.

Every page goes through ``guard(role)``: the session's user is read from the store on
each request (a disabled account or a changed password ends its sessions at once), the
role is checked on the server, and every POST must carry the session's CSRF token. The
session is Starlette's signed cookie (itsdangerous): HttpOnly, SameSite=Lax, Secure
over TLS. Responses carry a strict Content-Security-Policy (no inline script, no other
origin), so the few lines of JavaScript live in ``static/console.js``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent.centre.config import WebSection
from agent.centre.store.db import Database, StoreError, connect
from agent.centre.web import records
from agent.centre.web.actions import Publish, Signer
from agent.centre.web.auth import LoginLimiter, new_token, same_token
from agent.centre.web.i18n import HERE, LANGUAGES, LocalTime, environments
from agent.centre.web.records import Role, User

T = TypeVar("T")
log = logging.getLogger(__name__)
Handler = Callable[[Request], Awaitable[Response]]
LANG_COOKIE = "gc_lang"
SESSION_COOKIE = "gc_session"
HEADERS = [
    (b"content-security-policy", b"default-src 'self'; frame-ancestors 'none'; "
                                 b"form-action 'self'; base-uri 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


class Pool:
    """A few store connections shared by the request threads (each used by one at a time)."""

    def __init__(self, url: str, size: int = 4) -> None:
        self.url = url
        self._free: queue.LifoQueue[Database] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        with self._slots:
            try:
                db = self._free.get_nowait()
            except queue.Empty:
                db = connect(self.url)
            try:
                result = fn(db, *args)
            except StoreError:
                db.close()  # a broken connection is not handed out again
                raise
            except BaseException:
                self._free.put(db)
                raise
            self._free.put(db)
            return result

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await run_in_threadpool(self.call, fn, *args)

    def close(self) -> None:
        while True:
            try:
                self._free.get_nowait().close()
            except queue.Empty:
                return


@dataclass
class Console:
    """What the pages share: settings, the store, the signer and the broker session."""

    web: WebSection
    store_url: str
    signer: Signer
    publish: Publish
    clock: Callable[[], float] = time.time
    limiter: LoginLimiter = field(default_factory=LoginLimiter)
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.pool = Pool(self.store_url)
        self.local = LocalTime(self.web.time_zone)
        self.envs = environments(self.local)

    def lang(self, request: Request) -> str:
        chosen = request.cookies.get(LANG_COOKIE, "")
        return chosen if chosen in LANGUAGES else self.web.language

    def gettext(self, request: Request) -> Callable[[str], str]:
        return cast("Callable[[str], str]", self.envs[self.lang(request)].globals["gettext_"])

    def render(self, request: Request, name: str, status: int = 200,
               **context: Any) -> HTMLResponse:
        env = self.envs[self.lang(request)]
        user = getattr(request.state, "user", None)
        html = env.get_template(name).render(
            request=request, user=user, csrf=csrf_token(request), path=request.url.path,
            query=str(request.url.query), **context)
        return HTMLResponse(html, status_code=status)

    async def audit(self, request: Request, action: str, target: str | None, ok: bool,
                    detail: str = "", who: str | None = None) -> None:
        user = getattr(request.state, "user", None)
        name = who if who is not None else (user.name if user else "-")
        addr = request.client.host if request.client else None
        await self.pool.run(lambda db: records.audit(db, who=name, action=action,
                                                     target=target, ok=ok, detail=detail,
                                                     addr=addr, now=self.clock()))


def console_of(request: Request) -> Console:
    return request.app.state.console  # type: ignore[no-any-return]


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = new_token()
        request.session["csrf"] = token
    return token


async def current_user(request: Request) -> User | None:
    console = console_of(request)
    name, changed = request.session.get("user"), request.session.get("changed")
    if not isinstance(name, str):
        return None
    since = request.session.get("since")
    if not isinstance(since, int | float) or \
            console.clock() - since > console.web.session_hours * 3600:
        request.session.clear()  # the cookie is re-signed on each answer: this is the limit
        return None
    user = await console.pool.run(records.get_user, name)
    if user is None or user.disabled or user.changed_at != changed:
        request.session.clear()
        return None
    return user


def guard(role: Role, handler: Handler) -> Handler:
    """Signed in, with at least ``role``; a POST also with the session's CSRF token."""

    async def endpoint(request: Request) -> Response:
        console = console_of(request)
        user = await current_user(request)
        if user is None:
            if request.method == "GET":
                return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
            return forbidden(request, "not signed in")
        request.state.user = user
        if request.method == "POST":
            form = await request.form()
            if not same_token(request.session.get("csrf"), form.get("csrf")):
                await console.audit(request, "csrf_refused", request.url.path, False)
                return forbidden(request, "the form's security token is missing or old: "
                                          "reload the page and try again")
        if not user.may(role):
            await console.audit(request, "role_refused", request.url.path, False,
                                f"needs {role}, has {user.role}")
            return forbidden(request, f"this needs the {role} role")
        return await handler(request)

    return endpoint


def forbidden(request: Request, why: str) -> HTMLResponse:
    console = console_of(request)
    _ = console.gettext(request)
    return console.render(request, "error.html", 403, title=_("Refused"), message=why)


async def store_down(request: Request, exc: Exception) -> Response:
    """The database failed: one page that says so (and the log line), not a traceback."""
    log.error("console: %s %s: %s", request.method, request.url.path, exc)
    console = console_of(request)
    _ = console.gettext(request)
    return console.render(request, "error.html", 503, title=_("The store is not reachable"),
                          message=str(exc))


class SecurityHeaders:
    """Adds the CSP and friends to every HTTP response (pure ASGI: streams stay streams)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], *HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


def build_app(console: Console, secret: bytes, *, secure_cookies: bool) -> Starlette:
    """The console's Starlette app; ``secret`` signs the session cookie."""
    from agent.centre.web import changes, pages  # the routes, each guarded

    routes = [
        Route("/", pages.home),
        Route("/login", changes.login, methods=["GET", "POST"]),
        Route("/logout", changes.logout, methods=["POST"]),
        Route("/lang/{code}", changes.language),
        Route("/fleet", guard("viewer", pages.fleet)),
        Route("/entries", guard("viewer", pages.entries)),
        Route("/entries.csv", guard("viewer", pages.entries_csv)),
        Route("/feed", guard("viewer", pages.feed)),
        Route("/courier/{sub}", guard("viewer", pages.courier)),
        Route("/courier/{sub}/{action:str}", guard("operator", changes.courier_change),
              methods=["GET", "POST"]),
        Route("/revocations", guard("viewer", pages.revocations)),
        Route("/gate/{site}/{gate}", guard("viewer", pages.gate)),
        Route("/gate/{site}/{gate}/command", guard("operator", changes.gate_command),
              methods=["GET", "POST"]),
        Route("/overview", guard("viewer", pages.overview)),
        Route("/audit", guard("admin", pages.audit)),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(SessionMiddleware, secret_key=secret.hex(), session_cookie=SESSION_COOKIE,
                   max_age=int(console.web.session_hours * 3600), same_site="lax",
                   https_only=secure_cookies),
    ]
    app = Starlette(routes=routes, middleware=middleware,
                    exception_handlers={StoreError: store_down})
    app.state.console = console
    return app
