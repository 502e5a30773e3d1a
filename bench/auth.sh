#!/usr/bin/env bash
# auth benchmarks (`make bench`):
#  1. whole logins per second through the bridge (login page, Feishu's authorize page, the
#     callback: state check, code exchange with PKCE, user_info, directory lookup,
#     is_user_admin, session rows, token signing, the auth.login record), next to the same
#     Feishu round trips made directly against the emulator at the same concurrency;
#  2. access-token verifications per second with the shared helper (bridge-session), next to
#     the bare Ed25519 signature check, on one thread and on every core.
# The emulator's tiers are raised (RATE_SCALE) so that Feishu's 50/s per app on the token
# endpoint does not cap both sides alike; BENCHMARKS.md says what that limit means.
set -euo pipefail
cd "$(dirname "$0")/.."

USERS=${USERS:-2000}
CONC=${CONC:-16}
SECS=${SECS:-15}
RATE_SCALE=${RATE_SCALE:-1000}
PORT=${PORT:-18291}
EMU_PORT=${EMU_PORT:-18292}
AMQP=${AMQP:-amqp://guest:guest@127.0.0.1:5672/%2f}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
OUT=${OUT:-target/bench}
TOKEN=bench-token
mkdir -p "$OUT"

. bench/lib.sh
bench_build
PREFIX="bench$$."

bench_database "fb_authbench_$$"

start_emulator "$OUT/emulator-auth.log" --generate "users=$USERS,departments=50,seed=1"
emulator_rate_scale "$RATE_SCALE"
# The emulator's demo app (tools/feishu-emulator/src/generate.rs).
APP_ID=cli_a5f2c9e3d8b04f17
SECRET=dG9vbGluZy1kZW1vLWFwcC1zZWNyZXQx
curl -fs -X PATCH -H 'content-type: application/json' \
  -d "{\"redirect_urls\": [\"http://127.0.0.1:$PORT/auth/feishu/$APP_ID/callback\", \"http://127.0.0.1:$EMU_PORT/callback\"]}" \
  "http://127.0.0.1:$EMU_PORT/_emulator/apps/$APP_ID" >/dev/null
cat > "$OUT/auth.toml" <<TOML
[http]
listen = "127.0.0.1:$PORT"
[telemetry]
log_level = "warn"
[feishu]
base_url = "http://127.0.0.1:$EMU_PORT"
rate_scale = $RATE_SCALE
[[apps]]
app_id = "$APP_ID"
app_secret = "$SECRET"
encrypt_key = "demo-encrypt-key-0123456789abcdef"
verification_token = "v3rIfIcAtIoNtOkEnDeMo0123456789ab"
qr_login_enabled = true
TOML
BRIDGE__DATABASE__URL="$PG/$DB" BRIDGE__BROKER__URL="$AMQP" \
BRIDGE__BROKER__QUEUE_PREFIX="$PREFIX" BRIDGE__BROKER__QUEUE_EXPIRES=15m BRIDGE__API__TOKENS="$TOKEN" \
BRIDGE__SECURITY__MASTER_KEY="$(head -c32 /dev/urandom | base64)" \
  "$BIN" --config "$OUT/auth.toml" all > "$OUT/auth.log" 2>&1 &
BRIDGE_PID=$!
wait_http "http://127.0.0.1:$PORT/readyz"
curl -fsS -X POST -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d '{"wait": true}' "http://127.0.0.1:$PORT/api/v1/apps/$APP_ID/sync" >/dev/null
LOGIN_USERS=$(psql -tA "$PG/$DB" -c "SELECT string_agg(user_id, ',') FROM (SELECT user_id FROM users WHERE NOT deleted AND NOT is_resigned AND NOT is_frozen AND user_id IS NOT NULL ORDER BY open_id LIMIT 500) u")

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {print int($2/1048576)}' /proc/meminfo) GiB; $(date -u +%Y-%m-%dT%H:%MZ)"
COMMON=(--emulator "http://127.0.0.1:$EMU_PORT" --app-id "$APP_ID" --app-secret "$SECRET" --users "$LOGIN_USERS" --concurrency "$CONC" --seconds "$SECS")
DIRECT=$("$LOAD" logins "${COMMON[@]}")
BRIDGE=$("$LOAD" logins --bridge "http://127.0.0.1:$PORT" "${COMMON[@]}")
RSS=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$BRIDGE_PID/status")
echo "direct Feishu round trips: $DIRECT"
echo "through the bridge:        $BRIDGE"
python3 - "$DIRECT" "$BRIDGE" "$RSS" <<'PY'
import json, sys
d, b, rss = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
print(f"logins/s: bridge {b['per_sec']:.0f} vs direct {d['per_sec']:.0f} = {b['per_sec']/d['per_sec']:.2f}; failed {b['failed']}; bridge peak RSS {rss} MiB")
PY
kill "$BRIDGE_PID" "$EMU_PID" 2>/dev/null || true
wait 2>/dev/null || true
BRIDGE_PID=; EMU_PID=
echo "jwt verify, 1 thread:      $("$LOAD" jwt-verify --seconds 5 --threads 1)"
echo "jwt verify, $(nproc) threads:     $("$LOAD" jwt-verify --seconds 5 --threads "$(nproc)")"
