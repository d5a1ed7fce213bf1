"""The centre's ``resend`` command: acknowledged rows go back to the outbox, in range only."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.core.events import Inbound, Scan
from agent.demo.kit import OPS_KID
from agent.protocol.command import (
    MAX_RESEND,
    Command,
    CommandRefused,
    make_command,
    parse_command,
    sign_command,
)
from tests.controller_support import Rig, controller_rig


def _scans(rig: Rig, n: int) -> None:
    for k in range(n):
        now = rig.clock.now()
        rig.controller.process(Scan(f"garbage-{k}", "sim", now, rig.clock.monotonic()))


def _signed(rig: Rig, cmd: Command) -> bytes:
    return sign_command(cmd, rig.kit.ops, OPS_KID)


class Results:
    """What the sync service would publish on cmd/result (CommandSync, in memory)."""

    def __init__(self) -> None:
        self.results: list[tuple[str, bool, str, str]] = []
        self.notified = 0

    def notify(self) -> None:
        self.notified += 1

    def publish_result(self, cmd_id: str, ok: bool, reason: str, detail: str = "") -> None:
        self.results.append((cmd_id, ok, reason, detail))

    def request_resync(self, reason: str, have_version: int | None = None) -> None:
        pass

    def publish_status_now(self) -> None:
        pass


def test_resend_makes_acknowledged_rows_pending_again_from_the_first_one(tmp_path: Path) -> None:
    with controller_rig(tmp_path) as rig:
        _scans(rig, 5)
        outbox = rig.outbox
        rig.entry_log.ack([1, 2, 3, 4])  # 5 still pending
        # The uplink's cursor is past 5 already; the rewind starts it at the first requeued row.
        assert outbox.pending(after_seq=5) == []
        cmd = make_command("resend", f"{rig.kit.site}/{rig.kit.gate}", now=rig.clock.now(),
                           seqs=(2, 9))
        rig.controller.process(Inbound("cmd", _signed(rig, cmd)))
        assert [e.seq for e in outbox.pending(after_seq=5)] == [2, 3, 4, 5]
        assert outbox.pending(after_seq=5) == []  # the rewind happens once
        assert rig.entry_log.backlog == 4
        # The same command again is a replay and changes nothing.
        rig.entry_log.ack([2, 3, 4, 5])
        rig.controller.process(Inbound("cmd", _signed(rig, cmd)))
        assert rig.entry_log.backlog == 0


def test_resend_of_rows_no_longer_kept_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    sync = Results()
    with controller_rig(tmp_path, sync=sync) as rig:
        _scans(rig, 2)
        cmd = make_command("resend", f"{rig.kit.site}/{rig.kit.gate}", now=rig.clock.now(),
                           seqs=(50, 60))
        rig.controller.process(Inbound("cmd", _signed(rig, cmd)))
        ((cmd_id, ok, reason, detail),) = sync.results
        assert (cmd_id, ok, reason) == (cmd.id, False, "not_found") and "retention" in detail
        assert rig.entry_log.backlog == 2


@pytest.mark.parametrize("seqs", [(0, 3), (5, 4), (1, MAX_RESEND + 1)])
def test_resend_with_a_bad_range_cannot_be_built(seqs: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="resend"):
        make_command("resend", "s/g", now=1_000_000, seqs=seqs)


def test_a_signed_resend_without_its_range_is_malformed(tmp_path: Path) -> None:
    with controller_rig(tmp_path) as rig:
        target = f"{rig.kit.site}/{rig.kit.gate}"
        now = rig.clock.now()
        no_range = Command("c1", rig.kit.site, rig.kit.gate, "resend", int(now), int(now) + 60)
        range_on_open = Command("c2", rig.kit.site, rig.kit.gate, "open", int(now),
                                int(now) + 60, seq_from=1, seq_to=2)
        for cmd in (no_range, range_on_open):
            with pytest.raises(CommandRefused) as refused:
                parse_command(_signed(rig, cmd), rig.controller.parts.keyring, rig.kit.site,
                              rig.kit.gate, now, rig.controller.parts.replays)
            assert refused.value.reason == "malformed"
        good = make_command("resend", target, now=now, seqs=(1, 2))
        parsed = parse_command(_signed(rig, good), rig.controller.parts.keyring, rig.kit.site,
                               rig.kit.gate, now, rig.controller.parts.replays)
        assert (parsed.seq_from, parsed.seq_to) == (1, 2)
