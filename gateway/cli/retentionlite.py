"""Why: `consentgate registry retention run [--dry-run]` must start in < 0.5 s like the other model-free commands
(#22.6), and the registry service it used to open (SQLAlchemy's ORM, the model pool, the policy loader, the audit
log) costs ~0.95 CPU-s. On a SQLite data dir it runs here instead, through the standard library's `sqlite3` and
`gateway.cli.writelite.LiteRegistryWriter`:

- the decision is the service's own: the rows are read with `retention.plan`'s and `record_expiries`' queries and
  handed to `gateway.registry.retention_plan` (`plans`, `due_expiries`), the module both paths import;
- the changes have the service's transaction boundaries: one `BEGIN IMMEDIATE` transaction per subject's `expiry`
  entries; a whole subject erased as `admin.erase` (the key shredded first, then one transaction with its
  `retention` receipt: `LiteRegistryWriter.erase`); a subject losing one modality in one transaction with the
  `faces` counter bump, its tombstones, its deleted rows and its `retention` entry (`retention.apply`);
- the log's postings and one checkpoint are written after the last transaction (`SqliteLog.finish`), as
  `AuditLog.close` does at the end of the service's run; a dry run writes nothing.

tests/cli/test_retentionlite.py runs both paths on two copies of one database and compares every table and the
ledger. PostgreSQL (and a data dir `open_lite_writer` declines) keeps the service path.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gateway.cli.readdb import utc_datetime
from gateway.cli.writelite import VOICE_REMOVAL
from gateway.registry.records import rfc3339, to_utc
from gateway.registry.retention_plan import (
    LogActivity,
    Rule,
    SubjectRow,
    due_expiries,
    erase_fields,
    expiry_fields,
    modality_fields,
    plans,
)

if TYPE_CHECKING:
    from gateway.cli.writelite import LiteRegistryWriter
    from gateway.registry.retention_plan import SubjectPlan

__all__ = ["run_retention"]

# A modality's rows, as `retention._delete_modality` deletes them: the templates tombstoned (with this `model`
# prefix), then these tables in this order (count label, table).
MODALITY_ROWS: dict[str, tuple[str, str, tuple[tuple[str, str], ...]]] = {
    "face": ("registry_face_templates", "", (("face_templates", "registry_face_templates"),
                                             ("enrolment_images", "registry_enrolment_images"),
                                             ("enrolments", "registry_enrolments"))),
    "voice": ("registry_voice_templates", VOICE_REMOVAL, (("voice_templates", "registry_voice_templates"),
                                                          ("voice_clips", "registry_voice_clips"),
                                                          ("voice_enrolments", "registry_voice_enrolments"))),
}


@dataclass(frozen=True)
class _Grant:
    """A grant row's columns retention reads (`retention_plan.GrantRow`)."""

    id: str
    subject_id: str
    valid_from: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime


_GRANT_SQL = "SELECT id, subject_id, valid_from, expires_at, revoked_at, created_at FROM registry_grants"


def _stamp(value: Any) -> datetime | None:
    return None if value is None else utc_datetime(value)


def _grants(conn: sqlite3.Connection, where: str = "") -> list[_Grant]:
    return [_Grant(str(r[0]), str(r[1]), utc_datetime(r[2]), _stamp(r[3]), _stamp(r[4]), utc_datetime(r[5]))
            for r in conn.execute(_GRANT_SQL + where)]


def _plans(conn: sqlite3.Connection, rules: Mapping[str, Rule], now: datetime,
           activity: LogActivity) -> list[SubjectPlan]:
    """`retention.plan` on sqlite3: the same rows in the same order, the same decision."""
    subjects = [SubjectRow(str(r[0]), bool(r[1]), utc_datetime(r[2])) for r in
                conn.execute("SELECT id, protected, created_at FROM registry_subjects ORDER BY created_at")]
    enrolled = [(str(r[0]), "face", utc_datetime(r[1]))
                for r in conn.execute("SELECT subject_id, created_at FROM registry_enrolments")]
    with suppress(sqlite3.OperationalError):  # a database without the voice tables yet
        enrolled += [(str(r[0]), "voice", utc_datetime(r[1]))
                     for r in conn.execute("SELECT subject_id, created_at FROM registry_voice_enrolments")]
    return plans(subjects, enrolled, _grants(conn), rules, now, activity)


def _delete_modality(conn: sqlite3.Connection, subject_id: str, modality: str) -> dict[str, int]:
    templates, prefix, tables = MODALITY_ROWS[modality]
    rows = conn.execute(f"SELECT seq, model FROM {templates} WHERE subject_id = ?",  # noqa: S608 (fixed names)
                        (subject_id,)).fetchall()
    conn.executemany("INSERT INTO registry_template_removals (template_seq, model) VALUES (?, ?)",
                     [(seq or 0, prefix + model) for seq, model in rows])
    return {label: conn.execute(f"DELETE FROM {table} WHERE subject_id = ?", (subject_id,)).rowcount  # noqa: S608
            for label, table in tables}


def run_retention(writer: LiteRegistryWriter, rules: Mapping[str, Rule], now: datetime, *, dry_run: bool,
                  actor: str) -> dict[str, Any]:
    """`RegistryService.retention_run` on sqlite3: the report it returns (the verdict per subject, and unless
    `dry_run` the receipts and the number of `expiry` entries), with the same changes and ledger entries."""
    conn, activity = writer.conn, LogActivity(writer.log)
    found = _plans(conn, rules, now, activity)
    report: dict[str, Any] = {"evaluated_at": rfc3339(to_utc(now)), "dry_run": dry_run,
                              "subjects": [p.as_dict() for p in found], "receipts": [], "expiries": 0}
    if dry_run:
        return report
    appended = False
    try:
        for sid, gs in due_expiries(_grants(conn, " WHERE expires_at IS NOT NULL"), now).items():
            done = activity.expiries_recorded(sid)
            entries = [writer.record("expiry", sid, actor, **expiry_fields(g))
                       for g in gs if g.id not in done]
            if not entries:
                continue
            with writer.transaction(finish=False) as records:
                records.extend(entries)
            appended = True
            report["expiries"] += len(entries)
        for p in found:
            if not p.expire:
                continue
            if p.whole:
                report["receipts"].append(writer.erase(p.subject_id, actor, kind="retention",
                                                       extra=erase_fields(p, now), finish=False))
                appended = True
                continue
            with writer.transaction(finish=False) as records:
                if not conn.execute("UPDATE registry_state SET faces = faces + 1 WHERE id = 1").rowcount:
                    writer.insert("registry_state", {"id": 1, "faces": 1, "names": 0, "hashes": 0})
                counts: dict[str, int] = {}
                for modality in p.expire:
                    counts.update(_delete_modality(conn, p.subject_id, modality))
                record = writer.record("retention", p.subject_id, actor,
                                        **modality_fields(p, now, secrets.token_hex(16), counts))
                records.append(record)
            appended = True
            report["receipts"].append({**record, "audit": {"index": writer.appended[0] if writer.appended else None}})
    finally:
        if appended:
            writer.log.finish(writer.signer)
    return report
