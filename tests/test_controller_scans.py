"""The controller's scan path: decide, record durably, then actuate; deny on any doubt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.core.events import DoorInput, Inbound, Scan
from agent.core.timefmt import format_instant
from tests.controller_support import Rig, controller_rig


def _scan(rig: Rig, text: str) -> dict[str, object]:
    rig.controller.process(Scan(text, "sim", rig.clock.now(), rig.clock.monotonic()))
    return rig.seen[-1]


def test_valid_code_is_recorded_before_the_relay_releases(tmp_path: Path) -> None:
    with controller_rig(tmp_path) as rig:
        order: list[str] = []
        original = rig.door.pulse

        def pulse_after_row(seconds: float) -> None:
            order.append(f"pulse with {len(rig.rows())} rows")
            original(seconds)

        rig.door.pulse = pulse_after_row  # type: ignore[method-assign]
        shown = _scan(rig, rig.kit.valid_code("C-1", rig.clock.now()))
        assert shown["granted"] is True and shown["reason"] == "ok" and shown["sub"] == "C-1"
        assert order == ["pulse with 1 rows"]
        (row,) = rig.rows()
        assert row["granted"] is True and row["door"] == "unlocked" and row["kind"] == "scan"
        assert row["seq"] == 1 and row["site"] == rig.kit.site and row["method"] == "sim"
        assert rig.door.unlocked and rig.relay_went_high()


def test_a_rows_time_is_the_decision_clocks_instant_not_its_printed_form(
    tmp_path: Path,
) -> None:
    """The entry log keeps the instant the scan was judged at (``--since``, prune), as the
    number the recorder had, not the millisecond string it printed into ``ts``."""
    with controller_rig(tmp_path) as rig:
        rig.clock.advance(((0.4 - rig.clock.now() * 1000 % 1) % 1) / 1000)  # x.xxx4 s
        judged_at = rig.clock.now()
        _scan(rig, rig.kit.valid_code("C-1", judged_at))
        (entry,) = rig.entry_log.history()
        assert entry.ts == judged_at and entry.ts != round(judged_at, 3)
        assert entry.event["ts"] == format_instant(judged_at)


def test_denials_are_recorded_and_never_touch_the_relay(tmp_path: Path) -> None:
    with controller_rig(tmp_path) as rig:
        now = rig.clock.now()
        valid = rig.kit.valid_code("C-1", now)
        expired = rig.kit.presentation(
            rig.kit.credential("C-2", now, not_before=now - 86400, ttl_s=3600), "C-2", now
        )
        wrong = rig.kit.presentation(rig.kit.credential("C-3", now, scope="elsewhere"), "C-3", now)
        static = rig.kit.credential("C-4", now, holder=False)
        reasons = [_scan(rig, t)["reason"] for t in (expired, wrong, "garbage", static)]
        assert reasons == ["expired", "wrong_scope", "malformed", "holder_required"]
        assert not rig.relay_went_high()
        _scan(rig, valid)
        rig.door.lock()
        assert _scan(rig, valid)["reason"] == "replayed"  # the same presentation again
        rows = rig.rows()
        assert [r["reason"] for r in rows] == [*reasons, "ok", "replayed"]
        assert [r["door"] for r in rows] == ["none"] * 4 + ["unlocked", "none"]
        assert not rig.door.unlocked


def test_revocation_list_from_the_centre_revokes_the_next_scan(tmp_path: Path) -> None:
    with controller_rig(tmp_path) as rig:
        now = rig.clock.now()
        rig.controller.process(Inbound("revocations_full", rig.kit.revocation_list(3, now)))
        assert rig.revocations.version == 3
        assert _scan(rig, rig.kit.valid_code("C-9999", now))["reason"] == "revoked"
        # An older list, a tampered one and garbage change nothing.
        rig.controller.process(Inbound("revocations_full", rig.kit.revocation_list(2, now, ())))
        tampered = bytearray(rig.kit.revocation_list(4, now, ()))
        tampered[-5] ^= 0xFF
        rig.controller.process(Inbound("revocations_full", bytes(tampered)))
        rig.controller.process(Inbound("revocations_delta", b"\x00garbage"))
        assert rig.revocations.version == 3
        assert _scan(rig, rig.kit.valid_code("C-9999", now))["reason"] == "revoked"


def test_a_failing_entry_log_denies_and_keeps_the_door_locked(tmp_path: Path) -> None:
    with controller_rig(tmp_path) as rig:
        rig.entry_log.close()  # the disk went away
        shown = _scan(rig, rig.kit.valid_code("C-1", rig.clock.now()))
        assert shown["granted"] is False and shown["reason"] == "internal_error"
        assert shown["recorded"] is False
        assert not rig.relay_went_high()
        status = rig.controller.status()
        assert status["append_failures"] == 1 and "entry_log" in status["alarms"]


def test_lockdown_denies_and_free_mode_holds_the_door_until_it_expires(tmp_path: Path) -> None:
    with controller_rig(tmp_path) as rig:
        now = rig.clock.now()
        rig.controller.set_mode("lockdown", None, "test")
        assert _scan(rig, rig.kit.valid_code("C-1", now))["reason"] == "lockdown"
        assert not rig.relay_went_high()
        rig.controller.set_mode("free", 60, "test")
        assert rig.door.unlocked
        assert rig.controller.status()["mode"] == "free"
        rig.clock.advance(61)
        rig.controller.process(DoorInput("contact_closed", rig.clock.now()))
        assert rig.controller.mode == "normal" and not rig.door.unlocked
        kinds = [(r["kind"], r.get("mode")) for r in rig.rows() if r["kind"] == "mode"]
        assert kinds == [("mode", "lockdown"), ("mode", "free"), ("mode", "normal")]


def test_rate_limit_records_a_summary_instead_of_every_denial(tmp_path: Path) -> None:
    with controller_rig(tmp_path, policy={"denials_per_minute": 5}) as rig:
        for n in range(12):
            _scan(rig, f"garbage-{n}")
        rows = rig.rows()
        assert [r["reason"] for r in rows] == ["malformed"] * 5 + ["rate_limited"]
        # A real courier is not locked out by the flood.
        assert _scan(rig, rig.kit.valid_code("C-1", rig.clock.now()))["granted"] is True
        assert rig.seen[-2]["reason"] == "rate_limited"  # every scan is still shown
        rig.clock.advance(61)
        rig.controller.process(DoorInput("contact_closed", rig.clock.now()))
        summary = rig.rows()[-1]
        # 12 denials: 5 rows, the first rate_limited row, 6 counted (not the first again).
        assert summary["kind"] == "rate_limit" and summary["suppressed"] == 6
        assert summary["reasons"] == {"malformed": 6}
        assert _scan(rig, "garbage-again")["reason"] == "malformed"


def test_exit_button_and_alarms_are_recorded(tmp_path: Path) -> None:
    with controller_rig(tmp_path) as rig:
        rig.controller.process(DoorInput("exit", rig.clock.now()))
        assert rig.door.unlocked
        rig.door.lock()  # the pulse ended; the controller notices on its next tick
        rig.controller.process(DoorInput("contact_closed", rig.clock.now()))
        rig.clock.advance(10)
        rig.controller.process(DoorInput("contact_open", rig.clock.now()))  # nobody released it
        rig.controller.process(DoorInput("fire", rig.clock.now()))
        assert rig.door.unlocked  # fire: held released
        rig.controller.process(DoorInput("fire_clear", rig.clock.now()))
        assert not rig.door.unlocked
        rows = rig.rows()
        assert rows[0]["kind"] == "exit" and rows[0]["method"] == "exit"
        alarms = [r["alarm"] for r in rows if r["kind"] == "alarm"]
        assert alarms == ["forced", "fire", "fire_clear"]


def test_the_loop_survives_a_bad_event_and_drains_on_stop(tmp_path: Path) -> None:
    with controller_rig(tmp_path) as rig:
        rig.controller.start()
        now = rig.clock.now()
        rig.controller.submit("not an event")  # type: ignore[arg-type]
        codes = [rig.kit.valid_code(f"C-{n}", now) for n in range(5)]
        for code in codes:
            rig.controller.submit(Scan(code, "sim", now, 0.0))
        assert rig.controller.stop(10)
        assert rig.controller.errors == 1
        assert [r["reason"] for r in rig.rows()] == ["ok"] * 5
        assert len(rig.controller.latencies) == 5


def test_a_live_code_granted_before_the_entry_log_was_lost_is_refused_after_it(
    tmp_path: Path,
) -> None:
    with controller_rig(tmp_path) as rig:
        now = rig.clock.now()
        code = rig.kit.valid_code("C-1", now)
        rig.controller.process(Scan(code, "sim", now, 0.0))
        assert [r["reason"] for r in rig.rows()] == ["ok"]
        kit = rig.kit
    for name in ("outbox.db", "outbox.db-wal", "outbox.db-shm"):  # the card lost the log
        (tmp_path / "state" / name).unlink(missing_ok=True)
    with controller_rig(tmp_path, kit=kit) as rig:  # replay keys went with the database
        now = rig.clock.now()
        rig.controller.process(Scan(code, "sim", now, 0.0))
        rig.clock.advance(40)  # a code made after the recovery window
        later = rig.clock.now()
        rig.controller.process(Scan(kit.valid_code("C-2", later), "sim", later, 0.0))
        scans = [r["reason"] for r in rig.rows() if r["kind"] == "scan"]
        assert scans == ["replayed", "ok"]  # fails closed, and the gate runs on
        assert any(r.get("alarm") == "entry_log_recovered" for r in rig.rows())
        assert "seq 1-1 are lost" in rig.controller.status()["alarms"]["state_recovered"]


def test_a_relay_fault_after_the_row_locks_and_adds_an_error_row_not_a_second_scan(
    tmp_path: Path,
) -> None:
    with controller_rig(tmp_path) as rig:

        def broken_pulse(seconds: float) -> None:
            raise OSError("GPIO17: pin driver failed")

        rig.door.pulse = broken_pulse  # type: ignore[method-assign]
        _scan(rig, rig.kit.valid_code("C-1", rig.clock.now()))
        rows = rig.rows()
        assert [(r["kind"], r["reason"]) for r in rows] == [
            ("scan", "ok"), ("error", "internal_error"),
        ]
        assert rows[1]["after_seq"] == rows[0]["seq"] and "pin driver" in rows[1]["detail"]
        assert not rig.door.unlocked
        status = rig.controller.status()
        assert status["errors"] == 1 and "controller_error" in status["alarms"]


def test_a_relay_left_released_by_its_driver_is_locked_by_the_controller(tmp_path: Path) -> None:
    with controller_rig(tmp_path) as rig:
        _scan(rig, rig.kit.valid_code("C-1", rig.clock.now()))
        rig.door.hold_unlocked()  # the driver's timer "forgot" to end the pulse
        rig.clock.advance(rig.controller.parts.config.door.unlock_s + 0.5)
        rig.controller.process(DoorInput("contact_closed", rig.clock.now()))
        assert rig.door.unlocked  # still within the pulse plus its grace
        rig.clock.advance(1.0)
        rig.controller.process(DoorInput("contact_closed", rig.clock.now()))
        assert not rig.door.unlocked
        assert "relay_overrun" in rig.controller.status()["alarms"]


def test_an_error_locks_a_pulse_but_keeps_the_fire_hold(tmp_path: Path) -> None:
    def broken_handler(_ev: Inbound) -> None:
        raise RuntimeError("handler bug")

    with controller_rig(tmp_path, handlers={"boom": broken_handler}) as rig:
        _scan(rig, rig.kit.valid_code("C-1", rig.clock.now()))
        assert rig.door.unlocked
        rig.controller.process(Inbound("boom", b""))
        assert not rig.door.unlocked  # the error ends the pulse
        rig.controller.process(DoorInput("fire", rig.clock.now()))
        assert rig.door.unlocked
        rig.controller.process(Inbound("boom", b""))
        assert rig.door.unlocked  # life safety: the fire hold is not the error's to undo
        rig.controller.process(DoorInput("fire_clear", rig.clock.now()))
        assert not rig.door.unlocked
        assert rig.controller.errors == 2


@pytest.mark.parametrize(("policy", "reason", "pulsed"), [("deny", "clock_untrusted", False),
                                                            ("allow", "ok", True)])
def test_an_unsynchronised_clock_denies_or_is_recorded_as_untrusted(
    tmp_path: Path, policy: str, reason: str, pulsed: bool
) -> None:
    with controller_rig(tmp_path, clock_probe=lambda: False,
                        policy={"on_untrusted_clock": policy}) as rig:
        now = rig.clock.now()
        rig.controller.process(Scan(rig.kit.valid_code("C-1", now), "sim", now, 0.0))
        (row,) = rig.rows()
        assert (row["reason"], row["clock_trusted"]) == (reason, False)
        assert rig.relay_went_high() is pulsed


@pytest.mark.parametrize("offset_s", [-3600.0, -10.0, 10.0, 3600.0])
def test_a_live_code_replayed_within_its_window_is_refused_whatever_the_system_clock_says(
    tmp_path: Path, offset_s: float
) -> None:
    from agent.demo.kit import OPS_KID
    from agent.protocol.timemsg import sign_time

    with controller_rig(tmp_path, clock_probe=lambda: False, decide_on_timekeeper=True) as rig:
        real = rig.clock.now()
        rig.clock.advance(offset_s)  # the system clock is off; the centre's time is not
        keeper = rig.controller.parts.trust
        assert keeper is not None
        request = keeper.time_request(connected_now=True)
        assert request is not None
        rig.controller.process(Inbound("time", sign_time(real, rig.kit.ops, OPS_KID,
                                                         nonce=request["nonce"])))
        assert str(keeper.state) == "centre"
        code = rig.kit.valid_code("C-1", real)
        rig.controller.process(Scan(code, "sim", real, rig.clock.monotonic()))
        rig.clock.advance(28)  # a screenshot, 28 s later: still inside its window
        rig.controller.process(DoorInput("contact_closed", rig.clock.now()))  # upkeep ticks
        rig.controller.process(Scan(code, "sim", real + 28, rig.clock.monotonic()))
        scans = [(r["reason"], r["clock"]) for r in rig.rows() if r["kind"] == "scan"]
        assert scans == [("ok", "centre"), ("replayed", "centre")]


def test_rate_limit_counts_are_exact_after_stop(tmp_path: Path) -> None:
    with controller_rig(tmp_path, policy={"denials_per_minute": 5}) as rig:
        rig.controller.start()
        now = rig.clock.now()
        for n in range(40):
            rig.controller.submit(Scan(f"garbage-{n}", "sim", now, 0.0))
        assert rig.controller.stop(10)  # SIGTERM's path: drain, then stop
        rows = rig.rows()
        one_by_one = sum(1 for r in rows if r["kind"] == "scan")
        summarised = sum(r["suppressed"] for r in rows if r["kind"] == "rate_limit")
        assert one_by_one == 6 and one_by_one + summarised == 40  # each denial counted once


def test_a_list_that_failed_to_install_on_a_write_error_is_installed_once_it_can_be(
    tmp_path: Path,
) -> None:
    import os

    with controller_rig(tmp_path) as rig:
        now = rig.clock.now()
        # A real write failure: the temp name the list is written to is taken by a folder.
        blocker = tmp_path / "state" / f".revocations.snap.tmp-{os.getpid()}"
        blocker.mkdir()
        rig.controller.process(Inbound("revocations_full",
                                       rig.kit.revocation_list(2, now, ("C-5",))))
        assert rig.revocations.version == 1 and rig.controller.upkeep.install_failures == 1
        blocker.rmdir()  # space freed
        rig.clock.advance(11)
        rig.controller.process(DoorInput("contact_closed", rig.clock.now()))  # a tick
        assert rig.revocations.version == 2
        code = rig.kit.valid_code("C-5", rig.clock.now())
        rig.controller.process(Scan(code, "sim", rig.clock.now(), rig.clock.monotonic()))
        assert rig.rows()[-1]["reason"] == "revoked"


class _Link:
    """The link to the centre as the controller sees it: connected, recording requests."""

    connected = True

    def __init__(self) -> None:
        self.resyncs: list[tuple[str, int | None]] = []
        self.time_requests: list[dict[str, Any]] = []

    def notify(self) -> None:
        pass

    def publish_result(self, cmd_id: str, ok: bool, reason: str, detail: str = "") -> None:
        pass

    def request_resync(self, reason: str, have_version: int | None = None) -> None:
        self.resyncs.append((reason, have_version))

    def request_time(self, request: dict[str, Any]) -> None:
        self.time_requests.append(request)

    def publish_status_now(self) -> None:
        pass


def test_a_gate_without_a_list_asks_for_one_at_connect_and_again_until_it_has_it(
    tmp_path: Path,
) -> None:
    link = _Link()
    with controller_rig(tmp_path, with_list=False, sync=link, clock_probe=lambda: False) as rig:
        rig.controller.process(Inbound("connected", b""))
        assert len(link.resyncs) == 1 and len(link.time_requests) == 1  # at once
        rig.clock.advance(31)
        rig.controller.process(DoorInput("contact_closed", rig.clock.now()))
        assert len(link.resyncs) == 2  # and again while it has none
        rig.controller.process(Inbound("revocations_full",
                                       rig.kit.revocation_list(1, rig.clock.now())))
        rig.clock.advance(31)
        rig.controller.process(DoorInput("contact_closed", rig.clock.now()))
        assert len(link.resyncs) == 2 and rig.revocations.state == "ok"
