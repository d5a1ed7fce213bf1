"""Who may use the installer page: a one-time token, sessions, CSRF tokens, login limits.

The token (``[web] token_file``, written by provisioning or ``gate-agent web token``) is
read at each login and used up by the first one that matches: the file is removed, and
its hash is kept so a copy restored from a backup is refused too. A login becomes a
session (a random cookie value, HttpOnly, SameSite=Strict) with its own CSRF token that
every POST must carry. Wrong tokens make the same client wait longer and longer before it
may try again. Secrets come from :mod:`secrets`, comparisons from
:func:`hmac.compare_digest`; nothing here is home-made cryptography.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

SESSION_IDLE_S = 2 * 3600.0  # an installer's visit; a new token after that
SESSION_MAX_S = 12 * 3600.0
MAX_SESSIONS = 4
FIRST_DELAY_S = 1.0
MAX_DELAY_S = 60.0
MAX_TOKEN_CHARS = 200


def new_token() -> str:
    return secrets.token_urlsafe(18)  # 144 bits, 24 URL-safe characters


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def write_token(path: Path) -> str:
    """A fresh one-time token in ``path`` (0600, replaced atomically); returns it."""
    token = new_token()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(token + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    used = _used_path(path)
    used.unlink(missing_ok=True)  # a fresh token: forget which one was used last
    return token


def _used_path(path: Path) -> Path:
    return path.with_name(path.name + ".used")


class OneTimeToken:
    """The token file as a login check: matches once, then is gone."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()

    def _current(self) -> str | None:
        try:
            text = self._path.read_text(encoding="ascii", errors="replace").strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot read the installer token %s: %s", self._path, exc)
            return None
        if not text or len(text) > MAX_TOKEN_CHARS:
            return None
        try:
            used = _used_path(self._path).read_text(encoding="ascii").strip()
        except OSError:
            used = ""
        if used and hmac.compare_digest(used, _digest(text)):
            return None  # this very token was used already (a restored copy)
        return text

    @property
    def available(self) -> bool:
        return self._current() is not None

    def redeem(self, offered: str) -> bool:
        """True once for the right token; it cannot be used again afterwards."""
        offered = offered.strip()
        if not offered or len(offered) > MAX_TOKEN_CHARS:
            return False
        with self._lock:
            current = self._current()
            if current is None or not hmac.compare_digest(current.encode(), offered.encode()):
                return False
            self._use_up(current)
            return True

    def _use_up(self, token: str) -> None:
        try:
            _used_path(self._path).write_text(_digest(token) + "\n", encoding="ascii")
        except OSError as exc:
            log.warning("cannot note the used installer token next to %s: %s", self._path, exc)
        try:
            self._path.unlink()
        except OSError as exc:  # read-only place: the .used note (or memory) refuses it
            log.warning("cannot remove the used installer token %s: %s", self._path, exc)


@dataclass
class Session:
    csrf: str
    created: float
    seen: float


class Sessions:
    """Logged-in browsers by cookie value; idle ones expire; at most ``MAX_SESSIONS``."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._by_id: OrderedDict[str, Session] = OrderedDict()

    def create(self) -> tuple[str, Session]:
        now = self._clock()
        sid = secrets.token_urlsafe(32)
        session = Session(csrf=secrets.token_urlsafe(32), created=now, seen=now)
        with self._lock:
            self._by_id[sid] = session
            while len(self._by_id) > MAX_SESSIONS:
                self._by_id.popitem(last=False)
        return sid, session

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        now = self._clock()
        with self._lock:
            for key in [k for k, s in self._by_id.items() if self._expired(s, now)]:
                del self._by_id[key]
            # Look up by constant-time comparison, not by hashing the attacker's string.
            for key, session in self._by_id.items():
                if hmac.compare_digest(key.encode(), sid.encode()):
                    session.seen = now
                    return session
        return None

    def drop(self, sid: str | None) -> None:
        with self._lock:
            for key in list(self._by_id):
                if sid and hmac.compare_digest(key.encode(), sid.encode()):
                    del self._by_id[key]

    @staticmethod
    def _expired(session: Session, now: float) -> bool:
        return now - session.seen > SESSION_IDLE_S or now - session.created > SESSION_MAX_S


def csrf_ok(session: Session, offered: str | None) -> bool:
    return bool(offered) and hmac.compare_digest(session.csrf.encode(),
                                                 (offered or "").encode())


@dataclass
class _Failures:
    count: int = 0
    until: float = 0.0


@dataclass
class LoginLimiter:
    """Growing delay per client after wrong tokens: 1 s, 2 s, 4 s ... up to 60 s."""

    clock: Callable[[], float]
    max_clients: int = 256
    _clients: OrderedDict[str, _Failures] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_s(self, client: str) -> float:
        """Seconds this client must still wait before its next try (0: may try now)."""
        with self._lock:
            entry = self._clients.get(client)
            return max(0.0, entry.until - self.clock()) if entry else 0.0

    def failed(self, client: str) -> float:
        """Count a wrong token; returns the delay now imposed."""
        with self._lock:
            entry = self._clients.pop(client, None) or _Failures()
            entry.count += 1
            delay = min(MAX_DELAY_S, FIRST_DELAY_S * 2.0 ** min(entry.count - 1, 16))
            entry.until = self.clock() + delay
            self._clients[client] = entry
            while len(self._clients) > self.max_clients:
                self._clients.popitem(last=False)
            return delay

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._clients.pop(client, None)


def token_problem(path: Path) -> str:
    """Why nobody can log in, for the login page (no token file, or used up)."""
    return (f"no unused installer token in {path}: on the gate run `gate-agent web token` "
            "(or copy the provisioning bundle's web-token there)")


