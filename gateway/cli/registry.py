"""Why: registrars and operators manage the consent registry from the shell as well as over HTTP:
`consentgate registry subject add|list|show|erase`, `registry enroll SUBJECT IMAGE...`,
`registry grant`, `registry revoke`, `registry reembed`. These act on the data dir directly (the
same database, key store and audit log a running gateway uses; replicas see changes within
about a second). Erasure appends its receipt to the audit log, as the HTTP API does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gateway.cli.common import KEK_FILE, DataDir, JsonOpt, echo_table, fail, load_settings, require_data_dir

if TYPE_CHECKING:
    from gateway.settings import Settings

registry_app = typer.Typer(help="Manage the consent registry (subjects, faces, grants).", no_args_is_help=True)
subject_app = typer.Typer(help="Subjects: add, list, show, erase.", no_args_is_help=True)
registry_app.add_typer(subject_app, name="subject")
ACTOR = "cli"


@contextmanager
def local_registry(data_dir: Path | None, *, with_models: bool = True) -> Iterator[Any]:
    """The data dir's registry, with the face model(s) of the active policy attached."""
    from classifiers.registry import builtin_registry
    from gateway.bootstrap import open_audit_log, open_registry
    from gateway.db import make_engine
    from gateway.policy.loader import PolicyError, load_bundle
    from gateway.policy.runtime import ModelPool

    settings = require_data_dir(load_settings(data_dir))
    engine = make_engine(settings.resolved_database_url)
    pool = ModelPool(builtin_registry())
    log = open_audit_log(settings, engine)
    registry = open_registry(settings, engine, pool, ledger=log)
    if with_models:
        try:
            bundle = load_bundle(settings.policies_dir, is_registered=pool.registry)
        except PolicyError as exc:
            raise fail("cannot load the policy to find the face model:\n" + "\n".join(exc.errors)) from None
        specs = [bundle.policy.consent.face_model] + [p.consent.face_model for p in bundle.overlays.values()]
        for spec in specs:
            face = pool.face(spec)
            registry.face_analyzers[face.info.name] = face
    try:
        yield registry, settings, engine
    finally:
        registry.close()
        log.close()  # publishes a checkpoint covering the ledger entries this command appended
        engine.dispose()


def _echo(obj: Any) -> None:
    data = obj.model_dump(mode="json") if hasattr(obj, "model_dump") else obj
    typer.echo(json.dumps(data, indent=2, default=str))


@contextmanager
def _errors() -> Iterator[None]:
    from classifiers.base import ModelError
    from gateway.registry import errors as reg_errors

    try:
        yield
    except (reg_errors.RegistryError, ModelError) as exc:
        raise fail(str(exc)) from None


