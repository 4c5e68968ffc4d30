#!/usr/bin/env bash
# The ARM build, proven on this x86_64 machine (called by tests/run-all.sh):
#
#  1. builds facegate for aarch64 with rustup's target and Debian's cross gcc
#     (cross/build.sh aarch64) and fetches the aarch64 libLiteRt.so;
#  2. runs it under `qemu-aarch64 -cpu cortex-a72` (a Raspberry Pi 4 core) with that
#     library alone in its folder and the real models: `facegate compare` on two fixture
#     photos must give the x86_64 build's verdict and a similarity within 1e-3;
#  3. runs `facegate serve` under qemu with a NOTIFY_SOCKET: READY=1 must arrive, and
#     create-facegallery + enroll-face + identify-face over HTTP must find the person;
#     the release build has the camera-v4l feature (`--version`), and with
#     FACEGATE_CAMERA=v4l:0 on this machine without a camera serve logs the missing
#     camera, retries it with a growing delay and keeps answering the API;
#  4. runs the x86_64 compare under systemd's MemoryDenyWriteExecute seccomp rules
#     (cross/mdwe-run.py), as the unit sets it;
#  5. `systemd-analyze verify` and `systemd-analyze security --offline` on
#     systemd/facegate.service (exposure must stay <= 2.0);
#  6. packs the arm64 .deb and checks its contents with dpkg-deb.
#
# Installs what it needs (Debian packages, the rustup target) when missing. Prints the
# time of each step; CI_CROSS_TIMES gets a copy of the summary if set.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

t0=$(date +%s)
last=$t0
times=()
lap() {
  local now
  now=$(date +%s)
  times+=("$(printf '%-44s %5d s' "$1" $((now - last)))")
  last=$now
}
step() { printf '\n== cross-aarch64: %s\n' "$*"; }
fail() { echo "cross-aarch64: FAIL: $*" >&2; exit 1; }

step "tools (Debian cross gcc, qemu-user, rustup target)"
need=()
command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu)
[ -e /usr/aarch64-linux-gnu/lib/libc.so.6 ] || need+=(libc6-dev-arm64-cross)
[ -e /usr/aarch64-linux-gnu/lib/libstdc++.so.6 ] || need+=(libstdc++6-arm64-cross)
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
# camera-v4l: bindgen (libclang) for nokhwa's V4L2 bindings, on the cross sysroot's headers.
command -v clang >/dev/null || need+=(clang)
ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || need+=(libclang-dev)
[ -e /usr/aarch64-linux-gnu/include/linux/videodev2.h ] || need+=(linux-libc-dev-arm64-cross)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v dpkg-deb >/dev/null || need+=(dpkg)
[ -e /usr/lib/x86_64-linux-gnu/libseccomp.so.2 ] || need+=(libseccomp2)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc-aarch64-linux-gnu \
    libc6-dev-arm64-cross qemu-user "${need[@]}" >/dev/null
fi
rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1 \
  || rustup target list --installed | grep -qx aarch64-unknown-linux-gnu \
  || fail "rustup target add aarch64-unknown-linux-gnu failed"
lap "tools"

step "build aarch64 (release) and fetch its LiteRT"
nice -n 5 cross/build.sh aarch64
lap "aarch64 build + LiteRT fetch"

step "x86_64 reference binary"
cargo build --quiet --bin facegate
host_bin=${CARGO_TARGET_DIR:-$root/target}/debug/facegate
lap "x86_64 build (usually already built)"

dist=$root/dist/aarch64
# The library alone in its folder: no accelerator plugin beside it (see fetch-litert.sh).
extra=$(find "$dist" -maxdepth 1 -name '*.so*' ! -name libLiteRt.so)
[ -z "$extra" ] || fail "libraries beside libLiteRt.so: $extra"
qemu=(qemu-aarch64 -cpu cortex-a72 -L /usr/aarch64-linux-gnu)
A=$root/tests/fixtures/vision/amy1.png
B=$root/tests/fixtures/vision/amy2.png
C=$root/tests/fixtures/vision/sheldon1.png
work=$(mktemp -d)
serve_pid=
listener_pid=
cleanup() {
  if [ -n "$serve_pid" ]; then kill "$serve_pid" 2>/dev/null || true; fi
  if [ -n "$listener_pid" ]; then kill "$listener_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

step "the aarch64 release has the camera-v4l feature"
version=$("${qemu[@]}" "$dist/facegate" --version)
echo "$version"
case "$version" in
  *camera-v4l*) ;;
  *) fail "the aarch64 release lacks the camera-v4l feature: $version" ;;
