"""Gate modes: normal (scan to enter), lockdown (nobody enters) and free (door held open).

The standing mode comes from ``[policy] mode``; the centre can switch it with a signed
command, optionally for a duration after which the gate reverts by itself. A commanded
mode is persisted (Meta) so a power cut during a lockdown does not reopen the gate.
Wall-clock ``until`` because it must survive restarts; only the controller thread calls.
"""

from __future__ import annotations

import logging
from typing import Any, Literal, Protocol, cast

from agent.core.bounds import MAX_MODE_S, time_problem

log = logging.getLogger(__name__)

Mode = Literal["normal", "lockdown", "free"]
MODES: tuple[Mode, ...] = ("normal", "lockdown", "free")
META_KEY = "mode"


class MetaLike(Protocol):
    def get(self, key: str, default: Any = None) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...


class ModeKeeper:
    """The current mode, its expiry and the standing default it reverts to."""

    def __init__(self, default: Mode, meta: MetaLike | None, now: float) -> None:
        self.default: Mode = default
        self._meta = meta
        self.mode: Mode = default
        self.until: float | None = None
        # A saved mode that no command could have set (a bad end time): damage, ignored.
        self.damage: str | None = None
        saved = meta.get(META_KEY) if meta is not None else None
        if saved is not None:
            self._restore(saved, now)

    def _restore(self, saved: Any, now: float) -> None:
        until = saved.get("until") if isinstance(saved, dict) else None
        problem = None
        if not isinstance(saved, dict) or saved.get("mode") not in MODES:
            problem = f"saved mode {saved!r:.80} is not one of {', '.join(MODES)}"
        elif until is not None:
            problem = time_problem(until, "saved mode end")
            if problem is None and until > now + MAX_MODE_S:
                problem = (f"saved mode end is {until - now:.0f} s away, more than the "
                           f"{MAX_MODE_S // 86400} days a command may set")
        if problem:
            self.damage = f"{problem}: ignored, mode {self.default}"
            log.error("state damage: %s", self.damage)
            return
        if until is None or until > now:
            self.mode = cast(Mode, saved["mode"])
            self.until = float(until) if until is not None else None
            log.info("restored commanded mode %s (until %s)", self.mode, self.until)

    def set(self, mode: Mode, duration_s: float | None, now: float) -> None:
        """Switch mode; with a duration the gate reverts to the default afterwards."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if duration_s is not None and not 0 <= duration_s <= MAX_MODE_S:
            raise ValueError(f"mode duration must be at most {MAX_MODE_S} s, got {duration_s}")
        self.mode = mode
        self.until = now + duration_s if duration_s else None
        self._persist()

    def tick(self, now: float) -> bool:
        """Revert an expired commanded mode; True when the mode changed."""
        if self.until is not None and now >= self.until:
            log.info("mode %s expired, back to %s", self.mode, self.default)
            self.mode, self.until = self.default, None
            self._persist()
            return True
        return False

    def _persist(self) -> None:
        if self._meta is None:
            return
        if self.mode == self.default and self.until is None:
            self._meta.set(META_KEY, None)
        else:
            self._meta.set(META_KEY, {"mode": self.mode, "until": self.until})
