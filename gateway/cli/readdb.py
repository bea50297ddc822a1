"""Why: scripts call the list commands in loops (`apikey list`, `registry subject list`), and opening the
database through the SQLModel ORM costs more than the whole start-up budget of a command that needs no
model (< 0.5 s, #22.6): SQLAlchemy + SQLModel + the table classes are ~0.2–0.3 CPU-seconds before the
first row. These commands only read, so they read with the DB-API:

- a SQLite URL (the default data dir) opens with the standard library's `sqlite3`, **read-only**
  (`mode=ro`): a list command can neither create nor migrate a database;
- any other URL (PostgreSQL) goes through SQLAlchemy Core `text()` — imported only then.

The SQL is the same text on both (`:name` parameters). This module never writes (the write commands go
through `gateway.cli.writedb`). `tests/cli/test_startup.py` compares what it returns with the ORM stores
on the same database (SQLite, and PostgreSQL under `-m db`), so a schema change that these queries miss
fails a test rather than a script.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from gateway.apikey_rules import ApiKeyInfo
    from gateway.registry.envelope import SubjectCrypto

__all__ = ["GRANT_COLUMNS", "ReadDB", "ReadError", "ReadOnlyKeys", "get_subject", "grant_public", "grant_subject",
           "list_api_keys", "list_grants", "list_subjects", "open_read", "sqlite_path", "utc_datetime"]

Row = dict[str, Any]


class ReadError(Exception):
    """The database could not be read (unreachable, locked past the timeout, not initialised)."""


def sqlite_path(url: str) -> str | None:
    """The file a SQLite URL names (`sqlite:///rel`, `sqlite:////abs`, `sqlite+pysqlite:///…`); None for
    another database. An in-memory URL is refused: there is nothing to list in a new empty database."""
    scheme, sep, rest = url.partition(":///")
    if not sep or scheme.split("+", 1)[0] != "sqlite":
        if url.split("+", 1)[0].split(":", 1)[0] == "sqlite":
            raise ReadError(f"cannot read {url!r}: not a SQLite file URL")
        return None
    path = rest.split("?", 1)[0]
    if not path or path == ":memory:":
        raise ReadError(f"cannot read {url!r}: an in-memory database holds nothing to list")
    return path


class ReadDB:
    """One read-only connection. `rows(sql, params)` returns dicts keyed by column name."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._sqlite: sqlite3.Connection | None = None
        self._sa: Any = None  # a SQLAlchemy Connection when the URL is not SQLite
        self._engine: Any = None
        path = sqlite_path(url)
        if path is not None:
            if not Path(path).is_file():  # mode=ro would fail too; say which file
                raise ReadError(f"no database at {path}")
            try:
                self._sqlite = sqlite3.connect(f"file:{quote(str(Path(path).resolve()))}?mode=ro", uri=True,
                                               timeout=30)
                self._sqlite.execute("PRAGMA busy_timeout=30000")
            except sqlite3.Error as exc:
                raise ReadError(f"cannot open {path}: {exc}") from None
            return
        from sqlalchemy import create_engine
        from sqlalchemy.exc import SQLAlchemyError

        try:
            self._engine = create_engine(url)
            self._sa = self._engine.connect()
        except SQLAlchemyError as exc:
            raise ReadError(f"cannot connect to the database: {type(exc).__name__}: {exc}") from None

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        try:
            if self._sqlite is not None:
                cur = self._sqlite.execute(sql, dict(params or {}))
                names = [d[0] for d in cur.description or ()]
                return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
            from sqlalchemy import text

            return [dict(r._mapping) for r in self._sa.execute(text(sql), dict(params or {}))]
        except sqlite3.Error as exc:
            raise ReadError(_explain(exc)) from None
        except Exception as exc:  # SQLAlchemy's DBAPIError and friends, without importing them up front
            if type(exc).__module__.startswith("sqlalchemy"):
                raise ReadError(_explain(exc)) from None
            raise

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
        if self._sa is not None:
            self._sa.close()
            self._engine.dispose()


