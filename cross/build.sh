#!/usr/bin/env bash
# Builds facegate for one board architecture on an x86_64 Debian machine and lays out a
# self-contained folder dist/<arch>/:
#
#   dist/<arch>/facegate          the binary, stripped
#   dist/<arch>/libLiteRt.so      LiteRT from ai-edge-litert==2.1.4, alone (+ VERSION)
#   dist/<arch>/models-tflite/    the .tflite models, MANIFEST.toml, NOTICE
#
# facegate finds the library and the models beside its executable, so
# `dist/<arch>/facegate compare A B` works from any working directory.
#
#   cross/build.sh [aarch64|x86_64] [--profile PROFILE]    (default: release)
#   CARGO=cross cross/build.sh aarch64       # compile inside cross-rs's Docker image (Cross.toml)
#   FACEGATE_FEATURES= cross/build.sh ...    # without the default release feature camera-v4l
#
# The release build has the cargo feature camera-v4l (local cameras, `v4l:INDEX`);
# `facegate --version` lists the features built in.
#
# Needs (not installed by this script; tests/cross-aarch64.sh installs them in CI):
#   aarch64: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross
#            rustup target add aarch64-unknown-linux-gnu
#   camera-v4l: apt-get install clang libclang-dev (bindgen for nokhwa's V4L2 bindings)
#   both:    python3 with pip (for cross/fetch-litert.sh; PyPI only)
# The linker and C compiler for aarch64, and bindgen's cross sysroot, come from
# .cargo/config.toml. Cross.toml does the same build inside cross-rs's Docker image for
# those who have Docker.
#
# CI builds and tests the release profile, the one the .deb ships (about 5 minutes for
# aarch64 on two busy cores).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

arch=${1:-$(uname -m)}
shift || true
profile=release
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile=${2:?--profile needs a name}; shift 2 ;;
    --profile=*) profile=${1#--profile=}; shift ;;
    *) echo "build.sh: unknown argument '$1'" >&2; exit 64 ;;
  esac
done

case "$arch" in
  aarch64) target=aarch64-unknown-linux-gnu; tools=aarch64-linux-gnu- ;;
  x86_64) target=x86_64-unknown-linux-gnu; tools= ;;
  *) echo "build.sh: unsupported architecture '$arch' (aarch64 or x86_64)" >&2; exit 64 ;;
esac
if [ "$(uname -m)" = "$arch" ]; then tools=; fi

if [ "${CARGO:-cargo}" = cargo ] && [ -n "$tools" ] && ! command -v "${tools}gcc" >/dev/null; then
  echo "build.sh: ${tools}gcc not found; apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross" >&2
  exit 69
fi
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$target"; then
  echo "build.sh: rust target $target missing; rustup target add $target" >&2
  exit 69
fi

features=${FACEGATE_FEATURES-camera-v4l}
if [ "${CARGO:-cargo}" = cargo ] && [[ "$features" == *camera-v4l* ]] \
  && ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1; then
  echo "build.sh: camera-v4l needs libclang; apt-get install clang libclang-dev" >&2
  exit 69
fi

cargo=${CARGO:-cargo}
echo "== $cargo build --profile $profile --target $target --features '$features'"
start=$(date +%s)
"$cargo" build --locked --profile "$profile" --target "$target" --features "$features" --bin facegate
echo "build.sh: built in $(( $(date +%s) - start )) s"
# Cargo names the release profile's folder `release` and any other profile by its name.
built=${CARGO_TARGET_DIR:-target}/$target/$profile/facegate

echo "== LiteRT for $arch"
cross/fetch-litert.sh "$arch"

out=dist/$arch
rm -rf "$out"
mkdir -p "$out/models-tflite"
if command -v "${tools}strip" >/dev/null; then
  "${tools}strip" -o "$out/facegate" "$built"
else
  echo "build.sh: ${tools}strip not found (binutils-aarch64-linux-gnu); dist binary left unstripped" >&2
  install -m 0755 "$built" "$out/facegate"
fi
# libLiteRt.so alone: no accelerator plugin may sit beside it (see fetch-litert.sh).
install -m 0644 ".litert/$arch/libLiteRt.so" ".litert/$arch/VERSION" "$out/"
install -m 0644 models-tflite/*.tflite models-tflite/MANIFEST.toml models-tflite/NOTICE \
  "$out/models-tflite/"

# The newest glibc symbol version each file needs (its minimum glibc).
min_glibc() {
  command -v "${tools}objdump" >/dev/null || { echo "? (no ${tools}objdump)"; return; }
  "${tools}objdump" -T "$1" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' \
    | sort -u -t. -k1,1n -k2,2n -k3,3n | tail -1
}
echo "== dist/$arch"
printf '%-28s %8s  needs glibc >= %s\n' \
  "$out/facegate" "$(du -h "$out/facegate" | cut -f1)" "$(min_glibc "$out/facegate")" \
  "$out/libLiteRt.so" "$(du -h "$out/libLiteRt.so" | cut -f1)" "$(min_glibc "$out/libLiteRt.so")"
printf '%-28s %8s\n' "$out/models-tflite/" "$(du -sh "$out/models-tflite" | cut -f1)"
