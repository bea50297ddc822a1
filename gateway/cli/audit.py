"""Why: auditors take the log away and check it offline with only the export and the public key:
`consentgate audit export --out DIR` and `consentgate audit verify (--data-dir | --export) [--key]`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from gateway.audit import AuditLog
from gateway.cli.common import DataDir, fail, load_settings, require_data_dir
from gateway.settings import Settings

audit_app = typer.Typer(help="Export and verify the signed audit log.", no_args_is_help=True)


def open_local_log(settings: Settings) -> AuditLog:
    """The data dir's audit log (for CLI reports); the caller should `close()` it."""
    from gateway.bootstrap import open_audit_log
    from gateway.db import make_engine

    require_data_dir(settings)
    return open_audit_log(settings, make_engine(settings.resolved_database_url))


@audit_app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", help="Directory to write (entries.jsonl, checkpoints, key).")],
    data_dir: DataDir = None,
) -> None:
    """Write every entry (JSONL), every checkpoint and the public key to OUT."""
    from gateway.audit import export_log

    log = open_local_log(load_settings(data_dir))
    try:
        summary = export_log(log, out)
    finally:
        log.close()
    typer.echo(json.dumps(summary.as_dict() if hasattr(summary, "as_dict") else summary.__dict__, default=str))


@audit_app.command("verify")
def verify(
    data_dir: DataDir = None,
    export_dir: Annotated[Path | None, typer.Option("--export", help="An export directory to verify.")] = None,
    key: Annotated[str | None, typer.Option(
        "--key", help="The public key you trust: a vkey string, or a file (vkey, PEM, raw 32 bytes).")] = None,
) -> None:
    """Recompute the tree, check every checkpoint signature and their consistency, check the query
    columns against the records; exit 1 naming the first bad index on failure, 2 when the key given
    with --key cannot be read (nothing was verified)."""
    from gateway.audit import load_signer, verify_database, verify_export

    if export_dir is not None:
        if key is None:
            report = verify_export(export_dir)
            typer.secho("note: no --key given; the export's own key was used (self-consistency only)",
                        fg=typer.colors.YELLOW, err=True)
        else:
            report = verify_export(export_dir, trusted_key(key, _export_origin(export_dir)))
    else:
        from gateway.bootstrap import audit_key_path
        from gateway.db import make_engine

        settings = load_settings(data_dir)
        trusted: Any
        if key is None:
            require_data_dir(settings)
            trusted = load_signer(audit_key_path(settings), settings.audit_origin)
        else:
            trusted = trusted_key(key, settings.audit_origin)
            if not settings.database_url and not (settings.data_dir / "consentgate.db").is_file():
                raise fail(f"no data dir at {settings.data_dir} — nothing to verify "
                           "(pass --data-dir, CONSENTGATE_DATABASE_URL, or --export)")
        engine = make_engine(settings.resolved_database_url)
        try:
            report = verify_database(engine, trusted)
        finally:
            engine.dispose()
    typer.echo(json.dumps(report.as_dict(), indent=2))
    if not report.ok:
        typer.secho(f"FAILED: {report.message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    typer.secho(f"ok: {report.entries} entries, {report.checkpoints} checkpoints verified", fg=typer.colors.GREEN)


def _export_origin(export_dir: Path) -> str | None:
    try:
        origin = json.loads((export_dir / "manifest.json").read_text()).get("origin")
    except (OSError, ValueError, AttributeError):
        return None  # verify_export reports the unreadable export itself
    return origin if isinstance(origin, str) else None


def trusted_key(value: str, origin: str | None) -> Any:
    """--key as given: a file when one exists at that path (vkey, PEM or raw bytes), else a vkey (or
    hex/base64 key) string. Exit 2 saying which of the two could not be read, so a bad key is never
    reported as a bad log or export."""
    from gateway.audit import AuditError, verifier_key

    path = Path(value)
    try:
        is_file = len(value) < 4096 and path.is_file()
    except OSError:
        is_file = False
    if is_file:
        try:
            return verifier_key(path.read_bytes(), origin)
        except OSError as exc:
            raise fail(f"--key: cannot read the key file {path}: {exc.strerror or exc}", code=2) from None
        except (AuditError, ValueError) as exc:
            raise fail(f"--key: the file {path} holds no public key we can read: {exc}", code=2) from None
    try:
        return verifier_key(value, origin)
    except (AuditError, ValueError) as exc:
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise fail(f"--key: {shown!r} is neither a file nor a key string we can read "
                   f"(a vkey <name>+<hash>+<base64>): {exc}", code=2) from None