@contextmanager
def _writer(settings: Settings, *, core: bool = True) -> Iterator[Any]:
    """The registry's write path without the service — on a SQLite data dir the standard library's sqlite3
    (`gateway.cli.writelite`), else SQLAlchemy Core (`gateway.cli.writedb`); no ORM, no models: `subject
    add`, `grant` and `revoke` start fast (#22.6) — or None when the registry predates the consent
    ledger — then the caller opens the registry service, which writes the ledger's one-time snapshot first.
    A refused change exits 1 with `error: ...`; nothing was written. `core=False`: None instead of the Core
    path (a change only the sqlite3 path and the service make, as `subject erase`)."""
    import sqlite3

    from gateway.cli.writelite import open_lite_writer
    from gateway.errors import GatewayError
    from gateway.registry.errors import RegistryError

    try:
        with open_lite_writer(settings) as lite:
            if lite is not None:
                yield lite
                return
    except RegistryError as exc:
        raise fail(str(exc)) from None
    except GatewayError as exc:
        raise fail(exc.message) from None
    except sqlite3.Error as exc:
        raise fail(f"the registry is unavailable: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    if not core:
        yield None
        return
    from sqlalchemy.exc import SQLAlchemyError

    from gateway.cli.writedb import open_writer

    try:
        with open_writer(settings) as writer:
            yield writer
    except RegistryError as exc:
        raise fail(str(exc)) from None
    except GatewayError as exc:
        raise fail(exc.message) from None
    except SQLAlchemyError as exc:
        raise fail(f"the registry is unavailable: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None


@subject_app.command("add")
def subject_add(
    display_name: str,
    alias: Annotated[list[str] | None, typer.Option("--alias", help="Another name (repeatable).")] = None,
    protected: Annotated[bool, typer.Option("--protected", help="Public figure / no-go list.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Create a subject; prints it (with its random id)."""
    settings = require_data_dir(load_settings(data_dir))
    with _writer(settings) as writer:
        if writer is not None:
            _echo(writer.create_subject(display_name, alias or [], protected, ACTOR))
            return
    with local_registry(data_dir, with_models=False) as (registry, _, _), _errors():
        _echo(registry.create_subject(display_name, alias or [], protected, ACTOR))


@subject_app.command("list")
def subject_list(data_dir: DataDir = None, limit: int = 100, offset: int = 0, as_json: JsonOpt = False) -> None:
    """List subjects (never templates): a table with a header, or --json."""
    rows = read_subjects(require_data_dir(load_settings(data_dir)), offset, limit)
    if as_json:
        echo_table(rows, [], True)
        return
    echo_table([{**d, "protected": "protected" if d.get("protected") else "",
                 "templates": d.get("template_count", "?")} for d in rows],
               ["id", "display_name", "protected", "templates"], False)


def read_subjects(settings: Settings, offset: int, limit: int) -> list[dict[str, Any]]:
    """`registry subject list` without the registry service (see `_read_registry`)."""
    from gateway.cli.readdb import list_subjects

    with _read_registry(settings) as (db, crypto):
        return list_subjects(db, crypto, offset, limit)


@contextmanager
def _read_registry(settings: Settings) -> Iterator[tuple[Any, Any]]:
    """The registry for reading without the registry service: its rows through the DB-API (read-only),
    the display names opened with the KEK and the key store's wrapped keys — no SQLAlchemy ORM, no
    models, no ledger (a read writes nothing), so `registry subject list|show` start fast (#22.6).
    A read or decryption failure exits 1 with `error: ...`."""
    from gateway.cli.readdb import ReadError, ReadOnlyKeys, open_read
    from gateway.registry.envelope import FileKek, SubjectCrypto
    from gateway.registry.errors import RegistryError

    try:
        with open_read(settings.resolved_database_url) as db, open_read(settings.resolved_keystore_url) as keys:
            yield db, SubjectCrypto(FileKek(settings.data_dir / KEK_FILE), ReadOnlyKeys(keys))
    except (ReadError, RegistryError) as exc:
        raise fail(str(exc)) from None


@subject_app.command("show")
def subject_show(subject_id: str, data_dir: DataDir = None) -> None:
    """Show one subject and its grants."""
    from gateway.cli.readdb import get_subject, list_grants

    with _read_registry(require_data_dir(load_settings(data_dir))) as (db, crypto):
        subject = get_subject(db, crypto, subject_id)
        subject["grants"] = list_grants(db, subject_id)
    _echo(subject)


@subject_app.command("erase")
def subject_erase(
    subject_id: str,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Erase a subject: destroy its key (crypto-shredding) and rows; the receipt is appended to the
    audit log in the deletion's transaction."""
    if not yes and not typer.confirm(f"Erase subject {subject_id} for good?"):
        raise typer.Exit(1)
    settings = require_data_dir(load_settings(data_dir))
    with _writer(settings, core=False) as writer:  # a SQLite data dir: sqlite3, as the service erases (#22.6)
        if writer is not None:
            _echo(writer.erase(subject_id, ACTOR))
            return
    with local_registry(data_dir, with_models=False) as (registry, _settings, _engine), _errors():
        _echo(registry.erase(subject_id, ACTOR))


@registry_app.command("enroll")
def enroll(
    subject_id: str,
    images: Annotated[list[Path], typer.Argument(help="1 to 10 images, one face each.")],
    notice_version: Annotated[str, typer.Option("--notice-version", help="The consent text version accepted.")],
    data_dir: DataDir = None,
) -> None:
    """Enrol a subject's face from images (one template per face model)."""
    from gateway.errors import GatewayError
    from gateway.media import MediaLimits, decode_image

    try:
        pixels = [decode_image(p.read_bytes(), MediaLimits(), index=i).working for i, p in enumerate(images)]
    except (OSError, GatewayError) as exc:
        raise fail(str(getattr(exc, "message", exc))) from None
    with local_registry(data_dir) as (registry, _, _), _errors():
        _echo(registry.enroll(subject_id, pixels, notice_version, ACTOR))


@registry_app.command("grant")
def grant(
    subject_id: str,
    tenant: Annotated[str, typer.Option("--tenant", help="The grantee tenant.")],
    use: Annotated[list[str], typer.Option("--use", help="An allowed use (repeatable).")],
    end_user: Annotated[str | None, typer.Option("--end-user")] = None,
    expires_at: Annotated[str | None, typer.Option("--expires-at", help="RFC 3339 time.")] = None,
    allow_new_tenant: Annotated[bool, typer.Option(
        "--allow-new-tenant", help="The tenant has no keys yet and is not declared; record the grant anyway.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Grant a tenant (optionally one end user) consent for some uses, until an expiry. Uses must be
    the policy's; the tenant must hold keys or be declared (CONSENTGATE_TENANTS) unless --allow-new-tenant."""
    from gateway.cli.policyuses import policy_uses
    from gateway.policy.errors import PolicyError

    try:
        expiry = datetime.fromisoformat(expires_at.replace("Z", "+00:00")) if expires_at else None
    except ValueError:
        raise fail(f"--expires-at {expires_at!r} is not an RFC 3339 time") from None
    settings = require_data_dir(load_settings(data_dir))
    try:
        known = policy_uses(settings)
    except PolicyError as exc:
        raise fail("cannot load the policy to check the grant's uses:\n" + "\n".join(exc.errors)) from None
    with _writer(settings) as writer:
        if writer is not None:
            _echo(writer.grant(subject_id, tenant, end_user, use, expiry, ACTOR, known_uses=known,
                               allow_new_tenant=allow_new_tenant))
            return
    from gateway.bootstrap import grant_guard  # not gateway.context: it imports the models

    with local_registry(data_dir, with_models=False) as (registry, settings, engine), _errors():
        registry.grant_guard = grant_guard(settings, engine, lambda: known)
        _echo(registry.grant(subject_id, tenant, end_user, use, expiry, None, ACTOR,
                             allow_new_tenant=allow_new_tenant))


@registry_app.command("revoke")
def revoke(grant_id: str, data_dir: DataDir = None) -> None:
    """Revoke a grant; every replica enforces it on its next request."""
    with _writer(require_data_dir(load_settings(data_dir))) as writer:
        if writer is not None:
            _echo(writer.revoke(grant_id, ACTOR))
            return
    with local_registry(data_dir, with_models=False) as (registry, _, _), _errors():
        _echo(registry.revoke(grant_id, ACTOR))


@registry_app.command("uses")
def uses(
    subject: Annotated[str | None, typer.Argument(help="SUBJECT: its uses (same as --subject).")] = None,
    grant_id: Annotated[str | None, typer.Option("--grant", help="Decisions made under this grant.")] = None,
    subject_id: Annotated[str | None, typer.Option("--subject", help="Decisions that involved this subject.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 100,
    cursor: Annotated[str | None, typer.Option("--cursor", help="The next_cursor of the previous page.")] = None,
    data_dir: DataDir = None,
) -> None:
    """What was made under a grant (or involved a subject): each decision with its outputs (sha256,
    watermark id, manifest digest) and its receipt (audit index, inclusion proof, signed checkpoint),
    as GET /v1/grants/{id}/uses answers."""
    from gateway.api.uses import uses_page
    from gateway.cli.auditread import log_reader
    from gateway.cli.readdb import grant_subject

    if subject is not None and subject_id is not None and subject != subject_id:
        raise fail("give the subject once: `registry uses SUBJECT` or `--subject SUBJECT`", code=2)
    subject_id = subject_id or subject
    if (grant_id is None) == (subject_id is None):
        raise fail("give exactly one of SUBJECT (or --subject ID) or --grant ID", code=2)
    settings = require_data_dir(load_settings(data_dir))
    if grant_id is not None:  # the grant's subject, read without opening the registry service (start-up)
        with _read_registry(settings) as (db, _):
            sid = grant_subject(db, grant_id)
    else:
        sid = str(subject_id)
    with log_reader(settings) as log:  # sqlite3 on a SQLite data dir: no SQLAlchemy (#22.6)
        try:
            page = uses_page(log, subject_id=sid, grant_id=grant_id, cursor=cursor, limit=limit, with_record=True)
        except ValueError as exc:
            raise fail(str(exc)) from None
    _echo(page)


retention_app = typer.Typer(help="Retention: forget enrolments whose purpose or time is up (BIPA, GDPR).",
                            no_args_is_help=True)
registry_app.add_typer(retention_app, name="retention")


@retention_app.command("run")
def retention_run(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would be deleted; change nothing.")] = False,
    now: Annotated[str | None, typer.Option("--now", help="Evaluate at this RFC 3339 time (default: now).")] = None,
    data_dir: DataDir = None,
) -> None:
    """Apply the active policy's `retention:` rules once: every enrolled subject's verdict (kept and
    why, or expired and why); expired ones are crypto-shredded (or lose the expired modality), each
    with a `retention` receipt in the audit log; grants past their end get an `expiry` entry."""
    from datetime import UTC

    from gateway.cli.policyuses import policy_retention
    from gateway.policy.errors import PolicyError

    try:
        when = datetime.fromisoformat(now.replace("Z", "+00:00")) if now else datetime.now(UTC)
    except ValueError:
        raise fail(f"--now {now!r} is not an RFC 3339 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    settings = require_data_dir(load_settings(data_dir))
    try:
        rules = policy_retention(settings)  # the bundle validated once per change, then cached
    except PolicyError as exc:
        raise fail("cannot load the policy for its retention rules:\n" + "\n".join(exc.errors)) from None
    with _writer(settings, core=False) as writer:  # a SQLite data dir: sqlite3, as the service runs it (#22.6)
        if writer is not None:
            from gateway.cli.retentionlite import run_retention

            _echo(run_retention(writer, rules, when, dry_run=dry_run, actor=ACTOR))
            return
    from gateway.bootstrap import AuditActivity, open_audit_log

    with local_registry(data_dir, with_models=False) as (registry, settings, engine), _errors():
        log = open_audit_log(settings, engine)
        try:
            report = registry.retention_run(rules, when, AuditActivity(log), dry_run=dry_run, actor=ACTOR)
        finally:
            log.close()
        _echo(report)


@registry_app.command("reembed")
def reembed(
    model: Annotated[str, typer.Option("--model", help="Model adapter name (e.g. dlib, resemblyzer).")],
    kind: Annotated[str, typer.Option("--kind", help="face (default) or voice templates.")] = "face",
    data_dir: DataDir = None,
) -> None:
    """Recompute MODEL templates from the encrypted enrolment images (after a face model change), or
    with --kind voice from the encrypted enrolment speech (after a voice model change)."""
    from classifiers.registry import builtin_registry

    if kind not in ("face", "voice"):
        raise fail(f"--kind must be face or voice, not {kind!r}")
    with local_registry(data_dir) as (registry, _, _), _errors():
        if kind == "voice":
            if model not in registry.voice_embedders:
                registry.voice_embedders[model] = builtin_registry().voice(model, {})
            _echo(registry.reembed_voices(model))
            return
        if model not in registry.face_analyzers:
            registry.face_analyzers[model] = builtin_registry().create("face", model, {})
        _echo(registry.reembed(model))
