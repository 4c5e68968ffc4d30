#!/usr/bin/env bash
# The kiosk page in headless Chromium against a real daemon fed by the folder source:
# the page must show the recognized name ("Welcome, Penny": the last visitor of the
# replayed scene), the list of visits, and the door state (Penny is refused by [door]
# users). Writes a screenshot OUTSIDE the repository.
#
#   tests/kiosk-chromium.sh [SCREENSHOT.png]      (default: $TMPDIR/facegate-kiosk.png)
#
# Needs Debian's chromium, curl, jq and python3 (installed when missing, as root).
set -euo pipefail
cd "$(dirname "$0")/.."

shot="${1:-${TMPDIR:-/tmp}/facegate-kiosk.png}"
need=()
for tool in chromium curl jq python3; do command -v "$tool" >/dev/null || need+=("$tool"); done
if ((${#need[@]})); then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
    else
        echo "kiosk-chromium: missing ${need[*]} (apt-get install ${need[*]})" >&2
        exit 1
    fi
fi

cargo build -q --bin facegate --example camera_frames
bin=target/debug/facegate
work=$(mktemp -d)
daemon=""
cleanup() {
    if [ -n "$daemon" ]; then kill "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
export FACEGATE_DATA_DIR="$work/data" FACEGATE_LISTEN="127.0.0.1:$port" FACEGATE_LOG=warn
export FACEGATE_DEVICE_ID=door-1

start() {
    "$bin" serve >"$work/serve.log" 2>&1 &
    daemon=$!
    for _ in $(seq 600); do
        curl -fs "$base/healthz" >/dev/null && return 0
        kill -0 "$daemon" 2>/dev/null || { cat "$work/serve.log" >&2; return 1; }
        sleep 0.1
    done
    echo "kiosk-chromium: daemon did not start" >&2
    return 1
}
stop() { kill "$daemon"; wait "$daemon" || true; daemon=""; }
api() { # api PATH JSON
    curl -fsS -H "Accesstoken: $token" -H 'Content-Type: application/json' \
        -d "$2" "$base/face-api/$1" | jq -r '.risetai.status'
}

step() { printf '== %s\n' "$*"; }

step "enroll Amy, Sheldon and Penny (daemon without camera)"
token=$("$bin" client add kiosk | tail -1)
start
[ "$(api facegallery/create-facegallery '{"facegallery_id":"door"}')" = 200 ]
for who in "amy:Amy Farrah Fowler" "sheldon:Sheldon Cooper" "penny:Penny"; do
    id=${who%%:*} name=${who#*:}
    body=$(jq -n --arg id "$id" --arg name "$name" --arg img "$(base64 -w0 "tests/fixtures/camera/${id}1.png")" \
        '{user_id:$id, user_name:$name, facegallery_id:"door", image:$img}')
    [ "$(api facegallery/enroll-face "$body")" = 200 ]
done
stop

step "replay the walk-ups through the dir: source at 10 fps"
target/debug/examples/camera_frames "$work/frames"
frames=$(ls "$work/frames" | wc -l)
# The door (docs/door.md): Amy and Sheldon open it, Penny does not; the webhook's
# receiver is down (nothing listens on port 9), so calls stay queued.
cat >"$work/door.toml" <<'TOML'
[door]
users = ["amy", "sheldon"]
webhook_url = "http://127.0.0.1:9/hook"
webhook_secret = "kiosk-chromium"
TOML
FACEGATE_CONFIG="$work/door.toml" FACEGATE_CAMERA="dir:$work/frames" FACEGATE_CAMERA_GALLERY=kiosk/door start
metric() { curl -fs "$base/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
for _ in $(seq 1200); do
    [ "$(metric facegate_camera_frames_captured_total)" = "$frames" ] && break
    sleep 0.1
done
echo "frames: captured $(metric facegate_camera_frames_captured_total)," \
    "processed $(metric facegate_camera_frames_processed_total)," \
    "dropped $(metric facegate_camera_frames_dropped_total)"

step "a kiosk token for the page (a full-power token is refused in a URL)"
kiosk_token=$("$bin" client add kiosk --scope kiosk | tail -1)
case "$kiosk_token" in kiosk_*) ;; *) echo "FAIL: not a kiosk token: $kiosk_token" >&2; exit 1 ;; esac
[ "$(curl -s "$base/face-api/kiosk/frame.jpg?access_token=$token" | jq -r '.risetai.status')" = 403 ] \
    || { echo "FAIL: a full-power token was accepted in a URL" >&2; exit 1; }
[ "$(curl -s -H "Accesstoken: $kiosk_token" "$base/face-api/facegallery/my-facegalleries" | jq -r '.risetai.status')" = 403 ] \
    || { echo "FAIL: the kiosk token opened another endpoint" >&2; exit 1; }

step "the kiosk page in headless Chromium"
# tests/kiosk_screen.py drives headless Chromium over the DevTools pipe: it waits until
# the greeting shows the last visitor, then takes the screenshot (see its header for
# why not --dump-dom / --virtual-time-budget).
python3 tests/kiosk_screen.py "$base/kiosk?access_token=$kiosk_token" '#greeting' 'Welcome, Penny' "$shot" 120 \
    | tee "$work/screen.txt"
step "the door state of the last visit on the page"
python3 tests/kiosk_screen.py "$base/kiosk?access_token=$kiosk_token" '#door' \
    'Door stays closed: user penny does not open this door' "${shot%.png}-door.png" 60
grep -q "'Amy Farrah Fowler'" "$work/screen.txt" || { echo "FAIL: Amy not in the visits" >&2; exit 1; }
grep -q "'Not recognized'" "$work/screen.txt" || { echo "FAIL: the stranger not in the visits" >&2; exit 1; }
echo "kiosk page OK"
