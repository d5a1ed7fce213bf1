#!/usr/bin/env bash
# Every benchmark, one after the other. Each ends with a targets table (figure, target, the
# raw library measured in the same run beside it; benchmarks/targets.py) and exits 1 when
# any figure misses its target; this script goes on and exits 1 naming every benchmark that
# missed or failed. Takes ~19 minutes on a quiet 2-core machine; --quick passes --quick to each for a smoke run. Not
# part of the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --test
PY="${GATE_AGENT_VENV:-.venv}/bin/python"
echo "machine: $(uname -m), $(nproc) cores, $("$PY" --version), $(date -u +%Y-%m-%dT%H:%MZ)"
missed=()
for bench in verify store revocations decode sync daemon provision flood centre console gateweb; do
  echo
  echo "===== benchmarks/bench_$bench.py $*"
  # A benchmark exits non-zero when a figure misses its target: note it and go on.
  "$PY" "benchmarks/bench_$bench.py" "$@" || missed+=("$bench")
done
if [ "${#missed[@]}" -gt 0 ]; then
  echo
  echo "missed a target or failed: ${missed[*]} (see the tables above)"
  exit 1
fi
