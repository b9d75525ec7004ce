#!/usr/bin/env bash
# Builds the release artefact: a stripped `palisade` binary, its debug symbols in a separate
# file (linked with .gnu_debuglink, so gdb and perf find them when both sit side by side),
# and SHA-256 sums, in dist/palisade-<version>-<target>.tar.gz.
#
#   contrib/release/package.sh                 # cargo build --release --locked, then package
#   contrib/release/package.sh --binary PATH   # package a binary built already
#
# Needs objcopy (binutils). The stripped binary is what ships; keep the .debug file with the
# release to symbolise a crash report (`gdb palisade palisade.debug`, `addr2line -e palisade.debug`).
set -euo pipefail
cd "$(dirname "$0")/../.."
binary=""
if [[ "${1:-}" == "--binary" ]]; then
  binary="$2"
else
  cargo build --release --locked -p palisade-node
  binary="${CARGO_TARGET_DIR:-target}/release/palisade"
fi
command -v objcopy >/dev/null || { echo "objcopy not found: install binutils" >&2; exit 1; }
version=$("$binary" version | awk '/^palisade/ {print $2; exit}')
target=$(rustc -vV | awk '/^host:/ {print $2}')
name="palisade-${version:-unknown}-${target}"
out="dist/$name"
rm -rf "$out" && mkdir -p "$out"
objcopy --only-keep-debug "$binary" "$out/palisade.debug"
objcopy --strip-debug --strip-unneeded "$binary" "$out/palisade"
objcopy --add-gnu-debuglink="$out/palisade.debug" "$out/palisade"
cp README.md CHANGELOG.md "$out/"
cp -r contrib/systemd "$out/"
"$out/palisade" version >/dev/null
(cd "$out" && sha256sum palisade palisade.debug > SHA256SUMS)
tar -C dist -czf "dist/$name.tar.gz" "$name"
ls -l "$out/palisade" "$out/palisade.debug" "dist/$name.tar.gz"
