"""A gate's sync side in its own process, for tests that SIGKILL it.

    python -m tests.sync_agent_proc BROKER_URL STATE_DIR SITE GATE [APPEND_N] [INFLIGHT]

Appends APPEND_N events (ids written to STATE_DIR/appended-<pid>.txt), then runs a
SyncService until killed; prints "connected" once the broker accepted it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from agent.sync.broker import broker_settings
from agent.sync.service import SyncService
from tests.sync_support import backlog, make_outbox


def main(argv: list[str]) -> int:
    url, state, site, gate = argv[:4]
    count = int(argv[4]) if len(argv) > 4 else 0
    inflight = int(argv[5]) if len(argv) > 5 else 100
    outbox = make_outbox(Path(state))
    ids = [outbox.append({"kind": "scan", "n": i, "site": site, "gate": gate}).id
           for i in range(count)]
    with Path(state, "appended.txt").open("a") as out:
        out.write("".join(i + "\n" for i in ids))
    sync = SyncService(broker_settings(url, keepalive_s=5), site, gate, outbox,
                       lambda _m: None, lambda: {"outbox_backlog": backlog(outbox)},
                       inflight=inflight)
    sync.start()
    while not sync.connected:
        time.sleep(0.01)
    print("connected", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