def _explain(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "no such table" in text or "does not exist" in text:
        return f"the database has no consentgate tables ({text}) — run `consentgate init`"
    return f"cannot read the database: {text}"


@contextmanager
def open_read(url: str) -> Iterator[ReadDB]:
    db = ReadDB(url)
    try:
        yield db
    finally:
        db.close()


def utc_datetime(value: Any) -> datetime:
    """A timestamp column as an aware UTC datetime. SQLite hands back the text SQLAlchemy stored
    (`YYYY-MM-DD HH:MM:SS.ffffff`, UTC without a zone); PostgreSQL a datetime."""
    dt = datetime.fromisoformat(value) if isinstance(value, str) else value
    if not isinstance(dt, datetime):
        raise ReadError(f"not a timestamp: {value!r}")
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


# ---- apikey list ----
def list_api_keys(db: ReadDB, tenant: str | None = None) -> list[ApiKeyInfo]:
    """Keys oldest first (the order of `ApiKeyStore.list`), optionally of one tenant; shown as the store
    shows them (`gateway.apikey_rules.key_info`: never the hash)."""
    from gateway.apikey_rules import key_info

    columns = "SELECT id, tenant, role, name, created_at, revoked_at, uses FROM apikeys"
    rows = (db.rows(columns + " WHERE tenant = :tenant ORDER BY created_at", {"tenant": tenant}) if tenant
            else db.rows(columns + " ORDER BY created_at"))
    return [key_info(r["id"], r["tenant"], r["role"], r["name"], utc_datetime(r["created_at"]),
                     utc_datetime(r["revoked_at"]) if r["revoked_at"] is not None else None, r["uses"])
            for r in rows]


# ---- registry subject list ----
class ReadOnlyKeys:
    """The key store's wrapped subject keys, read through a ReadDB (`WrappedKeys` for SubjectCrypto).
    Writing is refused: a list command never changes the key store."""

    def __init__(self, db: ReadDB) -> None:
        self.db = db

    def get(self, subject_id: str) -> bytes:
        from gateway.registry.errors import SubjectKeyNotFound

        rows = self.db.rows("SELECT wrapped_key FROM keystore_subject_keys WHERE subject_id = :sid",
                            {"sid": subject_id})
        if not rows:
            raise SubjectKeyNotFound(subject_id)
        return bytes(rows[0]["wrapped_key"])

    def subject_ids(self) -> list[str]:
        return [r["subject_id"] for r in self.db.rows("SELECT subject_id FROM keystore_subject_keys")]

    def put(self, subject_id: str, wrapped: bytes, kek_id: str) -> None:
        raise ReadError("the key store is open read-only")

    def delete(self, subject_id: str) -> bool:
        raise ReadError("the key store is open read-only")


def _counts(db: ReadDB, table: str, ids: Sequence[str], by_model: bool) -> dict[str, Counter[str]]:
    """Rows of TABLE per subject (and per model when BY_MODEL; else under the key "")."""
    out: dict[str, Counter[str]] = {i: Counter() for i in ids}
    if not ids:
        return out
    marks = ", ".join(f":s{i}" for i in range(len(ids)))
    keys = "subject_id, model" if by_model else "subject_id"
    for r in db.rows(f"SELECT {keys}, COUNT(*) AS n FROM {table} "  # noqa: S608 (fixed names, bound ids)
                     f"WHERE subject_id IN ({marks}) GROUP BY {keys}",
                     {f"s{i}": sid for i, sid in enumerate(ids)}):
        out[r["subject_id"]][r.get("model", "")] = int(r["n"])
    return out


_SUBJECT_COLUMNS = "SELECT id, profile_ct, protected, created_by, created_at FROM registry_subjects"


def list_subjects(db: ReadDB, crypto: SubjectCrypto, offset: int = 0, limit: int = 100) -> list[Row]:
    """Subjects as `GET /v1/subjects` shows them (`SubjectPublic` in JSON mode: never templates), oldest
    first, `limit` clamped to 1..1000 as the registry service does."""
    rows = db.rows(_SUBJECT_COLUMNS + " ORDER BY created_at, id LIMIT :limit OFFSET :offset",
                   {"limit": min(max(limit, 1), 1000), "offset": max(offset, 0)})
    return _subjects(db, crypto, rows)


def get_subject(db: ReadDB, crypto: SubjectCrypto, subject_id: str) -> Row:
    """One subject as `GET /v1/subjects/{id}` shows it; SubjectNotFound as the registry raises it."""
    from gateway.registry.errors import SubjectNotFound

    rows = db.rows(_SUBJECT_COLUMNS + " WHERE id = :sid", {"sid": subject_id})
    if not rows:
        raise SubjectNotFound(subject_id)
    return _subjects(db, crypto, rows)[0]


def _rfc3339(value: Any) -> str | None:
    return None if value is None else utc_datetime(value).isoformat().replace("+00:00", "Z")


def _subjects(db: ReadDB, crypto: SubjectCrypto, rows: list[Row]) -> list[Row]:
    from gateway.registry.envelope import PROFILE

    ids = [r["id"] for r in rows]
    faces = _counts(db, "registry_face_templates", ids, True)
    hashes = _counts(db, "registry_hashes", ids, False)
    voices = _counts(db, "registry_voice_templates", ids, True)
    out = []
    for r in rows:
        profile = json.loads(crypto.decrypt(r["id"], bytes(r["profile_ct"]), PROFILE))
        out.append({
            "id": r["id"], "display_name": profile["display_name"], "aliases": profile.get("aliases", []),
            "protected": bool(r["protected"]), "created_by": r["created_by"], "created_at": _rfc3339(r["created_at"]),
            "face_models": sorted(faces[r["id"]]), "template_count": sum(faces[r["id"]].values()),
            "hash_count": sum(hashes[r["id"]].values()),
            "voice_models": sorted(voices[r["id"]]), "voice_template_count": sum(voices[r["id"]].values()),
        })
    return out


def grant_subject(db: ReadDB, grant_id: str) -> str:
    """The subject a grant belongs to; GrantNotFound as the registry raises it."""
    from gateway.registry.errors import GrantNotFound

    rows = db.rows("SELECT subject_id FROM registry_grants WHERE id = :gid", {"gid": grant_id})
    if not rows:
        raise GrantNotFound(grant_id)
    return str(rows[0]["subject_id"])


GRANT_COLUMNS = ("id", "subject_id", "grantee_tenant", "grantee_end_user", "uses", "valid_from", "expires_at",
                 "revoked_at", "revoked_by", "created_by", "created_at")


def list_grants(db: ReadDB, subject_id: str) -> list[Row]:
    """A subject's grants as `GET /v1/subjects/{id}/grants` shows them (`GrantPublic` in JSON mode),
    oldest first."""
    rows = db.rows(f"SELECT {', '.join(GRANT_COLUMNS)} FROM registry_grants "  # noqa: S608 (fixed names)
                   "WHERE subject_id = :sid ORDER BY created_at", {"sid": subject_id})
    return [grant_public(r) for r in rows]


def grant_public(r: Mapping[str, Any]) -> Row:
    """A `registry_grants` row (as the DB-API or SQLAlchemy Core hands it back) as `GrantPublic` in JSON
    mode: times RFC 3339 in UTC, uses a list."""
    return {
        "id": r["id"], "subject_id": r["subject_id"], "grantee_tenant": r["grantee_tenant"],
        "grantee_end_user": r["grantee_end_user"],
        "uses": list(json.loads(r["uses"]) if isinstance(r["uses"], str | bytes) else r["uses"]),
        "valid_from": _rfc3339(r["valid_from"]), "expires_at": _rfc3339(r["expires_at"]),
        "revoked_at": _rfc3339(r["revoked_at"]), "revoked_by": r["revoked_by"], "created_by": r["created_by"],
        "created_at": _rfc3339(r["created_at"]),
    }
