"""Why: auditors verify offline. An export is a directory anyone can check with
`verify_export` and the public key alone:

    manifest.json      format, origin, entry and checkpoint counts, root, vkey
    entries.jsonl      one line per entry, in index order:
                       {"index":i,"leaf_hash":hex,"columns":{...},"record":<canonical record>}
                       where the bytes after ',"record":' up to the final '}' are exactly the
                       canonical record the leaf hash covers
    checkpoints.jsonl  every checkpoint: {"tree_size","root_hash","note","published_at"}
    verifier.vkey      the log's verifier key (C2SP vkey)

`export_log` reads the log through SQLAlchemy, `export_sqlite` through a bare sqlite3 connection (the CLI's
`audit export` on a SQLite data dir, which must start fast: #22.6); both hand the rows to one writer
(`_write`), so the files are byte for byte the same (tests/audit/test_sqlite.py).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .canonical import canonical_json, columns_of
from .errors import AuditConfigError
from .notes import PublicKeyLike, VerifierKey, verifier_key
from .schema import audit_tables
from .verify import RECORD_MARKER

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from .log import AuditLog
    from .notes import CheckpointSigner
    from .sqlite import SqliteLog

# One entry row: (idx, leaf_hash, record, kind, tenant, use, decision, time_us, decision_id); one checkpoint row:
# (tree_size, root_hash, note, published_at).
EntryRow = tuple[int, bytes, str, str | None, str | None, str | None, str | None, int | None, str | None]

FORMAT = "consentgate-audit-export/1"


@dataclass(frozen=True)
class ExportSummary:
    path: Path
    entries: int
    checkpoints: int
    root_hash: str

    def as_dict(self) -> dict[str, object]:
        return {"path": str(self.path), "entries": self.entries, "checkpoints": self.checkpoints,
                "root_hash": self.root_hash}


def _dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def export_log(
    source: AuditLog | Engine,
    out_dir: str | os.PathLike[str],
    *,
    public_key: PublicKeyLike | None = None,
    table_prefix: str = "audit_",
    publish: bool = True,
) -> ExportSummary:
    """Write the log (up to its current head) to `out_dir`.

    With an `AuditLog`, a checkpoint covering every entry is published first (unless `publish` is
    False) and the key comes from its signer; with an Engine pass `public_key`.
    """
    from sqlalchemy import select

    from .log import AuditLog

    if isinstance(source, AuditLog):
        engine, tables = source.engine, source.tables
        if publish:
            source.publish_checkpoint()
        key_source: PublicKeyLike | None = public_key if public_key is not None else source.signer
    else:
        engine, tables, key_source = source, audit_tables(table_prefix), public_key
    if key_source is None:
        raise AuditConfigError("export_log needs the log's public key")
    e, s, cp, h = tables.entries, tables.subjects, tables.checkpoints, tables.head
    with engine.connect() as conn:
        head = conn.execute(select(h.c.origin, h.c.tree_size, h.c.root_hash).where(h.c.id == 1)).one()
        origin, size, root = str(head[0]), int(head[1]), bytes(head[2])
        key = verifier_key(key_source, origin)
        subject_rows = conn.execution_options(yield_per=20000).execute(
            select(s.c.idx, s.c.subject_id).where(s.c.idx < size).order_by(s.c.idx, s.c.subject_id)
        )
        with engine.connect() as entry_conn:
            rows = entry_conn.execution_options(yield_per=20000).execute(
                select(e.c.idx, e.c.leaf_hash, e.c.record, e.c.kind, e.c.tenant, e.c.use, e.c.decision,
                       e.c.time_us, e.c.decision_id).where(e.c.idx < size).order_by(e.c.idx)
            )
            out = _write_entries(out_dir, rows, subject_rows)
        checkpoints = conn.execute(
            select(cp.c.tree_size, cp.c.root_hash, cp.c.note, cp.c.published_at)
            .where(cp.c.tree_size <= size).order_by(cp.c.tree_size)
        ).all()
    return _write_rest(out, origin, size, root, key, checkpoints)


def export_sqlite(log: SqliteLog, out_dir: str | os.PathLike[str], signer: CheckpointSigner, *,
                  publish: bool = True) -> ExportSummary:
    """`export_log` of an `AuditLog` on a `gateway.audit.sqlite.SqliteLog` (a writable connection when
    `publish`, which first signs a checkpoint covering every entry, as there): the same statements in one
    read transaction, the same files."""
    if publish:
        log.publish_checkpoint(signer)
    p, conn = log.p, log.conn
    conn.execute("BEGIN")  # one snapshot for every read below
    try:
        head = log.head()
        origin, size, root = head.origin, head.tree_size, head.root_hash
        key = verifier_key(signer, origin)
        subject_rows = conn.execute(f"SELECT idx, subject_id FROM {p}subjects WHERE idx < ? "  # noqa: S608
                                    "ORDER BY idx, subject_id", (size,))
        rows = conn.execute(f"SELECT idx, leaf_hash, record, kind, tenant, use, decision, time_us, decision_id "  # noqa: S608
                            f"FROM {p}entries WHERE idx < ? ORDER BY idx", (size,))
        out = _write_entries(out_dir, rows, subject_rows)
        checkpoints = conn.execute(f"SELECT tree_size, root_hash, note, published_at FROM {p}checkpoints "  # noqa: S608
                                   "WHERE tree_size <= ? ORDER BY tree_size", (size,)).fetchall()
    finally:
        conn.execute("COMMIT")
    return _write_rest(out, origin, size, root, key, checkpoints)


def _write_entries(out_dir: str | os.PathLike[str], rows: Iterable[EntryRow],
                   subject_rows: Iterable[tuple[int, str]]) -> Path:
    """entries.jsonl from the entry rows and the subject rows, both in index order."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    groups = ((int(i), [str(r[1]) for r in g]) for i, g in groupby(subject_rows, key=lambda r: r[0]))
    pending = next(groups, None)
    with (out / "entries.jsonl").open("w", encoding="utf-8") as fh:
        for idx, lh, rec, kind, tenant, use, decision, tus, did in rows:
            while pending is not None and pending[0] < idx:
                pending = next(groups, None)
            subjects = pending[1] if pending is not None and pending[0] == idx else []
            meta = {"index": int(idx), "leaf_hash": bytes(lh).hex(), "columns": {
                "kind": kind, "tenant": tenant, "use": use, "decision": decision,
                "time_us": tus, "subjects": subjects, "decision_id": did}}
            fh.write(_dumps(meta)[:-1] + RECORD_MARKER + rec + "}\n")
    return out


