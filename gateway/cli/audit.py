"""Why: auditors take the log away and check it offline with only the export and the public key:
`consentgate audit export --out DIR` and `consentgate audit verify (--data-dir | --export) [--key]`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gateway.cli.common import AUDIT_KEY_FILE, DataDir, fail, load_settings, require_data_dir

if TYPE_CHECKING:
    from gateway.audit import AuditLog
    from gateway.settings import Settings

audit_app = typer.Typer(help="Export and verify the signed audit log.", no_args_is_help=True)
UrlOption = Annotated[str | None, typer.Option("--url", envvar="CONSENTGATE_URL",
                                               help="A running gateway's base URL: read the log over the API.")]
ApiKeyOption = Annotated[str | None, typer.Option("--api-key", envvar="CONSENTGATE_API_KEY", show_default=False,
                                                  help="An auditor key (of the operator tenant for the whole log).")]

KeyOption = Annotated[str, typer.Option(
    "--key", help="The log's public key you trust: a vkey string, or a file (vkey, PEM, raw 32 bytes).")]
OriginOption = Annotated[str | None, typer.Option("--origin", help="The log origin to expect (also the key "
                                                  "name when the key file is a bare key).")]


def http_client(url: str) -> Any:
    """The HTTP client of the --url commands (tests replace it with one bound to an in-process app)."""
    import httpx

    return httpx.Client(base_url=url.rstrip("/"), timeout=60.0)


def _need_api_key(api_key: str | None) -> str:
    if not api_key:
        raise fail("--url needs --api-key (or CONSENTGATE_API_KEY): an auditor key")
    return api_key


class ApiSource:
    """The log as a gateway serves it (`/v1/audit/...`), for export, verify and witness."""

    def __init__(self, url: str, api_key: str) -> None:
        self.http = http_client(url)
        self.headers = {"Authorization": f"Bearer {api_key}"}

    def get(self, path: str, **params: Any) -> Any:
        import httpx

        try:
            response = self.http.get(path, params=params, headers=self.headers)
        except httpx.HTTPError as exc:
            raise fail(f"cannot reach the gateway: {exc}", code=2) from None
        if response.status_code != 200:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:200]
            raise fail(f"GET {path}: {response.status_code} {message}", code=2)
        return response.json()

    def latest_checkpoint(self) -> str:
        return str(self.get("/v1/audit/checkpoint")["note"])

    def consistency(self, first: int, second: int) -> dict[str, Any]:
        return dict(self.get("/v1/audit/proofs/consistency", first=first, second=second))

    def entries(self, below: int) -> Iterator[tuple[int, str, dict[str, Any]]]:
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 1000}
            if cursor is not None:
                params["cursor"] = cursor
            page = self.get("/v1/audit/entries", **params)
            for item in page["entries"]:
                if item["index"] >= below:
                    return
                record = item["record"]
                yield int(item["index"]), str(record["audit"]["leaf_hash"]), record
            cursor = page.get("next_cursor")
            if not cursor:
                return


def _export_over_api(url: str, api_key: str, key: str, out: Path) -> Any:
    from gateway.audit import check_checkpoint
    from gateway.audit.errors import AuditError
    from gateway.audit.export import export_records

    source = ApiSource(url, api_key)
    note = source.latest_checkpoint()
    trusted = trusted_key(key, note.split("\n", 1)[0])
    try:
        cp = check_checkpoint(note, trusted)
    except AuditError as exc:
        raise fail(f"the gateway's checkpoint does not verify with --key: {exc}") from None
    return export_records(source.entries(cp.tree_size), [note], trusted, cp.origin, out)




def open_local_log(settings: Settings) -> AuditLog:
    """The data dir's audit log (for CLI reports); the caller should `close()` it."""
    from gateway.bootstrap import open_audit_log
    from gateway.db import make_engine

    require_data_dir(settings)
    return open_audit_log(settings, make_engine(settings.resolved_database_url))


