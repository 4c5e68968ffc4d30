# Shared by the benchmark scripts: start a release `facegate serve` on a fresh data
# folder with one client and one gallery; stop it on exit.
#   source tests/bench/lib.sh; start_daemon [extra env...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# FACEGATE_BIN: another build to measure (e.g. the baseline binary of main).
BIN="${FACEGATE_BIN:-$ROOT/target/release/facegate}"
PORT="${PORT:-18431}"
URL="http://127.0.0.1:$PORT"
DATA="$(mktemp -d /tmp/facegate-bench.XXXXXX)"
DAEMON_PID=""

stop_daemon() {
    if [ -n "$DAEMON_PID" ]; then
        kill -TERM "$DAEMON_PID" 2>/dev/null || true
        wait "$DAEMON_PID" 2>/dev/null || true
        DAEMON_PID=""
    fi
    rm -rf "$DATA"
}
trap stop_daemon EXIT

start_daemon() {
    [ -x "$BIN" ] || (cd "$ROOT" && cargo build --release --bin facegate)
    cd "$ROOT"
    TOKEN="$(FACEGATE_DATA_DIR="$DATA" "$BIN" client add bench | tail -n 1)"
    env "$@" FACEGATE_DATA_DIR="$DATA" FACEGATE_LISTEN="127.0.0.1:$PORT" FACEGATE_LOG=warn \
        "$BIN" serve &
    DAEMON_PID=$!
    for _ in $(seq 1 300); do
        curl -sf "$URL/healthz" >/dev/null 2>&1 && break
        sleep 0.1
    done
    curl -sf "$URL/healthz" >/dev/null
    api facegallery/create-facegallery '{"facegallery_id":"bench"}' >/dev/null
    export TOKEN URL
}

# api PATH JSON: POST to the Face API, print the body.
api() {
    curl -s -X POST "$URL/face-api/$1" -H "Accesstoken: $TOKEN" \
        -H 'Content-Type: application/json' --data-binary "$2"
}

# enroll USER_ID FILE
enroll() {
    local body
    body="$(mktemp)"
    printf '{"facegallery_id":"bench","user_id":"%s","user_name":"%s","force_register":true,"image":"%s"}' \
        "$1" "$1" "$(base64 -w0 "$2")" >"$body"
    curl -s -X POST "$URL/face-api/facegallery/enroll-face" -H "Accesstoken: $TOKEN" \
        --data-binary "@$body"
    rm -f "$body"
}
