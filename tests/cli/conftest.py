"""Why: most CLI tests run `consentgate` against a data dir of their own, named through the
environment as a user's shell would; `env` is that data dir (not initialised: tests that check
`init` itself, or the "no data dir" error, need it empty). Built from tests/support/cli.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import cli_data_dir


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return cli_data_dir(tmp_path, monkeypatch)
