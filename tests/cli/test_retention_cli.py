"""`consentgate registry retention run [--dry-run] [--now T]` on a data dir: the verdict per
subject, nothing changed on a dry run, a crypto-shredded subject and its `retention` receipt
otherwise (#17.4)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image

from tests.support.cli import app, run, runner


def test_retention_run_dry_and_for_real(env: Path, tmp_path: Path, astronaut: np.ndarray) -> None:
    image = tmp_path / "a.png"
    Image.fromarray(astronaut).save(image)
    run("init")
    sid = json.loads(run("registry", "subject", "add", "Eileen Collins"))["id"]
    run("registry", "enroll", sid, str(image), "--notice-version", "v1")
    later = (datetime.now(UTC) + timedelta(days=4 * 365)).isoformat()
    soon = json.loads(run("registry", "retention", "run", "--dry-run"))
    assert [s["action"] for s in soon["subjects"]] == ["keep"]
    dry = json.loads(run("registry", "retention", "run", "--dry-run", "--now", later))
    assert [s["action"] for s in dry["subjects"]] == ["erase"] and dry["receipts"] == []
    assert json.loads(run("registry", "subject", "show", sid))["id"] == sid
    done = json.loads(run("registry", "retention", "run", "--now", later))
    assert done["receipts"][0]["kind"] == "retention" and done["receipts"][0]["subjects"] == [sid]
    assert runner.invoke(app, ["registry", "subject", "show", sid]).exit_code == 1
    entries = json.loads(run("audit", "entries", "--kind", "retention"))["entries"]
    assert [e["record"]["subjects"] for e in entries] == [[sid]]
    assert runner.invoke(app, ["audit", "verify"]).exit_code == 0
    bad = runner.invoke(app, ["registry", "retention", "run", "--now", "yesterday"])
    assert bad.exit_code == 1 and "RFC 3339" in bad.output
