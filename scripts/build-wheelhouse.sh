#!/usr/bin/env bash
# Download every wheel a gate needs for one target platform, so install.sh --wheelhouse
# installs with no network on the gate. Binary wheels only (nothing compiles on the Pi),
# lgpio included; writes OUT/requirements.txt with every file's sha256 (pip
# --require-hashes). Run on any machine with Python 3.11+ and access to the package index.
#
#   scripts/build-wheelhouse.sh --arch aarch64|armv7l [--python 3.11] OUT
#
# --arch aarch64   64-bit Raspberry Pi OS (Pi 3/4/5, Zero 2 W): wheels from PyPI
# --arch armv7l    32-bit Raspberry Pi OS: also piwheels.org (PyPI has no 32-bit ARM
#                  wheels of numpy/OpenCV); zxing-cpp has none there: pyzbar decodes
# --python X.Y     the target's Python (Bookworm: 3.11, Trixie: 3.13)
# Environment: PYTHON (default python3) runs pip; PIP_INDEX_URL etc. are honoured.
set -euo pipefail

ARCH="" PYVER=3.11 OUT=""
SOURCE="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python3}"
say() { printf 'build-wheelhouse: %s\n' "$*" >&2; }
die() { say "$*"; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --arch) ARCH="${2:?--arch needs aarch64 or armv7l}"; shift 2 ;;
    --python) PYVER="${2:?--python needs a version such as 3.11}"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [ -z "$OUT" ] || die "one OUT folder only (got $OUT and $1)"; OUT="$1"; shift ;;
  esac
done
[ -n "$OUT" ] || die "give the output folder: $0 --arch aarch64 OUT"
case "$PYVER" in 3.1[1-9]) ;; *) die "--python $PYVER: gate-agent needs 3.11 or newer" ;; esac
abi="cp${PYVER/./}"
case "$ARCH" in
  aarch64)
    platforms=(manylinux_2_36_aarch64 manylinux_2_35_aarch64 manylinux_2_34_aarch64
               manylinux_2_31_aarch64 manylinux_2_28_aarch64 manylinux_2_27_aarch64
               manylinux_2_26_aarch64 manylinux_2_24_aarch64 manylinux_2_17_aarch64
               manylinux2014_aarch64 linux_aarch64)
    extra=() ;;
  armv7l)
    platforms=(manylinux_2_36_armv7l manylinux_2_35_armv7l manylinux_2_31_armv7l
               manylinux_2_28_armv7l manylinux_2_17_armv7l manylinux2014_armv7l linux_armv7l)
    extra=(--extra-index-url https://www.piwheels.org/simple) ;;
  "") die "give --arch aarch64 or --arch armv7l" ;;
  *) die "--arch $ARCH: use aarch64 (64-bit Raspberry Pi OS) or armv7l (32-bit)" ;;
esac
"$PY" -m pip --version >/dev/null 2>&1 || die "$PY has no pip: install python3-pip or set PYTHON"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# pip evaluates environment markers for the machine it runs on, not for --platform: the
# requirement list is therefore resolved for the target first (lgpio only on ARM, no
# zxing-cpp on armv7l, ...).
"$PY" - "$SOURCE/pyproject.toml" "$ARCH" "$PYVER" > "$work/requirements.in" <<'PYEOF'
import sys, tomllib
from pip._vendor.packaging.markers import Marker
from pip._vendor.packaging.requirements import Requirement
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
env = {"platform_machine": sys.argv[2], "sys_platform": "linux", "os_name": "posix",
       "platform_system": "Linux", "python_version": sys.argv[3],
       "python_full_version": sys.argv[3] + ".0", "implementation_name": "cpython",
       "platform_python_implementation": "CPython", "extra": ""}
for text in project["dependencies"]:
    req = Requirement(text)
    if req.marker is None or req.marker.evaluate(env):
        req.marker = None
        print(req)
PYEOF
say "target $ARCH, Python $PYVER: $(tr '\n' ' ' < "$work/requirements.in")"

plat_args=()
for p in "${platforms[@]}"; do plat_args+=(--platform "$p"); done
"$PY" -m pip download -q --only-binary=:all: --python-version "$PYVER" --implementation cp \
  --abi "$abi" --abi abi3 --abi none "${plat_args[@]}" "${extra[@]}" \
  -r "$work/requirements.in" -d "$OUT"
# gate-agent itself, as a pure-Python wheel.
"$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$OUT" "$SOURCE" 2>/dev/null ||
  "$PY" -m pip wheel -q --no-deps -w "$OUT" "$SOURCE"
rm -rf "$SOURCE/build" "$SOURCE"/*.egg-info

# requirements.txt: every wheel in OUT pinned by version and hash (one line per project;
# pip refuses anything else with --require-hashes).
"$PY" - "$OUT" > "$OUT/requirements.txt" <<'PYEOF'
import hashlib, pathlib, re, sys
out = pathlib.Path(sys.argv[1])
pins: dict[str, tuple[str, list[str]]] = {}
for wheel in sorted(out.glob("*.whl")):
    name, version = wheel.name.split("-")[:2]
    key = re.sub(r"[-_.]+", "-", name).lower()
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if key in pins and pins[key][0] != version:
        sys.exit(f"{out}: two versions of {key} ({pins[key][0]}, {version}): empty OUT first")
    pins.setdefault(key, (version, []))[1].append(digest)
print("# written by scripts/build-wheelhouse.sh: install with scripts/install.sh --wheelhouse")
for key, (version, digests) in sorted(pins.items()):
    print(f"{key}=={version} " + " ".join(f"--hash=sha256:{d}" for d in digests))
PYEOF
count="$(ls "$OUT"/*.whl | wc -l)"
grep -q '^lgpio==' "$OUT/requirements.txt" || die "no lgpio wheel for $ARCH: the gate would have no GPIO backend"
say "$count wheels in $OUT ($(du -sh "$OUT" | cut -f1)); pinned in $OUT/requirements.txt"