def _write_rest(out: Path, origin: str, size: int, root: bytes, key: VerifierKey,
                checkpoints: Sequence[tuple[int, bytes, str, str]]) -> ExportSummary:
    """checkpoints.jsonl, verifier.vkey and manifest.json."""
    with (out / "checkpoints.jsonl").open("w", encoding="utf-8") as fh:
        for tree_size, root_hash, note, published_at in checkpoints:
            fh.write(_dumps({"tree_size": int(tree_size), "root_hash": bytes(root_hash).hex(),
                             "note": note, "published_at": published_at}) + "\n")
    (out / "verifier.vkey").write_text(key.vkey + "\n")
    manifest = {
        "format": FORMAT,
        "origin": origin,
        "entries": size,
        "checkpoints": len(checkpoints),
        "root_hash": root.hex(),
        "vkey": key.vkey,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return ExportSummary(out, size, len(checkpoints), root.hex())


def export_records(
    entries: Iterable[tuple[int, str, Mapping[str, Any]]],
    checkpoint_notes: Sequence[str],
    public_key: PublicKeyLike,
    origin: str,
    out_dir: str | os.PathLike[str],
) -> ExportSummary:
    """Write an export (same format as `export_log`) from entries read elsewhere — e.g. over the
    API: `(index, leaf hash hex, record)` in index order, the record with or without its `audit`
    field. The record bytes are re-encoded canonically (the log stores them so) and the columns
    derived from them; the verifier then checks every leaf hash against those bytes, so an API that
    altered a record is caught. `checkpoint_notes` are signed notes (each verified by the caller's
    `verify_export`, not here)."""
    key = verifier_key(public_key, origin)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    with (out / "entries.jsonl").open("w", encoding="utf-8") as fh:
        for index, leaf_hex, record in entries:
            body = {k: v for k, v in record.items() if k != "audit"}
            text = canonical_json(body).decode("utf-8")
            c = columns_of(text, body)
            meta = {"index": int(index), "leaf_hash": leaf_hex, "columns": {
                "kind": c.kind, "tenant": c.tenant, "use": c.use, "decision": c.decision,
                "time_us": c.time_us, "subjects": list(c.subjects), "decision_id": c.decision_id}}
            fh.write(_dumps(meta)[:-1] + RECORD_MARKER + text + "}\n")
            count += 1
    parsed = []
    with (out / "checkpoints.jsonl").open("w", encoding="utf-8") as fh:
        for note in checkpoint_notes:
            lines = note.split("\n")
            size, root = int(lines[1]), base64.b64decode(lines[2])
            parsed.append((size, root))
            fh.write(_dumps({"tree_size": size, "root_hash": root.hex(), "note": note, "published_at": None}) + "\n")
    (out / "verifier.vkey").write_text(key.vkey + "\n")
    root_hex = parsed[-1][1].hex() if parsed else ""
    manifest = {"format": FORMAT, "origin": origin, "entries": count, "checkpoints": len(parsed),
                "root_hash": root_hex, "vkey": key.vkey,
                "exported_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return ExportSummary(out, count, len(parsed), root_hex)
