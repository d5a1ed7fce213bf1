"""Passwords, login rate limiting and CSRF tokens for the console.

Passwords are hashed with Argon2id (argon2-cffi's defaults, RFC 9106's second
recommended profile); nothing here is home-made crypto. An unknown user name costs the
same hash verification as a known one, so timing does not tell which names exist. The
rate limiter counts failed logins per name and per client address in a sliding window
(in memory: one console process per centre), and refuses further tries until the window
has room again, without even checking the password.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from agent.core.errors import UsageError

MIN_PASSWORD = 10
MAX_PASSWORD = 256
MAX_KEYS = 10_000  # names and addresses the limiter remembers before pruning

_hasher = PasswordHasher()
_DUMMY = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    """Argon2id hash; UsageError for a password too short or too long."""
    if len(password) < MIN_PASSWORD:
        raise UsageError(f"the password must have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UsageError(f"the password must have at most {MAX_PASSWORD} characters")
    return _hasher.hash(password)


def verify_password(hashed: str | None, password: str) -> bool:
    """True only for the right password; a missing user still costs one verification."""
    if len(password) > MAX_PASSWORD:
        return False
    try:
        return _hasher.verify(hashed or _DUMMY, password) and hashed is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_token() -> str:
    return secrets.token_urlsafe(32)


def same_token(expected: object, given: object) -> bool:
    """Constant-time comparison; anything not a non-empty string is a mismatch."""
    if not isinstance(expected, str) or not isinstance(given, str) or not expected:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


class LoginLimiter:
    """At most ``attempts`` failures per key within ``window_s``; thread-safe."""

    def __init__(self, attempts: int = 5, window_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures.setdefault(key, deque())
        while q and now - q[0] > self.window_s:
            q.popleft()
        return q

    def blocked_for(self, *keys: str) -> float:
        """Seconds until one more try is allowed for all ``keys`` (0: allowed now)."""
        now = self._clock()
        wait = 0.0
        with self._lock:
            for key in keys:
                q = self._recent(key, now)
                if len(q) >= self.attempts:
                    wait = max(wait, self.window_s - (now - q[0]))
        return wait

    def failed(self, *keys: str) -> None:
        now = self._clock()
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)
            if len(self._failures) > MAX_KEYS:  # many names tried: forget the settled ones
                for key in [k for k in self._failures if not self._recent(k, now)]:
                    del self._failures[key]

    def succeeded(self, name_key: str) -> None:
        with self._lock:
            self._failures.pop(name_key, None)
