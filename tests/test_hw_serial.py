"""Serial QR modules on a real pseudo-terminal pair: lines, size cap, unplug and replug."""

from __future__ import annotations

import os
import pty
import threading
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from hw.serial_scanner import LineSplitter, SerialSource
from hw.settings import SerialSettings


class Pty:
    """A pseudo-terminal standing in for a USB-CDC scanner, reachable through a symlink
    (the stable /dev/serial/by-id name) that can be unplugged and plugged back in."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master = -1
        self.plug()

    def plug(self) -> None:
        master, slave = pty.openpty()
        tty.setraw(slave)
        name = os.ttyname(slave)
        os.close(slave)
        self.master = master
        tmp = self.link.with_suffix(".new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(name)
        tmp.replace(self.link)

    def unplug(self) -> None:
        self.link.unlink(missing_ok=True)
        os.close(self.master)
        self.master = -1

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        if self.master >= 0:
            os.close(self.master)
            self.master = -1


class Got:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []
        self._cond = threading.Condition()

    def __call__(self, text: str, method: str) -> None:
        with self._cond:
            self.items.append((text, method))
            self._cond.notify_all()

    def wait_for(self, n: int, timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.items) >= n, timeout)


@pytest.fixture
def device(tmp_path: Path) -> Iterator[Pty]:
    p = Pty(tmp_path / "ttyACM0")
    try:
        yield p
    finally:
        p.close()


def _source(device: Pty, terminator: str = "any", dedupe: float = 0.0) -> SerialSource:
    return SerialSource(
        SerialSettings(port=str(device.link), baud=9600, terminator=terminator),  # type: ignore[arg-type]
        dedupe,
        max_line=64,
        backoff_s=(0.05, 0.2),
    )


@contextmanager
def _reading(device: Pty, **options: Any) -> Iterator[tuple[SerialSource, Got]]:
    """A source reading ``device`` into a collector, running before the body, stopped after."""
    got = Got()
    source = _source(device, **options)
    source.start(got)
    try:
        assert _wait_state(source, "running")
        yield source, got
    finally:
        source.stop()


def _wait_state(source: SerialSource, state: str, timeout: float = 5.0) -> bool:
    ev = threading.Event()
    for _ in range(int(timeout / 0.02)):
        if source.status()["state"] == state:
            return True
        ev.wait(0.02)
    return False


def test_lines_with_any_terminator_become_scans(device: Pty) -> None:
    with _reading(device) as (_, got):
        device.send(b"QM1:ONE\r\nQM1:TWO\rQM1:TH")
        device.send(b"REE\n")
        assert got.wait_for(3)
    assert got.items == [("QM1:ONE", "serial"), ("QM1:TWO", "serial"), ("QM1:THREE", "serial")]


def test_overlong_line_is_discarded_not_buffered(device: Pty) -> None:
    with _reading(device) as (source, got):
        device.send(b"X" * 5000 + b"\r\n" + b"QM1:AFTER\r\n")
        assert got.wait_for(1)
    assert got.items == [("QM1:AFTER", "serial")]
    assert source.status()["discarded"] == 1


def test_repeated_code_within_window_is_one_scan(device: Pty) -> None:
    with _reading(device, dedupe=5.0) as (_, got):
        device.send(b"QM1:SAME\r\nQM1:SAME\r\nQM1:OTHER\r\n")
        assert got.wait_for(2)
    assert [t for t, _ in got.items] == ["QM1:SAME", "QM1:OTHER"]


def test_unplug_is_survived_and_port_reopened(device: Pty) -> None:
    with _reading(device) as (source, got):
        device.send(b"QM1:BEFORE\n")
        assert got.wait_for(1)
        device.unplug()
        assert _wait_state(source, "reopening")
        assert "ttyACM0" in str(source.status()["last_error"])
        device.plug()
        assert _wait_state(source, "running")
        device.send(b"QM1:AFTER\n")
        assert got.wait_for(2)
    assert [t for t, _ in got.items] == ["QM1:BEFORE", "QM1:AFTER"]
    assert int(source.status()["reopens"]) >= 1  # type: ignore[call-overload]
    assert source.status()["state"] == "stopped"


def test_missing_port_at_start_keeps_retrying(tmp_path: Path) -> None:
    source = SerialSource(
        SerialSettings(port=str(tmp_path / "nothing")),
        3.0,
        max_line=64,
        backoff_s=(0.02, 0.05),
    )
    source.start(lambda t, m: None)
    try:
        assert _wait_state(source, "reopening")
    finally:
        source.stop()


@pytest.mark.parametrize(
    ("terminator", "data", "lines"),
    [
        ("cr", b"A\rB\r", [b"A", b"B"]),
        ("lf", b"A\nB\n", [b"A", b"B"]),
        ("crlf", b"A\r\nB\r\n", [b"A", b"B"]),
        ("any", b"A\r\nB\nC\r", [b"A", b"B", b"C"]),
        ("lf", b"partial", []),
    ],
)
def test_line_splitter_terminators(terminator: str, data: bytes, lines: list[bytes]) -> None:
    assert LineSplitter(terminator, 100).feed(data) == lines


def test_line_splitter_resumes_after_an_overlong_line() -> None:
    s = LineSplitter("lf", 4)
    assert s.feed(b"123456") == []
    assert s.feed(b"789\nOK\n") == [b"OK"]
    assert s.discarded == 1


def test_half_line_before_an_unplug_is_not_glued_to_the_next_code(device: Pty) -> None:
    with _reading(device) as (source, got):
        device.send(b"QM1:HAL")  # the cable came out mid-code
        threading.Event().wait(0.3)  # let the reader take the partial line
        device.unplug()
        assert _wait_state(source, "reopening")
        device.plug()
        assert _wait_state(source, "running")
        device.send(b"QM1:AFTER\n")
        assert got.wait_for(1)
    assert [t for t, _ in got.items] == ["QM1:AFTER"]


def test_unusable_port_settings_keep_the_thread_retrying(device: Pty) -> None:
    source = SerialSource(
        SerialSettings(port=str(device.link), baud=-5),
        3.0,
        max_line=64,
        backoff_s=(0.02, 0.05),
    )
    source.start(lambda t, m: None)
    try:
        assert _wait_state(source, "reopening")
        assert "baud" in str(source.status()["last_error"]).lower()
        assert int(source.status()["reopens"]) >= 1  # type: ignore[call-overload]
    finally:
        source.stop()
    assert source.status()["state"] == "stopped"
