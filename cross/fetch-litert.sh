#!/usr/bin/env bash
# Fetches libLiteRt.so from the pinned PyPI wheel ai-edge-litert==2.1.4 for one
# architecture and unpacks it, alone, into .litert/<arch>/ (or DEST).
#
#   cross/fetch-litert.sh [x86_64|aarch64] [DEST]
#
# Only libLiteRt.so is kept: the wheel's GPU accelerator plugin, if it sits beside the
# library, is loaded automatically and kills ARMv8.0 cores (Raspberry Pi 4) with an
# illegal instruction. Needs python3 with pip; uses PyPI only.
set -euo pipefail
VERSION=2.1.4
arch=${1:-$(uname -m)}
root=$(cd "$(dirname "$0")/.." && pwd)
dest=${2:-$root/.litert/$arch}
case "$arch" in
  x86_64) platform=manylinux_2_27_x86_64 ;;
  aarch64) platform=manylinux_2_27_aarch64 ;;
  *) echo "fetch-litert: unsupported architecture '$arch' (x86_64 or aarch64)" >&2; exit 64 ;;
esac
if [ -f "$dest/libLiteRt.so" ] && grep -qx "ai-edge-litert $VERSION" "$dest/VERSION" 2>/dev/null; then
  echo "fetch-litert: $dest/libLiteRt.so is already $VERSION"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "fetch-litert: downloading ai-edge-litert==$VERSION for $platform"
python3 -m pip download --quiet --no-deps --only-binary=:all: --platform "$platform" \
  --python-version 3.11 --dest "$work" "ai-edge-litert==$VERSION"
wheel=$(ls "$work"/ai_edge_litert-*.whl)
python3 - "$wheel" "$work" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extract("ai_edge_litert/libLiteRt.so", sys.argv[2])
PY
mkdir -p "$dest"
install -m 0644 "$work/ai_edge_litert/libLiteRt.so" "$dest/libLiteRt.so"
echo "ai-edge-litert $VERSION" > "$dest/VERSION"
echo "fetch-litert: wrote $dest/libLiteRt.so ($(du -h "$dest/libLiteRt.so" | cut -f1))"
