# Shared by the bench scripts (sourced): release binaries, a database of the run's own, the
# emulator, and cleanup on exit. Expects PG, OUT and EMU_PORT set by the script.

# Builds the release binaries and names them BIN, LOAD, EMU.
bench_build() {
  cargo build --release -q -p feishu-bridge -p bridge-loadgen -p feishu-emulator
  local release=${CARGO_TARGET_DIR:-target}/release
  BIN=$release/feishu-bridge
  LOAD=$release/bridge-loadgen
  EMU=$release/feishu-emulator
}

# Creates database $1 for the run; on exit the bridge and the emulator stop, the script's own
# `bench_on_exit` (if defined) runs, and the database is dropped.
bench_database() {
  DB=$1
  psql -q "$PG/test" -c "CREATE DATABASE $DB" >/dev/null
  trap bench_cleanup EXIT
}

bench_cleanup() {
  [ -n "${BRIDGE_PID:-}" ] && kill "$BRIDGE_PID" 2>/dev/null || true
  [ -n "${EMU_PID:-}" ] && kill "$EMU_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  if declare -F bench_on_exit >/dev/null; then bench_on_exit || true; fi
  psql -q "$PG/test" -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
}

# Waits up to 30 s for URL $1 to answer.
wait_http() {
  for _ in $(seq 300); do curl -fs -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "$1 did not answer" >&2
  return 1
}

# Starts the emulator on EMU_PORT, logging to $1, with the remaining arguments; sets EMU_PID.
start_emulator() {
  local log=$1
  shift
  "$EMU" serve --listen "127.0.0.1:$EMU_PORT" "$@" > "$log" 2>&1 &
  EMU_PID=$!
  wait_http "http://127.0.0.1:$EMU_PORT/_emulator/settings"
}

# Scales the emulator's rate-limit tiers by $1.
emulator_rate_scale() {
  curl -fs -X PUT -H 'content-type: application/json' -d "{\"rate_limit_scale\": $1}" \
    "http://127.0.0.1:$EMU_PORT/_emulator/limits" >/dev/null
}

# CPU seconds used so far (user + system) by process $1; 0 if it is gone.
cpu_secs() {
  awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f\n", ($14 + $15) / hz}' "/proc/$1/stat" 2>/dev/null || echo 0
}

# Waits (at most 15 s) until process $1 has been idle (under 8 % of a core) for a quarter of a
# second: a run that starts while the broker still cleans up after the last one pays for it.
wait_quiet() {
  local a b
  for _ in $(seq 60); do
    a=$(cpu_secs "$1"); sleep 0.25; b=$(cpu_secs "$1")
    python3 -c "import sys; sys.exit(0 if $b - $a < 0.02 else 1)" && return 0
  done
  echo "process $1 did not quiet down" >&2
}

# Seconds the hypervisor has kept this machine's cores from running it (both cores summed),
# from /proc/stat: a run that lost more of them than its partner is slower for it.
steal_secs() {
  awk -v hz="$(getconf CLK_TCK)" '/^cpu / {printf "%.2f\n", $9 / hz}' /proc/stat
}

# CPU seconds used so far by all of user $1's processes (PostgreSQL's backends, RabbitMQ).
user_cpu_secs() {
  local p
  for p in $(pgrep -u "$1"); do cpu_secs "$p"; done | awk '{s += $1} END {printf "%.2f", s}'
}

# Deletes the queues whose names start with $1 (this run's own), where rabbitmqctl may be
# used: left to expire, they would still take a copy of every event the next run publishes.
# Never fails: it runs in EXIT traps under `set -e`. rabbitmqctl reads its standard input, so
# the loop gives it /dev/null (or it would eat the list being read).
drop_queues() {
  command -v rabbitmqctl >/dev/null || return 0
  local q
  { rabbitmqctl -q list_queues name 2>/dev/null || true; } |
    awk -v p="$1" 'index($0, p) == 1' | while read -r q; do
      rabbitmqctl -q delete_queue "$q" </dev/null >/dev/null 2>&1 || true
    done
  return 0
}

# Waits (OTHER_QUEUES_WAIT, 90 s) for queues other than this run's bound to exchange $1 for
# routing pattern $2 to expire, then warns about any left:
# each takes a copy of every message the run publishes, and the figures drop.
warn_other_queues() {
  command -v rabbitmqctl >/dev/null || return 0
  local others waited=0
  while :; do
    others=$({ rabbitmqctl -q list_bindings source_name routing_key destination_name 2>/dev/null || true; } |
      awk -v ex="$1" -v key="$2" -v own="$3" '$1 == ex && $2 == key && index($3, own) != 1 {print $3}')
    # The test suite's queues expire a minute after their test: wait that long for them.
    [ -z "$others" ] || [ "$waited" -ge "${OTHER_QUEUES_WAIT:-90}" ] && break
    [ "$waited" -eq 0 ] && echo "waiting up to ${OTHER_QUEUES_WAIT:-90} s for other queues bound to $1 ($2) to expire" >&2
    sleep 5
    waited=$((waited + 5))
  done
  if [ -n "$others" ]; then
    echo "warning: other queues are bound to $1 ($2) and take a copy of every message:" $others >&2
  fi
}
