#!/usr/bin/env bash
# Fetch a headless Chromium for the browser test of the search page (tests/search/test_page_browser.py).
#
#   scripts/get_chromium.sh [DEST]        # DEST defaults to build/chromium (git-ignored)
#
# The binary comes from the npm package @sparticuz/chromium (pinned version, checked against the
# registry's sha512), which ships it brotli-compressed. `npm pack` fetches only that package's
# tarball (no dependencies are installed); Node's zlib unpacks the .br files. Result:
#
#   DEST/chromium                      the headless-shell binary (x86_64 Linux)
#   DEST/libEGL.so ... libvk_swiftshader.so   SwiftShader software GL, found next to the binary
#   DEST/fonts.conf, DEST/fonts/       a fallback font (unused: the test keeps the system's fontconfig)
#   DEST/al2023/lib/                   NSS/NSPR/expat libraries, used by the test only where the
#                                      system lacks them (`ldd DEST/chromium` shows "not found")
#
# Needs: node >= 18 and npm (registry access), tar. About 70 MB download, 215 MB unpacked.
set -euo pipefail

VERSION=147.0.0
INTEGRITY=sha512-4ZKeAQQa8up2mt675qSitztLdbQrlf8BKdC5naeap+5Mv1OV1OlJdPoU+EJC/p5sQUJUQmN4r+q5+EhaaOUHpQ==

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEST=${1:-$ROOT/build/chromium}
if [ "$(uname -sm)" != "Linux x86_64" ]; then
  echo "@sparticuz/chromium ships an x86_64 Linux binary only; this is $(uname -sm)" >&2
  exit 1
fi
if [ -x "$DEST/chromium" ] && [ "$(cat "$DEST/VERSION" 2>/dev/null)" = "$VERSION" ]; then
  echo "$DEST/chromium ($VERSION) is already there"
  exit 0
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && npm pack --silent "@sparticuz/chromium@$VERSION" >/dev/null)
TGZ=$(ls "$WORK"/sparticuz-chromium-*.tgz)
GOT=$(node -e 'const c = require("crypto"), fs = require("fs");
console.log("sha512-" + c.createHash("sha512").update(fs.readFileSync(process.argv[1])).digest("base64"));' "$TGZ")
if [ "$GOT" != "$INTEGRITY" ]; then
  echo "integrity mismatch for @sparticuz/chromium@$VERSION: $GOT" >&2
  exit 1
fi
tar -xzf "$TGZ" -C "$WORK"

unbrotli() {  # unbrotli SRC OUT
  node -e 'const fs = require("fs"), zlib = require("zlib");
fs.writeFileSync(process.argv[2], zlib.brotliDecompressSync(fs.readFileSync(process.argv[1])));' "$1" "$2"
}

rm -rf "$DEST"
mkdir -p "$DEST/al2023"
unbrotli "$WORK/package/bin/chromium.br" "$DEST/chromium"
chmod 755 "$DEST/chromium"
for pack in swiftshader fonts al2023; do
  unbrotli "$WORK/package/bin/$pack.tar.br" "$WORK/$pack.tar"
done
tar -xf "$WORK/swiftshader.tar" -C "$DEST" --no-same-owner
tar -xf "$WORK/fonts.tar" -C "$DEST" --no-same-owner
tar -xf "$WORK/al2023.tar" -C "$DEST/al2023" --no-same-owner
echo "$VERSION" > "$DEST/VERSION"
echo "$("$DEST/chromium" --version) in $DEST"
