"""The installer page in a real browser (headless Chromium via Selenium) against the real
daemon on mock pins, its camera a looping clip of a test card."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from agent.store import EntryLog
from tests.web_support import WebClient, WebGate, card_outline, chromium, web_gate

pytestmark = pytest.mark.slow


def _wait(driver: Any, condition: Any, timeout: float = 30.0) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def _text_of(driver: Any, element_id: str) -> str:
    return str(driver.find_element("id", element_id).text)


def _message(page: str) -> str:
    """The login page's message line, for an assertion that says what the page said."""
    start = page.find('id="message"')
    return page[start:page.find("</p>", start)] if start >= 0 else page[:200]


def _gone(element: Any) -> Any:
    """The element left the document (the answer replaced the form). Chromium reports a
    node of the old document either as stale or as "does not belong to the document"."""
    from selenium.common.exceptions import WebDriverException

    def check(_driver: Any) -> bool:
        try:
            element.is_enabled()
        except WebDriverException:  # StaleElementReferenceException is one of these
            return True
        return False

    return check


def _login_form(driver: Any, gate: WebGate, token: str) -> str:
    driver.get(gate.url + "login")
    field = driver.find_element("id", "token")
    field.send_keys(token)
    driver.find_element("css selector", "#login button").click()
    _wait(driver, _gone(field))
    _wait(driver, lambda d: d.execute_script("return document.readyState") == "complete")
    return str(driver.page_source)


def _green(image: np.ndarray) -> np.ndarray:
    b, g, r = (image[..., i].astype(int) for i in range(3))
    return (g > 150) & (g - r > 80) & (g - b > 80)


def _relay_rows(state: Path) -> list[dict[str, Any]]:
    log = EntryLog(state, read_only=True)
    try:
        return [e.event for e in log.history() if e.event.get("command") == "relay_test"]
    finally:
        log.close()


def test_a_wrong_token_is_refused_and_repeated_failures_slow_down(tmp_path: Path) -> None:
    with web_gate(tmp_path) as gate, chromium(tmp_path) as driver:
        page = _login_form(driver, gate, "not-the-token")
        assert "Token not accepted" in page and "Next try in 1 s" in page, _message(page)
        time.sleep(1.1)  # the wait the page imposed is the behaviour under test
        page = _login_form(driver, gate, "still-wrong")
        assert "Next try in 2 s" in page, _message(page)
        # Within the longer wait even the right token is not looked at (asked at once over
        # plain HTTP from the same address: a loaded machine may type slower than 2 s).
        status, headers, body = WebClient(gate.url).login(gate.token)
        assert status == 429 and headers["Retry-After"] in ("1", "2")
        assert "Too many wrong tokens: wait" in body.decode()
        time.sleep(2.1)
        _login_form(driver, gate, gate.token)
        _wait(driver, lambda d: d.find_elements("id", "relay-test"))
        # One-time: the same token in a fresh browser session is refused.
        driver.delete_all_cookies()
        page = _login_form(driver, gate, gate.token)
        assert "Token not accepted" in page
        assert gate.unlocks() == 0


def test_preview_outlines_the_code_and_relay_test_pulses_once_and_is_recorded(
    tmp_path: Path,
) -> None:
    with web_gate(tmp_path) as gate, chromium(tmp_path) as driver:
        # The QR code's link: the token rides in the fragment and the page logs in with it.
        driver.get(gate.url + "login#token=" + gate.token)
        _wait(driver, lambda d: d.find_elements("id", "relay-test"))
        img = driver.find_element("id", "preview")
        _wait(driver, lambda d: d.execute_script(
            "const i = document.getElementById('preview');"
            "return i.complete && i.naturalWidth === 640;"))
        _wait(driver, lambda d: "px/module" in _text_of(d, "codes"))
        assert "INSTALLER TEST" in _text_of(driver, "codes")

        shot = cv2.imdecode(np.frombuffer(driver.get_screenshot_as_png(), np.uint8),
                            cv2.IMREAD_COLOR)
        rect = img.rect
        x, y = round(rect["x"]), round(rect["y"])
        view = shot[y:y + round(rect["height"]), x:x + round(rect["width"])]
        assert view.shape[:2] == (360, 640)
        green = _green(view)
        x0, y0, x1, y1 = card_outline(640)
        band = 5
        top = green[y0 - band:y0 + band, x0:x1].any(axis=0).mean()
        bottom = green[y1 - band:y1 + band, x0:x1].any(axis=0).mean()
        left = green[y0:y1, x0 - band:x0 + band].any(axis=1).mean()
        right = green[y0:y1, x1 - band:x1 + band].any(axis=1).mean()
        assert min(top, bottom, left, right) > 0.9, (top, bottom, left, right)
        inside = green[y0 + 20:y1 - 20, x0 + 20:x1 - 20]
        assert inside.sum() == 0  # an outline, not a green picture
        assert green[:, : x0 - 20].sum() == 0  # nothing drawn where there is no code

        # Cancelling the confirmation sends nothing.
        driver.find_element("id", "relay-test").click()
        driver.switch_to.alert.dismiss()
        assert "cancelled" in _text_of(driver, "relay-result")

        driver.find_element("id", "relay-test").click()
        driver.switch_to.alert.accept()
        _wait(driver, lambda d: "One pulse" in _text_of(d, "relay-result"))
        assert gate.daemon.wait_lines(
            lambda ls: [x.get("state") for x in ls if x.get("type") == "door"]
            == ["unlocked", "locked"], 10)

        # A POST carrying the session cookie but no CSRF token changes nothing.
        status = driver.execute_async_script(
            "const done = arguments[0];"
            "fetch('/api/relay-test', {method: 'POST', credentials: 'same-origin',"
            " headers: {'Content-Type': 'application/json'}, body: '{\"confirm\": true}'})"
            ".then(r => done(r.status));")
        assert status == 403
        gate.daemon.signal(__import__("signal").SIGTERM)
        assert gate.daemon.wait(30) == 0
        assert gate.unlocks() == 1
        rows = _relay_rows(gate.state)
        assert len(rows) == 1
        assert rows[0]["kind"] == "command" and rows[0]["door"] == "unlocked"
        assert rows[0]["granted"] is True
