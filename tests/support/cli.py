"""Why: the CLI tests all drive the same Typer app the same way — every group registered, a data dir
in a temp folder named by the environment (as a user's shell would: CONSENTGATE_DATA_DIR, the repo's
policies, SQLite unless a database URL is given), `init` run once, and a command that must succeed
returning its stdout. Defined once here; tests/cli/conftest.py makes the fixtures from them."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from gateway.cli import app, register

__all__ = ["REPO", "app", "cli_data_dir", "invoke", "run", "runner"]

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()
register(app)  # every group: a test may call any command


def invoke(*args: str) -> Result:
    """`consentgate ARGS` in process, whatever its exit code."""
    return runner.invoke(app, list(args))


def run(*args: str) -> str:
    """`consentgate ARGS`, which must exit 0; its stdout."""
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result.stdout


def cli_data_dir(tmp: Path, monkeypatch: pytest.MonkeyPatch, *, init: bool = False,
                 database_url: str | None = None) -> Path:
    """Point the CLI at TMP/data (and the repo's policies) through the environment; SQLite in the data
    dir unless DATABASE_URL; with INIT, run `consentgate init` there. Returns the data dir."""
    data = tmp / "data"
    monkeypatch.setenv("CONSENTGATE_DATA_DIR", str(data))
    monkeypatch.setenv("CONSENTGATE_POLICIES", str(REPO / "policies"))
    if database_url:
        monkeypatch.setenv("CONSENTGATE_DATABASE_URL", database_url)
    else:
        monkeypatch.delenv("CONSENTGATE_DATABASE_URL", raising=False)
    monkeypatch.delenv("CONSENTGATE_KEYSTORE_URL", raising=False)
    if init:
        run("init")
    return data
