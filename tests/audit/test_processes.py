"""Separate processes: kill -9 in the middle of concurrent appends loses nothing that was
acknowledged, and two processes appending to one database make one gapless, verifiable log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine

from gateway.audit import AuditLog, generate_signing_key, load_signer
from gateway.audit.testing import assert_log_consistent

from .helpers import ORIGIN

pytestmark = pytest.mark.db
APPENDER = Path(__file__).with_name("appender.py")
ROOT = Path(__file__).resolve().parents[2]


def spawn(db_url: str, prefix: str, key: Path, threads: int, per_thread: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(  # noqa: S603 - our own script, fixed arguments
        [sys.executable, str(APPENDER), db_url, prefix, str(key), ORIGIN, str(threads), str(per_thread)],
        stdout=subprocess.PIPE, text=True, env=env,
    )


def parse(lines: list[str]) -> dict[int, str]:
    acked: dict[int, str] = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 2:  # a line cut by the kill is not an acknowledgement
            acked[int(parts[0])] = parts[1]
    return acked


def test_kill_9_loses_no_acknowledged_append(db_url: str, prefix: str, engine: Engine,
                                             tmp_path: Path) -> None:
    key = tmp_path / "audit.pem"
    generate_signing_key(key)
    child = spawn(db_url, prefix, key, threads=8, per_thread=100_000)
    assert child.stdout is not None
    lines: list[str] = []
    while len(lines) < 300:
        line = child.stdout.readline()
        assert line, "appender exited early"
        lines.append(line)
    os.kill(child.pid, signal.SIGKILL)
    lines += child.stdout.readlines()
    child.wait()
    acked = parse(lines)
    assert len(acked) >= 300
    signer = load_signer(key, ORIGIN)
    log = AuditLog(engine, signer, origin=ORIGIN, table_prefix=prefix, checkpoint_interval_ms=0)
    try:
        head = log.head()
        assert max(acked) < head.tree_size
        for index, leaf in acked.items():
            assert log.entry(index).leaf_hash.hex() == leaf
        assert_log_consistent(log)
        # The survivor picks the tree up where the dead process left it.
        assert log.append({"kind": "decision"}).index == head.tree_size
        assert_log_consistent(log)
    finally:
        log.close()


def test_two_processes_share_one_gapless_log(db_url: str, prefix: str, engine: Engine,
                                             tmp_path: Path) -> None:
    key = tmp_path / "audit.pem"
    generate_signing_key(key)
    children = [spawn(db_url, prefix, key, threads=4, per_thread=60) for _ in range(2)]
    outputs = [c.communicate(timeout=240)[0] for c in children]
    assert [c.returncode for c in children] == [0, 0]
    a, b = (parse(o.splitlines()) for o in outputs)
    assert not set(a) & set(b)
    assert sorted({**a, **b}) == list(range(480))
    report = assert_log_consistent(engine, load_signer(key, ORIGIN).vkey, table_prefix=prefix)
    assert report.entries == 480 and report.checkpoints >= 1


def test_kill_9_of_one_writer_while_another_goes_on(db_url: str, prefix: str, engine: Engine,
                                                    tmp_path: Path) -> None:
    # Two processes append at full rate; one is killed mid-batch. The other goes on over the
    # dead one's last commit (catching up its leaves), and everything either acknowledged is in
    # the log at the index it was told, with its leaf hash.
    key = tmp_path / "audit.pem"
    generate_signing_key(key)
    first, second = (spawn(db_url, prefix, key, threads=4, per_thread=100_000) for _ in range(2))
    assert first.stdout is not None and second.stdout is not None
    lines_a = [first.stdout.readline() for _ in range(200)]
    os.kill(first.pid, signal.SIGKILL)
    lines_a += first.stdout.readlines()
    first.wait()
    lines_b = [second.stdout.readline() for _ in range(400)]  # goes on after the kill
    os.kill(second.pid, signal.SIGKILL)
    lines_b += second.stdout.readlines()
    second.wait()
    a, b = parse(lines_a), parse(lines_b)
    assert len(a) >= 200 and len(b) >= 400 and not set(a) & set(b)
    log = AuditLog(engine, load_signer(key, ORIGIN), origin=ORIGIN, table_prefix=prefix, checkpoint_interval_ms=0)
    try:
        assert max({**a, **b}) < log.head().tree_size
        for index, leaf in {**a, **b}.items():
            assert log.entry(index).leaf_hash.hex() == leaf
        log.publish_checkpoint()
        assert_log_consistent(log)
    finally:
        log.close()
