#!/usr/bin/env bash
# The whole test suite: lint, type-check, tests. The README's second command and what
# CI runs. Extra arguments go to pytest (e.g. scripts/test.sh -k outbox).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --test
VENV="${GATE_AGENT_VENV:-.venv}"
echo "== ruff"
"$VENV/bin/ruff" check agent hw tests benchmarks scripts
echo "== mypy"
"$VENV/bin/mypy"
echo "== pytest"
"$VENV/bin/python" -m pytest "$@"
