"""Why: OpenAI clients may ask for a `url` instead of the image bytes. The gateway keeps the
released (marked, signed) file for a limited time and serves it itself, so any replica can
answer: a blob store with a data-dir implementation (one replica, or a shared volume) and a
database-backed one (a table in the shared DB, for several replicas). Blobs expire; a URL is a
capability only when it carries a valid signature (`signed_query`), otherwise the caller must be
the tenant that generated it (checked by the router)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine

BLOB_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class Blob:
    id: str
    tenant: str
    mime: str
    created_at: float
    expires_at: float
    data: bytes


class BlobStore(Protocol):
    """Contract: `put` is durable once it returns; `get` never returns an expired blob."""

    def put(self, data: bytes, *, mime: str, tenant: str, ttl_s: float) -> Blob: ...

    def get(self, blob_id: str) -> Blob | None: ...

    def purge_expired(self) -> int: ...


def new_blob_id() -> str:
    return secrets.token_hex(16)


class DirBlobStore:
    """Files under `root/<id[:2]>/`: `<id>` holds the bytes, `<id>.json` the metadata."""

    def __init__(self, root: Path, *, clock: Callable[[], float] = time.time):
        self.root = Path(root)
        self.clock = clock
        self.root.mkdir(parents=True, exist_ok=True)

    def _paths(self, blob_id: str) -> tuple[Path, Path]:
        folder = self.root / blob_id[:2]
        return folder / blob_id, folder / f"{blob_id}.json"

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def put(self, data: bytes, *, mime: str, tenant: str, ttl_s: float) -> Blob:
        now = self.clock()
        blob = Blob(new_blob_id(), tenant, mime, now, now + ttl_s, data)
        body, meta = self._paths(blob.id)
        body.parent.mkdir(parents=True, exist_ok=True)
        self._write(body, data)
        info = {"tenant": tenant, "mime": mime, "created_at": blob.created_at, "expires_at": blob.expires_at}
        self._write(meta, json.dumps(info).encode())  # metadata last: a blob without it does not exist
        return blob

    def get(self, blob_id: str) -> Blob | None:
        if not BLOB_ID.match(blob_id):
            return None
        body, meta = self._paths(blob_id)
        try:
            info = json.loads(meta.read_bytes())
            if float(info["expires_at"]) <= self.clock():
                return None
            data = body.read_bytes()
        except (OSError, ValueError, KeyError):
            return None
        return Blob(
            blob_id,
            str(info["tenant"]),
            str(info["mime"]),
            float(info["created_at"]),
            float(info["expires_at"]),
            data,
        )

    def purge_expired(self) -> int:
        now, removed = self.clock(), 0
        for meta in self.root.glob("*/*.json"):
            try:
                expired = float(json.loads(meta.read_bytes())["expires_at"]) <= now
            except (OSError, ValueError, KeyError):
                expired = True
            if expired:
                meta.unlink(missing_ok=True)
                meta.with_suffix("").unlink(missing_ok=True)
                removed += 1
        return removed


def blob_metadata(table_name: str = "proxy_blobs") -> tuple[sa.MetaData, sa.Table]:
    """The blob table on its own MetaData (the Alembic migrations create it: 0003)."""
    md = sa.MetaData()
    table = sa.Table(
        table_name,
        md,
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("mime", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False, index=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    return md, table


class DbBlobStore:
    """One row per blob in the shared database, so every replica serves every URL."""

    def __init__(
        self, engine: Engine, *, table_name: str = "proxy_blobs", clock: Callable[[], float] = time.time
    ):
        self.engine = engine
        self.clock = clock
        self.metadata, self.table = blob_metadata(table_name)

    def put(self, data: bytes, *, mime: str, tenant: str, ttl_s: float) -> Blob:
        now = self.clock()
        blob = Blob(new_blob_id(), tenant, mime, now, now + ttl_s, data)
        with self.engine.begin() as conn:
            conn.execute(
                self.table.insert().values(
                    id=blob.id,
                    tenant=tenant,
                    mime=mime,
                    created_at=now,
                    expires_at=blob.expires_at,
                    data=data,
                )
            )
        return blob

    def get(self, blob_id: str) -> Blob | None:
        if not BLOB_ID.match(blob_id):
            return None
        t = self.table
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.id == blob_id, t.c.expires_at > self.clock())).first()
        if row is None:
            return None
        return Blob(row.id, row.tenant, row.mime, row.created_at, row.expires_at, bytes(row.data))

    def purge_expired(self) -> int:
        with self.engine.begin() as conn:
            result = conn.execute(self.table.delete().where(self.table.c.expires_at <= self.clock()))
        return int(result.rowcount or 0)


class UrlSigner:
    """HMAC-SHA256 over `blob_id.expires`: a URL that carries it needs no API key until it expires."""

    def __init__(self, key: bytes, *, clock: Callable[[], float] = time.time):
        if len(key) < 32:
            raise ValueError("the URL signing key must be at least 32 bytes")
        self.key = key
        self.clock = clock

    @classmethod
    def from_file(cls, path: Path) -> UrlSigner:
        """Load the key, creating it (0600) on first use; replicas share it like the other keys."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_bytes(32))
            try:
                os.link(tmp, path)  # atomic: a racing replica keeps the first key written
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
        return cls(path.read_bytes())

    def sign(self, blob_id: str, expires: int) -> str:
        return hmac.new(self.key, f"{blob_id}.{expires}".encode(), hashlib.sha256).hexdigest()

    def signed_query(self, blob: Blob) -> str:
        expires = int(blob.expires_at)
        return f"expires={expires}&sig={self.sign(blob.id, expires)}"

    def valid(self, blob_id: str, expires: str | None, sig: str | None) -> bool:
        if not expires or not sig or not (expires.isascii() and expires.isdigit()) or not sig.isascii():
            return False  # Unicode digits or a non-ASCII signature: invalid, never an exception
        if int(expires) <= self.clock():
            return False
        return hmac.compare_digest(self.sign(blob_id, int(expires)), sig)
