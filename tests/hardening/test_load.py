"""A short run of the load test (bench/load.py): 10 s, 4 clients, one `consentgate serve` replica on
SQLite. Opt-in (it starts a real server and keeps both cores busy): CONSENTGATE_LOAD_TEST=1.
CONSENTGATE_LOAD_TEST=pg runs the two-replica PostgreSQL mode instead. The assertions are about
correctness, not speed: no failed request, the audit log verifies, it holds exactly one entry per
decision the clients were answered, and the replica's memory does not run away."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODE = os.environ.get("CONSENTGATE_LOAD_TEST", "")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        MODE not in ("1", "sqlite", "pg"), reason="opt in with CONSENTGATE_LOAD_TEST=1 (or =pg)"
    ),
]


@pytest.mark.timeout(600)
def test_short_load_run_has_no_errors_and_a_verified_log(tmp_path: Path) -> None:
    mode = "pg" if MODE == "pg" else "sqlite"
    out = tmp_path / "load.json"
    proc = subprocess.run(  # noqa: S603 - our own script, fixed arguments
        [
            sys.executable,
            str(REPO / "bench" / "load.py"),
            "--mode",
            mode,
            "--duration",
            "10",
            "--clients",
            "4",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=580,
        cwd=REPO,
    )
    assert out.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    (summary,) = json.loads(out.read_text())
    assert summary["total"]["requests"] > 0
    assert summary["total"]["errors"] == 0, summary["total"]["error_examples"]
    assert summary["total"]["by_kind"].get("release", 0) > 0
    assert summary["audit_verify"]["ok"], summary["audit_verify"]
    assert summary["audit_entries_added"] == summary["decisions_answered"]
    for name, row in summary["replicas"].items():
        assert row["requests"] > 0, name
        assert row["rss_end_mb"] - row["rss_start_mb"] < 256, (name, row)
    assert set(summary["memory"]) == set(summary["replicas"])  # every serving process, read at idle too
    for name, mem in summary["memory"].items():
        assert 0 < mem["idle_mb"] <= mem["warm_mb"] + 64, (name, mem)
        assert mem["growth_after_warmup_mb"] == round(mem["end_mb"] - mem["warm_mb"], 1), (name, mem)
    assert proc.returncode == 0, proc.stdout[-3000:]
