"""Signed, versioned revocation lists (centre -> gates): full snapshots and deltas.

A full list replaces everything; a delta moves the gate from exactly ``base`` to
``version``. Entries revoke one credential (``cti``) or every credential of a courier
(``sub``) issued before ``before`` (all of them when ``before`` is None).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from agent.core.bounds import (
    LIST_FUTURE_S,
    MAX_DELTA_ENTRIES,
    MAX_LIST_ENTRIES,
    MAX_TIME,
    MAX_VERSION,
    time_problem,
)
from agent.core.bounds import MAX_DELTA_BYTES as MAX_DELTA_BYTES  # re-exported
from agent.core.bounds import MAX_LIST_BYTES as MAX_LIST_BYTES
from agent.core.errors import ProtocolError, RevocationListError
from agent.core.ids import id_problem
from agent.protocol.keys import KeyRing, SigningKey
from agent.protocol.signed_doc import open_document, sign_document


@dataclass(frozen=True, slots=True)
class RevocationEntry:
    kind: Literal["cti", "sub"]
    value: str  # cti: lower-case hex; sub: the courier id
    before: int | None = None  # sub only: credentials issued (iat) before this Unix time


@dataclass(frozen=True)
class RevocationList:
    kind: Literal["full", "delta"]
    version: int
    base: int | None  # delta only: the version this delta applies to
    issued_at: int  # Unix seconds, when the centre signed it
    add: tuple[RevocationEntry, ...]
    remove: tuple[RevocationEntry, ...] = ()  # delta only: entries lifted again


# --- wire format --------------------------------------------------------------------
# A signed document (agent.protocol.signed_doc) of type DOC_TYPE whose body is
# {"k": "full"|"delta", "v": version, "b": base|null, "t": issued_at,
#  "a": [entry...], "r": [entry...]} with each entry either the cti as raw bytes or
# [sub, before|null] for a courier. Compact on purpose: a full list may hold millions.

DOC_TYPE = "gate.revocations.v1"
# Sizes (agent.core.bounds): a full list of 1,000,000 8-16 byte ctis is 10-17 MB, so
# MAX_LIST_BYTES (32 MiB, from a file) holds 2-3 million and MQTT_LIST_BYTES (6 MiB, over
# MQTT) about 700,000; deltas (MAX_DELTA_BYTES) are small by design.
MAX_SUB = 64


def list_problem(lst: RevocationList) -> str | None:
    """The bounds a gate checks (agent.core.bounds), for the signer to check first."""
    if not 1 <= lst.version <= MAX_VERSION:
        return f"revocation list version must be 1 to {MAX_VERSION}, got {lst.version}"
    if lst.kind == "full" and len(lst.add) > MAX_LIST_ENTRIES:
        return f"a full list holds at most {MAX_LIST_ENTRIES} entries, got {len(lst.add)}"
    if lst.kind == "delta" and len(lst.add) + len(lst.remove) > MAX_DELTA_ENTRIES:
        return (f"a delta holds at most {MAX_DELTA_ENTRIES} entries, got "
                f"{len(lst.add) + len(lst.remove)}: publish a full list instead")
    return None


def sign_revocation_list(lst: RevocationList, key: SigningKey, kid: str) -> bytes:
    """The signed bytes the centre publishes; ValueError on an inconsistent list."""
    problem = list_problem(lst)
    if problem:
        raise ValueError(problem)
    if lst.kind == "full" and (lst.base is not None or lst.remove):
        raise ValueError("a full revocation list has no base and no removals")
    if lst.kind == "delta" and (lst.base is None or not 0 <= lst.base < lst.version):
        raise ValueError(f"a delta needs a base below its version {lst.version}, got {lst.base}")
    body = {
        "k": lst.kind,
        "v": lst.version,
        "b": lst.base,
        "t": int(lst.issued_at),
        "a": _canonical([_entry_to_wire(e) for e in lst.add], lst.kind),
        "r": [_entry_to_wire(e) for e in lst.remove],
    }
    data = sign_document(DOC_TYPE, body, key, kid)
    cap = MAX_LIST_BYTES if lst.kind == "full" else MAX_DELTA_BYTES
    if len(data) > cap:
        raise ValueError(f"the signed {lst.kind} list is {len(data)} bytes; gates take at most "
                         f"{cap}" + ("" if lst.kind == "full" else ": publish a full list"))
    return data


def parse_revocation_list(data: bytes, keyring: KeyRing, now: float) -> RevocationList:
    """Check and decode a signed list; RevocationListError saying what is wrong."""
    try:
        body = open_document(data, keyring, DOC_TYPE, now, max_bytes=MAX_LIST_BYTES)
    except ProtocolError as exc:
        raise RevocationListError(f"revocation list refused ({exc.reason}): {exc.detail}") from None
    try:
        lst = _list_from_body(body)
    except (TypeError, ValueError, KeyError) as exc:
        raise RevocationListError(f"revocation list refused: {exc}") from None
    refuse_if(list_problem(lst), lst.issued_at, now)
    return lst


def refuse_if(problem: str | None, issued_at: int, now: float) -> None:
    """The last checks both readers share: the issue time, then ``problem`` (a bound the
    reader found) or a list signed in the future, as a RevocationListError."""
    problem = problem or time_problem(issued_at, "list issued_at")
    if problem is None and issued_at > now + LIST_FUTURE_S:
        problem = (f"revocation list was signed {int(issued_at - now)} s in the future of "
                   "this gate's clock: check the centre's and the gate's clocks")
    if problem:
        raise RevocationListError(f"revocation list refused: {problem}")


def _canonical(items: list[bytes | list[Any]], kind: str) -> list[bytes | list[Any]]:
    """A full list's entries in the order gates store them: ids by their bytes, then
    couriers by id. A gate streams a list in this order straight into its sorted table
    and sorts only a list that is not (older centres): see docs/storage.md."""
    if kind != "full":
        return items
    ids = sorted(i for i in items if isinstance(i, bytes))
    subs = sorted((i for i in items if not isinstance(i, bytes)), key=lambda i: str(i[0]))
    return [*ids, *subs]


def _entry_to_wire(entry: RevocationEntry) -> bytes | list[Any]:
    if entry.kind == "cti":
        try:
            raw = bytes.fromhex(entry.value)
        except ValueError:
            raise ValueError(f"cti {entry.value!r} is not hex") from None
        if not 1 <= len(raw) <= 32:
            raise ValueError(f"cti {entry.value!r} is not 1-32 bytes")
        return raw
    problem = id_problem(entry.value, "subject")
    if problem:
        raise ValueError(problem)
    if entry.before is not None and not 0 <= entry.before < MAX_TIME:
        raise ValueError(f"subject {entry.value!r} has a cut-off time after 2100")
    return [entry.value, entry.before]


def check_header(kind: object, version: object, base: object, issued_at: object, *,
                 removals: bool) -> tuple[Literal["full", "delta"], int, int | None, int]:
    """The rules of a list's header, for both readers (this one and the streaming one in
    agent.protocol.revstream): the header typed, or ValueError saying what is wrong."""
    if kind not in ("full", "delta"):
        raise ValueError(f"kind {kind!r} is neither 'full' nor 'delta'")
    if type(version) is not int or not 1 <= version <= MAX_VERSION:
        raise ValueError(f"version is not a positive integer (at most {MAX_VERSION})")
    if type(issued_at) is not int or issued_at < 0:
        raise ValueError("issued_at is not a Unix time")
    if kind == "full" and base is not None:
        raise ValueError("a full list carries a base version")
    if kind == "delta" and (type(base) is not int or not 0 <= base < version):
        raise ValueError(f"delta base {base!r} is not a version below {version}")
    if kind == "full" and removals:
        raise ValueError("a full list carries removals")
    assert isinstance(version, int) and isinstance(issued_at, int)
    assert base is None or isinstance(base, int)
    return ("full" if kind == "full" else "delta"), version, base, issued_at


def _list_from_body(body: dict[str, Any]) -> RevocationList:
    if set(body) != {"k", "v", "b", "t", "a", "r"}:
        raise ValueError(f"body keys are {sorted(body)}, expected a b k r t v")
    if not isinstance(body["a"], list) or not isinstance(body["r"], list):
        raise ValueError("entries are not lists")
    kind, version, base, issued_at = check_header(body["k"], body["v"], body["b"], body["t"],
                                                  removals=bool(body["r"]))
    return RevocationList(
        kind=kind,
        version=version,
        base=base,
        issued_at=issued_at,
        add=_entries_from_wire(body["a"]),
        remove=_entries_from_wire(body["r"]),
    )


def _entries_from_wire(items: list[Any]) -> tuple[RevocationEntry, ...]:
    out: list[RevocationEntry] = []
    append = out.append
    for item in items:
        if type(item) is bytes and 1 <= len(item) <= 32:
            append(RevocationEntry("cti", item.hex(), None))
            continue
        if type(item) is not list or len(item) != 2:
            raise ValueError(f"entry {item!r:.60} is neither a cti nor [sub, before]")
        sub, before = item
        problem = id_problem(sub, "entry subject")
        if problem:
            raise ValueError(problem[:200])
        if before is not None and (type(before) is not int or not 0 <= before < MAX_TIME):
            raise ValueError(f"entry {sub!r} has a 'before' that is not a Unix time before 2100")
        append(RevocationEntry("sub", sub, before))
    return tuple(out)
