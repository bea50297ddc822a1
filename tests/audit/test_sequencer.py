"""The batch writer (issue #21.1): one transaction per batch on the log's own connection, the
frontier caught up from the leaves another writer appended, a broken connection replaced, and
on PostgreSQL callers answered only after the flush barrier that makes their commit durable."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import Engine

from gateway.audit import AuditAppendError, AuditLog, CheckpointSigner
from gateway.audit import log as log_module
from gateway.audit.testing import assert_log_consistent

from .helpers import ORIGIN, LogFactory, decision

pytestmark = pytest.mark.db


def test_a_writer_catches_up_from_the_leaves_another_appended(make_log: LogFactory,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = make_log(checkpoint_every=1000), make_log(checkpoint_every=1000)
    a.append(decision(0))
    for i in range(5):
        b.append(decision(1 + i))
    reloads: list[int] = []
    original = AuditLog._raw_nodes

    def spy(self: AuditLog, cur: object, ids: object) -> object:
        reloads.append(1)
        return original(self, cur, ids)  # type: ignore[arg-type]

    monkeypatch.setattr(AuditLog, "_raw_nodes", spy)
    assert a.append(decision(6)).index == 6
    assert reloads == []  # five leaves read back and pushed, no frontier reload
    # Further behind than the catch-up window: the frontier nodes are read back instead.
    monkeypatch.setattr(log_module, "_CATCH_UP", 2)
    for i in range(3):
        b.append(decision(7 + i))
    assert a.append(decision(10)).index == 10
    assert reloads == [1]
    a.publish_checkpoint()
    assert assert_log_consistent(a).entries == 11


def test_a_broken_writer_connection_fails_its_batch_and_is_replaced(make_log: LogFactory) -> None:
    log = make_log(checkpoint_every=1000)
    log.append(decision(0))
    assert log._writer_conn is not None
    log._writer_conn.driver_connection.close()  # the database went away under the writer
    with pytest.raises(AuditAppendError):
        log.append(decision(1))
    assert log.append(decision(2)).index == 1  # a new connection, no gap
    log.publish_checkpoint()
    assert assert_log_consistent(log).entries == 2


def test_close_returns_the_writer_connection(make_log: LogFactory) -> None:
    log = make_log()
    log.append(decision(0))
    assert log._writer_conn is not None
    log.close()
    assert log._writer_conn is None and log._flush_conn is None
    with pytest.raises(AuditAppendError):
        log.append(decision(1))


def _new_log(engine: Engine, signer: CheckpointSigner, prefix: str, *, checkpoint_every: int = 1000) -> AuditLog:
    """A log with its tables, checkpoints only when `checkpoint_every` entries call for one."""
    log = AuditLog(engine, signer, origin=ORIGIN, table_prefix=prefix, checkpoint_interval_ms=0,
                   checkpoint_every=checkpoint_every)
    log.create_tables()
    return log


def _postgres_only(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("the flush barrier is PostgreSQL's (SQLite commits are durable when they return)")


def test_postgres_callers_are_answered_only_after_the_flush_barrier(engine: Engine, signer: CheckpointSigner,
                                                                   prefix: str) -> None:
    _postgres_only(engine)
    log = _new_log(engine, signer, prefix)
    batches: dict[int, int] = {}  # index -> the commit number its batch must see flushed
    write_batch = log._write_batch

    def spy(items):  # type: ignore[no-untyped-def]
        first, checkpoint, number = write_batch(items)
        for i in range(len(items)):
            batches[first + i] = number
        return first, checkpoint, number

    log._write_batch = spy  # type: ignore[method-assign]
    try:
        got: list[int] = []
        lock = threading.Lock()

        def work(t: int) -> None:
            for i in range(20):
                r = log.append(decision(t * 100 + i))
                with lock:
                    # answered only once a barrier covering its batch's commit has finished
                    assert batches[r.index] >= 1 and log._flushed >= batches[r.index]
                    got.append(r.index)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert sorted(got) == list(range(80))
        assert log._flushed == log._committed == max(batches.values())
    finally:
        log.close()


def test_postgres_a_lone_batch_carries_its_own_barrier(engine: Engine, signer: CheckpointSigner,
                                                      prefix: str) -> None:
    # Nobody queued behind the batch: the barrier rides in its second message (after the COMMIT
    # that released the lock), and no second connection is opened.
    _postgres_only(engine)
    log = _new_log(engine, signer, prefix)
    try:
        for i in range(5):
            assert log.append(decision(i)).index == i
        assert log._committed == 5 and log._flushed == 5
        assert log._flush_conn is None
    finally:
        log.close()


def test_postgres_a_failed_barrier_fails_closed(engine: Engine, signer: CheckpointSigner, prefix: str) -> None:
    _postgres_only(engine)
    log = _new_log(engine, signer, prefix)
    try:
        log.append(decision(0))

        def broken(mine: int) -> None:
            raise OSError("flush failed")

        log._flush = broken  # type: ignore[method-assign]
        with pytest.raises(AuditAppendError, match="not confirmed durable"):
            log.append(decision(1))
        del log._flush  # the class's own barrier again
        # The unconfirmed entry may exist (it committed; only its durability was not confirmed):
        # the log stays gapless and verifiable either way.
        nxt = log.append(decision(2)).index
        assert nxt == log.head().tree_size - 1
        log.publish_checkpoint()
        assert assert_log_consistent(log).entries == nxt + 1
    finally:
        log.close()


def test_postgres_a_batch_that_signs_commits_synchronously(engine: Engine, signer: CheckpointSigner,
                                                           prefix: str) -> None:
    # A signed checkpoint must never be visible before the entries it covers are durable.
    _postgres_only(engine)
    log = _new_log(engine, signer, prefix, checkpoint_every=2)
    try:
        first = log.append(decision(0))
        assert first.checkpoint is None and log._committed == 1
        second = log.append(decision(1))
        assert second.checkpoint is not None and second.checkpoint["tree_size"] == 2
        assert log._committed == 1  # the signing batch was not an asynchronous commit
    finally:
        log.close()


def test_sqlite_wal_is_checkpointed_beside_the_writer(make_log: LogFactory, engine: Engine) -> None:
    # The batch writer never checkpoints the WAL itself (a checkpoint syncs the file while every
    # caller of the batch waits); a thread does, and the pooled connection gets SQLite's default back.
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's WAL")
    import os
    import time

    database = engine.url.database
    assert database
    log = make_log(checkpoint_every=100_000)
    log.append(decision(0))
    assert log._writer_conn is not None
    cur = log._writer_conn.cursor()
    cur.execute("PRAGMA wal_autocheckpoint")
    assert cur.fetchone()[0] == 0
    before = os.path.getsize(database)
    log.append_many([decision(i) for i in range(1, 2001)])
    deadline = time.monotonic() + 10
    while os.path.getsize(database) <= before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.path.getsize(database) > before  # pages copied back from the WAL by the thread
    writer = log._writer_conn.driver_connection
    log.close()
    assert writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000


def test_sqlite_a_long_wal_is_rewound_by_the_writer(make_log: LogFactory, engine: Engine,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # Past the mark the checkpoint thread asks the batch writer to checkpoint once between two
    # batches (so the next batch starts the WAL file over); the request is served and cleared.
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's WAL")
    import time

    monkeypatch.setattr(log_module, "_WAL_RESTART_PAGES", 1)
    log = make_log(checkpoint_every=100_000)
    log.append_many([decision(i) for i in range(200)])
    deadline = time.monotonic() + 10
    while not log._wal_restart_due and time.monotonic() < deadline:
        time.sleep(0.02)
    assert log._wal_restart_due
    served: list[int] = []
    original = AuditLog._wal_restart

    def spy(self: AuditLog) -> None:
        served.append(1)
        original(self)

    monkeypatch.setattr(AuditLog, "_wal_restart", spy)
    log.append(decision(200))
    assert served == [1]
    assert log.append(decision(201)).index == 201
    log.publish_checkpoint()
    assert assert_log_consistent(log).entries == 202


def test_batch_stats_count_what_the_group_commit_wrote(make_log: LogFactory) -> None:
    # bench/audit.py reports the batch size achieved from these counters.
    log = make_log(checkpoint_every=1000)
    assert log.batch_stats() == (0, 0)
    log.append(decision(0))
    log.append_many([decision(i) for i in range(1, 4)])
    assert log.batch_stats() == (2, 4)
    threads = [threading.Thread(target=lambda t=t: [log.append(decision(10 * t + i)) for i in range(5)])
               for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    batches, entries = log.batch_stats()
    assert entries == 24 and 2 + 5 <= batches <= 2 + 20  # 4 writers: at most 4 appends per batch


def test_postgres_records_that_need_quoting_are_stored_byte_for_byte(engine: Engine, signer: CheckpointSigner,
                                                                     prefix: str) -> None:
    # The batch sends each record as an SQL literal (libpq's quoting: doubled quotes, and E'...'
    # with doubled backslashes when the text has one): the stored text must be the canonical bytes.
    _postgres_only(engine)
    log = _new_log(engine, signer, prefix)
    try:
        odd = ["it's", 'a "quote"', "back\\slash \\x00 \\\\", "é ü 漢 \u2028 😀", "'; DROP TABLE x; --", "$1 %s ?"]
        results = log.append_many([decision(i, note=text) for i, text in enumerate(odd)])
        for r, text in zip(results, odd, strict=True):
            assert log.entry(r.index).record["note"] == text
        log.publish_checkpoint()
        assert assert_log_consistent(log).entries == len(odd)  # re-hashes every stored record
    finally:
        log.close()


def test_postgres_a_failed_batch_statement_fails_its_callers_and_the_log_recovers(
        engine: Engine, signer: CheckpointSigner, prefix: str) -> None:
    # A statement of the batch's message fails on the server (here: its prepared statement is
    # gone): the callers get AuditAppendError, the connection with its open transaction and the
    # head lock is dropped, and the next batch goes on from the head without a gap.
    _postgres_only(engine)
    log = _new_log(engine, signer, prefix)
    try:
        log.append(decision(0))
        assert log._writer_conn is not None
        log._writer_conn.driver_connection.execute(f"DEALLOCATE {log._prepared}")
        with pytest.raises(AuditAppendError, match="does not exist"):
            log.append(decision(1))
        assert log._writer_conn is None
        assert log.append(decision(2)).index == 1
        log.publish_checkpoint()  # takes the head lock: it was released with the dropped connection
        assert assert_log_consistent(log).entries == 2
    finally:
        log.close()


def test_pgwire_reads_bytea_in_hex_output_only() -> None:
    from gateway.audit.pgwire import bytea

    assert bytea(b"\\x00ff10") == b"\x00\xff\x10"
    with pytest.raises(ValueError, match="hex output"):
        bytea(b"\\000")  # the escape output format: not what the server is asked for


def test_postgres_append_in_commits_and_rolls_back_with_the_callers_transaction(
        engine: Engine, signer: CheckpointSigner, prefix: str) -> None:
    # `append_in` writes through the caller's SQLAlchemy connection (psycopg binds the batch
    # statement's parameters, the records as a text array): the rows must be the same as a batch's.
    _postgres_only(engine)
    log = _new_log(engine, signer, prefix)
    try:
        log.append(decision(0))
        with engine.begin() as conn:
            got = log.append_in(conn, [decision(1, note="it's \\ \"x\""), decision(2)])
        assert [r.index for r in got] == [1, 2]
        with pytest.raises(RuntimeError), engine.begin() as conn:
            log.append_in(conn, [decision(3)])
            raise RuntimeError("the caller's own write failed")
        assert log.append(decision(4)).index == 3  # the rolled-back entry left no gap
        assert log.entry(1).record["note"] == "it's \\ \"x\""
        log.publish_checkpoint()
        assert assert_log_consistent(log).entries == 4
    finally:
        log.close()
