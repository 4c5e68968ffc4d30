#!/usr/bin/env bash
# identify-face median over HTTP, one client, on two daemons at once (interleaved calls,
# same machine load): BASELINE_BIN (e.g. main's release build; default: this tree's)
# with BASELINE_CONFIG, and this tree's build with CONFIG (a config file each; default:
# the embedded default). ENDPOINT=enroll-face times enrollment instead (the same user
# enrolled again each call: analysis, crop, store commit).
#   BASELINE_BIN=/path/to/main/facegate tests/bench/ab_identify.sh     RUNS=100 ...
#   CONFIG=configs/accurate.toml tests/bench/ab_identify.sh            default vs accurate
#   ENDPOINT=enroll-face BASELINE_BIN=... tests/bench/ab_identify.sh
source "$(dirname "$0")/lib.sh"
RUNS="${RUNS:-60}"
IMAGE="$ROOT/tests/fixtures/vision/single_640x480.jpg"
ENDPOINT="${ENDPOINT:-identify-face}"
BODY="$(mktemp)"
case "$ENDPOINT" in
    identify-face) printf '{"facegallery_id":"bench","image":"%s"}' "$(base64 -w0 "$IMAGE")" >"$BODY" ;;
    enroll-face) printf '{"facegallery_id":"bench","user_id":"again","user_name":"again","force_register":true,"image":"%s"}' \
        "$(base64 -w0 "$IMAGE")" >"$BODY" ;;
    *) echo "ENDPOINT: identify-face or enroll-face" >&2; exit 2 ;;
esac
declare -A URLS TOKENS PIDS DIRS
THIS_BIN="$BIN"
for side in baseline this; do
    if [ "$side" = baseline ]; then
        BIN="${BASELINE_BIN:-$THIS_BIN}"; side_config="${BASELINE_CONFIG:-}"
    else
        BIN="$THIS_BIN"; side_config="${CONFIG:-}"
    fi
    PORT=$((PORT + 1)); URL="http://127.0.0.1:$PORT"; DATA="$(mktemp -d /tmp/facegate-bench.XXXXXX)"
    if [ -n "$side_config" ]; then start_daemon FACEGATE_CONFIG="$side_config"; else start_daemon; fi
    enroll person "$IMAGE" >/dev/null
    for p in amy sheldon penny leonard howard raj bernadette; do
        enroll "$p" "$ROOT/tests/fixtures/api/${p}1.png" >/dev/null
    done
    URLS[$side]="$URL"; TOKENS[$side]="$TOKEN"; PIDS[$side]="$DAEMON_PID"; DIRS[$side]="$DATA"
    DAEMON_PID=""  # stopped below, not by the next start
done
trap 'kill ${PIDS[baseline]} ${PIDS[this]} 2>/dev/null; rm -rf "${DIRS[baseline]}" "${DIRS[this]}" "$BODY"' EXIT
call() {
    curl -s -o /dev/null -w '%{time_total}\n' -X POST "${URLS[$1]}/face-api/facegallery/$ENDPOINT" \
        -H "Accesstoken: ${TOKENS[$1]}" -H 'Content-Type: application/json' --data-binary "@$BODY"
}
for _ in 1 2 3; do call baseline >/dev/null; call this >/dev/null; done
TIMES="$(mktemp)"
for _ in $(seq 1 "$RUNS"); do
    echo "baseline $(call baseline)" >>"$TIMES"
    echo "this $(call this)" >>"$TIMES"
done
median() { grep "^$1 " "$TIMES" | awk '{print $2 * 1000}' | sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
b="$(median baseline)"; t="$(median this)"
rm -f "$TIMES"
echo "RESULT endpoint=$ENDPOINT runs=$RUNS baseline_median_ms=$b this_median_ms=$t speedup=$(awk -v b="$b" -v t="$t" 'BEGIN {printf "%.2f", b / t}')"
