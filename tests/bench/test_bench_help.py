"""Why: the bench scripts are how the issues' figures are reproduced; a script whose `--help` crashes
(an argparse help string with a bare `%` did, in bench/release.py) is a figure nobody can re-run. Every
bench that takes options must print its usage and exit 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p for p in (REPO / "bench").glob("*.py")
                 if "ArgumentParser(" in (text := p.read_text()) and "__main__" in text)


def test_the_bench_scripts_are_found() -> None:
    assert len(SCRIPTS) >= 10, [p.name for p in SCRIPTS]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bench_help_prints_usage(script: Path) -> None:
    done = subprocess.run([sys.executable, str(script), "--help"], cwd=REPO, capture_output=True, text=True,  # noqa: S603
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.lstrip().startswith("usage:"), done.stdout[:500]
