#!/usr/bin/env bash
# Builds the palisade container image from a release binary, FROM scratch (no registry).
#
#   contrib/container/build.sh                 # cargo build --release --locked first
#   contrib/container/build.sh --binary PATH   # use a binary built already
#
# Then: podman run -d --name palisade -v palisade-data:/data -p 7400:7400 -p 9740:9740 palisade:<version>
# Works with docker too (ENGINE=docker).
set -euo pipefail
cd "$(dirname "$0")/../.."
engine="${ENGINE:-podman}"
if [[ "${1:-}" == "--binary" ]]; then
  contrib/release/package.sh --binary "$2" >/dev/null
else
  contrib/release/package.sh >/dev/null
fi
dist=$(find dist -mindepth 1 -maxdepth 1 -type d -name 'palisade-*' | head -1)
version=$("$dist/palisade" version | awk '/^palisade/ {print $2; exit}')
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/rootfs"
mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp"
cp "$dist/palisade" "$root/usr/local/bin/palisade"
# The shared libraries the binary links, at the paths the loader looks for them.
for lib in $(ldd "$dist/palisade" | awk '/=>/ {print $3} /ld-linux/ && !/=>/ {print $1}'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
echo "palisade:x:10001:10001:palisade:/data/palisade:/nonexistent" > "$root/etc/passwd"
echo "palisade:x:10001:" > "$root/etc/group"
# The data directory is a directory inside the volume, not its root: podman and docker copy
# the image's /data/palisade, with its owner, into a new named volume, but leave the volume's
# own root to root.
mkdir -p "$root/data/palisade"
chown -R 10001:10001 "$root/data/palisade"
chmod 1777 "$root/tmp"
cp contrib/container/Containerfile "$stage/"
"$engine" build --format docker -t "palisade:$version" -t palisade:latest "$stage"
echo "built palisade:$version"
