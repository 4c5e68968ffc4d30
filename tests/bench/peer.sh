#!/usr/bin/env bash
# facegate identify-face over HTTP vs the peer face_recognition on the same 640x480 JPEG.
# Needs a Python venv with the peer (PEER_PYTHON, default /work/cache/frvenv/bin/python):
#   python3 -m venv VENV && VENV/bin/pip install dlib-bin face_recognition_models numpy \
#       pillow click setuptools && VENV/bin/pip install --no-deps face_recognition
source "$(dirname "$0")/lib.sh"
PEER_PYTHON="${PEER_PYTHON:-/work/cache/frvenv/bin/python}"
IMAGE="$ROOT/tests/fixtures/vision/group_640x480.jpg"
start_daemon
for p in amy sheldon penny leonard howard raj bernadette; do
    enroll "$p" "$ROOT/tests/fixtures/api/${p}1.png" >/dev/null
done
enroll group "$IMAGE" >/dev/null
"$PEER_PYTHON" "$ROOT/tests/bench/peer_face_recognition.py" --url "$URL" --token "$TOKEN" \
    --image "$IMAGE" --runs "${RUNS:-30}"
