#!/usr/bin/env bash
# The long-connection benchmark (`make bench-longconn`): events/s of the ingress receiving
# contact events over ONE long connection from the emulator (publish to RabbitMQ with
# confirm, then ack), next to the same ingress receiving the same events on its webhook,
# both measured in the same run against the same bridge process (delivery = "both").
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS=${EVENTS:-20000}
CONC=${CONC:-64}
PORT=${PORT:-18191}
EMU_PORT=${EMU_PORT:-18192}
AMQP=${AMQP:-amqp://guest:guest@127.0.0.1:5672/%2f}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
APP_ID=cli_$(head -c8 /dev/urandom | od -An -tx1 | tr -d ' \n')
SECRET=bench-secret-$RANDOM
EK=bench-encrypt-key-$RANDOM
VT=bench-verification-token-$RANDOM
OUT=${OUT:-target/bench}
TARGET=${CARGO_TARGET_DIR:-target}
PREFIX="lcbench$$."
QUEUE="${PREFIX}directory-sync.contact-events"
mkdir -p "$OUT"
rm -f "$OUT/longconn.go"

cargo build --release -q -p feishu-bridge -p bridge-loadgen
BIN=$TARGET/release/feishu-bridge
LOAD=$TARGET/release/bridge-loadgen

DB=fb_lcbench_$$
psql -q "$PG/test" -c "CREATE DATABASE $DB" >/dev/null
cleanup() {
  [ -n "${BRIDGE_PID:-}" ] && kill "$BRIDGE_PID" 2>/dev/null || true
  [ -n "${EMU_PID:-}" ] && kill "$EMU_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  "$LOAD" purge --amqp "$AMQP" --queue "$QUEUE" >/dev/null 2>&1 || true
  psql -q "$PG/test" -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# Feishu: the emulator inside the load generator, which pushes once told to go.
"$LOAD" longconn --listen "127.0.0.1:$EMU_PORT" --app-id "$APP_ID" --app-secret "$SECRET" \
  --token "$VT" --encrypt-key "$EK" --events "$EVENTS" --concurrency "$CONC" \
  --go-file "$OUT/longconn.go" > "$OUT/longconn.json" 2> "$OUT/emulator.log" &
EMU_PID=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$EMU_PORT/_emulator/settings" && break; sleep 0.1; done

cat > "$OUT/longconn-bridge.toml" <<TOML
[http]
listen = "127.0.0.1:$PORT"
[telemetry]
log_level = "warn"
[feishu]
base_url = "http://127.0.0.1:$EMU_PORT"
[[apps]]
app_id = "$APP_ID"
app_secret = "$SECRET"
encrypt_key = "$EK"
verification_token = "$VT"
team_name = "bench"
delivery = "both"
TOML

BRIDGE__BROKER__QUEUE_PREFIX="$PREFIX" BRIDGE__BROKER__QUEUE_EXPIRES=15m \
BRIDGE__BROKER__PUBLISH_CHANNELS=${CHANNELS:-4} BRIDGE__DATABASE__URL="$PG/$DB" BRIDGE__BROKER__URL="$AMQP" \
BRIDGE__SECURITY__MASTER_KEY="$(head -c32 /dev/urandom | base64)" \
  "$BIN" --config "$OUT/longconn-bridge.toml" ingress > "$OUT/longconn-bridge.log" 2>&1 &
BRIDGE_PID=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null || { cat "$OUT/longconn-bridge.log"; exit 1; }

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {print int($2/1048576)}' /proc/meminfo) GiB; $(date -u +%Y-%m-%dT%H:%MZ)"
echo "events: $EVENTS per run, concurrency $CONC"

"$LOAD" webhook --url "http://127.0.0.1:$PORT/feishu/$APP_ID/events" --app-id "$APP_ID" \
  --encrypt-key "$EK" --token "$VT" --events 5000 --concurrency "$CONC" --label warmup >/dev/null
"$LOAD" purge --amqp "$AMQP" --queue "$QUEUE"
WEB=$("$LOAD" webhook --url "http://127.0.0.1:$PORT/feishu/$APP_ID/events" --app-id "$APP_ID" \
  --encrypt-key "$EK" --token "$VT" --events "$EVENTS" --concurrency "$CONC" --label webhook)
"$LOAD" purge --amqp "$AMQP" --queue "$QUEUE"
# Event ids carry the generating process's id, so the ingress's dedupe does not answer the
# long-connection events as duplicates of the webhook run's.
touch "$OUT/longconn.go"
wait "$EMU_PID"
EMU_PID=
LC=$(cat "$OUT/longconn.json")
curl -fs "http://127.0.0.1:$PORT/readyz" | python3 -c 'import json,sys; print("readyz long_connection:", json.dumps(json.load(sys.stdin)["checks"]["long_connection"]))'

python3 - "$WEB" "$LC" <<'PY'
import json, sys
web, lc = (json.loads(a) for a in sys.argv[1:3])
print()
print("| run | events | errors | per second | p50 ms | p99 ms |")
print("|---|---|---|---|---|---|")
for r in (web, lc):
    print(f"| {r['label']} | {r['requests']} | {r['errors']} | {r['per_second']:.0f} | {r['p50_ms']} | {r['p99_ms']} |")
print()
print(f"long connection / webhook: {lc['per_second']/web['per_second']:.2f}")
PY
