#!/usr/bin/env bash
# Prepare a development checkout: system packages (when root), the venv, the Python
# packages. Idempotent and quick when nothing changed. Used by scripts/demo.sh and
# scripts/test.sh; run it alone to just set up.
#   scripts/bootstrap.sh [--test]     --test also needs the test-only system packages
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

say() { printf 'bootstrap: %s\n' "$*" >&2; }

# --- Python ---------------------------------------------------------------------------
PY="${PYTHON:-python3}"
if ! command -v "$PY" >/dev/null 2>&1; then
  say "python3 is missing: install it (apt-get install python3 python3-venv) and re-run."
  exit 2
fi
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  say "$("$PY" --version 2>&1) is too old: gate-agent needs Python 3.11 or newer."
  exit 2
fi

# --- system packages ------------------------------------------------------------------
need_pkgs=()
have_lib() { ldconfig -p 2>/dev/null | grep -q "$1" || ls /usr/lib/*/"$1"* >/dev/null 2>&1; }
have_lib libzbar.so.0 || need_pkgs+=(libzbar0)
if ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then need_pkgs+=(python3-venv); fi
if [ "$want_test" = 1 ]; then
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_pkgs+=(mosquitto)
  # systemd-analyze checks the unit file (the package does not start systemd here).
  command -v systemd-analyze >/dev/null 2>&1 || need_pkgs+=(systemd)
  # The emulated arm64 install (tests/test_arm64_check.py, when asked for).
  if [ "${GATE_AGENT_ARM64_CHECK:-}" = 1 ]; then
    for tool in mmdebstrap:mmdebstrap qemu-aarch64-static:qemu-user-static \
        update-binfmts:binfmt-support mkfs.vfat:dosfstools parted:parted mcopy:mtools; do
      command -v "${tool%%:*}" >/dev/null 2>&1 || need_pkgs+=("${tool#*:}")
    done
  fi
  # The centre's tests start their own PostgreSQL server from these binaries.
  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_pkgs+=(postgresql)
  # The console's and the installer page's browser tests: headless Chromium, its driver,
  # a font with Chinese glyphs.
  command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || need_pkgs+=(chromium-driver)
  [ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || need_pkgs+=(fonts-wqy-microhei)
fi
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${need_pkgs[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
    # The broker package starts a system-wide service on 1883; tests run their own.
    if [[ " ${need_pkgs[*]} " == *" mosquitto "* ]] && command -v systemctl >/dev/null 2>&1; then
      systemctl disable --now mosquitto >/dev/null 2>&1 || true
    fi
    if [[ " ${need_pkgs[*]} " == *" postgresql "* ]] && command -v systemctl >/dev/null 2>&1; then
      systemctl disable --now postgresql >/dev/null 2>&1 || true
    fi
  else
    say "missing system packages: ${need_pkgs[*]}"
    say "install them with: sudo apt-get install ${need_pkgs[*]}   (then re-run)"
    exit 2
  fi
fi

# --- venv -----------------------------------------------------------------------------
VENV="${GATE_AGENT_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  say "installing Python packages into $VENV (first run takes a minute)"
  pip_log="$VENV/pip-install.log"
  if ! { "$VENV/bin/python" -m pip install --upgrade pip &&
         "$VENV/bin/python" -m pip install -e '.[dev]'; } >"$pip_log" 2>&1; then
    tail -n 25 "$pip_log" >&2
    say "pip could not install the packages (full log: $pip_log): check the network"
    say "access to the package index, then re-run"
    exit 2
  fi
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
