"""What every ``gate-agent check`` item returns and is given: the result line and the
installer's options (shared by the checklist and the scanner items)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["pass", "fail", "skip"]
Ask = Callable[[str], bool]


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    detail: str
    hint: str = ""
    # What the check measured or read, for --json (the scanner: device, text, decoder, ms).
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status != "fail"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"check": self.name, "status": self.status, "ok": self.ok,
                               "detail": self.detail, "hint": self.hint}
        out.update((k, v) for k, v in self.data.items() if k not in out)
        return out


@dataclass
class CheckOptions:
    ask: Ask | None = None  # None: cannot ask (no TTY) -> the relay click is skipped
    assume_yes: bool = False  # --yes: click without asking
    pins: Literal["env", "mock", "native"] = "env"
    scan_seconds: float = 5.0  # how long the scanner check waits for a code
    prompt: Callable[[str], None] | None = None  # tells the installer when to show the card
    broker_timeout_s: float = 8.0
    clock_probe: Callable[[], bool | None] | None = None
