"""The console's sign-in, sessions, roles, CSRF, exports and messages over real HTTP
(uvicorn in this process, an SQLite store, a recording stand-in for the broker session)."""

from __future__ import annotations

import http.cookiejar
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir

from agent.centre import ops
from agent.centre.config import load_centre_config
from agent.centre.store import connect
from agent.centre.web import records
from agent.centre.web.actions import Signer
from agent.centre.web.auth import hash_password
from agent.centre.web.i18n import HERE, load_translations
from agent.centre.web.server import ConsoleServer
from agent.core.errors import ConfigError
from agent.sync.topics import REVOCATIONS_DELTA, REVOCATIONS_FULL
from tests.broker import free_port
from tests.centre_support import centre_files
from tests.conftest import ROOT

PASSWORD = "a long enough password"


@dataclass
class Published:
    up: bool = True
    messages: list[tuple[str, bytes, bool]] = field(default_factory=list)

    def __call__(self, topic: str, payload: bytes, retain: bool) -> bool:
        if self.up:
            self.messages.append((topic, payload, retain))
        return self.up


@dataclass
class Running:
    url: str
    store: str
    config: Path
    published: Published


def _start(tmp: Path, web_extra: str = "") -> tuple[ConsoleServer, Running]:
    files = centre_files(tmp, "mqtt://127.0.0.1:1", f"sqlite://{tmp}/centre.db")
    with files.config.open("a", encoding="utf-8") as f:
        f.write(f'\n[web]\nbind = "127.0.0.1:{free_port()}"\n{web_extra}\n')
    cfg = load_centre_config(files.config)
    key, kid = ops.ops_key(cfg)
    published = Published()
    server = ConsoleServer(cfg, Signer(key, kid, ops.ops_trust(cfg)), published)
    server.start()
    db = connect(files.store_url)
    for name, role in (("ada", "admin"), ("otto", "operator"), ("vic", "viewer")):
        records.add_user(db, name, role, hash_password(PASSWORD), time.time())
    db.close()
    return server, Running(server.url, files.store_url, files.config, published)


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Running]:
    server, running = _start(tmp_path)
    try:
        yield running
    finally:
        server.stop()


