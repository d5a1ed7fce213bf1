#!/usr/bin/env bash
# Install gate-agent on a Raspberry Pi OS (Bookworm or later) gate device, or upgrade it
# in place. Idempotent: re-running keeps /etc/gate-agent (config, keys, TLS) and
# /var/lib/gate-agent (entry log, outbox, revocation cache) and upgrades the code.
#
#   sudo scripts/install.sh [--csi-camera] [--prefix /opt/gate-agent] [--source DIR]
#   sudo scripts/install.sh --uninstall [--purge]
#   scripts/install.sh --root /tmp/img --no-venv     # stage into a folder (tests, images)
#   scripts/install.sh --dry-run                     # print what would be done
#
# --csi-camera   also install python3-picamera2 (CSI camera) and let the venv see it
# --prefix DIR   code and venv location (default /opt/gate-agent; --uninstall finds it
#                from the installed unit)
# --source DIR   the gate-agent source tree or wheel to install (default: this checkout)
# --root DIR     install under DIR instead of /: no apt, no user creation, no service start
# --no-venv      skip creating the venv / pip install (the code comes from elsewhere)
# --dry-run      print every action instead of doing it
# --uninstall    remove the code, the unit and the service; keep config and state
# --purge        with --uninstall: also remove config (keys!), state and the user
set -euo pipefail

PREFIX=/opt/gate-agent
ROOT=""
SOURCE="$(cd "$(dirname "$0")/.." && pwd)"
CSI=0 DRY=0 NO_VENV=0 UNINSTALL=0 PURGE=0 PREFIX_GIVEN=0
USER_NAME=gate-agent
GROUPS_NEEDED=(gpio video dialout)

say() { printf 'install: %s\n' "$*" >&2; }
die() { say "$*"; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX="${2:?--prefix needs a folder}"; PREFIX_GIVEN=1; shift 2 ;;
    --root) ROOT="${2:?--root needs a folder}"; shift 2 ;;
    --source) SOURCE="${2:?--source needs a folder or wheel}"; shift 2 ;;
    --csi-camera) CSI=1; shift ;;
    --no-venv) NO_VENV=1; shift ;;
    --dry-run) DRY=1; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    --purge) PURGE=1; shift ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
