"""The serving process hands freed C-heap memory back to the OS (issue #21.4; gateway/app.py
`start_malloc_trimmer`): glibc otherwise keeps the freed buffers of every request's images and
model outputs, and a 10k-request run's RSS rose ~80 MB with nothing leaking. The trimmer runs as a
thread while the app runs, stops with it, and is off with `malloc_trim_s` 0."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from gateway.app import _malloc_trim, start_malloc_trimmer
from tests.support.gateway import app_client, make_settings


def _trimmers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "malloc-trim" and t.is_alive()]


def test_freed_heap_goes_back_to_the_os() -> None:
    trim = _malloc_trim()
    assert trim is not None, "glibc's malloc_trim is missing: the serving process would hold freed memory"

    def rss_kb() -> int:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))

    # 64 MB in 64 kB blocks (under glibc's mmap threshold: they live in the heap), every other one freed,
    # so the heap cannot shrink from its top by itself
    blocks = [np.ones(8192) for _ in range(1024)]
    del blocks[::2]
    before = rss_kb()
    trim(0)
    assert rss_kb() < before - 8 * 1024  # at least 8 MB of the 32 MB freed went back
    del blocks


def test_the_trimmer_runs_with_the_app_and_stops_with_it(tmp_path: Path) -> None:
    assert start_malloc_trimmer(0) is None
    baseline = len(_trimmers())
    settings = make_settings(tmp_path).with_overrides(extra={"malloc_trim_s": "0.05"})
    with app_client(settings):
        assert len(_trimmers()) == baseline + 1
    deadline = time.monotonic() + 5
    while len(_trimmers()) > baseline and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(_trimmers()) == baseline
    off = make_settings(tmp_path / "off").with_overrides(extra={"malloc_trim_s": "0"})
    with app_client(off):
        assert len(_trimmers()) == baseline
