"""One exception tree for the whole agent.

Leaves also subclass the matching builtin so callers that only know Python's
exceptions still catch them sensibly. Every message says what was wrong and what
to do about it: these strings reach installers and centre staff verbatim.
"""

from __future__ import annotations


class GateError(Exception):
    """Base of every error the agent raises on purpose."""


class ConfigError(GateError, ValueError):
    """The configuration file is missing, unreadable or invalid.

    ``problems`` holds one ``dotted.path: what is wrong`` line per problem, so an
    installer sees every mistake at once instead of fixing them one start at a time.
    """

    def __init__(self, problems: list[str] | str, path: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.path = path
        where = f"config {path}: " if path else "config: "
        super().__init__(where + "; ".join(self.problems))


class UsageError(GateError, ValueError):
    """A command was called with arguments that cannot work (exit code 2)."""


class KeyFileError(GateError, ValueError):
    """A key file is missing, unreadable, of the wrong type or has unsafe permissions."""


class ProtocolError(GateError, ValueError):
    """A credential, presentation or signed document failed a check.

    ``reason`` is one of the stable reason codes in :mod:`agent.core.reasons`.
    """

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class RevocationListError(GateError, ValueError):
    """A revocation list was refused; nothing was changed.

    ``gap`` is true when the list is valid but does not follow the installed version
    (a delta whose base is not ours): the gate then needs a full list.
    """

    def __init__(self, message: str, *, gap: bool = False) -> None:
        self.gap = gap
        super().__init__(message)


class StateError(GateError, RuntimeError):
    """Local state under ``[state] dir`` cannot be read or written."""


class StateInUseError(StateError):
    """Another process (normally the daemon) holds the state folder's writer lock."""


class CorruptStateError(StateError):
    """A state file exists but cannot be trusted (torn, empty, garbage)."""


class HardwareError(GateError, RuntimeError):
    """A pin, camera or serial port cannot be used as configured."""
