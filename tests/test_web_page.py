"""The installer page over HTTP against the real daemon: what needs a session, CSRF, the
stream, the checklist, lockdown, and that the page is off unless configured."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest

from agent.runtime.web.auth import write_token
from agent.runtime.web.server import MAX_STREAMS
from agent.store import EntryLog
from tests.daemon_support import DaemonProcess, clip, gate_files, wait_until
from tests.web_support import WebClient, web_gate

pytestmark = pytest.mark.slow


def _relay_rows(state: Path) -> list[dict[str, object]]:
    log = EntryLog(state, read_only=True)
    try:
        return [e.event for e in log.history() if e.event.get("command") == "relay_test"]
    finally:
        log.close()


def test_without_a_session_or_csrf_token_nothing_changes(tmp_path: Path) -> None:
    with web_gate(tmp_path) as gate:
        anonymous = WebClient(gate.url, follow=False)
        status, headers, _ = anonymous.request("/")
        assert status == 303 and headers["Location"] == "/login"
        for path in ("/api/status", "/api/checklist", "/stream.mjpg", "/frame.jpg"):
            assert anonymous.request(path)[0] == 401, path
        assert anonymous.post_json("/api/relay-test", {"confirm": True}, csrf=None)[0] == 401

        client = WebClient(gate.url)
        status, _, _ = client.login(gate.token)
        assert status == 200 and client.csrf
        cookie = next(c for c in client.jar if c.name == "gw_session")
        assert cookie.has_nonstandard_attr("HttpOnly")
        assert cookie.get_nonstandard_attr("SameSite") == "Strict"
        assert client.post_json("/api/relay-test", {"confirm": True}, csrf=None)[0] == 403
        assert client.post_json("/api/relay-test", {"confirm": True}, csrf="forged")[0] == 403
        status, body = client.post_json("/api/relay-test", {})
        assert status == 400 and "confirm" in body["error"]
        huge = client.request("/api/relay-test", b"{" + b" " * 5000 + b"}",
                              {"X-CSRF-Token": client.csrf or ""})
        assert huge[0] == 413
        # Another browser with the session's CSRF token but not its cookie: refused too.
        other = WebClient(gate.url)
        assert other.post_json("/api/relay-test", {"confirm": True}, csrf=client.csrf)[0] == 401

        # The checklist from the page never clicks the relay.
        status, checks = client.get_json("/api/checklist")
        relay = next(c for c in checks["checks"] if c["check"] == "relay")
        assert status == 200 and relay["status"] == "skip" and "relay test" in relay["detail"]

        assert client.post_json("/logout", {})[0] == 200
        assert client.request("/api/status")[0] == 401
        gate.daemon.signal(signal.SIGTERM)
        assert gate.daemon.wait(30) == 0
        assert gate.unlocks() == 0
        assert _relay_rows(gate.state) == []


def test_stream_serves_jpeg_frames_and_status_tells_the_decoders_view(tmp_path: Path) -> None:
    with web_gate(tmp_path) as gate:
        client = WebClient(gate.url)
        client.login(gate.token)
        cookie = next(c for c in client.jar if c.name == "gw_session").value
        host, port = gate.url.removeprefix("http://").rstrip("/").split(":")
        streams = []
        try:
            for _ in range(MAX_STREAMS):
                sock = socket.create_connection((host, int(port)), timeout=10)
                sock.sendall(f"GET /stream.mjpg HTTP/1.1\r\nHost: {host}\r\n"
                             f"Cookie: gw_session={cookie}\r\n\r\n".encode())
                streams.append(sock)
            data = b""
            started = time.monotonic()
            while data.count(b"\xff\xd9") < 3 and time.monotonic() - started < 10:
                data += streams[0].recv(65536)
            assert data.startswith(b"HTTP/1.1 200")
            assert b"multipart/x-mixed-replace; boundary=frame" in data
            assert data.count(b"Content-Type: image/jpeg") >= 3
            status = client.request("/stream.mjpg")[0]
            assert status == 503  # one more viewer than allowed
        finally:
            for sock in streams:
                sock.close()
        status, snap = client.get_json("/api/status")
        assert status == 200
        codes = snap["preview"]["codes"]
        assert len(codes) == 1 and codes[0]["text"].startswith("INSTALLER TEST")
        assert codes[0]["module_px"] > 4 and not codes[0]["too_small"]
        assert snap["scanner"]["state"] == "running" and snap["door"] == "locked"
        # The card's scan (denied: no credential) shows once the status refreshes (1 s).
        assert gate.daemon.wait_lines(lambda ls: any(x.get("type") == "decision" for x in ls))
        assert wait_until(lambda: client.get_json("/api/status")[1]["last_decisions"], 5)
        assert client.get_json("/api/status")[1]["last_decisions"][0]["reason"] == "malformed"


def test_relay_test_in_lockdown_is_refused_and_recorded(tmp_path: Path) -> None:
    kit, config = gate_files(tmp_path / "lock", policy={"mode": "lockdown"},
                             web={"enabled": True, "bind": "127.0.0.1:0"})
    del kit
    token = write_token(tmp_path / "lock" / "state" / "web-token")
    daemon = DaemonProcess(config)
    try:
        assert daemon.wait_lines(lambda ls: any(x.get("type") == "web" for x in ls), 30)
        client = WebClient(daemon.of("web")[0]["url"])
        client.login(token)
        status, body = client.post_json("/api/relay-test", {"confirm": True})
        assert status == 409 and "lockdown" in body["error"]
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
        assert not [d for d in daemon.of("door") if d["state"] == "unlocked"]
        rows = _relay_rows(tmp_path / "lock" / "state")
        assert [(r["granted"], r["reason"], r["door"]) for r in rows] == \
            [(False, "lockdown", "none")]
    finally:
        daemon.kill()


def test_the_page_is_off_unless_enabled(tmp_path: Path) -> None:
    kit, config = gate_files(tmp_path)
    del kit
    daemon = DaemonProcess(config, "--source", str(clip(tmp_path, ["x"])),
                           "--exit-when-source-ends")
    assert daemon.wait(60) == 0, daemon.stderr()
    assert daemon.of("web") == []
    assert "installer page" not in daemon.stderr()
