#!/usr/bin/env bash
# `make demo`: the Feishu emulator with a demo organisation, and `feishu-bridge all` on SQLite
# and the embedded bus (no servers needed), set up the way an operator would: the emulator is
# told the bridge's URLs (Feishu's developer console), then install / initialise runs through
# the console API. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

EMU=127.0.0.1:8900
BRIDGE=127.0.0.1:8080
APP=cli_a5f2c9e3d8b04f17
ADMIN_TOKEN=demo-admin-token
LOGS=data/logs
TARGET=${CARGO_TARGET_DIR:-target}
mkdir -p "$LOGS"

cargo build -q -p feishu-bridge -p feishu-emulator

pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "stopping…"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "stopped. (data/ keeps the demo database; delete it to start afresh)"
}
trap stop INT TERM EXIT

wait_for() { # url, what
  for _ in $(seq 300); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "$2 did not come up; see $LOGS/" >&2
  exit 1
}
ctl() { curl -fsS -H 'content-type: application/json' "$@"; }

"$TARGET"/debug/feishu-emulator serve --listen "$EMU" --demo > "$LOGS/emulator.log" 2>&1 &
pids+=($!)
wait_for "http://$EMU/_emulator/settings" "the emulator"

"$TARGET"/debug/feishu-bridge --config deploy/demo.toml all > "$LOGS/bridge.log" 2>&1 &
pids+=($!)
wait_for "http://$BRIDGE/readyz" "feishu-bridge"

# What an operator pastes into Feishu's developer console (the console's checklist).
ctl -X PUT -d "{\"url\": \"http://$BRIDGE/feishu/$APP/events\"}" "http://$EMU/_emulator/apps/$APP/request_url" > /dev/null
ctl -X PATCH -d "{\"redirect_urls\": [\"http://$BRIDGE/auth/feishu/$APP/callback\"], \"callback_url\": \"http://$BRIDGE/feishu/$APP/callbacks\"}" \
  "http://$EMU/_emulator/apps/$APP" > /dev/null

# Install / initialise, as the console's button does.
RUN=$(ctl -X POST -H "authorization: Bearer $ADMIN_TOKEN" "http://$BRIDGE/api/v1/apps/$APP/install" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["run_id"])')
for _ in $(seq 600); do
  STATUS=$(ctl -H "authorization: Bearer $ADMIN_TOKEN" "http://$BRIDGE/api/v1/apps/$APP/install/$RUN" |
    python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["status"])')
  [ "$STATUS" != running ] && break
  sleep 0.2
done
ctl -H "authorization: Bearer $ADMIN_TOKEN" "http://$BRIDGE/api/v1/apps/$APP/install/$RUN" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("install / initialise:", r["status"])
for s in r["steps"]:
    detail = (s.get("detail") or {}).get("en", "")
    print("  %-14s %-8s %s" % (s["name"], s["state"], detail))'

FIRST=$(ctl "http://$EMU/_emulator/state" | python3 -c '
import json, sys
t = json.load(sys.stdin)["tenants"][0]
print(next(iter(t["users"])))')

cat <<TXT

feishu-bridge demo is running (logs in $LOGS/).

  Console      http://$BRIDGE/console
               log in with Feishu: the emulator's QR frame lists people; pick 张伟 (Zhang Wei),
               an admin of the demo app. Or use the bootstrap admin token: $ADMIN_TOKEN
  Login page   http://$BRIDGE/auth/feishu/$APP/login?redirect=/auth/me
  Emulator     http://$EMU/_emulator/   (the Feishu stand-in's control API)

Things to try:
  # someone changes name in Feishu; the directory follows within a second
  curl -X PATCH -H 'content-type: application/json' -d '{"name": "张伟（新）"}' http://$EMU/_emulator/users/$FIRST
  curl -G -H 'authorization: Bearer demo-service-token' --data-urlencode 'q=张伟' http://$BRIDGE/api/v1/apps/$APP/users
  # the synced organisation
  curl -H 'authorization: Bearer demo-service-token' http://$BRIDGE/api/v1/apps/$APP/departments
  # a bot message, then Feishu's inbox (the emulator's)
  curl -H 'authorization: Bearer demo-service-token' -H 'content-type: application/json' \
    -d '{"idempotency_key": "demo-1", "targets": {"user_ids": ["$FIRST"]}, "text": "你好，张伟"}' \
    http://$BRIDGE/api/v1/apps/$APP/messages
  curl 'http://$EMU/_emulator/inbox?app_id=$APP&user_id=$FIRST'
  # the bot answers "help" (帮助)
  curl -H 'content-type: application/json' -d '{"app_id": "$APP", "user_id": "$FIRST", "text": "help"}' http://$EMU/_emulator/messages/p2p

Ctrl-C stops everything.
TXT
wait -n "${pids[@]}"
