#!/usr/bin/env bash
# Install gate-agent on a Raspberry Pi OS (Bookworm or later) gate device, or upgrade it
# in place. Idempotent: re-running keeps /etc/gate-agent (config, keys, TLS) and
# /var/lib/gate-agent (entry log, outbox, revocation cache) and upgrades the code.
#
#   sudo scripts/install.sh [--csi-camera] [--prefix /opt/gate-agent] [--source DIR]
#   sudo scripts/install.sh --uninstall [--purge]
#   scripts/install.sh --root /tmp/img --no-venv     # stage into a folder (tests, images)
#   scripts/install.sh --dry-run                     # print what would be done
#   sudo scripts/install.sh --wheelhouse DIR         # offline: wheels from build-wheelhouse.sh
#   sudo scripts/install.sh --root /mnt/img --wheelhouse DIR   # into an image's root
#
# --csi-camera   also install python3-picamera2 (CSI camera) and let the venv see it
# --prefix DIR   code and venv location (default /opt/gate-agent; --uninstall finds it
#                from the installed unit)
# --source DIR   the gate-agent source tree or wheel to install (default: this checkout)
# --root DIR     install under DIR instead of /: no apt, no user creation, no service start.
#                The tree is right once DIR becomes /: when DIR has its own python3 the
#                venv is built inside it (chroot; qemu-user-static for another CPU),
#                else with this machine's /usr/bin/python3 and paths rewritten. The user
#                comes from sysusers.d at first boot; owners from tmpfiles.d.
# --wheelhouse D install from D (scripts/build-wheelhouse.sh) with pinned hashes and no
#                network; D holds gate-agent's own wheel (--source is not used)
# --no-venv      skip creating the venv / pip install (the code comes from elsewhere)
# --dry-run      print every action instead of doing it
# --uninstall    remove the code, the unit and the service; keep config and state
# --purge        with --uninstall: also remove config (keys!), state and the user
set -euo pipefail

PREFIX=/opt/gate-agent
ROOT=""
SOURCE="$(cd "$(dirname "$0")/.." && pwd)"
CSI=0 DRY=0 NO_VENV=0 UNINSTALL=0 PURGE=0 PREFIX_GIVEN=0
WHEELHOUSE=""
USER_NAME=gate-agent
GROUPS_NEEDED=(gpio video dialout)

say() { printf 'install: %s\n' "$*" >&2; }
die() { say "$*"; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX="${2:?--prefix needs a folder}"; PREFIX_GIVEN=1; shift 2 ;;
    --root) ROOT="${2:?--root needs a folder}"; shift 2 ;;
    --source) SOURCE="${2:?--source needs a folder or wheel}"; shift 2 ;;
    --wheelhouse) WHEELHOUSE="${2:?--wheelhouse needs a folder}"; shift 2 ;;
    --csi-camera) CSI=1; shift ;;
    --no-venv) NO_VENV=1; shift ;;
    --dry-run) DRY=1; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    --purge) PURGE=1; shift ;;
    -h|--help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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
if [ -n "$WHEELHOUSE" ]; then
  [ -f "$WHEELHOUSE/requirements.txt" ] ||
    die "--wheelhouse $WHEELHOUSE has no requirements.txt: make it with scripts/build-wheelhouse.sh"
  WHEELHOUSE="$(cd "$WHEELHOUSE" && pwd)"
fi
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
  run rm -f "$UNIT" "$ROOT/etc/systemd/system/gate-agent-provision.service" \
    "$ROOT/etc/systemd/system/multi-user.target.wants/gate-agent-provision.service" \
    "$ROOT/usr/lib/sysusers.d/gate-agent.conf" "$ROOT/usr/lib/tmpfiles.d/gate-agent.conf"
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
  missing=()   # only what is not installed: an offline (--wheelhouse) install needs no apt
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ "$DRY" = 1 ] && missing=("${pkgs[@]}")   # show the whole list
  if [ "${#missing[@]}" -gt 0 ]; then
    run apt-get update -qq ||
      die "apt-get update failed (offline?): install ${missing[*]} first, e.g. with build-image.sh"
    run apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
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
pip_args=(--upgrade "$SOURCE")    # a plain install, not editable: upgrading = re-running
[ -n "$WHEELHOUSE" ] && pip_args=(--no-index --find-links "$WHEELHOUSE" --require-hashes
                                  -r "$WHEELHOUSE/requirements.txt")