def _export_sqlite(settings: Settings, out: Path) -> Any:
    """`audit export` of a SQLite data dir through sqlite3 (`gateway.audit.export.export_sqlite`: the same
    checkpoint first, the same files as `export_log`, no SQLAlchemy: #22.6); None where the log is opened
    as the gateway opens it — another database, a log not initialised, or CONSENTGATE_AUDIT_PUBLISH (the new
    checkpoint goes to the publisher)."""
    from gateway.cli.auditread import sqlite_log

    if settings.extra.get("audit_publish"):
        return None
    lite = sqlite_log(settings, readonly=False)
    if lite is None:
        return None
    from gateway.audit.export import export_sqlite
    from gateway.audit.notes import load_signer

    try:
        return export_sqlite(lite, out, load_signer(settings.keys_dir / "audit_ed25519.key", settings.audit_origin))
    finally:
        lite.conn.close()


@audit_app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", help="Directory to write (entries.jsonl, checkpoints, key).")],
    data_dir: DataDir = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    key: Annotated[str | None, typer.Option(
        "--key", help="With --url: the log's public key (vkey string or file) to write beside the entries.")] = None,
) -> None:
    """Write every entry (JSONL), every checkpoint and the public key to OUT — from the data dir, or
    with --url over the API (an operator auditor key; entries up to the latest signed checkpoint)."""
    if url is not None:
        if key is None:
            raise fail("--url needs --key: the log's public key you trust")
        summary = _export_over_api(url, _need_api_key(api_key), key, out)
        typer.echo(json.dumps(summary.as_dict(), default=str))
        return
    settings = require_data_dir(load_settings(data_dir))
    summary = _export_sqlite(settings, out)
    if summary is None:
        from gateway.audit import export_log

        log = open_local_log(settings)
        try:
            summary = export_log(log, out)
        finally:
            log.close()
    typer.echo(json.dumps(summary.as_dict() if hasattr(summary, "as_dict") else summary.__dict__, default=str))


