# shellcheck shell=bash
# Small helpers shared by the scripts in scripts/ (sourced, not run).

# wait_until SECONDS CMD [ARGS...]
# Runs CMD every 0.1 s until it succeeds or SECONDS have passed; returns 0 when it succeeded, 1 on
# timeout. CMD's output is discarded. Use it instead of fixed sleeps to wait on a condition.
wait_until() {
  local timeout=$1
  shift
  local deadline=$(($(date +%s%N) + timeout * 1000000000))
  while :; do
    if "$@" >/dev/null 2>&1; then return 0; fi
    [ "$(date +%s%N)" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

# pid_alive PID: the process exists (and is not a zombie we could still reap).
pid_alive() {
  [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null && ! grep -qs '^State:.*Z' "/proc/$1/status"
}

# stop_pid PID [SECONDS]: SIGTERM, wait up to SECONDS (default 10) for it to go, then SIGKILL.
stop_pid() {
  local pid=$1 timeout=${2:-10}
  pid_alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_until "$timeout" eval "! pid_alive $pid"; then
    kill -KILL "$pid" 2>/dev/null || true
    wait_until 5 eval "! pid_alive $pid" || true
  fi
  # Reap it if it is our child (quietly; it is gone either way).
  wait "$pid" 2>/dev/null || true
}

# port_in_use PORT: something listens on 127.0.0.1:PORT.
port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# random_free_port: a port in 20000-59999 on which nothing listens on loopback now.
random_free_port() {
  local p
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 40000))
    port_in_use "$p" || { echo "$p"; return 0; }
  done
  return 1
}
