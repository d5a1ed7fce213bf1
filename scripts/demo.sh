#!/usr/bin/env bash
# The README's first command: set up, then run the gate on its embedded default
# (mock pins, simulated camera, throwaway state, no broker needed).
# Extra arguments go to `gate-agent demo` (e.g. scripts/demo.sh --duration 20 --json).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec "${GATE_AGENT_VENV:-.venv}/bin/gate-agent" demo "$@"