@audit_app.command("entries")
def entries(
    kind: Annotated[str | None, typer.Option("--kind", help="decision, subject, enrolment, grant, revocation, "
                                             "expiry, hash, erasure, retention, snapshot")] = None,
    subject: Annotated[str | None, typer.Option("--subject", help="Entries that involve this subject id.")] = None,
    tenant: Annotated[str | None, typer.Option("--tenant")] = None,
    since: Annotated[str | None, typer.Option("--since", help="RFC 3339 time.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="RFC 3339 time.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 100,
    cursor: Annotated[str | None, typer.Option("--cursor", help="The next_cursor of the previous page.")] = None,
    data_dir: DataDir = None,
) -> None:
    """List entries of the local log (JSON: {entries, next_cursor}), filtered like GET /v1/audit/entries."""
    from gateway.cli.auditread import log_reader  # sqlite3 on a SQLite data dir: no SQLAlchemy (#22.6)

    with log_reader(require_data_dir(load_settings(data_dir))) as log:
        try:
            page, next_cursor = log.query(kind=kind, subject=subject, tenant=tenant, since=since, until=until,
                                          limit=limit, cursor=cursor)
        except ValueError as exc:
            raise fail(f"bad filter: {exc}") from None
    typer.echo(json.dumps({"entries": [e.as_dict() for e in page], "next_cursor": next_cursor}, indent=2))


@audit_app.command("verify")
def verify(
    data_dir: DataDir = None,
    export_dir: Annotated[Path | None, typer.Option("--export", help="An export directory to verify.")] = None,
    key: Annotated[str | None, typer.Option(
        "--key", help="The public key you trust: a vkey string, or a file (vkey, PEM, raw 32 bytes).")] = None,
    checkpoint: Annotated[list[Path] | None, typer.Option(
        "--checkpoint", help="A signed checkpoint you saved earlier (note text or its JSON); the log must "
        "extend it (consistency proof). Repeatable.")] = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Recompute the tree, check every checkpoint signature and their consistency, check the query
    columns against the records; exit 1 naming why on failure — the first bad index, no signed
    checkpoint covering the whole log, or a saved checkpoint the log does not extend — and 2 when
    the key given with --key cannot be read (nothing was verified)."""
    from gateway.audit import checkpoint_note_from, load_signer, verify_database, verify_export
    from gateway.audit.errors import ProofError

    saved: list[str] = []
    for path in checkpoint or []:
        try:
            saved.append(checkpoint_note_from(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, ProofError) as exc:
            raise fail(f"{path}: cannot read the saved checkpoint: {exc}") from None
    if url is not None:  # over the API: export up to the latest checkpoint into a temp dir, verify that
        import tempfile

        if key is None:
            raise fail("--url needs --key: the log's public key you trust")
        with tempfile.TemporaryDirectory(prefix="consentgate-verify-") as tmp:
            _export_over_api(url, _need_api_key(api_key), key, Path(tmp))
            report = verify_export(Path(tmp), trusted_key(key, _export_origin(Path(tmp))), saved=saved)
    elif export_dir is not None:
        if key is None:
            report = verify_export(export_dir, saved=saved)
            typer.secho("note: no --key given; the export's own key was used (self-consistency only)",
                        fg=typer.colors.YELLOW, err=True)
        else:
            report = verify_export(export_dir, trusted_key(key, _export_origin(export_dir)), saved=saved)
    else:
        from gateway.cli.readdb import sqlite_path

        settings = load_settings(data_dir)
        trusted: Any
        if key is None:
            require_data_dir(settings)
            trusted = load_signer(settings.data_dir / AUDIT_KEY_FILE, settings.audit_origin)
        else:
            trusted = trusted_key(key, settings.audit_origin)
            if not settings.database_url and not (settings.data_dir / "consentgate.db").is_file():
                raise fail(f"no data dir at {settings.data_dir} — nothing to verify "
                           "(pass --data-dir, CONSENTGATE_DATABASE_URL, or --export)")
        from gateway.cli.auditread import sqlite_log

        lite = sqlite_log(settings)
        if lite is not None:  # a SQLite data dir: read-only through sqlite3, no SQLAlchemy (#22.6)
            from gateway.audit.sqlite import verify_sqlite

            lite.conn.close()
            report = verify_sqlite(str(sqlite_path(settings.resolved_database_url)), trusted, saved=saved)
        else:
            from gateway.db import make_engine  # not gateway.bootstrap: it imports the models (start-up)

            engine = make_engine(settings.resolved_database_url)
            try:
                report = verify_database(engine, trusted, saved=saved)
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


@audit_app.command("forget-end-users")
def forget_end_users(
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant whose end-user key to destroy.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Destroy TENANT's end-user key in the key store: every end-user id the log holds for that tenant
    (a keyed hash) becomes unlinkable to anyone, for good; records and proofs stay valid. Later
    decisions get a new key."""
    from gateway.bootstrap import kek_path
    from gateway.db import make_engine
    from gateway.registry.crypto import FileKek, KeyStore, SubjectCrypto
    from gateway.registry.pseudonyms import EndUserPseudonyms

    settings = require_data_dir(load_settings(data_dir))
    if not yes and not typer.confirm(f"Destroy the end-user key of tenant {tenant!r} for good?"):
        raise typer.Exit(1)
    engine = make_engine(settings.resolved_keystore_url)
    try:
        destroyed = EndUserPseudonyms(SubjectCrypto(FileKek(kek_path(settings)), KeyStore(engine))).forget(tenant)
    finally:
        engine.dispose()
    typer.echo(json.dumps({"tenant": tenant, "key_destroyed": destroyed}))


@audit_app.command("witness")
def witness_command(
    source: Annotated[str, typer.Argument(help="A gateway URL (with --api-key) or a data dir to witness.")],
    state: Annotated[Path, typer.Option("--state", help="The file that keeps the last checkpoint accepted.")],
    key: Annotated[str, typer.Option("--key", help="The log's public key you trust (vkey string or file).")],
    api_key: ApiKeyOption = None,
    origin: OriginOption = None,
) -> None:
    """Check the log's latest signed checkpoint extends the last one this witness accepted (a
    consistency proof between the two signed trees), then remember it. Exit 1 on a fork, a rollback
    or a bad signature (the state is left as it was); run it on a timer."""
    from gateway.audit.witness import LogSource, witness

    if source.startswith(("http://", "https://")):
        src: Any = ApiSource(source, _need_api_key(api_key))
        result = witness(src, trusted_key(key, origin), state, origin=origin)
    else:
        from gateway.cli.auditread import sqlite_log

        settings = require_data_dir(load_settings(Path(source)))
        trusted = trusted_key(key, origin or settings.audit_origin)
        lite = sqlite_log(settings)  # a SQLite data dir: read-only sqlite3, no SQLAlchemy (#22.6)
        if lite is not None:
            try:
                result = witness(LogSource(lite), trusted, state, origin=origin)
            finally:
                lite.conn.close()
        else:
            log = open_local_log(settings)
            try:
                result = witness(LogSource(log.reader), trusted, state, origin=origin)
            finally:
                log._timer = None  # noqa: SLF001 - a witness only reads: no checkpoint of its own on close
                log.close()
    typer.echo(json.dumps(result.as_dict()))
    if not result.ok:
        typer.secho(f"FAILED: {result.message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)


prove_app = typer.Typer(help="Check a signed checkpoint, an inclusion proof (receipt) or a consistency proof "
                        "offline, with only the log's public key.", no_args_is_help=True)
audit_app.add_typer(prove_app, name="prove")

def _json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise fail(f"{path}: not a readable JSON file: {exc}") from None


def _proved(what: str, run: Any) -> None:
    from gateway.audit.errors import AuditError

    try:
        result = run()
    except AuditError as exc:  # ProofError and AuditConfigError (a bad key)
        typer.echo(json.dumps({"ok": False, "error": str(exc)}))
        typer.secho(f"FAILED: {what}: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps({"ok": True, **result}))


@prove_app.command("checkpoint")
def prove_checkpoint(
    file: Annotated[Path, typer.Argument(help="A signed checkpoint: note text, or JSON with `note`.")],
    key: KeyOption, origin: OriginOption = None,
) -> None:
    """Check a checkpoint's signature; print its origin, size and root."""
    from gateway.audit import check_checkpoint

    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"{file}: {exc}") from None
    data: Any = text
    if text.lstrip().startswith("{"):
        data = _json_file(file)
        data = data.get("checkpoint", data) if isinstance(data, dict) else data
        if not isinstance(data, dict):
            raise fail(f"{file}: a checkpoint JSON is an object with `note`")

    trusted = trusted_key(key, origin)

    def run() -> dict[str, Any]:
        cp = check_checkpoint(data, trusted, origin=origin)
        return {"origin": cp.origin, "tree_size": cp.tree_size, "root_hash": cp.root_hash.hex()}

    _proved("checkpoint", run)


@prove_app.command("inclusion")
def prove_inclusion(
    file: Annotated[Path, typer.Argument(help="A receipt (GET /v1/audit/receipts/{id}) or a `/uses` item.")],
    key: KeyOption, origin: OriginOption = None,
    record: Annotated[Path | None, typer.Option("--record", help="The record (JSON) the leaf must be.")] = None,
) -> None:
    """Check a receipt: the checkpoint's signature and the inclusion proof up to its root."""
    from gateway.audit import check_receipt

    data = _json_file(file)
    if isinstance(data, dict) and isinstance(data.get("receipt"), dict):
        data = data["receipt"]
    if not isinstance(data, dict):
        raise fail(f"{file}: a receipt is a JSON object")
    rec = _json_file(record) if record is not None else None
    if rec is not None and not isinstance(rec, dict):
        raise fail(f"{record}: a record is a JSON object")
    trusted = trusted_key(key, origin)
    _proved("inclusion", lambda: check_receipt(data, trusted, origin=origin, record=rec).as_dict())


@prove_app.command("consistency")
def prove_consistency(
    file: Annotated[Path, typer.Argument(help="A consistency proof (GET /v1/audit/proofs/consistency).")],
    key: KeyOption, origin: OriginOption = None,
    first: Annotated[Path | None, typer.Option("--first", help="The signed checkpoint of the first size.")] = None,
    second: Annotated[Path | None, typer.Option("--second", help="The signed checkpoint of the second size.")] = None,
) -> None:
    """Check that the tree of the proof's second size extends the first; with --first/--second,
    that those signed checkpoints are the proof's two trees."""
    from gateway.audit import check_consistency

    data = _json_file(file)
    if not isinstance(data, dict):
        raise fail(f"{file}: a consistency proof is a JSON object")

    def note(path: Path | None) -> str | None:
        if path is None:
            return None
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise fail(f"{path}: {exc}") from None

    first_cp, second_cp = note(first), note(second)
    trusted = trusted_key(key, origin)

    def run() -> dict[str, Any]:
        a, b = check_consistency(data, trusted, origin=origin, first_checkpoint=first_cp, second_checkpoint=second_cp)
        return {"first": a, "second": b, "signed": first_cp is not None or second_cp is not None}

    _proved("consistency", run)
