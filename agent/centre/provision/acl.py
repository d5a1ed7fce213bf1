"""The Mosquitto ACL for the gates of a provisioning run (docs/operations.md's layout).

A gate's certificate CN is its user name (``use_identity_as_username true``); each gate
gets one block naming its own topics, taken from :class:`agent.sync.topics.GateTopics` so
the ACL and the gate never disagree on a topic.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from agent.centre.provision.ids import common_name
from agent.sync.topics import REVOCATIONS_FULL, ROOT, TIME, GateTopics

HEADER = "# mosquitto.acl written by gatectl provision: the broker's acl_file.\n"
CENTRE_BLOCK = f"""\
# centre services (their own certificates / user names)
user centre-ingest
topic read {ROOT}/+/+/events
topic read {ROOT}/+/+/status
topic read {ROOT}/+/+/cmd/result
topic read {ROOT}/+/+/resync
topic write {ROOT}/+/+/events/ack

user centre-ops
topic write {ROOT}/+/+/cmd
topic write {ROOT}/+/cmd
topic write {ROOT}/revocations/#
topic write {TIME}
topic write {ROOT}/+/+/time
topic read {ROOT}/+/+/cmd/result
topic read {ROOT}/+/+/status
topic read {ROOT}/+/+/events
topic read {ROOT}/+/+/resync
topic read {ROOT}/+/+/time/request
"""
GATES_MARK = "# one block per gate"


def gate_block(site: str, gate: str) -> str:
    t = GateTopics(site, gate)
    revocations = REVOCATIONS_FULL.rsplit("/", 1)[0] + "/#"
    lines = [f"user {common_name(site, gate)}"]
    lines += [f"topic write {x}" for x in (t.events, t.status, t.cmd_result, t.resync,
                                           t.time_request)]
    lines += [f"topic read  {x}" for x in (t.cmd, t.time, t.events_ack, t.site_cmd,
                                           revocations, TIME)]
    return "\n".join(lines) + "\n"


def existing_gates(path: Path) -> list[str]:
    """The gate blocks already in an ACL file an earlier run wrote (kept, in order)."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    if GATES_MARK not in text:
        return []
    blocks = text.split(GATES_MARK, 1)[1].strip("\n").split("\n\n")
    return [b.strip("\n") + "\n" for b in blocks if b.startswith("user gate-")]


def render(gates: Iterable[tuple[str, str]], keep: Iterable[str] = ()) -> str:
    """The whole file: centre services, then earlier blocks, then this run's gates."""
    blocks = list(keep)
    names = {b.split("\n", 1)[0] for b in blocks}
    for site, gate in gates:
        block = gate_block(site, gate)
        if block.split("\n", 1)[0] not in names:
            blocks.append(block)
    return HEADER + CENTRE_BLOCK + "\n" + GATES_MARK + "\n" + "\n".join(blocks)
