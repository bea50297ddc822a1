"""Blob stores (data dir and database) share one contract, checked on both: durable put, get
by id, nothing after expiry, purge; and the signed-URL token: bound to the blob and expiry."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.blobs import BlobStore, DbBlobStore, DirBlobStore, UrlSigner


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


pytestmark = pytest.mark.db


def _url(tmp_path: Path) -> str:
    """SQLite in tmp_path, or a fresh schema of CONSENTGATE_TEST_DATABASE_URL (PostgreSQL)."""
    if os.environ.get("CONSENTGATE_TEST_DATABASE_URL"):
        from tests.api.conftest import database_url

        url = database_url(tmp_path)
        assert url is not None
    else:
        url = f"sqlite:///{tmp_path / 'blobs.db'}"
    from gateway.migrations import upgrade_head

    upgrade_head(url)  # tables come from the migrations only
    return url


def _engine(tmp_path: Path) -> sa.engine.Engine:
    return sa.create_engine(_url(tmp_path))


@pytest.fixture(params=["dir", "db"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[BlobStore, Clock]]:
    clock = Clock()
    if request.param == "dir":
        yield DirBlobStore(tmp_path / "blobs", clock=clock), clock
    else:
        engine = _engine(tmp_path)
        yield DbBlobStore(engine, clock=clock), clock
        engine.dispose()


def test_put_get_expire_purge(store: tuple[BlobStore, Clock]) -> None:
    blobs, clock = store
    a = blobs.put(b"first", mime="image/png", tenant="acme", ttl_s=60)
    b = blobs.put(b"second", mime="image/jpeg", tenant="globex", ttl_s=600)
    assert a.id != b.id and len(a.id) == 32
    got = blobs.get(a.id)
    assert got is not None and (got.data, got.mime, got.tenant) == (b"first", "image/png", "acme")
    assert got.expires_at == clock.now + 60
    clock.now += 61
    assert blobs.get(a.id) is None  # expired: gone even before a purge
    assert blobs.get(b.id) is not None
    assert blobs.purge_expired() == 1
    clock.now += 600
    assert blobs.purge_expired() == 1 and blobs.get(b.id) is None


@pytest.mark.parametrize("bad", ["", "../../etc/passwd", "A" * 32, "0" * 31, "0" * 33])
def test_only_well_formed_ids_are_looked_up(store: tuple[BlobStore, Clock], bad: str) -> None:
    blobs, _ = store
    assert blobs.get(bad) is None


def test_dir_store_files_are_private(tmp_path: Path) -> None:
    blobs = DirBlobStore(tmp_path / "b")
    blob = blobs.put(b"x", mime="image/png", tenant="t", ttl_s=5)
    path = tmp_path / "b" / blob.id[:2] / blob.id
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_db_stores_on_one_database_see_each_other(tmp_path: Path) -> None:
    """Two replicas (two store objects, two engines) on the same database serve the same blob."""
    url = _url(tmp_path)
    one, two = sa.create_engine(url), sa.create_engine(url)
    blob = DbBlobStore(one).put(b"shared", mime="image/png", tenant="acme", ttl_s=60)
    got = DbBlobStore(two).get(blob.id)
    assert got is not None and got.data == b"shared"
    one.dispose()
    two.dispose()


def test_url_signature(tmp_path: Path) -> None:
    clock = Clock()
    signer = UrlSigner(b"k" * 32, clock=clock)
    blob = DirBlobStore(tmp_path, clock=clock).put(b"x", mime="image/png", tenant="t", ttl_s=60)
    query = dict(p.split("=") for p in signer.signed_query(blob).split("&"))
    assert signer.valid(blob.id, query["expires"], query["sig"])
    assert not signer.valid("0" * 32, query["expires"], query["sig"])  # bound to the blob
    assert not signer.valid(blob.id, str(int(query["expires"]) + 100), query["sig"])  # bound to the expiry
    tampered = query["sig"][:-1] + ("1" if query["sig"][-1] == "0" else "0")  # always a different last digit
    assert not signer.valid(blob.id, query["expires"], tampered)
    assert not UrlSigner(b"o" * 32, clock=clock).valid(blob.id, query["expires"], query["sig"])  # other key
    assert not signer.valid(blob.id, None, query["sig"]) and not signer.valid(blob.id, "-5", query["sig"])
    clock.now += 61
    assert not signer.valid(blob.id, query["expires"], query["sig"])  # expired


def test_signing_key_file_is_created_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "blob_url.key"
    first = UrlSigner.from_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(path.read_bytes()) == 32
    assert UrlSigner.from_file(path).key == first.key
    assert list(path.parent.iterdir()) == [path]  # no temp files left behind
    with pytest.raises(ValueError):
        UrlSigner(b"short")
