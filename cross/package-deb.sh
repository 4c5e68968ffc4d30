#!/usr/bin/env bash
# Packs dist/<arch>/ (from cross/build.sh) into a Debian package with dpkg-deb:
#
#   cross/package-deb.sh [aarch64|x86_64]   ->   dist/facegate_<version>_<arm64|amd64>.deb
#
#   /usr/bin/facegate
#   /usr/lib/facegate/libLiteRt.so          (+ VERSION: the runtime checks the release)
#   /usr/share/facegate/models/             the .tflite files, MANIFEST.toml, NOTICE
#   /etc/facegate/facegate.toml             conffile: the documented default, data in /var/lib/facegate
#   /lib/systemd/system/facegate.service    systemd/facegate.service
#   /usr/share/doc/facegate/                copyright, boards.md, examples/*.toml
#
# The maintainer scripts create the system user `facegate` (adduser --system), enable and
# start the service; systemd creates /var/lib/facegate (StateDirectory=facegate). purge
# removes /var/lib/facegate (the galleries) and /etc/facegate.
#
# Why not cargo-deb: it would have to be compiled in CI (minutes on two cores) to do what
# these lines do, and it still needs the layout of dist/ for the LiteRT library.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

arch=${1:-$(uname -m)}
case "$arch" in
  aarch64) debarch=arm64; tools=aarch64-linux-gnu- ;;
  x86_64) debarch=amd64; tools= ;;
  *) echo "package-deb: unsupported architecture '$arch' (aarch64 or x86_64)" >&2; exit 64 ;;
esac
if [ "$(uname -m)" = "$arch" ] || ! command -v "${tools}objdump" >/dev/null; then tools=; fi
dist=dist/$arch
for f in facegate libLiteRt.so VERSION models-tflite/MANIFEST.toml; do
  [ -e "$dist/$f" ] || { echo "package-deb: $dist/$f missing; run cross/build.sh $arch" >&2; exit 66; }
done
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
# The release has local cameras (v4l:INDEX): cross/build.sh builds with camera-v4l, and
# the binary's --version text names it. FACEGATE_FEATURES= (empty) packs a build without.
if [ "${FACEGATE_FEATURES-camera-v4l}" != "" ] && ! grep -aq '(features: camera-v4l)' "$dist/facegate"; then
  echo "package-deb: $dist/facegate lacks the camera-v4l feature; run cross/build.sh $arch" >&2
  exit 65
fi

min_glibc() {
  "${tools}objdump" -T "$1" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' \
    | sort -u -t. -k1,1n -k2,2n -k3,3n | tail -1
}
glibc_bin=$(min_glibc "$dist/facegate")
glibc_lib=$(min_glibc "$dist/libLiteRt.so")
glibc=$(printf '%s\n%s\n' "$glibc_bin" "$glibc_lib" | sort -t. -k1,1n -k2,2n | tail -1)
# libstdc++ (only the library uses it): GLIBCXX_3.4.N -> the GCC release that added it.
glibcxx=$("${tools}objdump" -T "$dist/libLiteRt.so" | { grep -o 'GLIBCXX_3\.4\.[0-9]*' || true; } \
  | sed 's/GLIBCXX_3\.4\.//' | sort -n | tail -1)
case "$glibcxx" in
  32) stdcxx="libstdc++6 (>= 14)" ;; 31) stdcxx="libstdc++6 (>= 13)" ;;
  30) stdcxx="libstdc++6 (>= 12)" ;; 29) stdcxx="libstdc++6 (>= 11)" ;;
  28) stdcxx="libstdc++6 (>= 10)" ;; *) stdcxx="libstdc++6" ;;
esac

