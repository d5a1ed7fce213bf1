"""The centre console in a real browser (headless Chromium) against a running gate-centre,
a real Mosquitto and two real gate-agent daemons on mock pins.

One site is started for the module (the daemons, the centre and the broker take
seconds); the tests run in order, each leaving the site as the next expects: the
operator revokes courier C-77 and a later scan is denied live; gate south-1 is killed.
"""

from __future__ import annotations

import csv
import io
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from agent.centre.store import connect
from tests.console_support import (
    PASSWORD,
    Site,
    iter_rows,
    make_browser,
    session_opener,
    start_site,
    wait_for,
)

pytestmark = pytest.mark.timeout(240)

COURIER = "C-77"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The whole site once per store: an SQLite file, then a real PostgreSQL database."""
    tmp = tmp_path_factory.mktemp(f"console-{request.param}")
    store = f"sqlite://{tmp}/centre/centre.db" if request.param == "sqlite" else \
        request.getfixturevalue("session_postgres").create_database()
    running = start_site(tmp, ("north-1", "south-1"), store)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def browser(site: Site) -> Iterator[Any]:
    driver = make_browser(site.tmp)
    try:
        yield driver
    finally:
        driver.quit()


def by_id(browser: Any, element_id: str) -> Any:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.ID, element_id)


def click_through(browser: Any, element_id: str) -> None:
    """Click a button that loads another page, and wait until that page is the document.

    Chromium may return from the click with the new URL while the old document is still
    in place; reading the next element at once then fails (seen on a quiet machine)."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    old = browser.find_element(By.TAG_NAME, "html")
    by_id(browser, element_id).click()

    def replaced() -> bool:
        try:
            old.is_enabled()
        except WebDriverException:  # stale, or "not in the document": the page changed
            return browser.execute_script("return document.readyState") == "complete"
        return False

    wait_for(replaced, timeout=30, step=0.05, what=f"the page after {element_id}")


