"""The serial code source: UART or USB-CDC QR modules that send each code as a text line.

Lines end in CR, LF or CRLF per ``[serial] terminator``. A line longer than ``max_line``
bytes (the credential size cap) is discarded with a log line and the rest of it skipped
up to the next terminator: nothing is buffered without bound. A port that disappears (USB
unplugged) is reopened with backoff and reported in ``status()``; the thread never dies.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from agent.core.backoff import Backoff
from agent.core.events import Scan
from hw.scans import Deduper, OnCode, OnScan, adapt_on_code
from hw.settings import SerialSettings

log = logging.getLogger(__name__)

_TERMINATORS = {"cr": b"\r", "lf": b"\n", "crlf": b"\n", "any": b"\r\n"}


class LineSplitter:
    """Bytes in, complete lines out; overlong lines dropped. Pure, so it is tested directly."""

    def __init__(self, terminator: str, max_line: int) -> None:
        self._ends = _TERMINATORS[terminator]
        self._strip_cr = terminator == "crlf"
        self._max = max_line
        self._buf = bytearray()
        self._discarding = False
        self.discarded = 0

    def reset(self) -> None:
        """Forget a partial line (the port was reopened: its end will never come)."""
        self._buf.clear()
        self._discarding = False

    def feed(self, data: bytes) -> list[bytes]:
        lines: list[bytes] = []
        for byte in data:
            if byte in self._ends:
                if self._discarding:
                    self._discarding = False
                elif self._buf:
                    line = bytes(self._buf)
                    if self._strip_cr and line.endswith(b"\r"):
                        line = line[:-1]
                    if line:
                        lines.append(line)
                self._buf.clear()
                continue
            if self._discarding:
                continue
            self._buf.append(byte)
            if len(self._buf) > self._max:
                self._buf.clear()
                self._discarding = True
                self.discarded += 1
                log.warning(
                    "serial scanner sent a line longer than %d bytes; discarded it", self._max
                )
        return lines


class SerialSource:
    """CodeSource on a serial port (method ``"serial"``)."""

    method = "serial"

    def __init__(
        self,
        serial: SerialSettings,
        dedupe_s: float,
        max_line: int,
        backoff_s: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        import serial as pyserial

        self._pyserial: Any = pyserial
        self._serial = serial
        self._splitter = LineSplitter(serial.terminator, max_line)
        self._dedupe = Deduper(dedupe_s)
        self._backoff = backoff_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_scan: OnScan | None = None
        self._port: Any = None
        self.state = "stopped"
        self.lines = 0
        self.codes = 0
        self.reopens = 0
        self.last_error: str | None = None
        self.finished = threading.Event()  # a serial module never runs out (CodeSource)

    def start(self, on_code: OnCode) -> None:
        self.start_scans(adapt_on_code(on_code))

    def start_scans(self, on_scan: OnScan) -> None:
        """Like :meth:`start`, but hands over full Scan events."""
        if self._thread is not None:
            raise RuntimeError("serial source already started")
        self._on_scan = on_scan
        self.state = "starting"
        self._thread = threading.Thread(target=self._run, name="serial-scanner", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("serial scanner thread did not stop within %.1f s", timeout)
        self.state = "stopped"

    def status(self) -> dict[str, object]:
        return {
            "method": self.method,
            "state": self.state,
            "port": self._serial.port,
            "lines": self.lines,
            "codes": self.codes,
            "discarded": self._splitter.discarded,
            "reopens": self.reopens,
            "last_error": self.last_error,
        }

    def _open(self) -> Any:
        return self._pyserial.Serial(
            self._serial.port, self._serial.baud, timeout=0.2, exclusive=True
        )

    def _run(self) -> None:
        backoff = Backoff(*self._backoff)
        while not self._stop.is_set():
            try:
                self._port = self._open()
                self._splitter.reset()
                self.state = "running"
                self.last_error = None
                backoff.reset()
                self._read_loop()
                continue  # returns only when stopping
            except Exception as exc:  # unplugged, bad settings, driver bug: never die
                delay = backoff.next_delay()
                self.last_error = f"{self._serial.port}: {exc}"
                self.state = "reopening"
                self.reopens += 1
                log.warning("serial scanner %s; reopening in %.1f s", self.last_error, delay)
            finally:
                self._close_port()
            if self._stop.wait(delay):
                break
        self.state = "stopped"

    def _read_loop(self) -> None:
        port = self._port
        while not self._stop.is_set():
            data = port.read(max(1, port.in_waiting or 1))
            if not data:
                continue
            for raw in self._splitter.feed(data):
                self._handle(raw)

    def _handle(self, raw: bytes) -> None:
        self.lines += 1
        text = raw.decode("utf-8", errors="replace").strip()
        if not text:
            return
        mono = time.monotonic()
        if not self._dedupe.accept(text, mono):
            return
        self.codes += 1
        assert self._on_scan is not None
        try:
            self._on_scan(Scan(text=text, method=self.method, at=time.time(), mono=mono))
        except Exception:
            log.exception("serial scanner: the scan callback failed")

    def _close_port(self) -> None:
        if self._port is not None:
            try:
                self._port.close()
            except Exception as exc:
                log.debug("closing %s failed: %s", self._serial.port, exc)
            self._port = None
