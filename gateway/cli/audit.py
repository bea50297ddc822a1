"""Why: auditors take the log away and check it offline with only the export and the public key:
`consentgate audit export --out DIR` and `consentgate audit verify (--data-dir | --export) [--key]`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from gateway.audit import AuditLog
from gateway.cli.common import DataDir, fail, load_settings
from gateway.settings import Settings

audit_app = typer.Typer(help="Export and verify the signed audit log.", no_args_is_help=True)


def open_local_log(settings: Settings) -> AuditLog:
    """The data dir's audit log (for CLI reports); the caller should `close()` it."""
    from gateway.bootstrap import audit_key_path, open_audit_log
    from gateway.db import make_engine

    if not audit_key_path(settings).exists():
        raise fail(f"{settings.data_dir}: no audit signing key; run `consentgate init` first")
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
    key: Annotated[Path | None, typer.Option("--key", help="The public key you trust (vkey or PEM file).")] = None,
) -> None:
    """Recompute the tree, check every checkpoint signature and their consistency, check the query
    columns against the records; exit 1 naming the first bad index on failure."""
    from gateway.audit import load_signer, verify_database, verify_export

    if export_dir is not None:
        report = verify_export(export_dir, key) if key is not None else verify_export(export_dir)
        if key is None:
            typer.secho("note: no --key given; the export's own key was used (self-consistency only)",
                        fg=typer.colors.YELLOW, err=True)
    else:
        settings = load_settings(data_dir)
        from gateway.bootstrap import audit_key_path
        from gateway.db import make_engine

        trusted: Any = key
        if trusted is None:
            if not audit_key_path(settings).exists():
                raise fail("no --key and no local signing key; pass --key")
            trusted = load_signer(audit_key_path(settings), settings.audit_origin)
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
