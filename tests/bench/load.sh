#!/usr/bin/env bash
# Load run: 32 concurrent identify-face calls for 30 s against a release daemon, on the
# 640x480 JPEG tests/fixtures/vision/group_640x480.jpg (its largest face enrolled among
# 8 people). Needs `wrk` (Debian package). Prints one RESULT line per configuration:
#   tests/bench/load.sh                 # default config (workers 2, queue 16) and queue 64
#   DURATION=10s tests/bench/load.sh
source "$(dirname "$0")/lib.sh"
DURATION="${DURATION:-30s}"
BODY_FILE="$(mktemp)"
export BODY_FILE
printf '{"facegallery_id":"bench","image":"%s","trx_id":"load"}' \
    "$(base64 -w0 "$ROOT/tests/fixtures/vision/group_640x480.jpg")" >"$BODY_FILE"

run() {
    local label="$1"
    shift
    start_daemon "$@"
    for p in amy sheldon penny leonard howard raj bernadette; do
        enroll "$p" "$ROOT/tests/fixtures/api/${p}1.png" >/dev/null
    done
    enroll group "$ROOT/tests/fixtures/vision/group_640x480.jpg" >/dev/null
    echo "== $label: $(nproc) cores, 32 connections, $DURATION"
    wrk -t2 -c32 -d"$DURATION" --timeout 30s -s "$ROOT/tests/bench/identify.lua" \
        "$URL/face-api/facegallery/identify-face" | grep -E "RESULT|Requests/sec"
    stop_daemon
    DATA="$(mktemp -d /tmp/facegate-bench.XXXXXX)"
}

run "default config (runtime.workers=2, runtime.queue=16)"
cat >"$DATA.toml" <<TOML
[runtime]
queue = 64
TOML
run "runtime.queue=64 (no 503 at 32 connections)" FACEGATE_CONFIG="$DATA.toml"
rm -f "$BODY_FILE" "$DATA.toml"
