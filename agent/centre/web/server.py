"""Serving the console inside ``gate-centre run``: uvicorn on its own named thread.

The listening socket is bound here, in the caller's thread, so a port in use or a bad
address is a clear ConfigError at start instead of a dying thread. TLS is uvicorn's
(``[web] tls_cert_file``/``tls_key_file``); behind a TLS reverse proxy set
``behind_tls_proxy`` so cookies are still marked Secure.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import socket
import threading
from pathlib import Path

from agent.centre.config import CentreConfig
from agent.centre.web.actions import Publish, Signer
from agent.core.errors import ConfigError

log = logging.getLogger(__name__)

MIN_SECRET = 32
STOP_TIMEOUT_S = 5.0


def session_secret(path: Path | None) -> bytes:
    """The cookie-signing secret: the file's bytes, or a fresh random one per start."""
    if path is None:
        return secrets.token_bytes(32)
    try:
        data = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"web.session_secret_file: cannot read {path}: {exc}") from None
    if len(data) < MIN_SECRET:
        raise ConfigError(f"web.session_secret_file: {path} holds {len(data)} bytes; make "
                          f"one of {MIN_SECRET}+ with: head -c 48 /dev/urandom | base64 > "
                          f"{path}")
    return data


def _bind(address: str) -> socket.socket:
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP,
    # and without it every response on a kept-alive connection waited ~40 ms (Nagle
    # holding the body behind the headers until the client's delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, int(port)))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"web.bind: cannot listen on {address}: {exc.strerror or exc} "
                          "(another program on that port? pick another in [web] bind)"
                          ) from None
    sock.set_inheritable(True)
    return sock


class ConsoleServer:
    """The console's uvicorn server; ``start`` binds, ``stop`` ends it and its streams."""

    def __init__(self, config: CentreConfig, signer: Signer, publish: Publish) -> None:
        try:
            import uvicorn

            from agent.centre.web.app import Console, build_app
        except ImportError as exc:
            raise ConfigError(f"[web] needs the console's packages ({exc.name} is missing): "
                              "pip install 'gate-agent[console]'") from None
        web = config.web
        assert web is not None
        self.console = Console(web, config.store.url, signer, publish)
        secure = web.tls_cert_file is not None or web.behind_tls_proxy
        app = build_app(self.console, session_secret(web.session_secret_file),
                        secure_cookies=secure)
        self.address = web.bind
        self.scheme = "https" if web.tls_cert_file else "http"
        self._config = uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="off",
            timeout_graceful_shutdown=2, proxy_headers=web.behind_tls_proxy,
            ssl_certfile=str(web.tls_cert_file) if web.tls_cert_file else None,
            ssl_keyfile=str(web.tls_key_file) if web.tls_key_file else None)
        self._server = uvicorn.Server(self._config)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._sock is not None
        host, port = self._sock.getsockname()[:2]
        return f"{self.scheme}://{host}:{port}"

    def start(self) -> None:
        self._sock = _bind(self.address)
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self._sock]},
                                        name="centre-web", daemon=True)
        self._thread.start()
        log.info("console listening on %s", self.url)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self.console.stopping.set()  # live feeds end their streams
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S + 3)
            if self._thread.is_alive():
                log.error("console thread did not stop within %.0f s", STOP_TIMEOUT_S + 3)
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        self.console.pool.close()
