# Shared by build-image.sh and arm64-check.sh (sourced, not run): partitions of an image
# file as loop devices. Offsets from the partition table, not --partscan, so it works
# where udev does not create /dev/loopNpM (containers, minimal hosts).
# part_loop IMAGE N: PART_DEV = the loop device of partition N; LOOPS collects them.
LOOPS=()
part_loop() {
  local image="$1" number="$2" line start size
  line="$(parted -ms "$image" unit B print 2>/dev/null | grep "^$number:")" ||
    { echo "no partition $number in $image" >&2; return 1; }
  start="$(echo "$line" | cut -d: -f2)"; start="${start%B}"
  size="$(echo "$line" | cut -d: -f4)"; size="${size%B}"
  PART_DEV="$(losetup --find --show --offset "$start" --sizelimit "$size" "$image")" || return 1
  LOOPS+=("$PART_DEV")
}
detach_loops() {
  local dev
  for dev in "${LOOPS[@]+"${LOOPS[@]}"}"; do losetup -d "$dev" 2>/dev/null || true; done
  LOOPS=()
}
