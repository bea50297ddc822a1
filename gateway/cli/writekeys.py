"""Why: `apikey create|restrict|revoke` are the commands admins script most (a key per tenant, rotation in a
loop), and on the default SQLite data dir importing SQLAlchemy alone costs about as much as the rest of the
command (#22.6: < 0.5 s). So, as `readdb` does for reading, they write with the standard library's `sqlite3`
on a SQLite URL and through SQLAlchemy Core (`gateway.cli.writedb`) on any other, under the rules of
`gateway.apikey_rules` — the rules `ApiKeyStore` (the serving path) applies.

On SQLite the stored forms are SQLAlchemy's, which the ORM reads back: timestamps as UTC text
`YYYY-MM-DD HH:MM:SS.ffffff` (what SQLite's DATETIME type writes for the ORM's aware-UTC columns), uses as the
comma-separated text or NULL. `tests/cli/test_writedb.py` writes keys through both paths on one database and
compares the stored values and what the store reads back (SQLite, and PostgreSQL under `-m db`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.apikey_rules import ApiKeyInfo, check_new_key, key_info, new_key, stored_uses
from gateway.cli.readdb import ReadError, sqlite_path, utc_datetime
from gateway.errors import NotFound

__all__ = ["create_api_key", "restrict_api_key", "revoke_api_key", "sqlite_stamp"]


def sqlite_stamp(value: datetime) -> str:
    """VALUE as SQLAlchemy stores a timezone-aware UTC column on SQLite (no zone, six-digit microseconds)."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


class _Keys:
    """One write transaction on the `apikeys` table: sqlite3 on SQLite, SQLAlchemy Core elsewhere."""

    def __init__(self, sqlite: sqlite3.Connection | None, core: Any) -> None:
        self.sqlite = sqlite
        self.core = core  # a SQLAlchemy Connection in a transaction (not SQLite)

    def insert(self, values: dict[str, Any]) -> None:
        if self.sqlite is not None:
            stamped = {k: sqlite_stamp(v) if isinstance(v, datetime) else v for k, v in values.items()}
            self.sqlite.execute(
                f"INSERT INTO apikeys ({', '.join(stamped)}) "  # noqa: S608 (fixed names)
                f"VALUES ({', '.join(':' + k for k in stamped)})",
                stamped,
            )
            return
        from gateway.cli.writedb import apikeys

        self.core.execute(apikeys.insert().values(**values))

    def update(self, key_id: str, values: dict[str, Any], *, only_unrevoked: bool = False) -> None:
        if self.sqlite is not None:
            stamped = {k: sqlite_stamp(v) if isinstance(v, datetime) else v for k, v in values.items()}
            where = " AND revoked_at IS NULL" if only_unrevoked else ""
            self.sqlite.execute(
                f"UPDATE apikeys SET {', '.join(f'{k} = :{k}' for k in stamped)} "  # noqa: S608
                f"WHERE id = :key_id{where}",
                {**stamped, "key_id": key_id},
            )
            return
        from gateway.cli.writedb import apikeys

        query = apikeys.update().where(apikeys.c.id == key_id)
        if only_unrevoked:
            query = query.where(apikeys.c.revoked_at.is_(None))
        self.core.execute(query.values(**values))

    def info(self, key_id: str) -> ApiKeyInfo:
        """The key as the store shows it after the write (read back in the same transaction)."""
        columns = ("id", "tenant", "role", "name", "created_at", "revoked_at", "uses")
        if self.sqlite is not None:
            found = self.sqlite.execute(
                f"SELECT {', '.join(columns)} FROM apikeys WHERE id = ?",  # noqa: S608
                (key_id,),
            ).fetchone()
            row = dict(zip(columns, found, strict=True)) if found is not None else None
        else:
            from gateway.cli.writedb import apikeys

            mapped = self.core.execute(apikeys.select().where(apikeys.c.id == key_id)).mappings().first()
            row = dict(mapped) if mapped is not None else None
        if row is None:
            raise NotFound(f"no API key {key_id!r}")
        return key_info(
            row["id"],
            row["tenant"],
            row["role"],
            row["name"],
            utc_datetime(row["created_at"]),
            utc_datetime(row["revoked_at"]) if row["revoked_at"] is not None else None,
            row["uses"],
        )


@contextmanager
def _writing(url: str) -> Iterator[_Keys]:
    """A write transaction on the database URL names: committed when the block ends, rolled back on an error.
    A SQLite file must exist (`consentgate init` creates it): a write command never creates a database."""
    path = sqlite_path(url)
    if path is None:
        from gateway.db import make_engine

        engine = make_engine(url)
        try:
            with engine.begin() as core:
                yield _Keys(None, core)
        except Exception as exc:  # SQLAlchemy's errors, without importing them on SQLite's path
            if type(exc).__module__.startswith("sqlalchemy"):
                raise ReadError(
                    f"cannot write the database: {type(exc).__name__}: {str(exc).splitlines()[0]}"
                ) from None
            raise
        finally:
            engine.dispose()
        return
    if not Path(path).is_file():
        raise ReadError(f"no database at {path}")
    conn = sqlite3.connect(path, timeout=30)  # as gateway.db opens it: WAL (kept by the file), busy timeout
    try:
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA synchronous=NORMAL")
        with conn:  # one transaction: commit, or roll back on an exception
            yield _Keys(conn, None)
    except sqlite3.Error as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        hint = " — run `consentgate init`" if "no such table" in text or "no such column" in text else ""
        raise ReadError(f"cannot write the database: {text}{hint}") from None
    finally:
        conn.close()


def create_api_key(
    url: str, operator_tenant: str, tenant: str, role: str, name: str = "", uses: Sequence[str] | None = None
) -> tuple[ApiKeyInfo, str]:
    """`ApiKeyStore.create`: the new key's info and the key itself (shown once)."""
    check_new_key(tenant, role, operator_tenant)
    uses_column = stored_uses(uses)
    key = new_key()
    with _writing(url) as keys:
        keys.insert(
            {
                "id": key.key_id,
                "tenant": tenant,
                "role": role,
                "secret_sha256": key.secret_sha256,
                "name": name,
                "created_at": datetime.now(UTC),
                "revoked_at": None,
                "uses": uses_column,
            }
        )
        return keys.info(key.key_id), key.presented


def revoke_api_key(url: str, key_id: str) -> ApiKeyInfo:
    """`ApiKeyStore.revoke`: idempotent (the first revocation's time stands)."""
    if "\0" in key_id:
        raise NotFound(f"no API key {key_id!r}")
    with _writing(url) as keys:
        keys.update(key_id, {"revoked_at": datetime.now(UTC)}, only_unrevoked=True)
        return keys.info(key_id)


def restrict_api_key(url: str, key_id: str, uses: Sequence[str] | None) -> ApiKeyInfo:
    """`ApiKeyStore.restrict`: the uses a key may request (None: every use again)."""
    stored = stored_uses(uses)
    if "\0" in key_id:
        raise NotFound(f"no API key {key_id!r}")
    with _writing(url) as keys:
        keys.update(key_id, {"uses": stored})
        return keys.info(key_id)
