"""The installer page under test: a real daemon process with [web] on, a plain HTTP client
that logs in like a browser, and a headless Chromium driven by Selenium."""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.demo.clip import Shot, qr_image, write_clip
from agent.runtime.web.auth import write_token
from tests.conftest import require
from tests.daemon_support import DaemonProcess, gate_files

CARD_TEXT = "INSTALLER TEST CARD 0123456789"  # a QR code that is no credential: denied
CLIP_SIZE = (1280, 720)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class WebClient:
    """Cookies, CSRF and the login form, as a browser would handle them."""

    def __init__(self, base: str, follow: bool = True) -> None:
        self.base = base.rstrip("/")
        self.jar = http.cookiejar.CookieJar()
        handlers: list[Any] = [urllib.request.HTTPCookieProcessor(self.jar)]
        if not follow:
            handlers.append(NoRedirect())
        self.opener = urllib.request.build_opener(*handlers)
        self.csrf: str | None = None

    def request(self, path: str, data: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(self.base + path, data=data, headers=headers or {})
        try:
            with self.opener.open(req, timeout=10) as res:
                return res.status, dict(res.headers), res.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def login(self, token: str) -> tuple[int, dict[str, str], bytes]:
        _, _, page = self.request("/login")
        match = re.search(rb'name="csrf" value="([^"]+)"', page)
        assert match, page[:300]
        form = urllib.parse.urlencode({"csrf": match.group(1).decode(), "token": token})
        status, headers, body = self.request("/login", form.encode())
        found = re.search(rb'name="csrf-token" content="([^"]+)"', body)
        if found:
            self.csrf = found.group(1).decode()
        return status, headers, body

    def get_json(self, path: str) -> tuple[int, Any]:
        status, _, body = self.request(path)
        return status, json.loads(body)

    def post_json(self, path: str, body: Any, csrf: str | None = "session") -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        token = self.csrf if csrf == "session" else csrf
        if token is not None:
            headers["X-CSRF-Token"] = token
        status, _, raw = self.request(path, json.dumps(body).encode(), headers)
        return status, json.loads(raw)


@dataclass
class WebGate:
    daemon: DaemonProcess
    url: str
    token: str
    config: Path
    state: Path
    token_file: Path

    def new_token(self) -> str:
        self.token = write_token(self.token_file)
        return self.token

    def unlocks(self) -> int:
        return sum(1 for d in self.daemon.of("door") if d["state"] == "unlocked")


def card_outline(preview_width: int = 640) -> tuple[int, int, int, int]:
    """Where the clip's code sits in the preview (x0, y0, x1, y1), quiet zone excluded
    (agent.demo.clip draws whole modules of ``scale`` pixels, centred, 4-module border)."""
    import segno

    width, height = CLIP_SIZE
    rows = len(list(segno.make(CARD_TEXT, error="m", micro=False).matrix_iter(border=4)))
    module = max(4, int(height * 0.8) // rows)
    size = rows * module
    assert qr_image(CARD_TEXT, int(height * 0.8)).shape[0] == size
    x, y = (width - size) // 2, (height - size) // 2
    f = preview_width / width
    return (round((x + 4 * module) * f), round((y + 4 * module) * f),
            round((x + size - 4 * module) * f), round((y + size - 4 * module) * f))


@contextlib.contextmanager
def web_gate(tmp_path: Path, **web: Any) -> Iterator[WebGate]:
    """``gate-agent run`` with the page on a free loopback port, a looping clip showing a
    test card (a QR code that is no credential) and a fresh token."""
    kit, config = gate_files(tmp_path, door={"unlock_s": 0.4},
                             web={"enabled": True, "bind": "127.0.0.1:0", **web})
    del kit
    clip = write_clip([Shot(CARD_TEXT, 2.0)], tmp_path / "clip", fps=10,
                      width=CLIP_SIZE[0], height=CLIP_SIZE[1])
    state = tmp_path / "state"
    token_file = state / "web-token"
    token = write_token(token_file)
    daemon = DaemonProcess(config, "--source", str(clip), "--source-loop", "--source-fps", "10")
    try:
        assert daemon.wait_lines(lambda ls: any(x.get("type") == "web" for x in ls), 30), \
            daemon.stderr()
        url = daemon.of("web")[0]["url"]
        yield WebGate(daemon, url, token, config, state, token_file)
    finally:
        daemon.kill()


def chromium_paths() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    require(browser is not None and driver is not None, "Chromium and chromedriver",
            "apt-get install chromium chromium-driver (scripts/bootstrap.sh --test does it "
            "as root)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        require(False, "selenium", "pip install -e '.[dev]'")
    assert browser is not None and driver is not None
    return browser, driver


@contextlib.contextmanager
def chromium(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium, its own profile under tmp_path, nothing reaching the network."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,1000",
                 "--force-device-scale-factor=1", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    service = Service(executable_path=driver_path, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(20)
        yield driver
    finally:
        driver.quit()
