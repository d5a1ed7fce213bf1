"""The installer page's HTTP server: the standard library's ThreadingHTTPServer.

Measured against the budget (benchmarks/bench_gateweb.py): no framework is needed for a
handful of routes, and nothing is added to the gate's install. One thread serves
connections (one more per open request; the preview stream holds one while watched, at
most ``MAX_STREAMS``). Every route but the login page and its static files needs a
session; every POST needs the session's CSRF token; the door changes only through
:meth:`LiveGate.relay_test`. Pages, CSS and JS are served from the package (no CDN:
the gate may be offline).
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import logging
import secrets
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from agent.runtime.web.auth import LoginLimiter, OneTimeToken, Session, Sessions, csrf_ok
from agent.runtime.web.checklist import live_checks
from agent.runtime.web.live import LiveGate
from agent.runtime.web.stream import Preview

log = logging.getLogger(__name__)

SESSION_COOKIE = "gw_session"
PRE_COOKIE = "gw_pre"
MAX_BODY = 4096
MAX_STREAMS = 3
STATIC = {"app.css": "text/css; charset=utf-8", "app.js": "text/javascript; charset=utf-8"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _asset(name: str) -> bytes:
    return resources.files("agent.runtime.web").joinpath("static", name).read_bytes()


def parse_bind(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(":")
    return host.strip("[]"), int(port)


class WebApp:
    """What every request shares: the gate, auth state, the preview, the stop signal."""

    def __init__(self, gate: LiveGate) -> None:
        self.gate = gate
        self.token = OneTimeToken(gate.config.web_token_path())
        self.sessions = Sessions(time.monotonic)
        self.limiter = LoginLimiter(time.monotonic)
        self.preview = Preview(gate)
        self.stopping = threading.Event()
        self.streams = threading.BoundedSemaphore(MAX_STREAMS)
        self._pre_secret = secrets.token_bytes(32)

    def login_csrf(self, pre: str) -> str:
        """The login form's CSRF token: bound to the browser's pre-session cookie."""
        return hmac.new(self._pre_secret, pre.encode(), hashlib.sha256).hexdigest()


class Handler(BaseHTTPRequestHandler):
    server_version = "gate-agent"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = 15  # a client that stalls mid-request does not hold a thread for long

    @property
    def app(self) -> WebApp:
        return self.server.app  # type: ignore[attr-defined, no-any-return]

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("web %s: %s", self.client_address[0], format % args)

    # ---- routing -----------------------------------------------------------------------

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/login":
            self._login_page()
        elif path.startswith("/static/") and path[8:] in STATIC:
            self._send(HTTPStatus.OK, _asset(path[8:]), STATIC[path[8:]],
                       extra={"Cache-Control": "max-age=300"})
        else:
            session = self._session()
            routes = {"/": self._index, "/stream.mjpg": self._stream, "/frame.jpg": self._frame,
                      "/api/status": self._status, "/api/checklist": self._checklist}
            route = routes.get(path)
            if route is None:
                self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")
            elif session is None:
                self._unauthorised(path)
            else:
                route(session)

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                       b"request body missing a valid length or larger than 4 KB", "text/plain")
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        if path == "/login":
            self._login(body)
            return
        session = self._session()
        if session is None:
            self._json(HTTPStatus.UNAUTHORIZED, {"error": "not logged in: log in with the "
                                                 "installer token first"})
            return
        if not csrf_ok(session, self.headers.get("X-CSRF-Token")):
            self._json(HTTPStatus.FORBIDDEN, {"error": "missing or wrong CSRF token: reload "
                                              "the page and try again"})
            return
        if path == "/api/relay-test":
            self._relay_test(body)
        elif path == "/logout":
            self.app.sessions.drop(self._cookie(SESSION_COOKIE))
            self._json(HTTPStatus.OK, {"ok": True},
                       extra={"Set-Cookie": f"{SESSION_COOKIE}=; Max-Age=0; Path=/; "
                              "HttpOnly; SameSite=Strict"})
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such action {path}"})

    # ---- login -------------------------------------------------------------------------------

    def _login_page(self, status: HTTPStatus = HTTPStatus.OK, message: str = "",
                    extra: dict[str, str] | None = None) -> None:
        pre = self._cookie(PRE_COOKIE)
        headers = dict(extra or {})
        if not pre or len(pre) > 64:
            pre = secrets.token_urlsafe(24)
            headers["Set-Cookie"] = f"{PRE_COOKIE}={pre}; Path=/login; HttpOnly; SameSite=Strict"
        if not message and not self.app.token.available:
            message = ("没有可用的安装令牌。No unused installer token: run `gate-agent web "
                       "token` on the gate.")
        page = _asset("login.html").decode().replace(
            "{{csrf}}", self.app.login_csrf(pre)).replace("{{message}}", html.escape(message))
        page = page.replace("{{gate}}", html.escape(self._gate_name()))
        self._send(status, page.encode(), "text/html; charset=utf-8", extra=headers)

    def _login(self, body: bytes) -> None:
        client = self.client_address[0]
        wait = self.app.limiter.wait_s(client)
        if wait > 0:
            self._login_page(HTTPStatus.TOO_MANY_REQUESTS,
                             f"尝试次数过多，请等待 {wait:.0f} 秒。Too many wrong tokens: wait "
                             f"{wait:.0f} s before trying again.",
                             extra={"Retry-After": str(max(1, round(wait)))})
            return
        form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=4)
        pre = self._cookie(PRE_COOKIE) or ""
        offered_csrf = (form.get("csrf") or [""])[0]
        if not pre or not hmac.compare_digest(self.app.login_csrf(pre), offered_csrf):
            self._login_page(HTTPStatus.FORBIDDEN, "页面已过期，请重试。The login form expired: "
                             "enter the token again.")
            return
        if not self.app.token.redeem((form.get("token") or [""])[0]):
            delay = self.app.limiter.failed(client)
            log.warning("installer page: wrong or used token from %s (next try in %.0f s)",
                        client, delay)
            self._login_page(HTTPStatus.UNAUTHORIZED,
                             "令牌无效或已使用。Token not accepted (wrong, or already used): "
                             f"check it, or make a new one with `gate-agent web token`. Next "
                             f"try in {delay:.0f} s.")
            return
        self.app.limiter.succeeded(client)
        sid, _ = self.app.sessions.create()
        log.info("installer page: logged in from %s (the one-time token is used up)", client)
        self._send(HTTPStatus.SEE_OTHER, b"", "text/plain", extra={
            "Location": "/",
            "Set-Cookie": f"{SESSION_COOKIE}={sid}; Path=/; HttpOnly; SameSite=Strict",
        })

    def _unauthorised(self, path: str) -> None:
        if path == "/":
            self._send(HTTPStatus.SEE_OTHER, b"", "text/plain", extra={"Location": "/login"})
        else:
            self._json(HTTPStatus.UNAUTHORIZED, {"error": "not logged in"})

    # ---- pages and data --------------------------------------------------------------------

    def _index(self, session: Session) -> None:
        page = _asset("index.html").decode().replace("{{csrf}}", html.escape(session.csrf))
        page = page.replace("{{gate}}", html.escape(self._gate_name()))
        page = page.replace("{{unlock_s}}", f"{self.app.gate.config.door.unlock_s:g}")
        self._send(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8")

    def _status(self, _session: Session) -> None:
        gate = self.app.gate
        snap = gate.status()
        body = {
            "gate": self._gate_name(),
            "door": snap.get("door"), "mode": snap.get("mode"),
            "last_decisions": snap.get("last_decisions", [])[:3],
            "clock": snap.get("clock"), "revocations": snap.get("revocations"),
            "backlog": snap.get("backlog"), "broker": snap.get("broker"),
            "alarms": snap.get("alarms"), "inputs": gate.inputs(), "scanner": gate.scanner(),
            "preview": self.app.preview.describe(),
        }
        self._json(HTTPStatus.OK, body)

    def _checklist(self, _session: Session) -> None:
        items = [r.to_json() for r in live_checks(self.app.gate)]
        self._json(HTTPStatus.OK, {"checks": items})

    def _relay_test(self, body: bytes) -> None:
        try:
            confirmed = json.loads(body or b"{}").get("confirm") is True
        except (ValueError, AttributeError):
            confirmed = False
        if not confirmed:
            self._json(HTTPStatus.BAD_REQUEST, {"error": 'send {"confirm": true} to pulse the '
                                                "relay (the page asks first)"})
            return
        log.info("installer page: relay test from %s", self.client_address[0])
        done = self.app.gate.relay_test()
        if done is None:
            self._json(HTTPStatus.SERVICE_UNAVAILABLE,
                       {"ok": False, "error": "the controller did not answer: see the log"})
        elif not done:
            self._json(HTTPStatus.CONFLICT, {"ok": False, "error": "refused: the gate is in "
                                             "lockdown or the entry log cannot be written"})
        else:
            self._json(HTTPStatus.OK, {"ok": True, "detail": "one pulse, recorded"})

    def _frame(self, _session: Session) -> None:
        jpeg = self.app.preview.jpeg(wait_s=2.0)
        if jpeg is None:
            self._json(HTTPStatus.NOT_FOUND, {"error": self.app.preview.unavailable()})
            return
        self._send(HTTPStatus.OK, jpeg, "image/jpeg")

    def _stream(self, session: Session) -> None:
        app = self.app
        if app.gate.tap is None:
            self._json(HTTPStatus.NOT_FOUND, {"error": app.preview.unavailable()})
            return
        if not app.streams.acquire(blocking=False):
            self._json(HTTPStatus.SERVICE_UNAVAILABLE,
                       {"error": f"{MAX_STREAMS} previews open already: close one"})
            return
        try:
            self._stream_frames(session)
        finally:
            app.streams.release()

    def _stream_frames(self, session: Session) -> None:
        app = self.app
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        for key, value in SECURITY_HEADERS.items():
            self.send_header(key, value)
        self.end_headers()
        self.close_connection = True
        last_seq = -1
        sid = self._cookie(SESSION_COOKIE)
        try:
            while not app.stopping.is_set() and app.sessions.get(sid) is session:
                frame = app.preview.next_jpeg(last_seq, app.stopping)
                if frame is None:
                    continue
                last_seq, jpeg = frame
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                 + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
            pass  # the viewer went away

    # ---- helpers ---------------------------------------------------------------------------

    def _gate_name(self) -> str:
        cfg = self.app.gate.config
        return f"{cfg.gate.site}/{cfg.gate.id}"

    def _cookie(self, name: str) -> str | None:
        raw = self.headers.get("Cookie")
        if not raw:
            return None
        try:
            morsel = SimpleCookie(raw).get(name)
        except CookieError:
            return None
        return morsel.value if morsel is not None else None

    def _session(self) -> Session | None:
        return self.app.sessions.get(self._cookie(SESSION_COOKIE))

    def _json(self, status: HTTPStatus, body: dict[str, Any],
              extra: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(body).encode(), "application/json", extra=extra)

    def _send(self, status: HTTPStatus, body: bytes, content_type: str,
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        headers = {**SECURITY_HEADERS, "Content-Type": content_type,
                   "Content-Length": str(len(body)), **(extra or {})}
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    app: WebApp

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One log line instead of socketserver's traceback on stderr."""
        log.warning("installer page: a request from %s failed: %s", client_address[0],
                    sys.exc_info()[1])