[ "$PURGE" = 1 ] && [ "$UNINSTALL" = 0 ] && die "--purge only goes with --uninstall"
check_prefix() {  # --uninstall runs rm -rf on it: never a system folder
  case "$PREFIX" in
    /*) ;; *) die "--prefix must be an absolute path, got $PREFIX" ;;
  esac
  PREFIX="${PREFIX%/}"
  case "$PREFIX" in
    ""|/usr|/usr/local|/opt|/etc|/var|/var/lib|/home|/srv|/root|/bin|/sbin|/lib|/boot)
      die "--prefix ${PREFIX:-/} is a system folder; give a folder of its own (e.g. /opt/gate-agent)" ;;
  esac
}
check_prefix
if [ -n "$ROOT" ]; then
  mkdir -p "$ROOT" && ROOT="$(cd "$ROOT" && pwd)"
  [ "$ROOT" = / ] && ROOT=""
fi
SYSTEM=1; [ -n "$ROOT" ] && SYSTEM=0   # 1: really installing on this machine

APP="$ROOT$PREFIX"
ETC="$ROOT/etc/gate-agent"
STATE="$ROOT/var/lib/gate-agent"
UNIT="$ROOT/etc/systemd/system/gate-agent.service"

run() {  # run a command, or only show it with --dry-run
  if [ "$DRY" = 1 ]; then printf 'would run: %s\n' "$*"; else "$@"; fi
}
have_user() { getent passwd "$USER_NAME" >/dev/null 2>&1; }
owner() {  # chown when the user exists (a --root staging folder has no such user)
  if have_user && [ "$(id -u)" = 0 ]; then run chown "$@"; fi
}

if [ "$SYSTEM" = 1 ] && [ "$DRY" = 0 ] && [ "$(id -u)" != 0 ]; then
  die "run as root (sudo $0 $*), or use --root DIR / --dry-run"
fi

# ---- uninstall ------------------------------------------------------------------------
if [ "$UNINSTALL" = 1 ]; then
  if [ "$PREFIX_GIVEN" = 0 ] && [ -f "$UNIT" ]; then  # installed with another --prefix?
    found="$(sed -n 's#^ExecStart=\(.*\)/venv/bin/gate-agent run$#\1#p' "$UNIT" | head -n 1)"
    if [ -n "$found" ] && [ "$found" != "$PREFIX" ]; then
      PREFIX="$found"; check_prefix; APP="$ROOT$PREFIX"
      say "the installed unit runs $PREFIX: removing that"
    fi
  fi
  if [ "$SYSTEM" = 1 ] && command -v systemctl >/dev/null 2>&1; then
    run systemctl disable --now gate-agent.service || true
  elif [ -n "$ROOT" ]; then
    run rm -f "$ROOT/etc/systemd/system/multi-user.target.wants/gate-agent.service"
  fi
  run rm -f "$UNIT"
  [ "$SYSTEM" = 1 ] && command -v systemctl >/dev/null 2>&1 && run systemctl daemon-reload
  run rm -rf "$APP"
  if [ "$PURGE" = 1 ]; then
    run rm -rf "$ETC" "$STATE"
    if [ "$SYSTEM" = 1 ] && have_user; then run userdel "$USER_NAME" || true; fi
    say "removed gate-agent, its config, keys and state"
  else
    say "removed gate-agent; kept $ETC (config, keys) and $STATE (entry log): --purge removes them"
  fi
  exit 0
fi

# ---- system packages ------------------------------------------------------------------
pkgs=(libzbar0 python3-venv python3-pip)
[ "$CSI" = 1 ] && pkgs+=(python3-picamera2)
if [ "$SYSTEM" = 1 ]; then
  if [ -r /etc/os-release ]; then
    # shellcheck disable=SC1091
    . /etc/os-release
    if [ "${ID:-}" != debian ] && [ "${ID:-}" != raspbian ] && [[ " ${ID_LIKE:-} " != *" debian "* ]]; then
      say "warning: ${PRETTY_NAME:-this OS} is not Raspberry Pi OS/Debian; continuing"
    elif [ -n "${VERSION_ID:-}" ] && [ "${VERSION_ID%%.*}" -lt 12 ] 2>/dev/null; then
      die "${PRETTY_NAME:-this OS} is older than Bookworm (12): upgrade the OS image first"
    fi
  fi
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install ${pkgs[*]} by hand and re-run"
  export DEBIAN_FRONTEND=noninteractive
  run apt-get update -qq
  run apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
else
  say "staging into $ROOT: skipping apt (${pkgs[*]}) and user creation"
fi

# ---- user and groups ------------------------------------------------------------------
if [ "$SYSTEM" = 1 ]; then
  for g in "${GROUPS_NEEDED[@]}"; do
    getent group "$g" >/dev/null 2>&1 || run groupadd --system "$g"
  done
  if ! have_user; then
    run useradd --system --user-group --home-dir /var/lib/gate-agent --no-create-home \
      --shell /usr/sbin/nologin --comment "gate-agent daemon" "$USER_NAME"
  fi
  run usermod --append --groups "$(IFS=,; echo "${GROUPS_NEEDED[*]}")" "$USER_NAME"
fi

# ---- folders (modes matter: keys and the TLS key are readable by the daemon only) ------
run install -d -m 0755 "$APP" "$APP/share"
run install -d -m 0750 "$ETC" "$ETC/keys" "$ETC/keys/issuers" "$ETC/keys/ops" "$ETC/tls"
owner -R "root:$USER_NAME" "$ETC"
run install -d -m 0750 "$STATE"
owner "$USER_NAME:$USER_NAME" "$STATE"

# ---- code ------------------------------------------------------------------------------
if [ "$NO_VENV" = 0 ]; then
  venv_opts=()
  [ "$CSI" = 1 ] && venv_opts+=(--system-site-packages)   # picamera2 comes from apt
  # A venv made without --csi-camera cannot see apt's picamera2: re-running with it
  # rewrites pyvenv.cfg in place (nothing installed is lost).
  if [ ! -x "$APP/venv/bin/python" ] || { [ "$CSI" = 1 ] &&
      ! grep -qi '^include-system-site-packages *= *true' "$APP/venv/pyvenv.cfg" 2>/dev/null; }; then
    run python3 -m venv "${venv_opts[@]}" "$APP/venv"
  fi
  run "$APP/venv/bin/python" -m pip install -q --upgrade pip
  # A plain install, not editable: upgrading = re-running with the new source.
  run "$APP/venv/bin/python" -m pip install -q --upgrade "$SOURCE"
else
  say "skipping the venv (--no-venv)"
fi
if [ -d "$SOURCE/docs" ]; then
  run rm -rf "$APP/share/docs"
  run cp -r "$SOURCE/docs" "$APP/share/docs"
fi

# ---- config: installed once, never overwritten -------------------------------------------
if [ -f "$SOURCE/config.example.toml" ]; then
  run install -m 0640 "$SOURCE/config.example.toml" "$ETC/config.example.toml"
  if [ ! -e "$ETC/config.toml" ]; then
    run install -m 0640 "$SOURCE/config.example.toml" "$ETC/config.toml"
    [ "$DRY" = 1 ] || say "wrote $ETC/config.toml from the example: set [gate], keys and [mqtt] there"
  else
    say "kept $ETC/config.toml (the new example is $ETC/config.example.toml)"
  fi
  owner "root:$USER_NAME" "$ETC/config.toml" "$ETC/config.example.toml"
fi

# ---- systemd unit -------------------------------------------------------------------------
run install -d -m 0755 "$(dirname "$UNIT")"
if [ "$DRY" = 1 ]; then
  printf 'would write: %s (ExecStart under %s)\n' "$UNIT" "$PREFIX"
else
  sed "s#/opt/gate-agent#$PREFIX#g" "$SOURCE/systemd/gate-agent.service" > "$UNIT.tmp"
  chmod 0644 "$UNIT.tmp"
  mv -f "$UNIT.tmp" "$UNIT"
fi
if [ "$SYSTEM" = 1 ]; then
  run systemctl daemon-reload
  run systemctl enable gate-agent.service
  if [ "$DRY" = 0 ] && systemctl is-active --quiet gate-agent.service; then
    run systemctl restart gate-agent.service
    say "upgraded and restarted gate-agent"
  else
    say "installed. Next: put keys in $ETC/keys, edit $ETC/config.toml, then"
    say "  sudo -u $USER_NAME $PREFIX/venv/bin/gate-agent check   and   sudo systemctl start gate-agent"
  fi
else
  # What `systemctl --root=DIR enable` does, without needing systemctl.
  run install -d -m 0755 "$ROOT/etc/systemd/system/multi-user.target.wants"
  run ln -sfn /etc/systemd/system/gate-agent.service \
    "$ROOT/etc/systemd/system/multi-user.target.wants/gate-agent.service"
  say "staged into $ROOT"
fi
