"""Why: every command group takes the same `--data-dir` / `--policies` options, reads settings the
same way and reports a failure the same way (red `error: ...` on stderr, exit 1). Defined once here
so that the group modules import this, never each other's root.

State is never created implicitly (Sunlight's rule): only `consentgate init` (and `serve`, which
says so) creates a data dir. Every other command that reads or writes one goes through
`require_data_dir`, which exits 1 with "no data dir at PATH — run `consentgate init`" when the
directory is missing or holds no keys — instead of silently creating a new KEK, audit key and
database and then reporting "nothing here"."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Annotated, Any

import typer

from gateway.settings import Settings

__all__ = ["AUDIT_KEY_FILE", "KEK_FILE", "DataDir", "JsonOpt",
           "PoliciesDir", "data_dir_missing", "echo_table", "fail", "load_settings",
           "require_data_dir", "write_secret_file"]

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Data directory (env CONSENTGATE_DATA_DIR).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts) instead of a table.")]
PoliciesDir = Annotated[Path | None, typer.Option("--policies", help="Policy directory (env CONSENTGATE_POLICIES).")]


def load_settings(data_dir: Path | None = None, policies: Path | None = None) -> Settings:
    try:
        return Settings.from_env().with_overrides(data_dir=data_dir, policies_dir=policies)
    except ValueError as exc:  # an invalid CONSENTGATE_* value: say which, no traceback
        raise fail(str(exc)) from None


# What `consentgate init` leaves in every data dir (gateway.bootstrap writes them; the names are
# repeated here so that commands which need no model do not import the bootstrap's dependencies —
# tests/cli/test_startup.py checks they are the bootstrap's paths).
KEK_FILE = "keys/kek.key"
AUDIT_KEY_FILE = "keys/audit_ed25519.key"
_INIT_MARKERS = (KEK_FILE, AUDIT_KEY_FILE)


def data_dir_missing(settings: Settings) -> bool:
    """True when SETTINGS' data dir is absent, or empty of what `init` creates (its keys, and the
    SQLite database unless CONSENTGATE_DATABASE_URL names another one)."""
    d = settings.data_dir
    if not d.is_dir() or not all((d / marker).is_file() for marker in _INIT_MARKERS):
        return True
    return not settings.database_url and not (d / "consentgate.db").is_file()


def require_data_dir(settings: Settings) -> Settings:
    """SETTINGS unchanged when its data dir was initialised; else exit 1 and create nothing."""
    if data_dir_missing(settings):
        raise fail(f"no data dir at {settings.data_dir} — run `consentgate init` "
                   f"(or pass --data-dir / set CONSENTGATE_DATA_DIR)")
    return settings


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def echo_table(rows: list[dict[str, Any]], columns: list[str], as_json: bool) -> None:
    """ROWS as a JSON array (--json), else as tab-separated lines under an upper-case header line
    (kubectl-style: scripts cut the columns, people read the header)."""
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    typer.echo("\t".join(c.upper() for c in columns))
    for row in rows:
        typer.echo("\t".join("" if row.get(c) is None else str(row.get(c)) for c in columns))


def write_secret_file(path: Path, content: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as fh:
        fh.write(content)
    os.chmod(path, 0o600)
