"""Why: a job's input video and its released MP4 outlive the request that brought them and must
be reachable from whichever replica runs or serves the job. `JobFiles` is that small storage
contract, with two implementations: files under the data dir (one node, or a shared volume) and
chunked rows in the shared database (several replicas, no shared volume).

Why not `gateway.blobs`: that store moves whole files as `bytes` and keeps each in one row —
right for proxied images, wrong for videos of up to hundreds of megabytes. Here files are
streamed in and out in chunks and never held whole in memory. (Should `gateway.blobs` grow a
streaming API, both can merge.)

Keys are chosen by the caller (`<job id>.in`, `<job id>.mp4`) and validated; access checks and
expiry live with the job rows (`gateway.jobs.store`), which own the keys.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine

__all__ = ["CHUNK", "DbJobFiles", "DirJobFiles", "JobFiles", "open_job_files"]

CHUNK = 1 << 20
_KEY = re.compile(r"^[0-9a-f]{32}\.[a-z0-9]{1,8}$")


def _checked(key: str) -> str:
    if not _KEY.match(key):
        raise ValueError(f"invalid job file key {key!r}")
    return key


class JobFiles(Protocol):
    """Contract: `put_file` is durable once it returns and replaces what the key held;
    `materialise` gives a local path to read (the stored file itself or a copy in `work_dir`),
    None when the key holds nothing; `stream` yields the bytes in chunks; `delete` is idempotent."""

    def put_file(self, key: str, path: Path) -> int: ...

    def materialise(self, key: str, work_dir: Path) -> Path | None: ...

    def stream(self, key: str) -> Iterator[bytes] | None: ...

    def size(self, key: str) -> int | None: ...

    def delete(self, key: str) -> None: ...


class DirJobFiles:
    """`root/<key[:2]>/<key>`, written to a temporary name, fsynced and renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)

    def _path(self, key: str) -> Path:
        return self.root / _checked(key)[:2] / key

    def put_file(self, key: str, path: Path) -> int:
        dst = self._path(key)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
            shutil.copyfileobj(src, out, CHUNK)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dst)
        return dst.stat().st_size

    def materialise(self, key: str, work_dir: Path) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None

    def stream(self, key: str) -> Iterator[bytes] | None:
        path = self._path(key)
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed by the generator
        except OSError:
            return None

        def chunks() -> Iterator[bytes]:
            with fh:
                while block := fh.read(CHUNK):
                    yield block

        return chunks()

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except OSError:
            return None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


def job_files_table(metadata: sa.MetaData, name: str = "job_file_chunks") -> sa.Table:
    return sa.Table(
        name, metadata,
        sa.Column("key", sa.String(48), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )


class DbJobFiles:
    """Chunks of 1 MiB in `job_file_chunks` (key, seq, data) of the shared database (the table is
    created by the Alembic migrations)."""

    def __init__(self, engine: Engine, *, table_name: str = "job_file_chunks") -> None:
        self.engine = engine
        self.metadata = sa.MetaData()
        self.table = job_files_table(self.metadata, table_name)

    def put_file(self, key: str, path: Path) -> int:
        t = self.table
        total = 0
        with self.engine.begin() as conn, open(path, "rb") as src:
            conn.execute(t.delete().where(t.c.key == _checked(key)))
            seq = 0
            while block := src.read(CHUNK):
                conn.execute(t.insert().values(key=key, seq=seq, data=block))
                total += len(block)
                seq += 1
        return total

    def _has(self, key: str) -> bool:
        t = self.table
        with self.engine.connect() as conn:
            return conn.execute(sa.select(t.c.seq).where(t.c.key == key).limit(1)).first() is not None

    def stream(self, key: str) -> Iterator[bytes] | None:
        if not self._has(_checked(key)):
            return None
        t = self.table

        def chunks() -> Iterator[bytes]:
            seq = 0
            while True:
                page = sa.select(t.c.data).where(t.c.key == key, t.c.seq >= seq, t.c.seq < seq + 8)
                with self.engine.connect() as conn:
                    rows = conn.execute(page.order_by(t.c.seq)).all()
                if not rows:
                    return
                for row in rows:
                    yield bytes(row.data)
                seq += 8

        return chunks()

    def materialise(self, key: str, work_dir: Path) -> Path | None:
        chunks = self.stream(key)
        if chunks is None:
            return None
        dst = work_dir / key
        with open(dst, "wb") as out:
            for block in chunks:
                out.write(block)
        return dst

    def size(self, key: str) -> int | None:
        t = self.table
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(sa.func.count(), sa.func.sum(sa.func.length(t.c.data)))
                               .where(t.c.key == _checked(key))).first()
        if row is None or not row[0]:
            return None
        return int(row[1] or 0)

    def delete(self, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(self.table.delete().where(self.table.c.key == _checked(key)))


def open_job_files(kind: str | None, *, data_dir: Path, engine: Engine, database_url: str) -> JobFiles:
    """`kind` "dir" or "db"; by default files beside a SQLite database (one node) and the shared
    database otherwise (several replicas share it; a shared volume can use "dir")."""
    kind = kind or ("dir" if database_url.startswith("sqlite") else "db")
    if kind == "dir":
        return DirJobFiles(data_dir / "jobs" / "files")
    if kind == "db":
        return DbJobFiles(engine)
    raise ValueError(f"unknown job storage {kind!r} (dir or db)")
