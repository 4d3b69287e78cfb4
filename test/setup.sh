#!/bin/bash
# Install what webhook needs on Debian (when missing), then build and install
# the extension into PostgreSQL 15. Sourced by test/run.sh, demo/demo.sh and
# test/bench/run.sh.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_BIN=/usr/lib/postgresql/15/bin
packages="postgresql-15 postgresql-server-dev-15 postgresql-common libcurl4-openssl-dev
  libipc-run-perl python3 make gcc ${EXTRA_PACKAGES:-}"
# The tests (test/run.sh sets WEBHOOK_TESTS=1) also scrape Debian's
# prometheus exporter, and run the official Standard Webhooks verifier with
# node and npm (test/node); a machine that has node and npm from elsewhere
# (nodesource) keeps them.
tests=${WEBHOOK_TESTS:-0}
if [ "$tests" = 1 ]; then
    packages="$packages prometheus-postgres-exporter"
    command -v node >/dev/null && command -v npm >/dev/null || packages="$packages nodejs npm"
fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=$(for p in $packages; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
    echo "== installing: $(echo $missing)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

if [ "$tests" = 1 ] && { [ ! -d "$src/test/node/node_modules/standardwebhooks" ] ||
   [ "$src/test/node/package-lock.json" -nt "$src/test/node/node_modules/.package-lock.json" ]; }; then
    echo "== installing the test verifier (npm ci in test/node)"
    (cd "$src/test/node" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

echo "== building and installing webhook"
make -s -C "$src" PG_CONFIG=$PG_BIN/pg_config
as_root make -s -C "$src" PG_CONFIG=$PG_BIN/pg_config install >/dev/null

# PostgreSQL refuses to run as root: as root, run servers as postgres.
if [ "$(id -u)" = 0 ]; then
    as_pg=(runuser -u postgres --)
else
    as_pg=()
fi

# Start a throwaway cluster in DIR/data (log DIR/server.log), listening only on
# a Unix socket in DIR at PORT, with webhook preloaded for database postgres.
# Further postgresql.conf lines come on stdin (none: </dev/null).
start_cluster() {
    local dir=$1 port=$2 preload=${3:-webhook}
    "${as_pg[@]}" "$PG_BIN/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
    {
        cat <<CONF
port = $port
listen_addresses = ''
unix_socket_directories = '$dir'
shared_preload_libraries = '$preload'
timezone = 'UTC'
CONF
        cat
    } >> "$dir/data/postgresql.conf"
    "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
}
