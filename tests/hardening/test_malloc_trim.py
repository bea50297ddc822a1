"""The serving process hands freed C-heap memory back to the OS (issue #21.4; gateway/app.py
`start_malloc_trimmer`): glibc otherwise keeps the freed buffers of every request's images and
model outputs, and a 10k-request run's RSS rose ~80 MB with nothing leaking. The trimmer runs as a
thread while the app runs, stops with it, and is off with `malloc_trim_s` 0. The arena cap
(`limit_malloc_arenas`) keeps glibc from giving every worker thread an arena that keeps its own
high-water mark."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from gateway.app import _malloc_trim, default_arena_max, start_malloc_trimmer
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


ARENA_PROBE = """
import ctypes, sys, threading
import numpy as np
from gateway.app import limit_malloc_arenas
limited = limit_malloc_arenas(int(sys.argv[1]))
held = []
def work() -> None:
    held.append([np.ones(4096) for _ in range(64)])  # 32 kB blocks: from the thread's arena, not mmap
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
libc = ctypes.CDLL("libc.so.6")
libc.open_memstream.restype = ctypes.c_void_p
buf, size = ctypes.c_char_p(), ctypes.c_size_t()
fp = ctypes.c_void_p(libc.open_memstream(ctypes.byref(buf), ctypes.byref(size)))
libc.malloc_info(0, fp)
libc.fclose(fp)
print(int(limited), ctypes.string_at(buf, size.value).count(b"<heap nr="))
"""


def _arenas_after_eight_threads(limit: int) -> tuple[bool, int]:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run([sys.executable, "-c", ARENA_PROBE, str(limit)], capture_output=True, text=True,  # noqa: S603
                          timeout=120, cwd=Path(__file__).resolve().parents[2], env=env, check=True)
    limited, heaps = done.stdout.split()
    return limited == "1", int(heaps)


def test_the_arena_cap_holds_threads_to_the_given_arenas() -> None:
    """Eight threads that allocate get arenas of their own under glibc's default (8 per core); under
    `limit_malloc_arenas(1)` they all share the main one — the memory each arena keeps is not multiplied."""
    limited, heaps = _arenas_after_eight_threads(1)
    assert limited and heaps == 1
    default_limited, default_heaps = _arenas_after_eight_threads(0)
    assert not default_limited and default_heaps > 1
    assert default_arena_max() >= 2


def test_malloc_stats_count_live_and_freed_memory() -> None:
    """`malloc_stats` (what CONSENTGATE_MALLOC_STATS logs at each trim) tells live C allocations from
    freed ones: a held 64 MB block is in use, and no longer once freed."""
    from gateway.app import malloc_stats

    before = malloc_stats()
    assert before is not None, "glibc's mallinfo2 is missing"
    block = np.ones(8 * 2**20)  # 64 MB through malloc (numpy's data buffers)
    held = malloc_stats()
    assert held is not None and held["in_use"] - before["in_use"] >= 63
    del block
    freed = malloc_stats()
    assert freed is not None and held["in_use"] - freed["in_use"] >= 63


def test_the_trimmer_logs_heap_stats_when_asked(tmp_path: Path) -> None:
    import json

    path = tmp_path / "malloc.jsonl"
    stop = start_malloc_trimmer(0.02, str(path))
    assert stop is not None
    try:
        deadline = time.monotonic() + 10
        while (not path.exists() or len(path.read_text().splitlines()) < 2) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) >= 2
    assert {"t", "anon_before", "anon_after", "in_use", "free", "mmapped", "heap"} <= set(rows[0])
    assert rows[0]["in_use"] > 0 and rows[0]["anon_after"] > 0
