#!/bin/bash
# The webhook demo: on a fresh Debian machine, install what is needed, start
# a throwaway PostgreSQL cluster with webhook preloaded and a loopback
# receiver, post, edit, react to and delete chat messages, and print what the
# receiver got. Everything is removed at the end.
set -euo pipefail
source "$(dirname "$0")/../test/setup.sh"

dir=$(mktemp -d /tmp/webhook-demo.XXXXXX)
[ "$(id -u)" = 0 ] && chown postgres "$dir"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pg_port=$(free_port)
recv_port=$(free_port)
recv_pid=
cleanup() {
    [ -n "$recv_pid" ] && kill "$recv_pid" 2>/dev/null || true
    "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT

echo "== starting a throwaway cluster on port $pg_port and a receiver on port $recv_port"
start_cluster "$dir" "$pg_port" </dev/null
echo '{}' > "$dir/script.json"
python3 "$src/test/receiver.py" --port "$recv_port" \
    --log "$dir/requests.log" --script "$dir/script.json" &
recv_pid=$!

psql=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$pg_port" -U postgres -d postgres)
for _ in $(seq 100); do "${psql[@]}" -c 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.1; done

"${psql[@]}" -v url="http://127.0.0.1:$recv_port/slackchat" -f "$src/demo/demo.sql"

# Wait (at most 30 s) for the receiver to have the 8 notifications.
for _ in $(seq 300); do
    [ "$(grep -vc url_verification "$dir/requests.log" 2>/dev/null)" -ge 8 ] && break
    sleep 0.1
done

echo
echo "== what the receiver got"
python3 - "$dir/requests.log" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    h = r["headers"]
    print(f"POST {r['path']}  webhook-id: {h['webhook-id']}  webhook-signature: {h['webhook-signature'][:20]}...")
    print("   ", json.dumps(json.loads(r["body"]), indent=2).replace("\n", "\n    "))
PY
echo
echo "== webhook.delivery"
"${psql[@]}" -c "SELECT id, event->>'type' AS type, event->>'update_type' AS update_type,
    status, attempts, response_status, duration FROM webhook.delivery ORDER BY id"