esac

step "compare under qemu-aarch64 -cpu cortex-a72 vs x86_64"
# From an empty working directory: the aarch64 binary must find libLiteRt.so and the
# models beside itself, as on a board with dist/aarch64 copied over.
compare_both() {
  local x y
  x=$(cd "$work" && FACEGATE_LITERT_LIB=$root/.litert/x86_64/libLiteRt.so \
    FACEGATE_MODELS_DIR=$root/models-tflite "$host_bin" compare "$1" "$2" --json 2>"$work/x86.err") \
    || { cat "$work/x86.err" >&2; return 1; }
  y=$(cd "$work" && "${qemu[@]}" "$dist/facegate" compare "$1" "$2" --json 2>"$work/qemu.err") \
    || { cat "$work/qemu.err" >&2; return 1; }
  echo "compare $(basename "$1") $(basename "$2")"
  python3 - "$x" "$y" <<'PY'
import json, sys
x, y = (json.loads(s) for s in sys.argv[1:3])
for name, r in (("x86_64", x), ("aarch64 (qemu cortex-a72)", y)):
    print(f"  {name:26} similarity {r['similarity']:.7f}  cosine {r['cosine']:.7f}  "
          f"verified {r['verified']}  masker {r['masker']}")
kp = max(abs(x[f]["keypoints"][k][c] - y[f]["keypoints"][k][c])
         for f in "ab" for k in x["a"]["keypoints"] for c in "xy")
d = abs(x["similarity"] - y["similarity"])
print(f"  similarity difference {d:.3g}, cosine difference {abs(x['cosine'] - y['cosine']):.3g}, "
      f"largest keypoint difference {kp:.3g} px")
assert x["verified"] == y["verified"], "verdicts differ"
assert x["masker"] == y["masker"], "mask verdicts differ"
assert d <= 1e-3, f"similarity differs by {d} > 1e-3"
PY
}
compare_both "$A" "$B" || fail "aarch64 compare differs from x86_64 (same person)"
compare_both "$A" "$C" || fail "aarch64 compare differs from x86_64 (different people)"
lap "compare x2 under qemu + x86_64"

step "1:N index under qemu: the NEON search gives the exact f32 brute-force answer"
# `bench index` checks every search against an exact f32 brute force over the same
# vectors: genuine queries, impostor queries (noise far larger than the templates: every
# candidate is close, the bounds decide little) and searches for five results (their
# first must be the brute force's). The whole index suite runs under qemu with
# `cargo test --target aarch64-unknown-linux-gnu --lib index` (docs/index.md; ~10 min
# of compiling on a fresh machine, so not here).
for args in "" "--noise 100" "--k 5"; do
  # shellcheck disable=SC2086 # the options are meant to split
  out=$(cd "$work" && "${qemu[@]}" "$dist/facegate" bench index --templates 20000 $args \
    --json 2>"$work/index.err") || { cat "$work/index.err" >&2; fail "bench index $args"; }
  python3 - "$args" "$out" <<'PY' || fail "the aarch64 index differs from brute force ($args)"
import json, sys
r = json.loads(sys.argv[2])
print(f"  templates {r['templates']} k {r['k']} {sys.argv[1] or 'genuine'}: recall@1 "
      f"{r['recall_at_1']:.3f}, {r['search_ms_median']:.2f} ms under qemu, "
      f"{r['bytes_per_template']:.1f} bytes per template")
assert r["recall_at_1"] == 1.0
PY
done
lap "index against brute force under qemu"