def ids(browser: Any, css: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(browser.find_elements(By.CSS_SELECTOR, css))


def sign_in(browser: Any, site: Site, name: str, password: str = PASSWORD) -> None:
    browser.delete_all_cookies()
    browser.get(f"{site.url}/login")
    by_id(browser, "name").send_keys(name)
    by_id(browser, "password").send_keys(password)
    by_id(browser, "signin").click()
    # The form's POST and its redirect finish before the next step navigates away.
    wait_for(lambda: ids(browser, "#who") or ids(browser, "#error"), timeout=30,
             what="the sign-in answer")


def audit_actions(site: Site) -> list[tuple[str, str, bool]]:
    db = connect(site.files.store_url)
    try:
        return [(w, a, bool(ok)) for w, a, ok in
                db.query("SELECT who, action, ok FROM console_audit ORDER BY n")]
    finally:
        db.close()


def list_version(site: Site) -> int:
    db = connect(site.files.store_url)
    try:
        return int(db.query("SELECT coalesce(max(version), 0) FROM revocation_versions")[0][0])
    finally:
        db.close()


def fleet_row(browser: Any, site: Site, gate: str) -> Any:
    browser.get(f"{site.url}/fleet")
    return ids(browser, f'tr[data-gate="binhai-0001/{gate}"]')


def scan(site: Site, gate: str, text: str) -> dict[str, Any]:
    """One scan at a gate's reader; its decision line from the daemon."""
    g = site.gates[gate]
    before = len(g.decisions())
    g.scanner.scan(text)
    assert g.daemon.wait_lines(lambda _l: len(g.decisions()) > before, 30), g.daemon.stderr()
    return g.decisions()[before]


def test_sign_in_fails_with_a_wrong_password_then_works_and_shows_both_gates(
        site: Site, browser: Any) -> None:
    sign_in(browser, site, "olga", "not the password")
    assert by_id(browser, "error").text == "用户名或密码错误。"  # zh-CN is the default
    assert ("olga", "login_failed", False) in audit_actions(site)
    sign_in(browser, site, "olga")
    assert browser.current_url.endswith("/fleet")
    assert "olga" in by_id(browser, "who").text
    cookie = browser.get_cookie("gc_session")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Lax"
    for gate in ("north-1", "south-1"):
        row = wait_for(lambda g=gate: [r for r in fleet_row(browser, site, g)
                                       if "在线" in r.text], what=f"{gate} online")
        assert row


def test_revoking_a_courier_denies_the_next_scan_and_the_live_feed_shows_it(
        site: Site, browser: Any) -> None:
    north = site.gates["north-1"]
    code = north.kit.credential(COURIER, time.time(), holder=False)
    assert scan(site, "north-1", code)["reason"] == "ok"
    browser.get(f"{site.url}/courier/{COURIER}")
    wait_for(lambda: (browser.refresh() or True) and "1" in by_id(browser, "per-day").text
             and "north-1" in by_id(browser, "gates-used").text, what="the granted entry")
    assert by_id(browser, "rev-state").text == "未吊销"
    version = list_version(site)
    click_through(browser, "revoke")  # a confirmation page first
    assert "/courier/C-77/revoke" in browser.current_url and list_version(site) == version
    by_id(browser, "reason").send_keys("lost phone")
    click_through(browser, "confirm")
    assert "已吊销" in by_id(browser, "rev-state").text
    assert list_version(site) == version + 1
    # The live feed of this courier's entries, then the next scan at the gate.
    browser.get(f"{site.url}/entries?sub={COURIER}")
    wait_for(lambda: by_id(browser, "live-state").get_attribute("class") == "on",
             what="the live feed to connect")
    decision = wait_for(lambda: (d := scan(site, "north-1", code))["reason"] != "ok" and d,
                        timeout=30, step=0.6, what="a scan after the gate got the list")
    assert decision["granted"] is False and decision["reason"] == "revoked"
    live = wait_for(lambda: [r for r in iter_rows(browser, "live") if "revoked" in r],
                    timeout=20, what="the denied scan in the live feed")
    assert live[0][3] == COURIER and live[0][4] == "拒绝"
    assert ("olga", "revoke", True) in audit_actions(site)
    browser.save_screenshot(str(site.tmp / "entries-live-zh.png"))


def test_csv_export_holds_exactly_the_rows_shown(site: Site, browser: Any) -> None:
    browser.get(f"{site.url}/entries?sub={COURIER}")
    shown = [r for r in iter_rows(browser, "results")]
    assert len(shown) >= 2
    href = by_id(browser, "csv").get_attribute("href")
    with session_opener(browser).open(href, timeout=10) as resp:
        assert resp.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(resp.read().decode("utf-8"))))
    assert [(r["time"], r["gate"], r["seq"], r["sub"], r["reason"]) for r in rows] == \
        [(s[0], s[2], s[3], s[4], s[6]) for s in shown]


def test_an_open_command_reaches_the_gate_and_its_result_is_shown(
        site: Site, browser: Any) -> None:
    north = site.gates["north-1"]
    # A grant a moment ago may still hold the door open: the open must be a new pulse.
    assert north.daemon.wait_lines(
        lambda _l: not north.daemon.of("door") or
        north.daemon.of("door")[-1]["state"] == "locked", 30)
    browser.get(f"{site.url}/gate/binhai-0001/north-1")
    click_through(browser, "act-open")
    assert "north-1" in by_id(browser, "confirm-text").text
    unlocked = len([d for d in north.daemon.of("door") if d["state"] == "unlocked"])
    click_through(browser, "confirm")
    assert north.daemon.wait_lines(
        lambda _l: len([d for d in north.daemon.of("door") if d["state"] == "unlocked"])
        > unlocked, 30), north.daemon.stderr()
    result = wait_for(lambda: (browser.refresh() or True) and
                      [r for r in iter_rows(browser, "commands") if "等待回复" not in r[3]],
                      what="the gate's cmd/result on the page")
    assert result[0][1] == "console:olga" and result[0][3].startswith("ok")


