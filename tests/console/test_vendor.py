"""The vendored @noble/ed25519 is the published file (digest recorded in VENDOR.md, checked here
against the committed copy; scripts/vendor_console.sh checks npm's copy against the same digest)."""

from __future__ import annotations

import hashlib
import re

from gateway.console.router import STATIC


def test_vendored_files_match_their_recorded_digests() -> None:
    table = (STATIC / "VENDOR.md").read_text()
    rows = re.findall(r"^\| `([^`]+)` \|.*\| `([0-9a-f]{64})` \|$", table, re.M)
    assert rows, "VENDOR.md lists no file"
    for name, digest in rows:
        assert hashlib.sha256((STATIC / name).read_bytes()).hexdigest() == digest, name
    script = (STATIC.parents[2] / "scripts" / "vendor_console.sh").read_text()
    assert {d for _, d in rows} <= set(re.findall(r"WANT=([0-9a-f]{64})", script))