step "serve under qemu: enroll + identify over HTTP, v4l:0 missing and retried"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export FACEGATE_LISTEN=127.0.0.1:$port FACEGATE_DATA_DIR=$work/data
token=$(cd "$work" && "${qemu[@]}" "$dist/facegate" client add kiosk | tail -1)
[ -n "$token" ] || fail "client add printed no token"
# systemd's readiness protocol: a datagram socket that receives READY=1 if serve sends it.
python3 "$root/cross/notify-listen.py" "$work/notify" "$work/notify.log" &
listener_pid=$!
sleep 0.5
start=$(date +%s.%N)
# No camera on this machine (no /dev/video*): serve must log it, retry with backoff and
# keep serving the API.
(cd "$work" && NOTIFY_SOCKET=$work/notify FACEGATE_CAMERA=v4l:0 FACEGATE_CAMERA_GALLERY=kiosk/gate \
  exec "${qemu[@]}" "$dist/facegate" serve) >"$work/serve.log" 2>&1 &
serve_pid=$!
python3 - "$port" "$token" "$A" "$B" "$start" "$work/notify.log" "$work/serve.log" <<'PY' || { cat "$work/serve.log" >&2; kill $listener_pid 2>/dev/null; fail "serve under qemu"; }
import base64, json, os, sys, time, urllib.request
port, token, enroll_img, probe_img, start, notify_log, serve_log = sys.argv[1:8]
base = f"http://127.0.0.1:{port}"
deadline = time.time() + 300
while True:
    try:
        urllib.request.urlopen(base + "/healthz", timeout=5).read()
        break
    except Exception:
        if time.time() > deadline:
            sys.exit("serve did not answer /healthz within 300 s")
        time.sleep(0.5)
print(f"healthz answered {time.time() - float(start):.1f} s after start (qemu)")

def post(path, body):
    req = urllib.request.Request(base + "/face-api/" + path, json.dumps(body).encode(),
                                 {"Content-Type": "application/json", "Accesstoken": token})
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            data = json.load(r)
    except urllib.error.HTTPError as e:
        data = json.load(e)
    data = data.get("risetai", data)
    print(f"POST {path}: {json.dumps(data)[:300]}")
    return data

b64 = lambda p: base64.b64encode(open(p, "rb").read()).decode()
r = post("facegallery/create-facegallery", {"facegallery_id": "gate", "trx_id": "ci1"})
assert r["status"] == "200", r
r = post("facegallery/enroll-face", {"user_id": "amy", "user_name": "Amy", "facegallery_id": "gate",
                                     "image": b64(enroll_img), "trx_id": "ci2"})
assert r["status"] == "200", r
r = post("facegallery/identify-face", {"facegallery_id": "gate", "image": b64(probe_img), "trx_id": "ci3"})
assert r["status"] == "200", r
assert r["return"][0]["user_id"] == "amy", r
notes = open(notify_log).read() if os.path.exists(notify_log) else ""
if "READY=1" in notes:
    print("systemd notify: " + notes.strip().replace("\n", " | "))
else:
    # The unit is Type=notify: without READY=1 systemd kills the service at TimeoutStartSec.
    sys.exit("serve sent no READY=1 to NOTIFY_SOCKET: call facegate::telemetry::notify::ready "
             "once the listener is bound (docs/boards.md, systemd section)")

# The missing camera: retried (bounded wait for the second attempt), logged with a growing
# delay, and the API still answers.
import re
def metric(name):
    text = urllib.request.urlopen(base + "/metrics", timeout=60).read().decode()
    m = re.search(r"^" + re.escape(name) + r" (\S+)$", text, re.M)
    return float(m.group(1)) if m else None
deadline = time.time() + 300
while (metric("facegate_camera_source_failures_total") or 0) < 3:
    if time.time() > deadline:
        sys.exit("the missing camera was not retried: " + open(serve_log).read()[-2000:])
    time.sleep(0.5)
assert metric("facegate_camera_source_up") == 0
log = re.sub(r"\x1b\[[0-9;]*m", "", open(serve_log).read())  # without ANSI colours
assert "not compiled" not in log and "need a build with" not in log, log[-2000:]
retries = [l for l in log.splitlines() if "camera source unavailable; retrying" in l and "v4l:0" in l]
delays = [int(d) for l in retries for d in re.findall(r"retry_in_ms\D{1,3}(\d+)", l)]
print(f"v4l:0 missing: {len(retries)} retries logged, delays {delays[:5]} ms; first: {retries[0][:240] if retries else '-'}")
assert len(retries) >= 3 and len(delays) >= 3 and delays[0] < delays[1] < delays[2], log[-2000:]
r = post("facegallery/identify-face", {"facegallery_id": "gate", "image": b64(probe_img), "trx_id": "ci4"})
assert r["status"] == "200" and r["return"][0]["user_id"] == "amy", r
PY
kill -TERM "$serve_pid"
wait "$serve_pid" || fail "serve under qemu exited with $? after SIGTERM"
serve_pid=
kill "$listener_pid" 2>/dev/null || true
listener_pid=
unset FACEGATE_LISTEN FACEGATE_DATA_DIR
lap "serve enroll + identify under qemu"

