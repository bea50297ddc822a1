#!/usr/bin/env bash
# Why: the console's one third-party runtime file is committed (small, reproducible); this script
# re-fetches the pinned version from npm and checks it is byte-for-byte what gateway/console/static/
# VENDOR.md records, so anyone can confirm the vendored copy is the published one.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=3.2.0
WANT=a4f631d1876b5d9e43a86cd71194ca27b5e1451edf4ba4db9a418f40a475569a
DEST=gateway/console/static/vendor
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack -q "@noble/ed25519@${VERSION}" >/dev/null && tar xzf noble-ed25519-${VERSION}.tgz)
GOT=$(sha256sum "$TMP/package/index.js" | cut -d' ' -f1)
if [ "$GOT" != "$WANT" ]; then
  echo "npm's @noble/ed25519@${VERSION} index.js has sha256 $GOT, expected $WANT" >&2; exit 1
fi
cp "$TMP/package/index.js" "$DEST/noble-ed25519.js"
cp "$TMP/package/LICENSE" "$DEST/noble-ed25519.LICENSE"
echo "vendored @noble/ed25519@${VERSION} (sha256 $GOT)"
