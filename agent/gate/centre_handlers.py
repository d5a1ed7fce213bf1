"""What the centre sends a gate, handled on the controller thread: commands and time.

Commands (``gate/v1/{site}/{gate}/cmd``) are verified by ``parse_command`` (signature
by an ops key, target, expiry, replay), remembered until they expire, executed through
the controller (open, mode, resync, status, resend), and answered on ``cmd/result``;
open and mode are also recorded in the entry log. ``resync`` asks the centre for its
full revocation list; ``resend`` sends a range of past events again (agent/store/resend.py).
Signed time messages go to the timekeeper. Revocation lists (full or delta) are
agent.gate.upkeep's (install, retry after a write error, resync while unknown). The
controller builds one of these and registers its handlers when it is built.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Protocol, cast

from agent.core.errors import ProtocolError
from agent.core.events import Inbound
from agent.gate.modes import Mode
from agent.gate.parts import CommandSync, Parts, Requeue
from agent.gate.timekeeper import Timekeeper
from agent.protocol.command import Command, CommandRefused, parse_command
from agent.protocol.timemsg import parse_time

log = logging.getLogger(__name__)


class GateActions(Protocol):
    """What a command may make the gate do (the controller)."""

    @property
    def mode(self) -> Mode: ...

    def open_once(self, cause: str, cmd_id: str | None = None) -> bool: ...

    def set_mode(self, mode: Mode, duration_s: float | None, cause: str) -> None: ...


class CentreHandlers:
    """Command and time handlers of one gate (controller thread only)."""

    def __init__(
        self, controller: GateActions, parts: Parts, timekeeper: Timekeeper | None,
        outbox: Requeue | None = None,
    ) -> None:
        self._controller = controller
        self._parts = parts
        self.sync: CommandSync | None = None  # set when the link to the centre exists
        self._timekeeper = timekeeper
        self._outbox = outbox
        # Signed messages admitted and then refused here (bounds, dates, versions), by kind:
        # status inbound.refused_later, so nothing refused is unseen.
        self.refused: Counter[str] = Counter()

    def on_command(self, ev: Inbound) -> None:
        parts = self._parts
        now = parts.clock.now()
        cfg = parts.config
        try:
            cmd = parse_command(ev.payload, parts.keyring, cfg.gate.site, cfg.gate.id, now,
                                parts.replays)
        except CommandRefused as exc:
            log.warning("command %s refused: %s", exc.cmd_id or "(unreadable)", exc)
            self._result(exc.cmd_id or "", False, exc.reason, exc.detail)
            return
        parts.replays.remember(cmd.replay_key, float(cmd.expires_at))
        ok, reason, detail = self._execute(cmd)
        log.info("command %s %s: %s", cmd.id, cmd.action, reason)
        self._result(cmd.id, ok, reason, detail)

    def _execute(self, cmd: Command) -> tuple[bool, str, str]:
        controller = self._controller
        if cmd.action == "open":
            if controller.open_once("open", cmd.id):
                return True, "ok", "door released for one pulse"
            if controller.mode == "lockdown":
                return False, "lockdown", "the gate is in lockdown"
            return False, "internal_error", "the entry log could not record the opening"
        if cmd.action == "mode":
            mode = cast(Mode, cmd.mode)
            controller.set_mode(mode, float(cmd.duration_s) if cmd.duration_s else None,
                                f"command {cmd.id}")
            until = f" for {cmd.duration_s} s" if cmd.duration_s else ""
            return True, "ok", f"mode {mode}{until}"
        if cmd.action == "resync":
            if self.sync is not None:
                self.sync.request_resync("command", self._parts.revocations.version)
            return True, "ok", "full revocation list requested"
        if cmd.action == "resend":
            return self._resend(cmd)
        if self.sync is not None:  # "status"
            self.sync.publish_status_now()
        return True, "ok", "status published"

    def _resend(self, cmd: Command) -> tuple[bool, str, str]:
        first, last = cmd.seq_from, cmd.seq_to
        if self._outbox is None or first is None or last is None:
            return False, "unsupported", "this gate keeps no outbox to send again from"
        changed, kept = self._outbox.requeue(first, last)
        if self.sync is not None:
            self.sync.notify()
        asked = last - first + 1
        if not kept:
            return False, "not_found", (f"no event with seq {first}-{last} is kept here "
                                        "(pruned after state.retention_days, or not written yet)")
        detail = f"{kept} event(s) of seq {first}-{last} will be sent again"
        if kept < asked:
            detail += f"; {asked - kept} not kept here (pruned or not written yet)"
        log.info("resend %s-%s: %d kept, %d made pending again", first, last, kept, changed)
        return True, "ok", detail

    def _result(self, cmd_id: str, ok: bool, reason: str, detail: str) -> None:
        if self.sync is None:
            return
        try:
            self.sync.publish_result(cmd_id, ok, reason, detail)
        except Exception:
            log.exception("publishing the result of command %s failed", cmd_id)

    def on_time(self, ev: Inbound) -> None:
        if self._timekeeper is None:
            return
        try:
            msg = parse_time(ev.payload, self._parts.keyring, self._parts.clock.now())
        except ProtocolError as exc:
            log.warning("time message refused: %s", exc)
            self.refused["time"] += 1
            return
        update = self._timekeeper.accept_time(msg)
        log.info("centre time message: %s", update.reason)
