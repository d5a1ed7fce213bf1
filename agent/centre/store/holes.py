"""Seq holes per gate: found, aged, turned into resend requests, and recorded as lost.

A gate numbers its events from 1 without holes, so a missing seq below one the centre
has is an event that is late or was dropped (a broker that crashed after its PUBACK, an
ACL that dropped a topic). ``seq_marks.upto`` is the highest seq below which nothing is
missing (lost ranges count as settled), so a sweep reads only rows above it. Each hole
keeps when it was first seen and its resend attempts; ``due_resends`` hands out the
ranges older than ``hole_after_s`` whose last request is ``resend_every_s`` old, and a
hole still open after ``attempts`` requests, or that the gate answered ``not_found``
(outside its retention), moves to ``lost`` with the reason: never silently.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.centre.store.db import Database

MAX_RANGE = 10_000  # agent.protocol.command.MAX_RESEND: one command asks for at most this


@dataclass(frozen=True)
class Hole:
    site: str
    gate: str
    first: int
    last: int
    first_seen: float
    resends: int = 0
    last_resend_at: float | None = None
    last_cmd: str | None = None


def _gaps(upto: int, seqs: list[int], lost: list[tuple[int, int]],
          reported: int = 0) -> tuple[list[tuple[int, int]], int]:
    """Missing ranges above ``upto`` (minus lost ranges) and the new contiguous mark;
    ``reported`` (the gate says it sent up to there) makes a missing tail a range too."""
    gaps: list[tuple[int, int]] = []
    expected = upto + 1
    for seq in [*seqs, reported + 1]:
        if seq > expected:
            gaps.extend(_minus(expected, seq - 1, lost))
        expected = max(expected, seq + 1)
    expected = max(upto + 1, seqs[-1] + 1 if seqs else 0)
    mark = (gaps[0][0] - 1) if gaps else expected - 1
    return gaps, mark


def _minus(a: int, b: int, lost: list[tuple[int, int]]) -> list[tuple[int, int]]:
    parts = [(a, b)]
    for la, lb in lost:
        nxt: list[tuple[int, int]] = []
        for pa, pb in parts:
            if lb < pa or la > pb:
                nxt.append((pa, pb))
                continue
            if pa < la:
                nxt.append((pa, la - 1))
            if lb < pb:
                nxt.append((lb + 1, pb))
        parts = nxt
    return parts


def sweep(db: Database, now: float) -> int:
    """Recompute every gate's open holes; return how many are open.

    Read first, write only what changed: a gate without holes before or after only moves
    its mark, and those moves go in one transaction at the end. One write transaction
    per gate (the old way) meant, at 1,000 gates, a thousand commits (each an fsync on
    SQLite, each taking the write lock from the ingest writer) every ``every_s``. A gate
    whose holes change is recomputed in its own transaction, as before. The early reads
    are safe outside it: rows and lost ranges only grow (rows deleted by hand are
    ``audit``'s business), and a move applies only if the mark is still the one read, so
    it never undoes an audit that lowered it meanwhile."""
    marks = db.query("SELECT site, gate, upto, reported FROM seq_marks")
    with_holes = {(site, gate) for site, gate in db.query("SELECT DISTINCT site, gate FROM holes")}
    lost: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for site, gate, a, b in db.query("SELECT site, gate, seq_from, seq_to FROM lost "
                                     "ORDER BY site, gate, seq_from"):
        lost.setdefault((site, gate), []).append((int(a), int(b)))
    moves: list[tuple[int, str, str, int]] = []
    open_count = 0
    for site, gate, upto, reported in marks:
        upto, reported = int(upto), int(reported)
        if (site, gate) not in with_holes:
            seqs = [int(r[0]) for r in db.query(
                "SELECT seq FROM entries WHERE site = ? AND gate = ? AND seq > ? ORDER BY seq",
                (site, gate, upto))]
            gaps, mark = _gaps(upto, seqs, lost.get((site, gate), []), reported)
            if not gaps:
                if mark > upto:
                    moves.append((mark, site, gate, upto))
                continue
        with db.transaction():
            open_count += _sweep_gate(db, site, gate, upto, reported, now)
    if moves:
        with db.transaction():
            db.executemany("UPDATE seq_marks SET upto = ? WHERE site = ? AND gate = ? "
                           "AND upto = ?", moves)
    return open_count


def _sweep_gate(db: Database, site: str, gate: str, upto: int, reported: int,
                now: float) -> int:
    seqs = [int(r[0]) for r in db.query(
        "SELECT seq FROM entries WHERE site = ? AND gate = ? AND seq > ? ORDER BY seq",
        (site, gate, upto))]
    lost = [(int(a), int(b)) for a, b in db.query(
        "SELECT seq_from, seq_to FROM lost WHERE site = ? AND gate = ? ORDER BY seq_from",
        (site, gate))]
    gaps, mark = _gaps(upto, seqs, lost, reported)
    old = [Hole(site, gate, int(r[0]), int(r[1]), float(r[2]), int(r[3]),
                None if r[4] is None else float(r[4]), r[5]) for r in db.query(
        "SELECT seq_from, seq_to, first_seen, resends, last_resend_at, last_cmd FROM holes "
        "WHERE site = ? AND gate = ?", (site, gate))]
    db.execute("DELETE FROM holes WHERE site = ? AND gate = ?", (site, gate))
    rows = []
    for a, b in gaps:
        overlap = [h for h in old if h.first <= b and a <= h.last]
        first_seen = min((h.first_seen for h in overlap), default=now)
        resends = max((h.resends for h in overlap), default=0)
        last_at = max((h.last_resend_at for h in overlap if h.last_resend_at), default=None)
        last_cmd = next((h.last_cmd for h in overlap if h.last_cmd), None)
        rows.append((site, gate, a, b, first_seen, resends, last_at, last_cmd))
    db.executemany("INSERT INTO holes (site, gate, seq_from, seq_to, first_seen, resends, "
                   "last_resend_at, last_cmd) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    if mark > upto:
        db.execute("UPDATE seq_marks SET upto = ? WHERE site = ? AND gate = ? AND upto < ?",
                   (mark, site, gate, mark))
    return len(rows)


def audit(db: Database) -> list[tuple[str, str, int, int]]:
    """Marks that claim rows the table no longer has (deleted by hand, a partial restore)
    are lowered to the first missing seq, so the next sweep sees those holes; returns
    (site, gate, old mark, new mark) of each. One indexed count per gate; the full seq
    list is read only for a gate whose count falls short of its mark."""
    counts = {(s, g): int(n) for s, g, n in db.query(
        "SELECT e.site, e.gate, COUNT(*) FROM entries e JOIN seq_marks m ON "
        "e.site = m.site AND e.gate = m.gate WHERE e.seq <= m.upto GROUP BY e.site, e.gate")}
    lowered: list[tuple[str, str, int, int]] = []
    for site, gate, upto in db.query("SELECT site, gate, upto FROM seq_marks WHERE upto > 0"):
        upto = int(upto)
        if counts.get((site, gate), 0) >= upto:
            continue
        seqs = [int(r[0]) for r in db.query(
            "SELECT seq FROM entries WHERE site = ? AND gate = ? AND seq <= ? ORDER BY seq",
            (site, gate, upto))]
        lost = [(int(a), int(b)) for a, b in db.query(
            "SELECT seq_from, seq_to FROM lost WHERE site = ? AND gate = ? ORDER BY seq_from",
            (site, gate))]
        gaps, _ = _gaps(0, [*seqs, upto + 1], lost)
        if not gaps:
            continue  # what is missing is recorded lost already
        mark = gaps[0][0] - 1
        with db.transaction():
            changed = db.execute("UPDATE seq_marks SET upto = ? WHERE site = ? AND gate = ? "
                                 "AND upto = ?", (mark, site, gate, upto))
        if changed:
            lowered.append((site, gate, upto, mark))
    return lowered


def due_resends(db: Database, now: float, *, hole_after_s: float, resend_every_s: float,
                attempts: int) -> list[Hole]:
    """Holes to request now (marked as requested); exhausted ones are recorded lost."""
    due: list[Hole] = []
    rows = db.query(
        "SELECT site, gate, seq_from, seq_to, first_seen, resends, last_resend_at FROM holes "
        "WHERE first_seen <= ? AND (last_resend_at IS NULL OR last_resend_at <= ?) "
        "ORDER BY first_seen", (now - hole_after_s, now - resend_every_s))
    for site, gate, a, b, first_seen, resends, _last_at in rows:
        if int(resends) >= attempts:
            with db.transaction():
                record_lost(db, site, gate, int(a), int(b), now,
                            f"still missing after {resends} resend request(s)")
            continue
        with db.transaction():
            changed = db.execute(
                "UPDATE holes SET resends = resends + 1, last_resend_at = ? WHERE site = ? "
                "AND gate = ? AND seq_from = ? AND resends = ?",
                (now, site, gate, a, resends))
        if changed:  # another centre process did not take it first
            due.append(Hole(site, gate, int(a), min(int(b), int(a) + MAX_RANGE - 1),
                            float(first_seen), int(resends) + 1, now))
    return due


def note_command(db: Database, hole: Hole, cmd_id: str) -> None:
    with db.transaction():
        db.execute("UPDATE holes SET last_cmd = ? WHERE site = ? AND gate = ? AND seq_from = ?",
                   (cmd_id, hole.site, hole.gate, hole.first))


def command_result(db: Database, site: str, gate: str, cmd_id: str, ok: bool, reason: str,
                   detail: str, now: float) -> bool:
    """A gate answered a resend; ``not_found`` makes the range lost. True if it was ours."""
    rows = db.query("SELECT seq_from, seq_to FROM holes WHERE site = ? AND gate = ? "
                    "AND last_cmd = ?", (site, gate, cmd_id))
    if not rows:
        return False
    a, b = int(rows[0][0]), int(rows[0][1])
    with db.transaction():
        db.execute("UPDATE holes SET last_result = ? WHERE site = ? AND gate = ? "
                   "AND seq_from = ?", (f"{reason}: {detail}"[:500], site, gate, a))
        if not ok and reason == "not_found":
            record_lost(db, site, gate, a, b, now, f"the gate no longer keeps them: {detail}")
    return True


def record_lost(db: Database, site: str, gate: str, first: int, last: int, now: float,
                reason: str) -> None:
    """Inside the caller's transaction: the range is lost for good, and no longer a hole."""
    db.execute("INSERT INTO lost (site, gate, seq_from, seq_to, recorded_at, reason) "
               "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (site, gate, seq_from) DO NOTHING",
               (site, gate, first, last, now, reason[:500]))
    db.execute("DELETE FROM holes WHERE site = ? AND gate = ? AND seq_from = ?",
               (site, gate, first))