pkg=$(mktemp -d)
chmod 0755 "$pkg"
trap 'rm -rf "$pkg"' EXIT
install -D -m 0755 "$dist/facegate" "$pkg/usr/bin/facegate"
install -D -m 0644 "$dist/libLiteRt.so" "$pkg/usr/lib/facegate/libLiteRt.so"
install -D -m 0644 "$dist/VERSION" "$pkg/usr/lib/facegate/VERSION"
install -d "$pkg/usr/share/facegate/models"
install -m 0644 "$dist"/models-tflite/* "$pkg/usr/share/facegate/models/"
install -D -m 0644 systemd/facegate.service "$pkg/lib/systemd/system/facegate.service"
install -d "$pkg/etc/facegate"
{
  echo "# /etc/facegate/facegate.toml, installed by the facegate package (a conffile: your"
  echo "# changes survive upgrades). The service runs \`facegate --config\` on this file."
  echo "# Examples: /usr/share/doc/facegate/examples/. The models and libLiteRt.so are found"
  echo "# in /usr/share/facegate/models and /usr/lib/facegate without configuration."
  echo "#"
  sed 's|^data_dir = "data"$|data_dir = "/var/lib/facegate"|' configs/facegate.toml
} > "$pkg/etc/facegate/facegate.toml"
grep -q '^data_dir = "/var/lib/facegate"$' "$pkg/etc/facegate/facegate.toml" \
  || { echo "package-deb: configs/facegate.toml has no 'data_dir = \"data\"' line to rewrite" >&2; exit 65; }
chmod 0644 "$pkg/etc/facegate/facegate.toml"
doc=$pkg/usr/share/doc/facegate
install -d "$doc/examples"
install -m 0644 docs/boards.md README.md "$doc/"
install -m 0644 configs/kiosk.toml configs/api-only.toml "$doc/examples/"
{
  echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
  echo "Upstream-Name: facegate"
  echo
  echo "Files: usr/bin/facegate"
  echo "License: MIT"
  echo
  echo "Files: usr/lib/facegate/libLiteRt.so"
  echo "Comment: LiteRT (TensorFlow Lite) from the PyPI wheel ai-edge-litert==2.1.4"
  echo "License: Apache-2.0"
  echo
  echo "Files: usr/share/facegate/models/*"
  echo "Comment: see usr/share/facegate/models/NOTICE"
  echo
  cat models-tflite/NOTICE
} > "$doc/copyright"

install -d "$pkg/DEBIAN"
echo /etc/facegate/facegate.toml > "$pkg/DEBIAN/conffiles"
cat > "$pkg/DEBIAN/control" <<EOF
Package: facegate
Version: $version
Architecture: $debarch
Maintainer: facegate maintainers <facegate@localhost>
Section: net
Priority: optional
Depends: libc6 (>= $glibc), $stdcxx, libgcc-s1, adduser
Installed-Size: $(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
Description: face recognition daemon for camera kiosks
 Serves the Face API (galleries, enroll, verify 1:1, identify 1:N, compare, mask
 flag) over local HTTP, runs TFLite models on the CPU through LiteRT and keeps
 galleries in LMDB. Runs as the systemd service facegate.service.
EOF
cat > "$pkg/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  if ! getent passwd facegate >/dev/null; then
    adduser --system --group --home /var/lib/facegate --no-create-home \
      --gecos "facegate daemon" facegate
  fi
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable facegate.service >/dev/null || true
    systemctl restart facegate.service || true
  fi
fi
exit 0
EOF
cat > "$pkg/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
  systemctl stop facegate.service || true
  systemctl disable facegate.service >/dev/null || true
fi
exit 0
EOF
cat > "$pkg/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
fi
if [ "$1" = purge ]; then
  rm -rf /var/lib/facegate /etc/facegate
fi
exit 0
EOF
chmod 0755 "$pkg/DEBIAN/postinst" "$pkg/DEBIAN/prerm" "$pkg/DEBIAN/postrm"
(cd "$pkg" && find . -type f ! -path './DEBIAN/*' ! -path './etc/*' -printf '%P\0' \
  | sort -z | xargs -0 md5sum) > "$pkg/DEBIAN/md5sums"

out=dist/facegate_${version}_${debarch}.deb
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$out" >/dev/null
echo "package-deb: $out ($(du -h "$out" | cut -f1); Depends libc6 >= $glibc: binary $glibc_bin, libLiteRt.so $glibc_lib; libLiteRt.so needs GLIBCXX_3.4.${glibcxx:-?})"
