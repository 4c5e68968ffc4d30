#!/usr/bin/env bash
# Disk syncs per read request: strace counts fsync/fdatasync/msync of a release daemon
# (all its threads) while it answers N identify-face calls, after enrollment is done.
# Needs `strace` (Debian package). Prints one RESULT line:
#   tests/bench/fsync.sh                                 # this tree's release build
#   FACEGATE_BIN=/path/to/other/facegate tests/bench/fsync.sh   # e.g. main's build
#   N=100 tests/bench/fsync.sh
source "$(dirname "$0")/lib.sh"
N="${N:-50}"
TRACE="$(mktemp)"
BODY="$(mktemp)"
start_daemon
for p in amy sheldon penny; do
    enroll "$p" "$ROOT/tests/fixtures/api/${p}1.png" >/dev/null
done
printf '{"facegallery_id":"bench","image":"%s"}' \
    "$(base64 -w0 "$ROOT/tests/fixtures/vision/single_640x480.jpg")" >"$BODY"
strace -f -c -e trace=fsync,fdatasync,msync -o "$TRACE" -p "$DAEMON_PID" 2>/dev/null &
STRACE_PID=$!
sleep 1 # attached to every thread before the first call
ok=0
for _ in $(seq 1 "$N"); do
    code="$(curl -s -o /dev/null -w '%{http_code}' -X POST "$URL/face-api/facegallery/identify-face" \
        -H "Accesstoken: $TOKEN" -H 'Content-Type: application/json' --data-binary "@$BODY")"
    [ "$code" = 200 ] || [ "$code" = 411 ] && ok=$((ok + 1))
done
kill -INT "$STRACE_PID"
wait "$STRACE_PID" 2>/dev/null || true
syncs="$(awk '$NF ~ /^(fsync|fdatasync|msync)$/ {n += $4} END {print n + 0}' "$TRACE")"
cat "$TRACE"
echo "RESULT binary=$BIN identify_calls=$N answered=$ok syncs=$syncs syncs_per_identify=$(awk -v s="$syncs" -v n="$N" 'BEGIN {printf "%.2f", s / n}')"
rm -f "$TRACE" "$BODY"
