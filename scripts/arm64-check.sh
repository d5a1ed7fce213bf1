#!/usr/bin/env bash
# Prove the gate install on arm64 without a Pi: build a Debian bookworm arm64 root with
# mmdebstrap, lay it out as an image like Raspberry Pi OS's (FAT "bootfs" + ext4
# "rootfs"), run scripts/build-image.sh on it, copy a provisioning bundle onto its boot
# partition, run the first-boot steps inside it (sysusers, tmpfiles, provision apply), then
# under qemu: gate-agent --version, check --config-only, a credential round trip with
# verify --image, demo --duration 10, and that gpiozero would pick lgpio. Timings under
# emulation are not Pi timings.
#
#   sudo scripts/arm64-check.sh [--cache DIR] [--fresh] [--keep]
#
# --cache DIR  keeps the root tarball and the wheelhouse between runs
#              (default /var/tmp/gate-agent-arm64)
# --fresh      rebuild both
# --keep       keep the work folder and image (printed at the end)
# Needs root, mmdebstrap, qemu-user-static, binfmt-support, dosfstools, parted,
# e2fsprogs and this checkout's .venv (scripts/bootstrap.sh). Exit 0 all passed, 1 a
# step failed, 2 this machine cannot run the check (the reason is printed).
set -euo pipefail
export MTOOLS_SKIP_CHECK=1

SOURCE="$(cd "$(dirname "$0")/.." && pwd)"
CACHE=/var/tmp/gate-agent-arm64 FRESH=0 KEEP=0
SITE=arm64-check GATE=gate-1
say() { printf 'arm64-check: %s\n' "$*" >&2; }
cannot() { say "CANNOT RUN HERE: $*"; exit 2; }
fail() { say "FAILED: $*"; exit 1; }
while [ $# -gt 0 ]; do
  case "$1" in
    --cache) CACHE="${2:?--cache needs a folder}"; shift 2 ;;
    --fresh) FRESH=1; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) say "unknown option $1 (see --help)"; exit 2 ;;
  esac
done

START=$SECONDS
step_start=$SECONDS
step() { say "[$((SECONDS - START))s] $*"; step_start=$SECONDS; }

# ---- can this machine do it? ------------------------------------------------------------
[ "$(id -u)" = 0 ] || cannot "needs root (loop devices, mounts, chroot): sudo $0"
for tool in mmdebstrap losetup parted mkfs.vfat mkfs.ext4 chroot; do
  command -v "$tool" >/dev/null 2>&1 ||
    cannot "$tool is missing: apt-get install mmdebstrap qemu-user-static binfmt-support dosfstools parted e2fsprogs"
done
HOST_PY="$SOURCE/.venv/bin/python"
[ -x "$HOST_PY" ] || cannot "no $SOURCE/.venv: run scripts/bootstrap.sh first"
if [ "$(uname -m)" != aarch64 ]; then
  if ! mountpoint -q /proc/sys/fs/binfmt_misc; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null ||
      cannot "binfmt_misc cannot be mounted (a container without that right?): this machine cannot run arm64 programs"
  fi
  command -v update-binfmts >/dev/null 2>&1 && update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
  grep -qs '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 ||
    cannot "no qemu-aarch64 handler in binfmt_misc: apt-get install qemu-user-static binfmt-support; update-binfmts --enable qemu-aarch64"
  grep -qs '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 ||
    cannot "the qemu-aarch64 handler lacks the F flag (qemu-user-static, not qemu-user): a chroot cannot find the emulator"
fi

