#!/usr/bin/env bash
# facegate identify-face over HTTP vs the peer face_recognition (dlib) doing the same
# job (decode, detect, embed the LARGEST face only, nearest enrolled person) on the same
# single-face 640x480 JPEG, interleaved in one run (tests/bench/peer_face_recognition.py).
# Creates its own Python environment under target/peer/venv on first use (face_recognition
# from PyPI; dlib builds from source, which takes a while on a small machine):
#   tests/bench/peer.sh             RUNS=50 tests/bench/peer.sh
#   PEER_PYTHON=/path/to/python tests/bench/peer.sh   (an environment you made yourself)
source "$(dirname "$0")/lib.sh"
VENV="$ROOT/target/peer/venv"
PEER_PYTHON="${PEER_PYTHON:-$VENV/bin/python}"
if ! "$PEER_PYTHON" -c "import face_recognition" 2>/dev/null; then
    echo "creating $VENV (pip install face_recognition; dlib compiles from source)" >&2
    python3 -m venv "$VENV"
    # face_recognition_models imports pkg_resources, which setuptools 81 removed.
    "$VENV/bin/pip" install --quiet --upgrade pip "setuptools<81" wheel cmake
    nice "$VENV/bin/pip" install --quiet face_recognition
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
