"""Bounds on every signed and configured field, and the one identifier grammar: refused
where parsed with a reason, refused by gatectl before signing, and damage (alarm, ignore)
when restored from state."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.core.config import config_from_mapping
from agent.core.errors import ConfigError, ProtocolError, RevocationListError, UsageError
from agent.core.ids import id_problem, scope_problem, target_problem
from agent.gate.modes import ModeKeeper
from agent.gate.timekeeper import Timekeeper
from agent.protocol import cbor_strict, cose, qrtext
from agent.protocol.command import (
    COMMAND_TYPE,
    CommandRefused,
    make_command,
    parse_command,
)
from agent.protocol.credential import issue_credential
from agent.protocol.revocation import (
    DOC_TYPE,
    RevocationEntry,
    RevocationList,
    parse_revocation_list,
    sign_revocation_list,
)
from agent.protocol.signed_doc import sign_document
from agent.protocol.timemsg import TIME_TYPE, parse_time, sign_time
from agent.store import Meta
from tests.credkit import GATE, NOW, SITE, Kit, MemoryReplays

BIN = Path(sys.executable).parent
ZERO_WIDTH = "binhai\u200b-0001"


@pytest.fixture
def kit() -> Kit:
    return Kit()


class FakeClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return 100.0


# ---- identifiers -------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["", "*", "a/b", "a+b", "a#b", "a b", "..", ".", ZERO_WIDTH,
                                 "x\u202eevil", "tab\there", "e\u0301", "x" * 65, "a\\b"])
def test_identifier_grammar_refuses_what_would_confuse_topics_or_eyes(bad: str) -> None:
    assert id_problem(bad) is not None
    assert scope_problem(bad if "/" not in bad else f"{bad}/x") is not None


@pytest.mark.parametrize("good", ["binhai-0001", "north-1", "C123456", "滨海-01", "\u00e9"])
def test_identifier_grammar_takes_ordinary_ids(good: str) -> None:
    assert id_problem(good) is None
    assert scope_problem(f"{good}/{good}") is None


def test_scopes_and_targets() -> None:
    assert scope_problem("binhai-0001/*") is not None  # no wildcard in a credential
    assert scope_problem("a/b/c") is not None
    assert target_problem("binhai-0001/*") is None  # every gate of a site
    assert target_problem("*/north-1") is not None
    assert target_problem("binhai-0001/..") is not None


def test_config_refuses_a_wildcard_or_invisible_gate_id(tmp_path: Path) -> None:
    raw: dict[str, Any] = {
        "gate": {"site": "*", "id": "north\u200b-1"},
        "trust": {"keys_dir": str(tmp_path), "ops_keys_dir": str(tmp_path)},
    }
    with pytest.raises(ConfigError) as err:
        config_from_mapping(raw, base_dir=tmp_path)
    problems = "\n".join(err.value.problems)
    assert "gate.site: must not contain *" in problems
    assert "gate.id: holds U+200B" in problems


def test_credential_issue_refuses_bad_scopes_and_subjects(kit: Kit) -> None:
    for scope, sub in (("..", "C1"), (ZERO_WIDTH, "C1"), (SITE, "C 1"), (SITE, "C/1")):
        with pytest.raises(UsageError):
            issue_credential(kit.issuer, kid=kit.kid, sub=sub, scope=[scope],
                             not_before=NOW, ttl_s=60, now=NOW)


def test_verifier_refuses_a_signed_credential_outside_the_grammar(kit: Kit) -> None:
    """A credential the issuer signed with a zero-width scope is malformed, not a match."""
    claims = {1: kit.kid, 2: "C1", 4: int(NOW) + 600, 5: int(NOW) - 60, 6: int(NOW) - 60,
              7: bytes(8), 9: [ZERO_WIDTH]}
    envelope = cose.sign1(cbor_strict.dumps(claims), kit.issuer, kit.kid)
    text = qrtext.encode(qrtext.PREFIX_CREDENTIAL, cose.encode(envelope))
    ctx = kit.ctx.__class__(ZERO_WIDTH, GATE, accept_static=True)
    decision = kit.decide(text, ctx=ctx)
    assert not decision.granted and decision.reason == "malformed"
    assert "U+200B" in decision.detail


# ---- signed fields --------------------------------------------------------------------------

def _signed_command(kit: Kit, **body: Any) -> bytes:
    base = {"v": 1, "id": "c1", "target": f"{SITE}/{GATE}", "action": "mode", "mode": "free",
            "iat": int(NOW), "exp": int(NOW) + 60}
    return sign_document(COMMAND_TYPE, {**base, **body}, kit.ops, kit.ops_kid)


def test_mode_for_more_than_30_days_is_refused_when_signed_and_when_parsed(kit: Kit) -> None:
    with pytest.raises(ValueError, match="30 days"):
        make_command("mode", f"{SITE}/{GATE}", now=NOW, mode="free", duration_s=8_640_000_000_000)
    data = _signed_command(kit, **{"for": 8_640_000_000_000})
    with pytest.raises(CommandRefused) as err:
        parse_command(data, kit.keyring, SITE, GATE, NOW, MemoryReplays())
    assert err.value.reason == "malformed" and "30 days" in err.value.detail
    ok = parse_command(_signed_command(kit, **{"for": 30 * 86400}), kit.keyring, SITE, GATE, NOW,
                       MemoryReplays())
    assert ok.duration_s == 30 * 86400


def test_resend_seqs_are_bounded(kit: Kit) -> None:
    with pytest.raises(ValueError, match="from <= to"):
        make_command("resend", f"{SITE}/{GATE}", now=NOW, seqs=(2**60, 2**60))


def test_time_message_in_microseconds_is_refused_with_the_reason(kit: Kit) -> None:
    data = sign_document(TIME_TYPE, {"v": 1, "t_ms": int(NOW * 1_000_000)}, kit.ops, kit.ops_kid)
    with pytest.raises(ProtocolError) as err:
        parse_time(data, kit.keyring, NOW)
    assert err.value.reason == "malformed" and "microseconds" in err.value.detail
    with pytest.raises(ValueError, match="2100"):
        sign_time(NOW * 1000, kit.ops, kit.ops_kid)  # the centre cannot sign one either
    assert parse_time(sign_time(NOW, kit.ops, kit.ops_kid), kit.keyring, NOW).t == NOW


def test_revocation_list_bounds(kit: Kit) -> None:
    def body(**fields: Any) -> bytes:
        base = {"k": "full", "v": 3, "b": None, "t": int(NOW), "a": [], "r": []}
        return sign_document(DOC_TYPE, {**base, **fields}, kit.ops, kit.ops_kid)

    for fields, words in (({"v": 2**60}, "positive integer"),
                          ({"t": int(NOW) + 7 * 86400}, "in the future"),
                          ({"t": int(NOW * 1000)}, "between 2020 and 2100"),
                          ({"a": [["a/b", None]]}, "must not contain /"),
                          ({"a": [["C1", 2**50]]}, "before 2100")):
        with pytest.raises(RevocationListError, match=words):
            parse_revocation_list(body(**fields), kit.keyring, NOW)
    with pytest.raises(ValueError, match="must not contain"):
        sign_revocation_list(RevocationList("full", 1, None, int(NOW),
                                            (RevocationEntry("sub", "C#1"),)), kit.ops, "ops1")


# ---- gatectl refuses what the gate refuses (exit 2, one line) ------------------------------

def _gatectl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "gatectl"), *args], capture_output=True, text=True,
                          timeout=60)


def test_gatectl_refuses_out_of_bound_commands_before_connecting(tmp_path: Path) -> None:
    assert _gatectl("keys", "new", "--kid", "ops1", "--out", str(tmp_path)).returncode == 0
    key = str(tmp_path / "ops1.key")
    broker = ("--broker", "mqtt://127.0.0.1:9", "--wait", "0")
    cases = [
        (("mode", f"{SITE}/{GATE}", "free", "--for", "100000000d"), "30 days"),
        (("mode", "*/north-1", "lockdown"), "must not contain *"),
        (("open", f"{SITE}/nor th"), "no spaces"),
        (("resend", f"{SITE}/{GATE}", "--from", "5", "--to", "1"), "from <= to"),
    ]
    for args, words in cases:
        result = _gatectl(*args, "--key", key, *broker)
        assert result.returncode == 2, (args, result.stderr)
        assert words in result.stderr and result.stderr.count("\n") == 1, result.stderr
    issue = _gatectl("credential", "issue", "--key", key, "--sub", "C1", "--scope", "..")
    assert issue.returncode == 2 and "path name" in issue.stderr


# ---- values restored from state ---------------------------------------------------------------

def test_saved_mode_end_in_year_275817_is_damage_not_a_crash(tmp_path: Path) -> None:
    meta = Meta(tmp_path)
    try:
        meta.set("mode", {"mode": "free", "until": 8.6e12})
        keeper = ModeKeeper("normal", meta, NOW)
        assert keeper.mode == "normal" and keeper.until is None
        assert keeper.damage is not None and "saved mode end" in keeper.damage
        meta.set("mode", {"mode": "lockdown", "until": NOW + 3600})
        assert ModeKeeper("normal", meta, NOW).mode == "lockdown"  # a sane one is kept
        with pytest.raises(ValueError, match="at most"):
            keeper.set("free", 10**12, NOW)
    finally:
        meta.close()


def test_saved_time_floor_from_a_microsecond_message_is_ignored(tmp_path: Path) -> None:
    meta = Meta(tmp_path)
    try:
        meta.set("time_floor", NOW * 1_000_000)
        keeper = Timekeeper(FakeClock(NOW), meta, probe=lambda: False)
        assert keeper.floor == 0.0 and keeper.now() == NOW
        assert keeper.problems() and "time floor" in keeper.problems()[0]
        keeper.snapshot()  # formats times: must not raise
    finally:
        meta.close()


def test_configured_numbers_have_upper_bounds_too(tmp_path: Path) -> None:
    raw: dict[str, Any] = {
        "gate": {"site": SITE, "id": GATE},
        "trust": {"keys_dir": str(tmp_path), "ops_keys_dir": str(tmp_path)},
        "door": {"unlock_s": 1e9}, "policy": {"presentation_window_s": 86400},
    }
    with pytest.raises(ConfigError) as err:
        config_from_mapping(raw, base_dir=tmp_path)
    problems = "\n".join(err.value.problems)
    assert "door.unlock_s: must be at most 300, got 1000000000.0" in problems
    assert "policy.presentation_window_s: must be at most 600" in problems
