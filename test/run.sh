#!/bin/bash
# Set up everything the tests need on Debian, build and install the
# extension, then run the whole suite (pg_regress and TAP) in throwaway
# clusters. Run as root on a fresh machine, or as a user who can sudo.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
PG_BIN=/usr/lib/postgresql/15/bin
packages="postgresql-15 postgresql-server-dev-15 postgresql-common libcurl4-openssl-dev
  libipc-run-perl python3 make gcc"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=$(for p in $packages; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
    echo "== installing: $(echo $missing)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

echo "== building"
make -s -C "$src" PG_CONFIG=$PG_BIN/pg_config
as_root make -s -C "$src" PG_CONFIG=$PG_BIN/pg_config install >/dev/null

# PostgreSQL refuses to run as root: as root, test a copy owned by postgres.
work=$(mktemp -d /tmp/webhook-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -r "$src"/. "$work"
run=()
if [ "$(id -u)" = 0 ]; then
    chown -R postgres "$work"
    run=(runuser -u postgres --)
fi

echo "== testing"
status=0
"${run[@]}" env -C "$work" PATH="$PG_BIN:$PATH" \
    pg_virtualenv -v 15 -o shared_preload_libraries=webhook \
    make installcheck PG_CONFIG=$PG_BIN/pg_config || status=$?
if [ $status -ne 0 ]; then
    [ -f "$work/regression.diffs" ] && cat "$work/regression.diffs"
    for f in "$work"/tmp_check/log/regress_log_*; do
        [ -f "$f" ] && { echo "== $f"; tail -n 60 "$f"; }
    done
    echo "== tests failed"
fi
exit $status