def test_fleet_shows_a_killed_gate_offline_with_the_time_since(
        site: Site, browser: Any) -> None:
    south = site.gates["south-1"]
    south.daemon.signal(signal.SIGKILL)
    killed = time.time()
    rows = wait_for(lambda: [r for r in fleet_row(browser, site, "south-1") if "离线" in r.text],
                    timeout=40, step=0.5, what="south-1 offline (the broker's last will)")
    since = rows[0].find_element("css selector", "td.since").text
    assert since.startswith(time.strftime("%Y-%m-%d", time.gmtime(killed + 8 * 3600)))
    assert "offline" in rows[0].find_element("css selector", "td.problems").get_attribute(
        "innerHTML") or "离线" in rows[0].text
    # problems first: the offline gate is above the online one
    order = [r.get_attribute("data-gate") for r in ids(browser, "#fleet tbody tr")]
    assert order.index("binhai-0001/south-1") < order.index("binhai-0001/north-1")
    browser.save_screenshot(str(site.tmp / "fleet-zh.png"))
    by_id(browser, "lang-en").click()
    wait_for(lambda: browser.find_element("css selector", "h1").text == "Fleet",
             what="the English fleet page")
    assert "offline" in ids(browser, 'tr[data-gate="binhai-0001/south-1"]')[0].text
    browser.save_screenshot(str(site.tmp / "fleet-en.png"))
    browser.get(f"{site.url}/courier/{COURIER}")
    assert by_id(browser, "rev-state").text.startswith("Revoked")
    browser.save_screenshot(str(site.tmp / "courier-en.png"))
    by_id(browser, "lang-zh-CN").click()
    wait_for(lambda: by_id(browser, "rev-state").text.startswith("已吊销"),
             what="the Chinese courier page")
    for shot in ("fleet-zh.png", "fleet-en.png", "courier-en.png", "entries-live-zh.png"):
        assert (site.tmp / shot).stat().st_size > 5000


def forged_post(browser: Any, path: str, body: str) -> int:
    """A POST from the page's own origin with JavaScript, as a forged form would be."""
    return int(browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {method: 'POST', redirect: 'manual', headers: "
        "{'content-type': 'application/x-www-form-urlencoded'}, body: arguments[1]})"
        ".then(r => done(r.status)).catch(e => done(-1));", path, body))


def test_forged_posts_and_a_viewer_are_refused(site: Site, browser: Any) -> None:
    version = list_version(site)
    # The operator's session without the CSRF token, or with a wrong one.
    browser.get(f"{site.url}/fleet")
    assert forged_post(browser, "/courier/C-88/revoke", "reason=x") == 403
    assert forged_post(browser, "/courier/C-88/revoke", "csrf=forged&reason=x") == 403
    assert forged_post(browser, "/gate/binhai-0001/north-1/command",
                       "action=open&confirm=yes") == 403
    # A viewer: no revoke button, no confirmation page, and a POST with a valid token fails.
    by_id(browser, "logout").click()
    wait_for(lambda: ids(browser, "#signin"), timeout=30, what="the sign-in page")
    sign_in(browser, site, "vera")
    browser.get(f"{site.url}/courier/{COURIER}")
    assert "已吊销" in by_id(browser, "rev-state").text
    assert not ids(browser, "#revoke") and not ids(browser, "#unrevoke")
    browser.get(f"{site.url}/gate/binhai-0001/north-1")
    assert not ids(browser, "#actions")
    browser.get(f"{site.url}/courier/C-88/revoke")
    assert "operator" in by_id(browser, "error").text
    browser.get(f"{site.url}/fleet")
    token = browser.find_element("css selector", "form[action='/logout'] input[name=csrf]"
                                 ).get_attribute("value")
    assert forged_post(browser, "/courier/C-88/revoke", f"csrf={token}&reason=x") == 403
    assert forged_post(browser, f"/courier/{COURIER}/unrevoke", f"csrf={token}") == 403
    assert list_version(site) == version
    actions = audit_actions(site)
    assert actions.count(("olga", "csrf_refused", False)) == 3
    assert ("vera", "role_refused", False) in actions

