#!/usr/bin/env bash
# Regenerates models-tflite/face_landmark.tflite (MediaPipe face mesh, 468 landmarks,
# Apache-2.0) from the npm package @mediapipe/face_mesh: the package packs its models
# into face_mesh_solution_packed_assets.data; face_mesh_solution_packed_assets_loader.js
# lists each file's byte range, and face_landmark.tflite is bytes [2495952, 3737848).
# Needs npm (registry access) and coreutils. Usage: fetch_face_mesh.sh [OUT_DIR]
set -euo pipefail

PACKAGE="@mediapipe/face_mesh@0.4.1657299874"
TGZ_SHA256="c08a7e0742a326285da666cf81d77c8b6f3a181a2ee948cadaf166008e0d3bc7"
START=2495952
END=3737848
MODEL_SHA256="c603fa6149219a3e9487dc9abd7a0c24474c77263273d24868378cdf40aa26d1"

here="$(cd "$(dirname "$0")" && pwd)"
out_dir="${1:-$here/..}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "$PACKAGE" >/dev/null)
tgz="$(ls "$work"/*.tgz)"
echo "$TGZ_SHA256  $tgz" | sha256sum --check --quiet
tar -xzf "$tgz" -C "$work"

loader="$work/package/face_mesh_solution_packed_assets_loader.js"
# The loader must still name this range for face_landmark.tflite.
grep -q "face_landmark/face_landmark.tflite\", \"start\": $START, \"end\": $END" "$loader"

dd if="$work/package/face_mesh_solution_packed_assets.data" of="$work/face_landmark.tflite" \
    iflag=skip_bytes,count_bytes skip=$START count=$((END - START)) bs=64K status=none
echo "$MODEL_SHA256  $work/face_landmark.tflite" | sha256sum --check --quiet
install -m 0644 "$work/face_landmark.tflite" "$out_dir/face_landmark.tflite"
echo "wrote $out_dir/face_landmark.tflite ($((END - START)) bytes, sha256 $MODEL_SHA256)"
