"""Why: provenance tests share a development PKI (made once per session), a signer, encoders
for the real test images and a database session for the watermark id table."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import create_engine
from sqlmodel import Session

from gateway.provenance import C2paSigner, PkiPaths, WatermarkRecord, init_dev_pki


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers",
                            "db: touches a database (PostgreSQL when CONSENTGATE_TEST_DATABASE_URL)")


def encode(rgb: np.ndarray, fmt: str = "JPEG", **kwargs: object) -> bytes:
    """Encode pixels only (no metadata survives: this is also how tests strip metadata)."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(rgb)).save(buf, fmt, **kwargs)
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB")).copy()


@pytest.fixture(scope="session", params=["es256", "ed25519"])
def pki(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> PkiPaths:
    return init_dev_pki(tmp_path_factory.mktemp(f"pki-{request.param}"), alg=request.param)


@pytest.fixture(scope="session")
def es256_pki(tmp_path_factory: pytest.TempPathFactory) -> PkiPaths:
    return init_dev_pki(tmp_path_factory.mktemp("pki-es256-only"), alg="es256")


@pytest.fixture()
def signer(es256_pki: PkiPaths) -> C2paSigner:
    return C2paSigner.from_files(es256_pki.signing_cert_chain, es256_pki.signing_key)


@pytest.fixture()
def session(tmp_path: Path) -> Iterator[Session]:
    url = os.environ.get("CONSENTGATE_TEST_DATABASE_URL")
    if url:
        engine = create_engine(url)
        table = WatermarkRecord.__table__  # type: ignore[attr-defined]
        table.drop(engine, checkfirst=True)
    else:
        engine = create_engine(f"sqlite:///{tmp_path / f'prov-{uuid.uuid4().hex}.db'}")
    WatermarkRecord.__table__.create(engine, checkfirst=True)  # type: ignore[attr-defined]
    with Session(engine) as sess:
        yield sess
    if url:
        WatermarkRecord.__table__.drop(engine, checkfirst=True)  # type: ignore[attr-defined]
    engine.dispose()
