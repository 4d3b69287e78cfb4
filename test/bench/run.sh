#!/bin/bash
# The webhook benchmark: figures, not pass/fail.
#
#   test/bench/run.sh                   full sizes (about 17-20 minutes on 2 cores)
#   BENCH_SCALE=0.1 test/bench/run.sh   every size scaled down, for a quick check
#
# Installs what it needs (nginx, wrk, psycopg2) when missing, builds and
# installs the extension, starts a throwaway cluster with webhook preloaded
# and nginx on loopback (one worker process, answering 200 to every POST),
# runs test/bench/bench.py against them, and removes everything at the end.
# Prints a table and writes test/bench/out/results.json.
#
# Other settings: BENCH_STATEMENTS=1 also preloads pg_stat_statements and
# reports the costliest statements (the worker's among them); BENCH_PERF=1 records a perf
# profile of the worker while it drains the largest backlog (needs perf);
# BENCH_KEEP=1 keeps the temporary directory (logs, data) for a look;
# BENCH_PHASES=capacity,trigger,bulk,single,latency,backlog,fanout,workers runs only
# those phases; BENCH_CONF='name = value' lines are added to postgresql.conf.
set -euo pipefail

bench=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
py=/usr/bin/python3     # Debian's python, where python3-psycopg2 goes

extra=
[ -x /usr/sbin/nginx ] || extra="$extra nginx-light"
command -v wrk >/dev/null || extra="$extra wrk"
[ -x $py ] && $py -c 'import psycopg2' 2>/dev/null || extra="$extra python3-psycopg2"
EXTRA_PACKAGES="${EXTRA_PACKAGES:-}$extra"
source "$bench/../setup.sh"

dir=$(mktemp -d /tmp/webhook-bench.XXXXXX)
mkdir -p "$dir/nginx/tmp" "$bench/out"
[ "$(id -u)" = 0 ] && chown -R postgres "$dir"
free_port() { $py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pg_port=$(free_port)
recv_port=$(free_port)
nginx_pid=
cleanup() {
    local rc=$?
    set +e
    if [ -s "$dir/nginx/nginx.pid" ]; then
        kill "$(cat "$dir/nginx/nginx.pid")" 2>/dev/null
    elif [ -n "$nginx_pid" ]; then
        kill "$nginx_pid" 2>/dev/null
    fi
    [ -n "$nginx_pid" ] && wait "$nginx_pid" 2>/dev/null
    if [ -f "$dir/data/postmaster.pid" ]; then
        # workers stopped by the benchmark must not hold up the shutdown
        [ -s "$dir/worker-stopped.pid" ] && kill -CONT $(cat "$dir/worker-stopped.pid") 2>/dev/null  # one pid per worker
        "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1
    fi
    if [ "$rc" != 0 ] && [ -f "$dir/server.log" ]; then
        tail -n 200 "$dir/server.log" > "$bench/out/server.log.tail"
        echo "== the end of the server log is in $bench/out/server.log.tail" >&2
    fi
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        echo "== kept $dir"
    else
        rm -rf "$dir"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

preload=webhook
[ "${BENCH_STATEMENTS:-0}" = 1 ] && preload=webhook,pg_stat_statements

echo "== starting a throwaway cluster on port $pg_port and nginx on port $recv_port"
# The settings are printed and recorded by bench.py (it reads them back).
start_cluster "$dir" "$pg_port" "$preload" <<CONF
shared_buffers = 512MB
max_wal_size = 16GB
min_wal_size = 1GB
checkpoint_timeout = 30min
checkpoint_completion_target = 0.9
log_checkpoints = on
log_autovacuum_min_duration = 1s
pg_stat_statements.track = all
${BENCH_CONF:-}
CONF

sed -e "s|@DIR@|$dir/nginx|g" -e "s|@PORT@|$recv_port|g" \
    "$bench/nginx.conf.in" > "$dir/nginx/nginx.conf"
[ "$(id -u)" = 0 ] && chown postgres "$dir/nginx/nginx.conf"
"${as_pg[@]}" /usr/sbin/nginx -p "$dir/nginx" -e "$dir/nginx/error.log" \
    -c "$dir/nginx/nginx.conf" &
nginx_pid=$!
for _ in $(seq 100); do
    [ -s "$dir/nginx/nginx.pid" ] && [ -f "$dir/nginx/arrivals.log" ] && break
    sleep 0.05
done
[ -s "$dir/nginx/nginx.pid" ] || { echo "nginx did not start:" >&2; cat "$dir/nginx/error.log" >&2; exit 1; }

BENCH_DIR=$dir BENCH_PG_PORT=$pg_port BENCH_RECV_PORT=$recv_port PG_BIN=$PG_BIN \
BENCH_NGINX_PID=$(cat "$dir/nginx/nginx.pid") BENCH_SRC=$src \
    $py "$bench/bench.py"