venv_opts=()
[ "$CSI" = 1 ] && venv_opts+=(--system-site-packages)   # picamera2 comes from apt
make_venv() {  # $1: a command prefix that runs a program as if in the final root
  local -a in_root=("$@")
  # A venv made without --csi-camera cannot see apt's picamera2: re-running with it
  # rewrites pyvenv.cfg in place (nothing installed is lost).
  if [ ! -x "$APP/venv/bin/python" ] || { [ "$CSI" = 1 ] &&
      ! grep -qi '^include-system-site-packages *= *true' "$APP/venv/pyvenv.cfg" 2>/dev/null; }; then
    run "${in_root[@]}" python3 -m venv "${venv_opts[@]}" "$PREFIX/venv"
  fi
  [ -z "$WHEELHOUSE" ] && run "${in_root[@]}" "$PREFIX/venv/bin/python" -m pip install -q --upgrade pip
  run "${in_root[@]}" "$PREFIX/venv/bin/python" -m pip install -q "${pip_args[@]}"
}
if [ "$NO_VENV" = 1 ]; then
  say "skipping the venv (--no-venv)"
elif [ "$SYSTEM" = 1 ]; then
  make_venv env
elif [ -x "$ROOT/usr/bin/python3" ] && [ "$(id -u)" = 0 ]; then
  # Build the venv with the target's own Python, so its paths, interpreter and binary
  # wheels are the target's (another CPU runs through qemu-user-static + binfmt_misc).
  chroot "$ROOT" /usr/bin/python3 -c 'pass' 2>/dev/null ||
    die "cannot run $ROOT/usr/bin/python3 (another CPU? install qemu-user-static and binfmt-support)"
  drop="$(mktemp -d "$ROOT/tmp/gate-agent-install.XXXXXX")"
  trap 'rm -rf "$drop"' EXIT
  if [ -n "$WHEELHOUSE" ]; then
    cp -r "$WHEELHOUSE" "$drop/wheelhouse"
    pip_args=(--no-index --find-links "${drop#"$ROOT"}/wheelhouse" --require-hashes
              -r "${drop#"$ROOT"}/wheelhouse/requirements.txt")
  else
    cp -r "$SOURCE" "$drop/source"
    rm -rf "$drop/source/.venv" "$drop/source/.git"
    pip_args=(--upgrade "${drop#"$ROOT"}/source")
  fi
  make_venv chroot "$ROOT"
  rm -rf "$drop"
else
  # No Python inside ROOT: build with this machine's and move the paths. Only right when
  # ROOT will run the same CPU and /usr/bin/python3 as this machine.
  [ "$(readlink -f "$(command -v python3)")" = "$(readlink -f /usr/bin/python3 2>/dev/null)" ] ||
    die "--root: $ROOT has no usr/bin/python3 and this python3 is not /usr/bin/python3: use --no-venv, or stage into a root that has Python"
  run python3 -m venv "${venv_opts[@]}" "$APP/venv"
  [ -z "$WHEELHOUSE" ] && run "$APP/venv/bin/python" -m pip install -q --upgrade pip
  run "$APP/venv/bin/python" -m pip install -q "${pip_args[@]}"
  if [ "$DRY" = 0 ]; then   # shebangs and activate scripts name the staging path
    { grep -rlI -- "$APP/venv" "$APP/venv/bin" "$APP/venv/pyvenv.cfg" || true; } |
      while read -r f; do sed -i "s#$APP/venv#$PREFIX/venv#g" "$f"; done
  fi
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

# ---- systemd: unit, first-boot unit, user and owners at boot --------------------------
run install -d -m 0755 "$(dirname "$UNIT")" "$ROOT/usr/lib/sysusers.d" "$ROOT/usr/lib/tmpfiles.d"
run install -m 0644 "$SOURCE/systemd/gate-agent.sysusers" "$ROOT/usr/lib/sysusers.d/gate-agent.conf"
run install -m 0644 "$SOURCE/systemd/gate-agent.tmpfiles" "$ROOT/usr/lib/tmpfiles.d/gate-agent.conf"
if [ "$DRY" = 0 ]; then
  sed "s#/opt/gate-agent#$PREFIX#g" "$SOURCE/systemd/gate-agent-provision.service" \
    > "$ROOT/etc/systemd/system/gate-agent-provision.service"
fi
if [ "$DRY" = 1 ]; then
  printf 'would write: %s (ExecStart under %s)\n' "$UNIT" "$PREFIX"
else
  sed "s#/opt/gate-agent#$PREFIX#g" "$SOURCE/systemd/gate-agent.service" > "$UNIT.tmp"
  chmod 0644 "$UNIT.tmp"
  mv -f "$UNIT.tmp" "$UNIT"
fi
if [ "$SYSTEM" = 1 ]; then
  run systemctl daemon-reload
  run systemctl enable gate-agent.service gate-agent-provision.service
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
  run ln -sfn /etc/systemd/system/gate-agent-provision.service \
    "$ROOT/etc/systemd/system/multi-user.target.wants/gate-agent-provision.service"
  say "staged into $ROOT"
fi