step "MemoryDenyWriteExecute: x86_64 compare under systemd's seccomp rules"
mdwe=$(cd "$work" && FACEGATE_LITERT_LIB=$root/.litert/x86_64/libLiteRt.so \
  FACEGATE_MODELS_DIR=$root/models-tflite "$root/cross/mdwe-run.py" "$host_bin" compare "$A" "$B" --json \
  2>"$work/mdwe.err") || { cat "$work/mdwe.err" >&2; fail "facegate compare fails under MemoryDenyWriteExecute rules"; }
grep '^mdwe-run' "$work/mdwe.err"
echo "compare under MemoryDenyWriteExecute rules: $(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("similarity", r["similarity"], "verified", r["verified"])' "$mdwe")"
lap "MemoryDenyWriteExecute check"

step "systemd-analyze verify + security (offline)"
# verify needs the ExecStart binary on this machine: a copy of the unit pointing at it.
unit=$work/facegate.service
sed "s|^ExecStart=/usr/bin/facegate |ExecStart=$host_bin |" systemd/facegate.service > "$unit"
grep -q "^ExecStart=$host_bin " "$unit" || fail "ExecStart not rewritten"
verify_out=$(systemd-analyze verify "$unit" 2>&1) || { echo "$verify_out"; fail "systemd-analyze verify"; }
# Warnings about this machine (no user facegate, no systemd running) are not the unit's.
echo "${verify_out:-systemd-analyze verify: no findings}"
security=$(systemd-analyze security --offline=true --threshold=20 "$unit" 2>&1) \
  || { echo "$security"; fail "systemd-analyze security: exposure above 2.0"; }
echo "$security" | grep -E '^(✗|→ Overall)' || true
lap "systemd-analyze"

step "arm64 .deb"
cross/package-deb.sh aarch64
deb=$(ls -t dist/facegate_*_arm64.deb | head -1)
dpkg-deb -c "$deb" > "$work/contents"
for path in ./usr/bin/facegate ./usr/lib/facegate/libLiteRt.so \
  ./usr/share/facegate/models/dlib_face_recognition_int8.tflite \
  ./usr/share/facegate/models/face_detection_short_range.tflite \
  ./usr/share/facegate/models/mask_mobilenetv2_int8.tflite \
  ./etc/facegate/facegate.toml ./lib/systemd/system/facegate.service; do
  grep -q " $path\$" "$work/contents" || { cat "$work/contents"; fail "$deb lacks $path"; }
done
[ "$(dpkg-deb -f "$deb" Architecture)" = arm64 ] || fail "$deb is not arm64"
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles | grep -qx /etc/facegate/facegate.toml \
  || fail "/etc/facegate/facegate.toml is not a conffile"
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./postinst | grep -q 'adduser --system' \
  || fail "postinst does not create the system user"
dpkg-deb --fsys-tarfile "$deb" | tar -xO ./etc/facegate/facegate.toml > "$work/conffile.toml"
"$host_bin" --config "$work/conffile.toml" config check >/dev/null \
  || fail "the packaged /etc/facegate/facegate.toml fails config check"
echo "$deb: $(grep -c '' "$work/contents") entries, Depends: $(dpkg-deb -f "$deb" Depends)"
lap ".deb build + check"

printf '\n== cross-aarch64: passed; time per step\n'
printf '%s\n' "${times[@]}"
summary=$(printf 'total %d s' $(( $(date +%s) - t0 )))
echo "$summary"
if [ -n "${CI_CROSS_TIMES:-}" ]; then printf '%s\n' "${times[@]}" "$summary" > "$CI_CROSS_TIMES"; fi
