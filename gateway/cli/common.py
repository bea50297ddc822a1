"""Why: every command group takes the same `--data-dir` / `--policies` options, reads settings the
same way and reports a failure the same way (red `error: ...` on stderr, exit 1). Defined once here
so that the group modules import this, never each other's root."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Annotated

import typer

from gateway.settings import Settings

__all__ = ["DataDir", "PoliciesDir", "fail", "load_settings", "write_secret_file"]

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Data directory (env CONSENTGATE_DATA_DIR).")]
PoliciesDir = Annotated[Path | None, typer.Option("--policies", help="Policy directory (env CONSENTGATE_POLICIES).")]


def load_settings(data_dir: Path | None = None, policies: Path | None = None) -> Settings:
    try:
        return Settings.from_env().with_overrides(data_dir=data_dir, policies_dir=policies)
    except ValueError as exc:  # an invalid CONSENTGATE_* value: say which, no traceback
        raise fail(str(exc)) from None


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def write_secret_file(path: Path, content: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as fh:
        fh.write(content)
    os.chmod(path, 0o600)
