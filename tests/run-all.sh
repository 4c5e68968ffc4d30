#!/usr/bin/env bash
# The whole test suite, from a fresh clone on a fresh Debian machine with rustup and
# python3: installs what the tests need, then runs format, lint and every test.
#
#   tests/run-all.sh
#
# Real parts only: the LiteRT library from the pinned PyPI wheel, the committed models,
# real LMDB files in temporary folders, real HTTP on 127.0.0.1, real MQTT brokers
# (rumqttd in-process, Debian's mosquitto).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "LiteRT runtime (ai-edge-litert==2.1.4 from PyPI)"
cross/fetch-litert.sh "$(uname -m)"

step "mosquitto (Debian) for the sync tests"
if ! command -v mosquitto >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq mosquitto >/dev/null
fi
# The broker-restart test starts its own mosquitto: required here, not skipped.
export FACEGATE_REQUIRE_MOSQUITTO=1

step "toolchain components"
rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "clang/libclang for the camera-v4l feature (nokhwa's V4L2 bindings)"
if ! command -v clang >/dev/null || ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq clang libclang-dev >/dev/null
    else
        echo "missing clang libclang-dev (apt-get install clang libclang-dev)" >&2
        exit 1
    fi
fi

step "format"
cargo fmt --check

step "lint"
cargo clippy --all-targets -- -D warnings
cargo clippy --all-targets --features camera-v4l -- -D warnings

step "tests"
{
    cargo test --all-targets
    # The V4L2 camera source: its MJPEG/YUYV decoding and missing-camera path.
    cargo test --features camera-v4l --lib camera::source::v4l
} 2>&1 | tee target/test-output.txt

step "sync tests against mosquitto"
tests/with-mosquitto.sh cargo test --test sync_mqtt --test sync_daemons --test sync_central --test sync_gallery_state 2>&1 | tee -a target/test-output.txt
# The camera's recognized events through mosquitto as well.
tests/with-mosquitto.sh cargo test --test camera mqtt_events 2>&1 | tee -a target/test-output.txt

step "kiosk page in headless Chromium (camera on the dir: source)"
tests/kiosk-chromium.sh

step "aarch64: cross build, real inference under qemu, systemd unit, .deb"
# FACEGATE_CROSS=0 skips it on a developer's machine; CI always runs it.
if [ "${FACEGATE_CROSS:-1}" != 0 ] || [ -n "${CI:-}" ]; then
  tests/cross-aarch64.sh
else
  echo "skipped (FACEGATE_CROSS=0)"
fi

# The closing lines for the CI log: every `test result:` line summed up.
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "%d passed, %d failed, %d skipped\n", p, f, i }' target/test-output.txt
