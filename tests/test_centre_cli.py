"""gate-centre's config, schema and staff queries as users call them (exit codes, one-line
errors, --json/--csv), on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import pytest

from agent.centre.config import load_centre_config
from agent.centre.store import connect
from agent.centre.store.ingest import Incoming, StatusUpdate, record_status, store_events
from agent.centre.store.schema import LATEST
from agent.cli import gate_centre
from tests.centre_support import CentreFiles, centre_files
from tests.conftest import ROOT

SITE = "binhai-0001"


def test_example_config_is_valid_as_shipped(tmp_path: Path) -> None:
    config = tmp_path / "centre.toml"
    config.write_text((ROOT / "centre.example.toml").read_text())
    (tmp_path / "keys" / "ops").mkdir(parents=True)
    (tmp_path / "keys" / "ops-centre.key").write_text("placeholder")
    cfg = load_centre_config(config)
    assert cfg.store.url == f"sqlite://{tmp_path}/centre.db"
    assert cfg.mqtt.share_group == "ingest" and cfg.sweep.hole_after_s == 300


def test_config_mistakes_are_all_reported_with_their_key_and_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "centre.toml"
    config.write_text('[centre]\nid = "x"\ncolour = 1\n[store]\nurl = "mysql://x"\n'
                      '[mqtt]\nurl = "mqtt://127.0.0.1"\n[keys]\nops_key = "nope.key"\n'
                      'trust_ops_dir = "ops"\n[sweep]\nhole_after_s = -1\n[extra]\n')
    assert gate_centre.main(["db", "upgrade", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    for needle in ("centre.colour: unknown key", "store.url:", "keys.ops_key:",
                   "keys.trust_ops_dir:", "sweep.hole_after_s:", "extra: unknown section"):
        assert needle in err


def _fill(files: CentreFiles) -> None:
    db = connect(files.store_url)
    now = time.time()
    rows = [Incoming(SITE, gate, seq, f"{gate}-{seq}", {
        "id": f"{gate}-{seq}", "seq": seq, "site": SITE, "gate": gate, "kind": "scan",
        "ts": f"2026-12-01T10:0{seq}:00.000Z", "granted": seq != 2,
        "reason": "revoked" if seq == 2 else "ok", "sub": f"c{seq}", "cti": "ab" * 8,
        "method": "serial", "door": "none" if seq == 2 else "unlocked"}, now)
        for gate in ("north-1", "south-2") for seq in (1, 2, 3, 5)]
    store_events(db, rows)
    with db.transaction():
        record_status(db, StatusUpdate(SITE, "north-1", {
            "online": True, "backlog": 4, "revocations": {"version": 7, "age_s": 30.0},
            "clock": {"trusted": True, "state": "synchronised"}, "alarms": {}}, now, False))
        record_status(db, StatusUpdate(SITE, "south-2", {
            "online": False, "reason": "connection_lost"}, now, True))
    db.close()


@pytest.fixture
def filled(tmp_path: Path, store_url: str) -> CentreFiles:
    files = centre_files(tmp_path, "mqtt://127.0.0.1:1", store_url)
    _fill(files)
    return files


def test_entries_filter_and_print_json_and_csv(
        filled: CentreFiles, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = ["--config", str(filled.config)]
    assert gate_centre.main(["entries", "--json", *cfg]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 8
    assert {"id", "seq", "site", "gate", "ts", "granted", "reason", "sub", "cti",
            "received_at"} <= set(rows[0])
    assert gate_centre.main(["entries", "--json", "--gate", "north-1", "--reason", "revoked",
                             *cfg]) == 0
    only = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["gate"], r["seq"], r["granted"]) for r in only] == [("north-1", 2, False)]
    assert gate_centre.main(["entries", "--csv", "--sub", "c3", "--since",
                             "2026-12-01T10:02:00Z", "--until", "2026-12-01T10:04:00Z",
                             *cfg]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["gate"], r["seq"]) for r in table] == [("north-1", "3"), ("south-2", "3")]
    assert gate_centre.main(["entries", "--sub", "nobody", *cfg]) == 1
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        gate_centre.main(["entries", "--since", "2026-12-01T10:00", *cfg])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no time zone" in err
    assert gate_centre.main(["entries", "--json", "--limit", "3", *cfg]) == 0
    first = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert first == rows[:3]
    with pytest.raises(SystemExit) as exit_info:
        gate_centre.main(["entries", "--limit", "0", *cfg])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a positive whole number" in err


def test_gates_lists_problems_first_with_the_documented_fields(
        filled: CentreFiles, capsys: pytest.CaptureFixture[str]) -> None:
    db = connect(filled.store_url)
    from agent.centre.store import holes
    holes.sweep(db, time.time())
    db.close()
    assert gate_centre.main(["gates", "--json", "--config", str(filled.config)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {"site", "gate", "online", "since", "last_seen", "revocations_version", "backlog",
            "clock", "alarms", "holes", "lost"} <= set(rows[0])
    by = {r["gate"]: r for r in rows}
    assert by["north-1"]["online"] is True and by["north-1"]["revocations_version"] == 7
    assert by["north-1"]["backlog"] == 4 and by["north-1"]["holes"] == [[4, 4]]
    assert by["south-2"]["online"] is False and "offline" in by["south-2"]["problems"]
    assert gate_centre.main(["gates", "--problems", "--config", str(filled.config)]) == 0
    assert "OFFLINE" in capsys.readouterr().out


def test_db_upgrade_is_idempotent_and_an_old_schema_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = centre_files(tmp_path, "mqtt://127.0.0.1:1", f"sqlite://{tmp_path}/new.db",
                         upgrade_db=False)
    cfg = ["--config", str(files.config)]
    assert gate_centre.main(["entries", *cfg]) == 1
    assert "gate-centre db upgrade" in capsys.readouterr().err
    assert gate_centre.main(["db", "upgrade", *cfg]) == 0
    assert f"upgraded from version 0 to {LATEST}" in capsys.readouterr().out
    assert gate_centre.main(["db", "upgrade", *cfg]) == 0
    assert "already current" in capsys.readouterr().out


def test_an_unreachable_postgresql_is_one_clear_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = centre_files(tmp_path, "mqtt://127.0.0.1:1",
                         "postgresql://nobody@127.0.0.1:1/none", upgrade_db=False)
    assert gate_centre.main(["gates", "--config", str(files.config)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot connect to PostgreSQL" in err