class WebServer:
    """The page's server thread, started and stopped by the daemon."""

    def __init__(self, gate: LiveGate) -> None:
        self.app = WebApp(gate)
        host, port = parse_bind(gate.config.web.bind)
        server_cls = type("_Server6", (_Server,), {"address_family": socket.AF_INET6}) \
            if ":" in host else _Server
        self._httpd = server_cls((host, port), Handler)
        self._httpd.app = self.app
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = str(self._httpd.server_address[0])
        if host in ("0.0.0.0", "::"):  # noqa: S104 (naming the wildcard, not binding it)
            host = local_address()
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/"

    def start(self) -> None:
        self.app.preview.start()
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={
            "poll_interval": 0.5}, name="web", daemon=True)
        self._thread.start()
        log.info("installer page on %s (log in with the one-time token)", self.url)

    def stop(self, timeout: float = 3.0) -> None:
        """Stop serving and close the socket (idempotent); open streams end within 0.2 s."""
        self.app.stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            self._httpd.shutdown()
            thread.join(timeout)
            if thread.is_alive():
                log.warning("thread web did not stop within %.1f s", timeout)
        self.app.preview.stop(timeout)
        self._httpd.server_close()


def local_address() -> str:
    """This gate's address on its LAN (the route a packet would take; nothing is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere real
            return str(probe.getsockname()[0])
        except OSError:
            return socket.gethostname()
