#!/usr/bin/env bash
# Load run: concurrent identify-face calls (wrk) against a release daemon with the
# default configuration, on the single-face 640x480 JPEG
# tests/fixtures/vision/single_640x480.jpg (its face enrolled among 8 people). Needs
# `wrk` (Debian package). Prints one RESULT line per connection count (answers, non-2xx,
# throughput, p50/p99; tests/bench/identify.lua) and the cores the daemon kept busy:
#   tests/bench/load.sh                              # 32 and 64 connections, 30 s each
#   CONNECTIONS="32" DURATION=10s tests/bench/load.sh
#   BASELINE_BIN=/path/to/main/facegate tests/bench/load.sh   # each run on that build
#       first, then on this tree's, alternating (same machine load for both)
source "$(dirname "$0")/lib.sh"
DURATION="${DURATION:-30s}"
CONNECTIONS="${CONNECTIONS:-32 64}"
IMAGE="$ROOT/tests/fixtures/vision/single_640x480.jpg"
BODY_FILE="$(mktemp)"
export BODY_FILE
printf '{"facegallery_id":"bench","image":"%s","trx_id":"load"}' "$(base64 -w0 "$IMAGE")" >"$BODY_FILE"
THIS_BIN="$BIN"

# utime + stime of a process, in clock ticks (proc(5): fields 14 and 15; the command name
# in field 2 has no spaces here).
cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$1/stat"
}

run() {
    local label="$1" connections="$2"
    start_daemon
    enroll person "$IMAGE" >/dev/null
    for p in amy sheldon penny leonard howard raj bernadette; do
        enroll "$p" "$ROOT/tests/fixtures/api/${p}1.png" >/dev/null
    done
    echo "== $label: $(nproc) cores, $connections connections, $DURATION"
    local cpu_before cpu_after wall_before wall_after result
    cpu_before=$(cpu_ticks "$DAEMON_PID"); wall_before=$(date +%s.%N)
    result=$(wrk -t2 -c"$connections" -d"$DURATION" --timeout 30s -s "$ROOT/tests/bench/identify.lua" \
        "$URL/face-api/facegallery/identify-face" | grep -E "RESULT")
    cpu_after=$(cpu_ticks "$DAEMON_PID"); wall_after=$(date +%s.%N)
    # The daemon's CPU time over the run's wall time: 2.0 would be both cores, all the
    # time (wrk and the kernel's networking share the same two cores).
    daemon_cores=$(python3 -c "import os,sys; t=os.sysconf('SC_CLK_TCK'); print('%.2f' % ((int(sys.argv[2])-int(sys.argv[1]))/t/(float(sys.argv[4])-float(sys.argv[3]))))" \
        "$cpu_before" "$cpu_after" "$wall_before" "$wall_after")
    echo "$result daemon_cores=$daemon_cores" | sed "s|^RESULT|RESULT build=$label connections=$connections|"
    stop_daemon
    DATA="$(mktemp -d /tmp/facegate-bench.XXXXXX)"
}

for c in $CONNECTIONS; do
    if [ -n "${BASELINE_BIN:-}" ]; then
        BIN="$BASELINE_BIN"
        run baseline "$c"
    fi
    BIN="$THIS_BIN"
    run this "$c"
done
rm -f "$BODY_FILE"
