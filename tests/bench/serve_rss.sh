#!/usr/bin/env bash
# A daemon with a large gallery: time from start until /healthz answers, VmRSS (and its
# anonymous / file-backed parts) once ready and after 20 identify-face calls, and the
# median of those calls. Compare two binaries on the same store in one run:
#
#   FACEGATE_DATA_DIR=DIR tests/bench/serve_rss.sh PORT BINARY [BINARY...]
#
# DIR holds a gallery "g" of client "bench", e.g. written by
#   facegate bench index --templates 100000 --fill-store
# The models and LiteRT library come from the environment / default config as for
# `facegate serve` (run from the repository root). Each binary runs alone, in turn.
set -euo pipefail
cd "$(dirname "$0")/../.."
port=$1
shift
: "${FACEGATE_DATA_DIR:?set FACEGATE_DATA_DIR to a filled store}"
image_b64=$(base64 -w0 tests/fixtures/api/amy2.png)
body=$(mktemp)
trap 'rm -f "$body"' EXIT
printf '{"facegallery_id":"g","image":"%s","max_results":3}' "$image_b64" >"$body"
kb() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$2/status"; }
printf '%-28s %9s %10s %10s %10s %12s %12s\n' binary ready_s rss_MB anon_MB file_MB \
    rss_after_MB identify_ms
for bin in "$@"; do
    # The gallery belongs to client "bench": create it, or give it a new token.
    token=$("$bin" client add bench 2>/dev/null | tail -1) ||
        token=$("$bin" client rotate bench 2>/dev/null | tail -1)
    start=$(date +%s.%N)
    FACEGATE_LISTEN=127.0.0.1:$port "$bin" serve >/tmp/serve_rss.$port.log 2>&1 &
    pid=$!
    until curl -sf "http://127.0.0.1:$port/healthz" >/dev/null; do
        kill -0 $pid 2>/dev/null || { echo "$bin died:"; tail -5 /tmp/serve_rss.$port.log; exit 1; }
        sleep 0.02
    done
    ready=$(echo "$(date +%s.%N) - $start" | bc)
    sleep 1
    rss=$(kb VmRSS $pid); anon=$(kb RssAnon $pid); file=$(kb RssFile $pid)
    times=()
    for _ in $(seq 20); do
        t=$(curl -s -o /dev/null -w '%{time_total}' -H "Accesstoken: $token" \
            -H 'Content-Type: application/json' --data-binary @"$body" \
            "http://127.0.0.1:$port/face-api/facegallery/identify-face")
        times+=("$t")
    done
    after=$(kb VmRSS $pid)
    median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]*1000}')
    kill $pid
    wait $pid 2>/dev/null || true
    printf '%-28s %9.2f %10.1f %10.1f %10.1f %12.1f %12.1f\n' "$(basename "$(dirname "$bin")")/$(basename "$bin")" \
        "$ready" "$(echo "$rss/1024" | bc -l)" "$(echo "$anon/1024" | bc -l)" \
        "$(echo "$file/1024" | bc -l)" "$(echo "$after/1024" | bc -l)" "$median"
done
