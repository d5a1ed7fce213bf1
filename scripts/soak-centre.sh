#!/usr/bin/env bash
# The centre soak on both stores (SQLite, then a PostgreSQL the script starts): 3 real
# gate-agent daemons and 50 simulated gates, 20,000 events, 2 gate-centre processes
# (one SIGKILLed and restarted), 5 broker SIGKILLs. Extra arguments go to each run, e.g.
#   scripts/soak-centre.sh --events 200000 --broker-kills 20
# About 35 s per store at the default size on a 2-core machine (the suite runs that
# size too: tests/test_centre_soak.py). Exit 1 when either store lost or doubled events.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --test
VENV="${GATE_AGENT_VENV:-.venv}"
status=0
for store in sqlite postgresql; do
  "$VENV/bin/python" scripts/soak_centre.py --store "$store" "$@" || status=1
done
exit "$status"
