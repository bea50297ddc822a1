"""Job files (data dir and shared database) and webhook URL rules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.db import make_engine
from gateway.errors import Invalid
from gateway.jobs.storage import CHUNK, DbJobFiles, DirJobFiles, JobFiles
from gateway.jobs.webhook import check_webhook_url
from gateway.migrations import upgrade_head

KEY = "0123456789abcdef0123456789abcdef.mp4"


@pytest.fixture(params=["dir", "db"])
def files(request: pytest.FixtureRequest, tmp_path: Path) -> JobFiles:
    if request.param == "dir":
        return DirJobFiles(tmp_path / "files")
    url = f"sqlite:///{tmp_path / 'files.db'}"
    upgrade_head(url)  # tables come from the migrations only
    return DbJobFiles(make_engine(url))


def test_round_trip_in_chunks(files: JobFiles, tmp_path: Path) -> None:
    data = os.urandom(2 * CHUNK + 123)
    src = tmp_path / "src"
    src.write_bytes(data)
    assert files.put_file(KEY, src) == len(data) and files.size(KEY) == len(data)
    chunks = files.stream(KEY)
    assert chunks is not None
    received = list(chunks)
    assert b"".join(received) == data and max(len(c) for c in received) <= CHUNK
    work = tmp_path / "work"
    work.mkdir()
    local = files.materialise(KEY, work)
    assert local is not None and local.read_bytes() == data
    src.write_bytes(b"replaced")
    files.put_file(KEY, src)
    assert files.size(KEY) == 8
    files.delete(KEY)
    files.delete(KEY)
    assert files.size(KEY) is None and files.stream(KEY) is None and files.materialise(KEY, work) is None


@pytest.mark.parametrize("key", ["../etc/passwd", "0123.mp4", KEY.upper(), KEY + "/x", ""])
def test_keys_are_validated(files: JobFiles, key: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid job file key"):
        files.size(key)


def test_webhook_urls() -> None:
    assert check_webhook_url(None) is None
    with pytest.raises(Invalid, match="webhooks are off"):  # no allowlist: no webhooks (#15.7)
        check_webhook_url("https://hooks.example/x?y=1")
    assert check_webhook_url("https://hooks.example/x?y=1", ("hooks.example",)) == "https://hooks.example/x?y=1"
    for bad in ("ftp://example.com/x", "file:///etc/passwd", "https://u:p@example.com/", "http:///nohost",
                "javascript:alert(1)", "https://example.com:99999/"):
        with pytest.raises(Invalid):
            check_webhook_url(bad, ("example.com",))
    allowed = ("hooks.example", ".corp.example")
    assert check_webhook_url("https://a.corp.example/x", allowed)
    assert check_webhook_url("https://HOOKS.example/x", allowed)
    for bad in ("https://evil.example/x", "https://corp.example.evil/x", "http://169.254.169.254/"):
        with pytest.raises(Invalid, match="not allowed"):
            check_webhook_url(bad, allowed)
