"""Why: registry tests need a main database and a separate key store, fresh per test, on SQLite by
default and on PostgreSQL when CONSENTGATE_TEST_DATABASE_URL is set (each test then gets its own
PostgreSQL schemas, dropped afterwards, so parallel suites on the shared database never collide)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from classifiers.fake import FakeFaceAnalyzer
from gateway.audit import AuditLog
from gateway.registry.crypto import FileKek, KeyStore, SubjectCrypto
from gateway.registry.service import Registry
from gateway.registry.store import create_tables
from tests.support.ledger import checked_log

PG_URL = os.environ.get("CONSENTGATE_TEST_DATABASE_URL")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "db: uses a database (PostgreSQL if CONSENTGATE_TEST_DATABASE_URL)")


class Databases:
    """Engines made for one test; PostgreSQL schemas are dropped at teardown."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.engines: list[Engine] = []
        self.schemas: list[str] = []

    def engine(self, name: str) -> Engine:
        if PG_URL:
            schema = f"cg_registry_test_{name}_{secrets.token_hex(4)}"
            admin = sa.create_engine(PG_URL)
            with admin.begin() as conn:
                conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
            admin.dispose()
            self.schemas.append(schema)
            eng = sa.create_engine(PG_URL, connect_args={"options": f"-csearch_path={schema}"})
        else:
            eng = sa.create_engine(f"sqlite:///{self.tmp / name}.db")
        self.engines.append(eng)
        return eng

    def close(self) -> None:
        for eng in self.engines:
            eng.dispose()
        if PG_URL and self.schemas:
            admin = sa.create_engine(PG_URL)
            with admin.begin() as conn:
                for schema in self.schemas:
                    conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            admin.dispose()


@pytest.fixture
def dbs(tmp_path: Path) -> Iterator[Databases]:
    d = Databases(tmp_path)
    yield d
    d.close()


@pytest.fixture(scope="module")
def module_dbs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Databases]:
    d = Databases(tmp_path_factory.mktemp("registry"))
    yield d
    d.close()


@pytest.fixture
def crypto(dbs: Databases, tmp_path: Path) -> SubjectCrypto:
    store = KeyStore(dbs.engine("keys"))
    store.create_tables()
    return SubjectCrypto(FileKek.create(tmp_path / "kek.key"), store)


@pytest.fixture
def main_engine(dbs: Databases) -> Engine:
    eng = dbs.engine("main")
    create_tables(eng)
    return eng


@pytest.fixture
def log(main_engine: Engine) -> Iterator[AuditLog]:
    """The audit log the consent ledger appends to, on the registry's database; it must verify, covered by
    a signed checkpoint, when the test is done."""
    with checked_log(main_engine, "registry.test/log") as made:
        yield made


MakeRegistry = Callable[..., Registry]


@pytest.fixture
def make_registry(main_engine: Engine, crypto: SubjectCrypto) -> Iterator[MakeRegistry]:
    made: list[Registry] = []

    def make(analyzers: dict[str, Any] | None = None, **kwargs: Any) -> Registry:
        reg = Registry(main_engine, crypto, analyzers or {"fake": FakeFaceAnalyzer()}, **kwargs)
        made.append(reg)
        return reg

    yield make
    for reg in made:
        reg.close()