class Client:
    """A browser-like HTTP client: cookies kept, redirects not followed."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *_a: object, **_k: object) -> None:
                return None

        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar),
                                                  NoRedirect())

    def request(self, path: str, data: dict[str, str] | None = None
                ) -> tuple[int, dict[str, str], str]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        try:
            with self.opener.open(self.base + path, body, timeout=10) as resp:
                return resp.status, dict(resp.headers), resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read().decode()

    def csrf(self, path: str = "/login") -> str:
        _s, _h, html = self.request(path)
        found = re.search(r'name="csrf" value="([^"]+)"', html)
        assert found, html[:500]
        return found.group(1)

    def sign_in(self, name: str, password: str = PASSWORD) -> int:
        token = self.csrf()
        status, _h, _b = self.request("/login", {"csrf": token, "name": name,
                                                 "password": password, "next": "/fleet"})
        return status


def audit(store: str) -> list[tuple[str, str, bool]]:
    db = connect(store)
    try:
        return [(w, a, bool(ok)) for w, a, ok in
                db.query("SELECT who, action, ok FROM console_audit ORDER BY n")]
    finally:
        db.close()


def test_sign_in_is_rate_limited_after_five_failures_even_with_the_right_password(
        console: Running) -> None:
    client = Client(console.url)
    for _ in range(5):
        assert client.sign_in("otto", "wrong password here") == 401
    assert client.sign_in("otto") == 429
    assert audit(console.store).count(("otto", "login_failed", False)) == 5
    assert ("otto", "login_rate_limited", False) in audit(console.store)
    assert Client(console.url).request("/fleet")[0] == 303  # still not signed in
    # Another name from the same address is limited too (the address has five failures).
    assert Client(console.url).sign_in("vic") == 429


def test_session_cookie_is_httponly_and_samesite_and_pages_forbid_framing(
        console: Running) -> None:
    client = Client(console.url)
    _status, headers, _body = client.request("/login")
    cookie = headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert client.sign_in("vic") == 303
    assert client.request("/fleet")[0] == 200


def test_secure_cookies_behind_a_tls_proxy(tmp_path: Path) -> None:
    server, running = _start(tmp_path, "behind_tls_proxy = true")
    try:
        _s, headers, _b = Client(running.url).request("/login")
        assert "secure" in headers["set-cookie"].lower()
    finally:
        server.stop()


def test_a_new_password_or_a_disabled_account_ends_open_sessions(console: Running) -> None:
    client = Client(console.url)
    assert client.sign_in("otto") == 303
    assert client.request("/fleet")[0] == 200
    db = connect(console.store)
    records.set_password(db, "otto", hash_password("another long password"), time.time() + 1)
    assert client.request("/fleet")[0] == 303  # back to the sign-in page
    assert client.sign_in("otto", "another long password") == 303
    records.disable_user(db, "otto", time.time() + 2)
    db.close()
    assert client.request("/fleet")[0] == 303
    assert client.sign_in("otto", "another long password") == 401


def test_sign_in_never_redirects_to_another_site(console: Running) -> None:
    client = Client(console.url)
    token = client.csrf()
    status, headers, _b = client.request("/login", {"csrf": token, "name": "vic",
                                                    "password": PASSWORD,
                                                    "next": "//evil.example/x"})
    assert status == 303 and headers["location"] == "/fleet"


def test_revoke_needs_operator_and_csrf_and_publishes_delta_then_retained_full(
        console: Running) -> None:
    viewer, operator = Client(console.url), Client(console.url)
    viewer.sign_in("vic")
    operator.sign_in("otto")
    token = viewer.csrf("/fleet")
    assert viewer.request("/courier/C-9/revoke", {"csrf": token})[0] == 403
    assert operator.request("/courier/C-9/revoke", {"reason": "x"})[0] == 403
    assert console.published.messages == []
    token = operator.csrf("/courier/C-9/revoke")
    status, headers, _b = operator.request("/courier/C-9/revoke", {"csrf": token,
                                                                   "reason": "lost"})
    assert status == 303 and headers["location"].startswith("/courier/C-9?notice=")
    assert [(t, r) for t, _p, r in console.published.messages] == [
        (REVOCATIONS_DELTA, False), (REVOCATIONS_FULL, True)]
    # Revoking again changes nothing and says so; the broker being down keeps the change.
    assert operator.request("/courier/C-9/revoke", {"csrf": token})[0] == 303
    console.published.up = False
    assert operator.request("/courier/C-9/unrevoke", {"csrf": token})[0] == 303
    db = connect(console.store)
    pending = db.query("SELECT version FROM revocation_versions WHERE published_at IS NULL")
    db.close()
    assert pending == [(2,)]
    actions = audit(console.store)
    assert ("vic", "role_refused", False) in actions
    assert ("otto", "csrf_refused", False) in actions
    assert [a for a in actions if a[1] in ("revoke", "unrevoke")] == [
        ("otto", "revoke", True), ("otto", "revoke", False), ("otto", "unrevoke", True)]


def test_commands_are_validated_confirmed_and_signed(console: Running) -> None:
    operator = Client(console.url)
    operator.sign_in("otto")
    status, _h, body = operator.request("/gate/s1/g1/command?action=mode&mode=lockdown"
                                        "&minutes=30")
    assert status == 200 and 'name="confirm" value="yes"' in body
    assert console.published.messages == []  # the confirmation page sends nothing
    token = operator.csrf("/fleet")
    bad = operator.request("/gate/s1/g1/command", {"csrf": token, "action": "mode",
                                                   "mode": "party", "confirm": "yes"})
    assert bad[0] == 400 and console.published.messages == []
    ok = operator.request("/gate/s1/g1/command", {"csrf": token, "action": "mode",
                                                  "mode": "lockdown", "minutes": "30",
                                                  "confirm": "yes"})
    assert ok[0] == 303
    [(topic, payload, retain)] = console.published.messages
    assert topic == "gate/v1/s1/g1/cmd" and not retain and len(payload) > 64
    page = operator.request("/gate/s1/g1")[2]
    assert "lockdown" in page and "console:otto" in page


def test_csv_cells_that_look_like_formulas_stay_text(console: Running) -> None:
    db = connect(console.store)
    with db.transaction():
        db.execute("INSERT INTO entries (site, gate, seq, id, ts, at, kind, granted, reason, "
                   "sub, event, received_at) VALUES ('s1', 'g1', 1, 'e1', "
                   "'2026-12-01T00:00:00Z', ?, 'scan', false, 'malformed', '=HYPERLINK(1)', "
                   "'{}', ?)", (time.time() - 60, time.time()))
    db.close()
    client = Client(console.url)
    client.sign_in("vic")
    status, headers, body = client.request("/entries.csv?site=s1")
    assert status == 200 and headers["content-type"].startswith("text/csv")
    lines = body.strip().splitlines()
    assert lines[0].startswith("time,site,gate,seq") and len(lines) == 2
    assert ",'=HYPERLINK(1)," in lines[1]


def test_every_message_of_the_pages_has_a_chinese_translation() -> None:
    zh = load_translations("zh-CN")
    method_map = [("**.py", "python"), ("templates/**.html", "jinja2")]
    options = {"templates/**.html": {"extensions": "jinja2.ext.i18n"}}
    missing = []
    for _file, _line, message, _comments, _ctx in extract_from_dir(
            HERE, method_map, options_map=options):
        text = message if isinstance(message, str) else message[0]
        if text and zh.gettext(text) == text:
            missing.append(text)
    assert missing == []


def _gate_centre(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli.gate_centre", *args],
                          input=stdin, capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_user_commands_need_a_password_and_say_what_is_wrong(console: Running) -> None:
    cfg = str(console.config)
    done = _gate_centre("user", "add", "nina", "--role", "viewer", "--config", cfg)
    assert done.returncode == 2 and "no password on stdin" in done.stderr
    done = _gate_centre("user", "add", "nina", "--role", "viewer", "--config", cfg,
                        stdin="short\n")
    assert done.returncode == 2 and "at least 10 characters" in done.stderr
    done = _gate_centre("user", "add", "otto", "--role", "viewer", "--config", cfg,
                        stdin=PASSWORD + "\n")
    assert done.returncode == 2 and "exists already" in done.stderr
    done = _gate_centre("user", "add", "nina", "--role", "viewer", "--config", cfg,
                        stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    assert Client(console.url).sign_in("nina") == 303
    done = _gate_centre("user", "disable", "nobody", "--config", cfg)
    assert done.returncode == 2 and "no user 'nobody'" in done.stderr
    listed = _gate_centre("user", "list", "--config", cfg).stdout.split()
    assert "nina" in listed and "viewer" in listed


def test_web_settings_are_checked(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("not read here\n")
    for n, (extra, expected) in enumerate((('time_zone = "Mars/Olympus"', "not a time zone"),
                                           (f'tls_cert_file = "{cert}"', "go together"))):
        files = centre_files(tmp_path / str(n), "mqtt://127.0.0.1:1",
                             f"sqlite://{tmp_path}/c.db")
        with files.config.open("a", encoding="utf-8") as f:
            f.write(f"\n[web]\n{extra}\n")
        with pytest.raises(ConfigError, match=expected):
            load_centre_config(files.config)


def test_overview_counts_todays_scans_per_site_and_audit_is_for_admins(
        console: Running) -> None:
    now = time.time()
    db = connect(console.store)
    with db.transaction():
        for seq, (granted, sub) in enumerate([(True, "C-1"), (False, "C-1"), (True, "C-2")],
                                             start=1):
            db.execute("INSERT INTO entries (site, gate, seq, id, ts, at, kind, granted, "
                       "reason, sub, event, received_at) VALUES ('s1', 'g1', ?, ?, '', ?, "
                       "'scan', ?, ?, ?, '{}', ?)",
                       (seq, f"e{seq}", now - seq, granted, "ok" if granted else "expired",
                        sub, now))
        db.execute("INSERT INTO entries (site, gate, seq, id, ts, at, kind, granted, event, "
                   "received_at) VALUES ('s1', 'g1', 4, 'e4', '', ?, 'exit', true, '{}', ?)",
                   (now, now))
    db.close()
    admin, viewer = Client(console.url), Client(console.url)
    admin.sign_in("ada")
    viewer.sign_in("vic")
    assert admin.request("/lang/en?next=/overview")[0] == 303
    page = admin.request("/overview")[2]
    assert "3 entries, 33.3% denied, 2 couriers seen" in page  # the exit press is no scan
    assert "Probably inside now: 1 (grants minus exit presses today)" in page
    assert "3 条记录，拒绝率 33.3%，2 名快递员" in viewer.request("/overview")[2]
    assert viewer.request("/audit")[0] == 403
    status, _h, audit_page = admin.request("/audit")
    assert status == 200 and "role_refused" in audit_page and "vic" in audit_page


def test_gate_page_shows_door_alarms_and_online_changes(console: Running) -> None:
    now = time.time()
    db = connect(console.store)
    with db.transaction():
        db.execute("INSERT INTO entries (site, gate, seq, id, ts, at, kind, event, received_at) "
                   "VALUES ('s1', 'g1', 1, 'a1', '', ?, 'alarm', ?, ?)",
                   (now, '{"alarm": "forced", "detail": "door opened without unlock"}', now))
        db.execute("INSERT INTO gate_history (site, gate, at, online, detail) VALUES "
                   "('s1', 'g1', ?, false, 'connection_lost')", (now,))
    db.close()
    client = Client(console.url)
    client.sign_in("vic")
    page = client.request("/gate/s1/g1")[2]
    assert "forced" in page and "door opened without unlock" in page
    assert "connection_lost" in page and "离线" in page


def test_a_failing_store_is_one_clear_page_not_a_traceback(tmp_path: Path) -> None:
    server, running = _start(tmp_path)
    try:
        client = Client(running.url)
        assert client.sign_in("vic") == 303
        db = connect(running.store)
        with db.transaction():
            db.execute("DROP TABLE holes")  # the store breaks under the running console
        db.close()
        status, _h, page = client.request("/fleet")
        assert status == 503 and "数据库无法访问" in page and "holes" in page
        assert "Traceback" not in page
    finally:
        server.stop()


def test_revoking_only_the_credentials_issued_so_far_keeps_a_new_one_valid(
        console: Running) -> None:
    operator = Client(console.url)
    operator.sign_in("otto")
    token = operator.csrf("/courier/C-5/revoke")
    before = int(time.time())
    assert operator.request("/courier/C-5/revoke", {"csrf": token, "scope": "before_now"}
                            )[0] == 303
    db = connect(console.store)
    [(kind, cutoff)] = db.query("SELECT kind, before FROM revocation_entries WHERE value = ?",
                                ("C-5",))
    db.close()
    assert kind == "sub" and before <= int(cutoff) <= time.time()
    page = operator.request("/courier/C-5")[2]
    assert 'id="rev-before"' in page


def test_a_session_ends_session_hours_after_sign_in_even_when_used(tmp_path: Path) -> None:
    server, running = _start(tmp_path, "session_hours = 12")
    try:
        client = Client(running.url)
        assert client.sign_in("vic") == 303
        server.console.clock = lambda: time.time() + 11.9 * 3600
        assert client.request("/fleet")[0] == 200  # re-signed cookie, same sign-in time
        server.console.clock = lambda: time.time() + 12.1 * 3600
        assert client.request("/fleet")[0] == 303
    finally:
        server.stop()


def _self_signed(folder: Path) -> tuple[Path, Path]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "console.crt", folder / "console.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_https_with_the_configured_certificate_and_secure_cookies(tmp_path: Path) -> None:
    import ssl

    cert, key = _self_signed(tmp_path)
    server, running = _start(tmp_path, f'tls_cert_file = "{cert}"\ntls_key_file = "{key}"')
    try:
        assert running.url.startswith("https://")
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        with urllib.request.urlopen(running.url + "/login", context=context,
                                    timeout=10) as resp:
            assert resp.status == 200
            cookie = resp.headers["set-cookie"].lower()
        assert "secure" in cookie and "httponly" in cookie
    finally:
        server.stop()
