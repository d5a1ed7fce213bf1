"""Power-cut simulation: a writer SIGKILLed at random moments loses nothing it confirmed.

A child process appends entries (acknowledging older ones as the drain does) and installs
revocation lists (full and delta, with
journal compaction) as fast as it can, printing each ``seq`` after ``append`` returned
and each list version before and after ``apply``. The parent kills it with SIGKILL at a
random moment, then checks that every file loads without a problem, every printed seq
is stored, the sequence has no holes, and the revocation list is exactly the old or the
new version, entry by entry. Then it starts the next child on the same folder.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agent.protocol.revocation import RevocationEntry, RevocationList
from agent.store import EntryLog, RevocationStore

ROOT = Path(__file__).resolve().parent.parent
WINDOW = 4000  # ids revoked at each version: a sliding window of cti numbers
STEP = 150  # ids that leave and join the window per version
JOURNAL_LIMIT = 1000  # small, so compaction happens under the kills too
KILLS = 55


def cti(n: int) -> str:
    return f"{n:032x}"


def revoked_at(version: int) -> range:
    return range(version * STEP, version * STEP + WINDOW)


def list_for(version: int) -> RevocationList:
    """Version 1 and every 5th are full lists, the others deltas from the previous one."""
    if version == 1 or version % 5 == 0:
        entries = [RevocationEntry("cti", cti(n)) for n in revoked_at(version)]
        entries.append(RevocationEntry("sub", f"rider-{version}"))
        return RevocationList("full", version, None, version, tuple(entries))
    old, new = set(revoked_at(version - 1)), set(revoked_at(version))
    add = [RevocationEntry("cti", cti(n)) for n in sorted(new - old)]
    add.append(RevocationEntry("sub", f"rider-{version}"))
    remove = [RevocationEntry("cti", cti(n)) for n in sorted(old - new)]
    remove.append(RevocationEntry("sub", f"rider-{version - 1}"))
    return RevocationList("delta", version, version - 1, version, tuple(add), tuple(remove))


def child(state_dir: Path) -> None:
    """The writer that gets killed: append, append, ..., apply the next list, repeat."""
    log = EntryLog(state_dir)
    store = RevocationStore(state_dir, journal_limit=JOURNAL_LIMIT)
    out = sys.stdout
    count = 0
    while True:
        entry = log.append({"kind": "scan", "granted": True, "n": count})
        out.write(f"seq {entry.seq}\n")
        out.flush()
        count += 1
        if count % 4 == 0:  # the drain acknowledges older rows between appends
            log.ack(range(max(1, entry.seq - 6), entry.seq - 2))
        if count % 15 == 0:
            version = (store.version or 0) + 1
            out.write(f"applying {version}\n")
            out.flush()
            store.apply(list_for(version))
            out.write(f"applied {version}\n")
            out.flush()


def check_list(store: RevocationStore, version: int) -> None:
    """The store holds exactly list ``version``: every id around the window checked."""
    assert store.version == (version or None)
    if version == 0:
        assert store.entries == 0
        return
    assert store.entries == WINDOW + 1
    expected = set(revoked_at(version))
    for n in range(max(0, (version - 2) * STEP), (version + 2) * STEP + WINDOW):
        assert store.is_revoked(cti(n), "nobody", 0) == (n in expected), (version, n)
    assert store.is_revoked(cti(10**9), f"rider-{version}", 0)
    assert not store.is_revoked(cti(10**9), f"rider-{version - 1}", 0)


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path) -> None:
    rng = random.Random(20260921)
    confirmed: set[int] = set()
    installed = 0
    mid_apply = 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for kill in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.test_store_powercut", str(tmp_path)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        lines: list[str] = []
        reader = threading.Thread(target=lines.extend, args=(proc.stdout,), daemon=True)
        reader.start()
        time.sleep(rng.uniform(0.25, 0.7))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        reader.join(timeout=30)
        err = proc.stderr.read() if proc.stderr else ""
        assert proc.returncode == -signal.SIGKILL, f"child ended by itself: {err}"
        applying = None
        for line in lines:
            word, number = line.split()
            if word == "seq":
                confirmed.add(int(number))
            elif word == "applying":
                applying = int(number)
            elif word == "applied":
                installed, applying = int(number), None
        mid_apply += applying is not None

        with EntryLog(tmp_path) as log:
            assert log.problems() == [], f"kill {kill}: {log.problems()}"
            seqs = [entry.seq for entry in log.history()]
        assert seqs == list(range(1, len(seqs) + 1)), f"kill {kill}: a hole in the sequence"
        assert confirmed <= set(seqs), f"kill {kill}: confirmed appends missing"

        with RevocationStore(tmp_path, journal_limit=JOURNAL_LIMIT) as store:
            assert store.problems() == [], f"kill {kill}: {store.problems()}"
            got = store.version or 0
            assert got in ({installed, applying} - {None}), (kill, got, installed, applying)
            check_list(store, got)
            installed = got
    print(f"{KILLS} kills, {len(confirmed)} confirmed appends, list version {installed}, "
          f"{mid_apply} kills during an apply")
    assert len(confirmed) > 1000
    assert installed > 10


if __name__ == "__main__":
    child(Path(sys.argv[1]))
