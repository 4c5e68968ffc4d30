#!/usr/bin/env bash
# Kept-alive identify-face medians back to back and after 300 ms idle
# (tests/bench/idle_gap.py). Extra arguments are environment for the daemon, e.g.
#   tests/bench/idle_gap.sh FACEGATE_CONFIG=configs/other.toml
#   FACEGATE_BIN=/path/to/baseline/facegate RUNS=50 tests/bench/idle_gap.sh
source "$(dirname "$0")/lib.sh"
IMAGE="$ROOT/tests/fixtures/vision/single_640x480.jpg"
start_daemon "$@"
enroll person "$IMAGE" >/dev/null
python3 "$ROOT/tests/bench/idle_gap.py" --url "$URL" --token "$TOKEN" --image "$IMAGE" \
    --runs "${RUNS:-30}" --idle-ms "${IDLE_MS:-300}"
