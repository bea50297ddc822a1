"""Why: the HTTP API must not move by accident (issue #16: a restructure keeps behaviour). The live
`/openapi.json` is compared with the committed snapshot `tests/api/openapi.json`; after a deliberate
API change regenerate it with `.venv/bin/python -m scripts.openapi_snapshot` and commit both."""

from __future__ import annotations

import json

from scripts.openapi_snapshot import SNAPSHOT, live_schema, render


def test_openapi_matches_the_committed_snapshot() -> None:
    live = render(live_schema())
    committed = SNAPSHOT.read_text()
    if live != committed:
        ours, theirs = json.loads(live), json.loads(committed)
        changed = sorted(set(ours["paths"]) ^ set(theirs["paths"])) or sorted(
            p for p in ours["paths"] if ours["paths"][p] != theirs["paths"].get(p))
        raise AssertionError(
            f"/openapi.json differs from {SNAPSHOT.name} (paths: {changed[:10]} or components); "
            "if the change is deliberate, run `python -m scripts.openapi_snapshot` and commit the snapshot")
    assert json.loads(live)["info"]["title"] == "consentgate"
