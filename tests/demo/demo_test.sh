#!/usr/bin/env bash
# Runs ./scripts/demo --ci with already built binaries, then checks that it left nothing behind.
#   demo_test.sh SOURCE_DIR BIN_DIR LOG_DIR
# Exit 77 (skipped) when not root or when containerd is missing.
set -uo pipefail
src=$1 bin=$2 logs=$3

if [ "$(id -u)" -ne 0 ]; then echo "skipped: needs root"; exit 77; fi
for f in /usr/bin/containerd /usr/bin/ctr /usr/sbin/runc; do
  [ -x "$f" ] || { echo "skipped: $f is missing (./scripts/deps demo)"; exit 77; }
done

work=$(mktemp -d /tmp/outpost-demo-test.XXXXXX)
# The demo makes its directory under TMPDIR: everything it starts names a path under $work.
export TMPDIR=$work
leftovers() {
  local p found=0
  for p in $(grep -alsF "$work/" /proc/[0-9]*/cmdline); do
    p=${p%/cmdline}
    p=${p#/proc/}
    [ "$p" = "$$" ] || [ "$p" = "$BASHPID" ] && continue
    if [ -e "/proc/$p" ]; then
      echo "left running: $p $(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline")"
      found=1
    fi
  done
  if grep -qF " $work/" /proc/self/mounts; then
    echo "left mounted:"
    grep -F " $work/" /proc/self/mounts
    found=1
  fi
  for p in /sys/fs/cgroup/*/outpost-demo-* /sys/fs/cgroup/outpost-demo-*; do
    [ -d "$p" ] || continue
    grep -qxF "$p" <<<"$cgroups_before" || { echo "left cgroup: $p"; found=1; }
  done
  [ -z "$(ls -A "$work" 2>/dev/null)" ] || { echo "left files:"; ls -la "$work"; found=1; }
  return "$found"
}

cgroups_before=$(printf '%s\n' /sys/fs/cgroup/*/outpost-demo-* /sys/fs/cgroup/outpost-demo-*)
# The demo stops itself before ctest's TIMEOUT (600 s) would kill it without a chance to clean up.
timeout -s TERM -k 30 540 "$src/scripts/demo" --ci --bin "$bin" --logs "$logs" </dev/null
rc=$?
echo "demo exited with $rc"

if ! leftovers; then
  echo "FAILED: the demo did not clean up; cleaning up after it"
  for d in "$work"/outpost-demo.*; do [ -d "$d" ] && "$src/scripts/demo" --stop "$d"; done
  [ "$rc" -ne 0 ] || rc=1
fi
rm -rf "$work"
exit "$rc"
