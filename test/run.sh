#!/bin/bash
# Set up everything the tests need on Debian, build and install the
# extension, then run the whole suite (pg_regress, isolation and TAP) in throwaway
# clusters. Run as root on a fresh machine, or as a user who can sudo.
# Arguments go to make: bash test/run.sh REGRESS= PROVE_TESTS=test/t/001_delivery.pl
set -euo pipefail
WEBHOOK_TESTS=1
source "$(dirname "$0")/setup.sh"

# Test a copy the server's user owns: results/ and tmp_check/ land there.
work=$(mktemp -d /tmp/webhook-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -r "$src"/. "$work"
[ "$(id -u)" = 0 ] && chown -R postgres "$work"

echo "== testing"
status=0
"${as_pg[@]}" env -C "$work" PATH="$PG_BIN:$PATH" \
    pg_virtualenv -v 15 -o shared_preload_libraries=webhook \
    make installcheck PG_CONFIG=$PG_BIN/pg_config "$@" || status=$?
if [ $status -ne 0 ]; then
    [ -f "$work/regression.diffs" ] && cat "$work/regression.diffs"
    [ -f "$work/output_iso/regression.diffs" ] && cat "$work/output_iso/regression.diffs"
    for f in "$work"/tmp_check/log/regress_log_*; do
        [ -f "$f" ] && grep -q "not ok\|Looks like\|died" "$f" || continue
        echo "== $f"; tail -n 80 "$f"
        # the servers' logs of that test file: what the worker said
        t=$(basename "$f"); t=${t#regress_log_}
        for l in "$work"/tmp_check/log/"$t"_*.log; do
            [ -f "$l" ] || continue
            echo "== $l (webhook lines, last 60)"
            grep -i "webhook" "$l" | tail -n 60 || true
        done
    done
    echo "== tests failed"
fi
exit $status
