#!/usr/bin/env bash
# Customise a Raspberry Pi OS image file (64-bit, Bookworm or later) into a gate image:
# the Debian packages, the gate-agent venv from a wheelhouse (the gate needs no
# internet), the units and the first-boot provisioning unit. One image for every gate,
# no secrets in it: each gate's bundle is copied onto the boot partition after flashing.
# Run as root on Linux; an x86 machine needs qemu-user-static and binfmt-support.
#
#   sudo scripts/build-image.sh [--wheelhouse DIR] [--grow-mb N] [--no-apt] IMAGE.img
#
# --wheelhouse DIR  wheels from scripts/build-wheelhouse.sh --arch aarch64 (default: made
#                   now into a temporary folder, which needs the package index)
# --grow-mb N       add N MiB to the root partition first (default 1024; 0 keeps the size)
# --no-apt          do not apt-get install libzbar0 python3-venv (already in the image)
# The image file is changed in place: keep the downloaded original.
set -euo pipefail

SOURCE="$(cd "$(dirname "$0")/.." && pwd)"
WHEELHOUSE="" GROW=1024 APT=1 IMAGE=""
PKGS=(libzbar0 python3-venv)
say() { printf 'build-image: %s\n' "$*" >&2; }
die() { say "$*"; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --wheelhouse) WHEELHOUSE="${2:?--wheelhouse needs a folder}"; shift 2 ;;
    --grow-mb) GROW="${2:?--grow-mb needs a number}"; shift 2 ;;
    --no-apt) APT=0; shift ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [ -z "$IMAGE" ] || die "one IMAGE only"; IMAGE="$1"; shift ;;
  esac
done
[ -n "$IMAGE" ] || die "give the image file: $0 IMAGE.img"
[ -f "$IMAGE" ] || die "$IMAGE does not exist (unpack the downloaded .img.xz first: xz -d)"
[[ "$GROW" =~ ^[0-9]+$ ]] || die "--grow-mb $GROW is not a number of MiB"
[ "$(id -u)" = 0 ] || die "run as root (loop devices and chroot): sudo $0 ..."
for tool in losetup parted e2fsck resize2fs chroot mount; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is missing: apt-get install util-linux parted e2fsprogs"
done

# shellcheck source=scripts/image-lib.sh
. "$SOURCE/scripts/image-lib.sh"
MNT="$(mktemp -d /tmp/gate-image.XXXXXX)"
cleanup() {
  for m in "$MNT/dev/pts" "$MNT/dev" "$MNT/proc" "$MNT/sys" "$MNT/boot/firmware" "$MNT"; do
    mountpoint -q "$m" 2>/dev/null && umount "$m" 2>/dev/null || true
  done
  detach_loops
  rmdir "$MNT" 2>/dev/null || true
}
trap cleanup EXIT

if [ "$GROW" -gt 0 ]; then
  say "growing the root partition by $GROW MiB"
  truncate -s "+${GROW}M" "$IMAGE"
  parted -s "$IMAGE" resizepart 2 100%
fi
parted -ms "$IMAGE" unit B print 2>/dev/null | grep -q '^2:' ||
  die "$IMAGE has no two partitions (bootfs, rootfs): is it a Raspberry Pi OS image?"
part_loop "$IMAGE" 1 || die "cannot attach $IMAGE's boot partition to a loop device"
BOOT_DEV="$PART_DEV"
part_loop "$IMAGE" 2 || die "cannot attach $IMAGE's root partition to a loop device"
ROOT_DEV="$PART_DEV"
if [ "$GROW" -gt 0 ]; then
  e2fsck -f -y "$ROOT_DEV" >/dev/null 2>&1 || true
  resize2fs "$ROOT_DEV" >/dev/null 2>&1 || die "resize2fs failed on $ROOT_DEV"
fi
mount "$ROOT_DEV" "$MNT"
mkdir -p "$MNT/boot/firmware"
# The boot partition is not changed here; mounted when this kernel can (bootfs is FAT).
mount "$BOOT_DEV" "$MNT/boot/firmware" 2>/dev/null ||
  say "note: cannot mount the FAT boot partition on this machine (no vfat); not needed here"
[ -x "$MNT/usr/bin/python3" ] || die "the image has no /usr/bin/python3: use Raspberry Pi OS Bookworm or later"
if ! chroot "$MNT" /bin/true 2>/dev/null; then
  die "this machine cannot run the image's programs ($(file -b "$MNT/bin/true" 2>/dev/null | cut -d, -f2)): install qemu-user-static and binfmt-support, and enable binfmt_misc (see docs/installing.md)"
fi
. "$MNT/etc/os-release"
say "image: ${PRETTY_NAME:-unknown}, $(chroot "$MNT" /usr/bin/python3 --version)"

if [ -z "$WHEELHOUSE" ]; then
  WHEELHOUSE="$MNT/tmp/gate-agent-wheelhouse"
  arch="$(chroot "$MNT" uname -m)"
  pyver="$(chroot "$MNT" /usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  "$SOURCE/scripts/build-wheelhouse.sh" --arch "$arch" --python "$pyver" "$WHEELHOUSE"
fi

mount -t proc proc "$MNT/proc"
mount -t sysfs sys "$MNT/sys"
mount --bind /dev "$MNT/dev"
mount --bind /dev/pts "$MNT/dev/pts"
if [ "$APT" = 1 ]; then
  cp -L /etc/resolv.conf "$MNT/etc/resolv.conf.gate-agent" 2>/dev/null || true
  [ -e "$MNT/etc/resolv.conf.gate-agent" ] && mount --bind "$MNT/etc/resolv.conf.gate-agent" "$MNT/etc/resolv.conf" 2>/dev/null || true
  say "apt-get install ${PKGS[*]} inside the image"
  chroot "$MNT" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  chroot "$MNT" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >/dev/null
  chroot "$MNT" apt-get clean
  umount "$MNT/etc/resolv.conf" 2>/dev/null || true
  rm -f "$MNT/etc/resolv.conf.gate-agent"
fi

say "installing gate-agent into the image (venv built by the image's own Python)"
"$SOURCE/scripts/install.sh" --root "$MNT" --wheelhouse "$WHEELHOUSE" --source "$SOURCE"
rm -rf "$MNT/tmp/gate-agent-wheelhouse"
# No identity and no secrets in the image: the bundle brings them at first boot.
rm -f "$MNT/etc/gate-agent/provisioned.json"
sync
say "done: $IMAGE ($(du -h --apparent-size "$IMAGE" | cut -f1)). Flash it, then copy one gate's bundle folder to the boot partition as gate-agent/"
