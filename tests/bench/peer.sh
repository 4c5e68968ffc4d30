#!/usr/bin/env bash
# facegate identify-face over HTTP vs the peer face_recognition (dlib) doing the same
# job (decode, detect, embed the LARGEST face only, nearest enrolled person) on the same
# single-face 640x480 JPEG, interleaved in one run (tests/bench/peer_face_recognition.py).
# Creates its own Python environment under target/peer/ on first use, from PyPI:
# face_recognition with dlib's prebuilt wheel (dlib-bin), or with PEER_DLIB_SOURCE=1 plain
# `pip install face_recognition`, which compiles dlib (over an hour on a busy 2-core box).
#   tests/bench/peer.sh             RUNS=50 tests/bench/peer.sh
#   PEER_PYTHON=/path/to/python tests/bench/peer.sh   (an environment you made yourself)
source "$(dirname "$0")/lib.sh"
if [ "${PEER_DLIB_SOURCE:-0}" = 1 ]; then VENV="$ROOT/target/peer/venv"; else VENV="$ROOT/target/peer/venv-bin"; fi
PEER_PYTHON="${PEER_PYTHON:-$VENV/bin/python}"
if ! "$PEER_PYTHON" -c "import face_recognition" 2>/dev/null; then
    echo "creating $VENV for face_recognition" >&2
    python3 -m venv "$VENV"
    # face_recognition_models imports pkg_resources, which setuptools 81 removed.
    "$VENV/bin/pip" install --quiet --upgrade pip "setuptools<81" wheel
    if [ "${PEER_DLIB_SOURCE:-0}" = 1 ]; then
        "$VENV/bin/pip" install --quiet cmake
        nice "$VENV/bin/pip" install --quiet face_recognition
    else
        "$VENV/bin/pip" install --quiet dlib-bin face_recognition_models numpy pillow click
        "$VENV/bin/pip" install --quiet --no-deps face_recognition
    fi
    PEER_PYTHON="$VENV/bin/python"
fi
IMAGE="$ROOT/tests/fixtures/vision/single_640x480.jpg"
start_daemon
KNOWN=("$IMAGE")
enroll person "$IMAGE" >/dev/null
for p in amy sheldon penny leonard howard raj bernadette; do
    enroll "$p" "$ROOT/tests/fixtures/api/${p}1.png" >/dev/null
    KNOWN+=("$ROOT/tests/fixtures/api/${p}1.png")
done
"$PEER_PYTHON" "$ROOT/tests/bench/peer_face_recognition.py" --url "$URL" --token "$TOKEN" \
    --image "$IMAGE" --runs "${RUNS:-30}" --known "${KNOWN[@]}"
