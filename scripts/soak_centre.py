"""Soak: real gate-agent daemons and many simulated gates through a broker that is
SIGKILLed, into two gate-centre processes on one share group, one SIGKILLed and restarted.

    .venv/bin/python scripts/soak_centre.py [--store sqlite|postgresql] [--gates 50]
        [--daemons 3] [--events 20000] [--daemon-events 500] [--broker-kills 5]

Every event (the daemons' whole entry logs included) must be in the store exactly once
(same id at its seq, in order), every code fed to a daemon decided, and every outbox
empty at the end (the daemons': ``gate-agent outbox status --json``); prints one summary
line, exit 1 otherwise. The defaults are the issue's size (scripts/soak-centre.sh runs
them on both stores); the suite runs a scaled size (tests/test_centre_soak.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.centre_soak import ok, soak


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--gates", type=int, default=50)
    parser.add_argument("--daemons", type=int, default=3)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--daemon-events", type=int, default=500)
    parser.add_argument("--broker-kills", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = soak(args.store, Path(tmp), gates=args.gates, daemons=args.daemons,
                      events=args.events, daemon_events=args.daemon_events,
                      broker_kills=args.broker_kills)
    good = ok(result)
    print(f"soak {args.store}: {json.dumps(result)}: {'ok' if good else 'FAILED'}")
    return 0 if good else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
