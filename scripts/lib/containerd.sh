# shellcheck shell=bash
# A private containerd for demos (tests start theirs from tests/support/containerd_harness.cc): its own config, root, state, runc root and socket
# under one directory, started in the background and stopped by its PID, with everything it started
# (shims, containers, mounts, cgroups) removed afterwards. The settings are those that work in this
# sandbox (../shared/design/RUNTIME.md): restrict_oom_score_adj, overlayfs, runc v2 with cgroupfs, a
# locally imported pause image as the sandbox image. Needs root, containerd, runc (and busybox-static
# for the images of images.sh).
#
#   source scripts/lib/containerd.sh
#   containerd_write_config DIR SANDBOX_IMAGE   # DIR/config.toml
#   containerd_start DIR                        # waits until it answers; pid in DIR/pid, log DIR/containerd.log
#   containerd_ctr DIR ARGS...                  # ctr -a DIR/containerd.sock -n k8s.io ARGS...
#   containerd_import DIR IMAGE.tar...          # ctr images import, into the CRI's namespace k8s.io
#   containerd_stop DIR [CGROUP_PARENT]         # containers, shims, containerd, mounts, cgroups
#   containerd_socket DIR                       # DIR/containerd.sock
# shellcheck source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

containerd_socket() { echo "$1/containerd.sock"; }

containerd_write_config() {
  local d=$1 sandbox=$2 h
  mkdir -p "$d/cni"
  {
    cat <<TOML
version = 2
root = "$d/root"
state = "$d/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$d/containerd.sock"
[ttrpc]
  address = "$d/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$d/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$sandbox"
  # Without CAP_SYS_RESOURCE, RunPodSandbox fails unless the OOM score is only ever raised.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
TOML
    for h in runc runc-alt; do
      cat <<TOML
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.$h]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.$h.options]
        SystemdCgroup = false
        Root = "$d/runc"
TOML
    done
    cat <<TOML
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$d/cni"
TOML
  } >"$d/config.toml"
}

containerd_ctr() {
  local d=$1
  shift
  command ctr -a "$d/containerd.sock" -n k8s.io "$@"
}

containerd_start() {
  local d=$1 pid
  [ -f "$d/config.toml" ] || { echo "containerd_start: $d/config.toml is missing" >&2; return 1; }
  # Its own session: a Ctrl-C in the terminal reaches the script, which stops it in order.
  setsid /usr/bin/containerd --config "$d/config.toml" >>"$d/containerd.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$d/pid"
  if ! wait_until 20 eval "! pid_alive $pid || command ctr -a '$d/containerd.sock' version" || ! pid_alive "$pid"; then
    echo "containerd_start: containerd did not start; the end of $d/containerd.log:" >&2
    tail -n 20 "$d/containerd.log" >&2 || true
    stop_pid "$pid" 2
    return 1
  fi
}

containerd_running() { [ -f "$1/pid" ] && pid_alive "$(cat "$1/pid")"; }

containerd_import() {
  local d=$1 tar
  shift
  for tar in "$@"; do
    containerd_ctr "$d" images import "$tar" >/dev/null || return 1
  done
}

# The PIDs of the shims this containerd started: their command line names our socket.
_containerd_shims() {
  local sock="$1/containerd.sock" p cmd
  for p in $(grep -alsF containerd-shim /proc/[0-9]*/cmdline); do
    p=${p%/cmdline}
    cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
    case "$cmd" in
      *containerd-shim*" -address $sock "*) echo "${p#/proc/}" ;;
    esac
  done
}

# Every descendant of the given PIDs.
_descendants() {
  local -A parent=()
  local p pid ppid rest
  for p in /proc/[0-9]*/stat; do
    read -r pid rest <"$p" 2>/dev/null || continue
    rest=${rest##*) }
    read -r _ ppid _ <<<"$rest"
    parent[$pid]=$ppid
  done
  local -A mine=()
  for p in "$@"; do mine[$p]=1; done
  local grew=1
  while [ "$grew" -eq 1 ]; do
    grew=0
    for pid in "${!parent[@]}"; do
      if [ -n "${mine[${parent[$pid]}]:-}" ] && [ -z "${mine[$pid]:-}" ]; then
        mine[$pid]=1
        grew=1
        echo "$pid"
      fi
    done
  done
}

containerd_stop() {
  local d=$1 cgroup_parent=${2:-} sock="$1/containerd.sock" ids=() id shims
  if containerd_running "$d"; then
    # Stop every task the way containerd expects (the shims then exit and remove their sockets).
    mapfile -t ids < <(containerd_ctr "$d" containers ls -q 2>/dev/null)
    for id in "${ids[@]}"; do
      containerd_ctr "$d" tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1 || true
    done
    for id in "${ids[@]}"; do
      wait_until 5 eval "! containerd_ctr '$d' tasks ls 2>/dev/null | grep -q '^$id .*RUNNING'" || true
      containerd_ctr "$d" tasks delete -f "$id" >/dev/null 2>&1 || true
    done
  fi
  # Whatever is left (containerd was gone, or a task did not go): kill it by the shims' -address.
  mapfile -t shims < <(_containerd_shims "$d")
  if [ ${#shims[@]} -gt 0 ]; then
    # shellcheck disable=SC2046
    kill -KILL $(_descendants "${shims[@]}") 2>/dev/null || true
    kill -KILL "${shims[@]}" 2>/dev/null || true
  fi
  if [ -f "$d/pid" ]; then
    stop_pid "$(cat "$d/pid")" 10
    rm -f "$d/pid"
  fi
  # A killed shim leaves its socket in /run/containerd/s/: its name is sha256(socket/namespace/id).
  for id in "${ids[@]}"; do
    rm -f "/run/containerd/s/$(printf '%s' "$sock/k8s.io/$id" | sha256sum | cut -d' ' -f1)"
  done
  # Mounts under our directory (rootfs overlays, sandbox shm), deepest first.
  local m
  awk -v d="$d/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  # The pods' cgroup parent, in every hierarchy (cgroupfs: containerd leaves the directories behind).
  if [ -n "$cgroup_parent" ]; then
    local root dir
    for root in /sys/fs/cgroup /sys/fs/cgroup/*; do
      dir="$root/${cgroup_parent#/}"
      if [ ! -d "$dir" ] || [ -L "$root" ]; then continue; fi
      find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
  fi
}