mkdir -p "$CACHE"
WORK="$(mktemp -d /var/tmp/gate-agent-arm64-check.XXXXXX)"
IMG="$WORK/gate.img" MNT="$WORK/mnt"
# shellcheck source=scripts/image-lib.sh
. "$SOURCE/scripts/image-lib.sh"
cleanup() {
  for m in "$MNT/dev/pts" "$MNT/dev" "$MNT/proc" "$MNT/sys" "$MNT/boot/firmware" "$MNT"; do
    mountpoint -q "$m" 2>/dev/null && umount "$m" 2>/dev/null || true
  done
  detach_loops
  if [ "$KEEP" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# ---- 1. root file system (cached) --------------------------------------------------------
TARBALL="$CACHE/rootfs.tar"
if [ "$FRESH" = 1 ] || [ ! -s "$TARBALL" ]; then
  step "mmdebstrap: Debian bookworm arm64 root (slow under emulation)"
  mmdebstrap --arch=arm64 --variant=minbase \
    --include=systemd,systemd-sysv,python3,python3-venv,libzbar0,ca-certificates,passwd,kmod,udev \
    bookworm "$CACHE/rootfs.partial.tar" http://deb.debian.org/debian > "$CACHE/mmdebstrap.log" 2>&1 ||
    fail "mmdebstrap (log: $CACHE/mmdebstrap.log)"
  mv "$CACHE/rootfs.partial.tar" "$TARBALL"
else
  step "root file system from the cache: $TARBALL"
fi

# ---- 2. wheelhouse (cached) ------------------------------------------------------------------
WH="$CACHE/wheelhouse-aarch64"
if [ "$FRESH" = 1 ] || [ ! -f "$WH/requirements.txt" ] ||
   ! ls "$WH"/gate_agent-*.whl >/dev/null 2>&1 || [ "$SOURCE/pyproject.toml" -nt "$WH/requirements.txt" ]; then
  step "wheelhouse for aarch64 / Python 3.11"
  rm -rf "$WH"
  PYTHON="$HOST_PY" "$SOURCE/scripts/build-wheelhouse.sh" --arch aarch64 --python 3.11 "$WH" ||
    fail "build-wheelhouse.sh"
fi
# gate-agent's own wheel is always this checkout's
rm -f "$WH"/gate_agent-*.whl
"$HOST_PY" -m pip wheel -q --no-deps -w "$WH" "$SOURCE" >/dev/null 2>&1 || fail "building gate-agent's wheel"
rm -rf "$SOURCE/build" "$SOURCE"/*.egg-info
"$HOST_PY" - "$WH" <<'PYEOF'
import hashlib, pathlib, re, sys
out = pathlib.Path(sys.argv[1]); req = out / "requirements.txt"
wheel = next(out.glob("gate_agent-*.whl"))
line = f"gate-agent=={wheel.name.split('-')[1]} --hash=sha256:{hashlib.sha256(wheel.read_bytes()).hexdigest()}"
req.write_text("\n".join(line if l.startswith("gate-agent==") else l
                         for l in req.read_text().splitlines()) + "\n")
PYEOF

# ---- 3. an image partitioned like Raspberry Pi OS's ---------------------------------------------
step "image: FAT bootfs + ext4 rootfs"
truncate -s 2200M "$IMG"
parted -s "$IMG" mklabel msdos mkpart primary fat32 4MiB 516MiB mkpart primary ext4 516MiB 100% 2>/dev/null
attach() {
  part_loop "$IMG" 1 || fail "loop device for the boot partition"; BOOT_DEV="$PART_DEV"
  part_loop "$IMG" 2 || fail "loop device for the root partition"; ROOT_DEV="$PART_DEV"
}
attach
mkfs.vfat -F 32 -n bootfs "$BOOT_DEV" >/dev/null 2>&1
mkfs.ext4 -q -L rootfs "$ROOT_DEV"
mkdir -p "$MNT"
mount "$ROOT_DEV" "$MNT"
tar -C "$MNT" -xf "$TARBALL"
mkdir -p "$MNT/boot/firmware"
printf 'LABEL=rootfs / ext4 defaults,noatime 0 1\nLABEL=bootfs /boot/firmware vfat defaults 0 2\n' > "$MNT/etc/fstab"
umount "$MNT"
detach_loops
chroot_ok() { chroot "$1" /bin/true 2>/dev/null; }

# ---- 4. build-image.sh -----------------------------------------------------------------------------
step "scripts/build-image.sh (apt inside the image, venv from the wheelhouse)"
"$SOURCE/scripts/build-image.sh" --wheelhouse "$WH" --grow-mb 0 "$IMG" || fail "build-image.sh"

# ---- 5. centre side: CA, keys, a bundle, a credential ----------------------------------------------
step "centre: CA, keys, bundle for $SITE/$GATE, a holder-bound credential"
C="$WORK/centre"; mkdir -p "$C"
G="$SOURCE/.venv/bin/gatectl"
"$G" ca new --out "$C/ca" >/dev/null
"$G" keys new --kid issuer-1 --out "$C/issuers" >/dev/null
"$G" keys new --kid ops-1 --out "$C/ops" >/dev/null
"$G" holder new --out "$C/holder" >/dev/null
"$G" revocations full --key "$C/ops/ops-1.key" --version 1 --cti "$(printf 'ab%.0s' $(seq 16))" \
  --out "$C/full.cose" >/dev/null
"$G" provision "$SITE/$GATE" --ca "$C/ca" --issuers "$C/issuers" --ops "$C/ops" \
  --broker mqtts://broker.invalid:8883 --revocations "$C/full.cose" --out "$C/bundles" >/dev/null ||
  fail "gatectl provision"
CRED="$("$G" credential issue --key "$C/issuers/issuer-1.key" --sub courier-1 \
  --scope "$SITE/$GATE" --ttl 1h --holder-pub "$C/holder/holder.pub")"

# ---- 6. the bundle onto the boot partition, first boot inside the image ------------------------
attach
mount "$ROOT_DEV" "$MNT"
FAT_MOUNTED=1
if ! mount "$BOOT_DEV" "$MNT/boot/firmware" 2>/dev/null; then
  # A kernel without vfat (containers): the FAT partition is written and read with
  # mtools; the first-boot steps work on a copy, written back and checked on the FAT.
  command -v mcopy >/dev/null 2>&1 ||
    cannot "this kernel cannot mount FAT and mtools is missing: apt-get install mtools"
  FAT_MOUNTED=0
  say "no vfat in this kernel: the boot partition is handled with mtools"
fi
stage="$WORK/stage/gate-agent"; mkdir -p "$(dirname "$stage")"
cp -r "$C/bundles/$SITE-$GATE" "$stage"
if [ "$FAT_MOUNTED" = 1 ]; then
  cp -r "$stage" "$MNT/boot/firmware/gate-agent"
else
  mcopy -s -i "$BOOT_DEV" "$stage" ::/ 2>/dev/null
  mcopy -s -i "$BOOT_DEV" ::/gate-agent "$MNT/boot/firmware/" 2>/dev/null  # what the Pi sees
fi
fat_back() {  # write the boot folder's state back to the FAT partition (mtools case)
  [ "$FAT_MOUNTED" = 1 ] && return 0
  mdeltree -i "$BOOT_DEV" ::/gate-agent 2>/dev/null
  mcopy -s -i "$BOOT_DEV" "$MNT/boot/firmware/gate-agent" ::/ 2>/dev/null
}
fat_has() { # fat_has PATH: the file exists on the boot partition itself
  if [ "$FAT_MOUNTED" = 1 ]; then [ -e "$MNT/boot/firmware/$1" ]
  else mdir -b -i "$BOOT_DEV" "::/$1" >/dev/null 2>&1; fi
}
mount -t proc proc "$MNT/proc"; mount -t sysfs sys "$MNT/sys"
mount --bind /dev "$MNT/dev"; mount --bind /dev/pts "$MNT/dev/pts"
chroot_ok "$MNT" || cannot "this machine cannot run the image's arm64 programs (binfmt_misc/qemu)"
[ "$(chroot "$MNT" uname -m)" = aarch64 ] || fail "the image does not run as aarch64"
in_image() { chroot "$MNT" /usr/bin/env PATH=/opt/gate-agent/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
step "first boot: no gate-agent user yet, then systemd-sysusers, tmpfiles, provision apply"
if in_image getent passwd gate-agent >/dev/null; then fail "the image already has the gate-agent user (must come at first boot)"; fi
in_image systemd-sysusers >/dev/null
in_image systemd-tmpfiles --create /usr/lib/tmpfiles.d/gate-agent.conf
in_image getent passwd gate-agent >/dev/null || fail "systemd-sysusers did not create gate-agent"
in_image gate-agent provision apply /boot/firmware/gate-agent || fail "provision apply"
fat_back
for secret in tls/gate.key installer-token; do
  ! fat_has "gate-agent/$secret" || fail "$secret is still on the boot partition"
done
fat_has gate-agent/SHA256SUMS.applied || fail "the bundle on the boot partition is not marked applied"
echo "boot partition after first boot: $(cd "$MNT/boot/firmware/gate-agent" && find . -type f | sort | tr '\n' ' ')"
[ "$(in_image stat -c '%a %U' /etc/gate-agent/tls/gate.key)" = "600 gate-agent" ] ||
  fail "gate.key is $(in_image stat -c '%a %U' /etc/gate-agent/tls/gate.key), not 600 gate-agent"
in_image gate-agent provision apply /boot/firmware/gate-agent | grep -q "already installed" ||
  fail "a second apply was not a no-op"

step "gate-agent --version, check --config-only"
in_image gate-agent --version || fail "gate-agent --version"
in_image runuser -u gate-agent -- gate-agent check --config-only || fail "check --config-only"

step "credential round trip: gatectl present -> PNG -> gate-agent verify --image (as gate-agent)"
# A chroot has no NTP-synchronised clock of its own, so the gate would say clock_untrusted:
# present and verify at one pinned (trusted) time, now.
AT="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
"$G" present --credential "$CRED" --holder-key "$C/holder/holder.key" --at "$AT" \
  --qr "$MNT/tmp/code.png" >/dev/null
chmod 0644 "$MNT/tmp/code.png"
out="$(in_image runuser -u gate-agent -- gate-agent verify --at "$AT" --image /tmp/code.png)" ||
  fail "verify: $out"
echo "$out"
echo "$out" | grep -q '"granted": *true' || fail "verify did not grant: $out"
in_image runuser -u gate-agent -- gate-agent revocations status --json

step "gate-agent demo --duration 10 (mock pins, simulated camera)"
in_image gate-agent demo --duration 10 --json > "$WORK/demo.jsonl" || fail "demo"
grep -q '"type": *"decision"' "$WORK/demo.jsonl" || fail "demo made no decision"
echo "demo: $(grep -c '"type": *"decision"' "$WORK/demo.jsonl") decisions, $(grep -c '"state": *"unlocked"' "$WORK/demo.jsonl") unlocks"

step "gpiozero would select lgpio"
in_image python3 - <<'PYEOF' || fail "gpiozero would not select lgpio"
import inspect, sys
sys.path.insert(0, "/opt/gate-agent/venv/lib/python3.11/site-packages")
import lgpio  # the C library loads on arm64
from gpiozero.devices import Device
from gpiozero.pins.lgpio import LGPIOFactory
source = inspect.getsource(Device._default_pin_factory)
first = source.index("'lgpio'")
assert first < source.index("'rpigpio'") < source.index("'native'"), "lgpio is not first"
try:
    LGPIOFactory()
    print("lgpio: factory opened a gpiochip")
except Exception as exc:  # no /dev/gpiochip in a chroot: only the chip is missing
    print(f"lgpio {hex(getattr(lgpio, 'LGPIO_PY_VERSION', 0))} "
          f"imports; gpiozero tries it first; here: {exc}")
PYEOF

say "PASSED in $((SECONDS - START)) s (emulated arm64: not Pi timings)"
