"""The centre console under test: a real ``gate-centre run`` with ``[web]`` on a real
Mosquitto and an SQLite or PostgreSQL store, real ``gate-agent run`` daemons on mock pins whose QR
scanner is a pty, and headless Chromium driven by Selenium.

Chromium and chromedriver come from Debian (``apt-get install chromium chromium-driver``,
or ``scripts/bootstrap.sh --test`` as root); missing, the tests skip locally and fail
under CI=true.
"""

from __future__ import annotations

import http.cookiejar
import os
import pty
import shutil
import subprocess
import sys
import time
import tty
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.demo.kit import DemoKit, make_kit
from tests.broker import Broker, free_port
from tests.centre_support import CentreFiles, CentreProcess, centre_files
from tests.conftest import require
from tests.daemon_support import DaemonProcess, toml_text

SITE = "binhai-0001"
PASSWORD = "correct horse battery"
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")


def _first(paths: tuple[str, ...], name: str) -> str | None:
    found = shutil.which(name)
    return found or next((p for p in paths if os.access(p, os.X_OK)), None)


def _has_chinese_font() -> bool:
    if shutil.which("fc-list") is None:
        return Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc").exists()
    found = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True, timeout=30)
    return bool(found.stdout.strip())


def make_browser(tmp: Path) -> Any:
    """Headless Chromium with a fresh profile under ``tmp``; the caller quits it."""
    binary, driver = _first(CHROMIUM, "chromium"), _first(CHROMEDRIVER, "chromedriver")
    require(binary is not None and driver is not None, "Chromium and chromedriver",
            "apt-get install chromium chromium-driver (or scripts/bootstrap.sh --test)")
    require(_has_chinese_font(), "a font with Chinese glyphs (the zh-CN screenshots)",
            "apt-get install fonts-wqy-microhei (or scripts/bootstrap.sh --test)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(binary)
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                "--disable-dev-shm-usage", f"--user-data-dir={tmp / 'chromium-profile'}"):
        opts.add_argument(arg)
    service = Service(executable_path=str(driver), log_output=str(tmp / "chromedriver.log"))
    browser = webdriver.Chrome(options=opts, service=service)
    browser.set_page_load_timeout(30)
    return browser


class Scanner:
    """A pseudo-terminal standing in for the gate's USB-CDC QR module."""

    def __init__(self) -> None:
        self.master, slave = pty.openpty()
        tty.setraw(slave)
        self.port = os.ttyname(slave)
        self._slave = slave  # kept open so the gate's reads never see a hang-up

    def scan(self, text: str) -> None:
        os.write(self.master, text.encode() + b"\r\n")

    def close(self) -> None:
        for fd in (self.master, self._slave):
            os.close(fd)


@dataclass
class GateUnderTest:
    name: str
    kit: DemoKit
    scanner: Scanner
    daemon: DaemonProcess

    def decisions(self) -> list[dict[str, Any]]:
        return self.daemon.of("decision")


def start_gate(tmp: Path, broker_url: str, name: str, ops_pub: Path) -> GateUnderTest:
    """``gate-agent run`` on mock pins trusting the centre's ops key; scans from a pty."""
    root = tmp / name
    kit = make_kit(root / "kit", site=SITE, gate=name)
    shutil.copy(ops_pub, kit.ops_dir / ops_pub.name)  # the centre signs lists and commands
    scanner = Scanner()
    raw = kit.config(root / "state",
                     policy={"on_untrusted_clock": "allow", "accept_static": True},
                     scanner={"kind": "serial", "dedupe_s": 0.5},
                     serial={"port": scanner.port})
    raw["mqtt"] = {"url": broker_url, "keepalive_s": 2}
    config = root / "config.toml"
    config.write_text(toml_text(raw))
    return GateUnderTest(name, kit, scanner, DaemonProcess(config))


def add_user(config: Path, name: str, role: str, password: str = PASSWORD) -> None:
    done = subprocess.run([sys.executable, "-m", "agent.cli.gate_centre", "user", "add", name,
                           "--role", role, "--config", str(config)],
                          input=password + "\n", capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent)))
    assert done.returncode == 0, done.stderr


@dataclass
class Site:
    """Everything the browser tests look at, started once for the module."""

    tmp: Path
    broker: Broker
    files: CentreFiles
    centre: CentreProcess
    url: str
    gates: dict[str, GateUnderTest] = field(default_factory=dict)

    def stop(self) -> None:
        for g in self.gates.values():
            g.daemon.kill()
            g.scanner.close()
        self.centre.stop()
        self.broker.kill()


def start_site(tmp: Path, gate_names: tuple[str, ...], store_url: str) -> Site:
    broker = Broker(tmp / "broker")
    broker.start()
    files = centre_files(tmp / "centre", broker.url, store_url, publish_every_s=5)
    port = free_port()
    with files.config.open("a", encoding="utf-8") as f:
        f.write(f'\n[web]\nbind = "127.0.0.1:{port}"\ntime_zone = "Asia/Shanghai"\n')
    add_user(files.config, "olga", "operator")
    add_user(files.config, "vera", "viewer")
    centre = CentreProcess(files.config)
    site = Site(tmp, broker, files, centre, f"http://127.0.0.1:{port}")
    ops_pub = files.ops.ops_dir / f"{files.ops.kid}.pub"
    for name in gate_names:
        site.gates[name] = start_gate(tmp, broker.url, name, ops_pub)
    return site


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, step: float = 0.2,
             what: str = "condition") -> Any:
    """Poll ``predicate`` (a page or a process we do not get events from) until truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def session_opener(browser: Any) -> urllib.request.OpenerDirector:
    """urllib with the browser's session cookie (to read a download the page links)."""
    jar = http.cookiejar.CookieJar()
    for c in browser.get_cookies():
        jar.set_cookie(http.cookiejar.Cookie(
            0, c["name"], c["value"], None, False, c.get("domain", "127.0.0.1"), False, False,
            c.get("path", "/"), True, False, None, False, None, None, {}))
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))


def iter_rows(browser: Any, table_id: str) -> Iterator[list[str]]:
    from selenium.webdriver.common.by import By

    for tr in browser.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr"):
        yield [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
