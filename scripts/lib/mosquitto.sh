# shellcheck shell=bash
# A private mosquitto on loopback for demos: its own config, persistence and log under a directory, a
# free port, started in the background and stopped by its PID. Persistence keeps retained messages and
# persistent sessions across a stop and start, as a real broker would.
#
#   source scripts/lib/mosquitto.sh
#   mosquitto_start DIR [PORT]   # starts it; PORT defaults to a free one, kept in DIR/port; pid in DIR/pid
#   mosquitto_stop DIR           # SIGTERM (mosquitto saves its persistence file), wait, SIGKILL
#   mosquitto_uri DIR            # tcp://127.0.0.1:PORT
# shellcheck source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

mosquitto_start() {
  local dir=$1 port=${2:-} fixed=1 attempt pid
  mkdir -p "$dir"
  [ -n "$port" ] || fixed=0
  for attempt in 1 2 3 4 5; do
    [ "$fixed" -eq 1 ] || port=$(random_free_port) || return 1
    cat >"$dir/mosquitto.conf" <<CONF
persistence true
persistence_location $dir/
user root
allow_anonymous true
log_dest file $dir/mosquitto.log
log_type error
log_type warning
log_type notice
listener $port 127.0.0.1
CONF
    setsid /usr/sbin/mosquitto -c "$dir/mosquitto.conf" >>"$dir/mosquitto.out" 2>&1 </dev/null &
    pid=$!
    if wait_until 10 eval "port_in_use $port || ! pid_alive $pid" && pid_alive "$pid"; then
      echo "$pid" >"$dir/pid"
      echo "$port" >"$dir/port"
      return 0
    fi
    stop_pid "$pid" 2
    # A fixed port that is taken stays taken: retrying only helps with a port we picked.
    [ "$fixed" -eq 0 ] || break
    echo "mosquitto_start: attempt $attempt on port $port failed" >&2
  done
  echo "mosquitto_start: mosquitto did not start (see $dir/mosquitto.log)" >&2
  tail -n 5 "$dir/mosquitto.log" "$dir/mosquitto.out" >&2 2>/dev/null || true
  return 1
}

mosquitto_stop() {
  local dir=$1
  [ -f "$dir/pid" ] || return 0
  stop_pid "$(cat "$dir/pid")" 10
  rm -f "$dir/pid"
}

mosquitto_running() { [ -f "$1/pid" ] && pid_alive "$(cat "$1/pid")"; }

mosquitto_uri() { echo "tcp://127.0.0.1:$(cat "$1/port")"; }
