"""Why: `gateway.audit.sqlite` is the log on a bare sqlite3 connection (the CLI's fast path, #22.6) and
must be indistinguishable from the SQLAlchemy one: every read returns what `LogReader` returns, the
verifier reports what `verify_database` reports (tampered logs too), an append writes the very rows
`AuditLog.append_in` + `close()` write, and appends through both interleave — across threads, under
SQLite's lock — into one log that verifies."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from gateway.audit import AuditLog, CheckpointSigner, verify_database
from gateway.audit.errors import AuditAppendError
from gateway.audit.sqlite import SqliteLog, connect, verify_sqlite

from .helpers import ORIGIN, LogFactory, decision, sql

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture(autouse=True)
def _sqlite_only(db_url: str) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("the sqlite3 path is for SQLite files")


def _path(engine: Engine) -> str:
    return str(engine.url.database)


def _populated(make_log: LogFactory) -> AuditLog:
    """60 decisions: postings for the first 25 only, a checkpoint at 40, 20 entries after it."""
    log = make_log(checkpoint_every=40, index_interval_ms=0)
    log.append_many([decision(i) for i in range(40)])
    log.append_many([decision(i, subjects=[f"subj-{i % 4}"]) for i in range(40, 60)])
    log.index_pending(25)
    return log


QUERIES: list[dict[str, Any]] = [
    {}, {"limit": 7}, {"limit": 7, "cursor": "6"}, {"descending": True, "limit": 9}, {"tenant": "acme"},
    {"tenant": "globex", "limit": 5, "cursor": "20"}, {"tenant": "acme", "descending": True, "limit": 4},
    {"subject": "subj-1"}, {"subject": "subj-2", "kind": "decision", "limit": 3, "cursor": "30"},
    {"decision": "deny", "use": "img2img"}, {"decision_id": "00000000000000000000000000000007"},
    {"decision_id": "0000000000000000000000000000002e"}, {"kind": "grant"},
    {"since": "2026-11-26T12:00:10Z", "until": "2026-11-26T12:00:50Z", "limit": 6},
    {"tenant": "acme", "subject": "subj-3", "descending": True, "cursor": "58"},
]


@pytest.mark.parametrize("query", QUERIES)
def test_query_returns_what_log_reader_returns(make_log: LogFactory, engine: Engine, prefix: str,
                                               query: dict[str, Any]) -> None:
    log = _populated(make_log)
    lite = SqliteLog(connect(_path(engine), readonly=True), prefix=prefix)
    page, cursor = log.query(**query)
    lite_page, lite_cursor = lite.query(**query)
    assert [e.as_dict() for e in lite_page] == [e.as_dict() for e in page]
    assert lite_cursor == cursor
    assert lite.receipts([e.index for e in page]) == log.receipts([e.index for e in page])
    assert lite.head() == log.head()
    assert lite.latest_checkpoint() == log.latest_checkpoint()


def test_consistency_proofs_are_log_readers(make_log: LogFactory, engine: Engine, prefix: str) -> None:
    """The witness's read: every consistency proof (empty and equal sizes too) and the refusal of a size the
    log does not have, as `LogReader` gives them."""
    from gateway.audit import ProofError

    log = _populated(make_log)
    lite = SqliteLog(connect(_path(engine), readonly=True), prefix=prefix)
    for first, second in [(0, 0), (0, 7), (1, 1), (3, 60), (13, 40), (32, 33), (59, 60), (60, 60)]:
        assert lite.consistency_proof(first, second) == log.reader.consistency_proof(first, second), (first, second)
    with pytest.raises(ProofError) as theirs:
        log.reader.consistency_proof(3, 61)
    with pytest.raises(ProofError) as ours:
        lite.consistency_proof(3, 61)
    assert str(ours.value) == str(theirs.value)


def test_query_refuses_what_log_reader_refuses(make_log: LogFactory, engine: Engine, prefix: str) -> None:
    log = _populated(make_log)
    lite = SqliteLog(connect(_path(engine), readonly=True), prefix=prefix)
    bad_ones: list[dict[str, Any]] = [{"cursor": "x"}, {"cursor": "-1"}, {"since": "yesterday"}]
    for bad in bad_ones:
        with pytest.raises(ValueError) as theirs:
            log.query(**bad)
        with pytest.raises(ValueError) as ours:
            lite.query(**bad)
        assert str(ours.value) == str(theirs.value)


def test_verify_reports_what_verify_database_reports(make_log: LogFactory, engine: Engine, prefix: str,
                                                     signer: CheckpointSigner) -> None:
    log = _populated(make_log)
    log.publish_checkpoint()

    def both() -> dict[str, Any]:
        theirs = verify_database(engine, signer.vkey, table_prefix=prefix).as_dict()
        assert verify_sqlite(_path(engine), signer.vkey, table_prefix=prefix).as_dict() == theirs
        return theirs

    assert both()["ok"]
    other = CheckpointSigner.generate(ORIGIN)
    assert not verify_sqlite(_path(engine), other.vkey, table_prefix=prefix).ok
    tamper = [
        "DELETE FROM {p}lookup WHERE idx = 3 AND key LIKE 't:%'",  # a posting gone
        "INSERT INTO {p}lookup (key, idx) VALUES ('t:mallory', 4)",  # a posting forged
        "UPDATE {p}entries SET record = replace(record, 'allow', 'deny') WHERE idx = 12",  # a record rewritten
        "UPDATE {p}entries SET tenant = 'mallory' WHERE idx = 50",  # a query column
        "DELETE FROM {p}checkpoints WHERE tree_size = 60",  # the tail uncovered
    ]
    for statement in tamper:
        with engine.begin() as conn:
            conn.execute(sql(statement, prefix))
        assert not both()["ok"]


def _rows(path: str, prefix: str) -> dict[str, list[Any]]:
    conn = sqlite3.connect(path)
    try:
        out = {}
        for table, order in (("head", "id"), ("entries", "idx"), ("subjects", "idx, subject_id"), ("nodes", "nid"),
                             ("lookup", "key, idx"), ("lookup_state", "id")):
            out[table] = conn.execute(f"SELECT * FROM {prefix}{table} ORDER BY {order}").fetchall()  # noqa: S608
        # published_at is the signing time; the note is deterministic (Ed25519)
        out["checkpoints"] = conn.execute(f"SELECT tree_size, root_hash, note FROM {prefix}checkpoints "  # noqa: S608
                                          f"ORDER BY tree_size").fetchall()
        return out
    finally:
        conn.close()


def _copy(src: str, dst: Path) -> str:
    source, target = sqlite3.connect(src), sqlite3.connect(dst)
    source.backup(target)
    source.close()
    target.close()
    return str(dst)


def _lite_append(path: str, prefix: str, records: list[dict[str, Any]], signer: CheckpointSigner) -> list[Any]:
    lite = SqliteLog(connect(path, readonly=False), origin=ORIGIN, prefix=prefix)
    lite.conn.execute("BEGIN IMMEDIATE")
    try:
        out = lite.append_in(records)
    except BaseException:
        lite.conn.execute("ROLLBACK")
        raise
    lite.conn.execute("COMMIT")
    lite.finish(signer)
    lite.conn.close()
    return out


def test_append_writes_the_rows_that_audit_log_writes(make_log: LogFactory, engine: Engine, prefix: str,
                                                      signer: CheckpointSigner, tmp_path: Path) -> None:
    """The same records after the same log, through `AuditLog.append_in` + `close()` on one copy and
    `SqliteLog.append_in` + `finish()` on the other: every row the same, byte for byte."""
    log = _populated(make_log)
    log.close()
    theirs, ours = _copy(_path(engine), tmp_path / "a.db"), _copy(_path(engine), tmp_path / "b.db")
    records = [decision(100 + i, subjects=["subj-x", f"subj-{i}"]) for i in range(3)]
    records.append({"kind": "grant", "subjects": ["subj-9"], "tenant": "operator", "actor": "cli",
                    "created_at": "2026-12-07T17:00:00.000001Z", "grant": {"id": "g1", "uses": ["txt2img"]}})
    engine_a = create_engine(f"sqlite:///{theirs}")
    log_a = AuditLog(engine_a, signer, origin=ORIGIN, table_prefix=prefix)  # timer and indexer as the CLI's
    with engine_a.begin() as conn:
        results = log_a.append_in(conn, records)
    log_a.close()
    engine_a.dispose()
    appended = _lite_append(ours, prefix, records, signer)
    assert appended == [(r.index, r.leaf_hash) for r in results]
    assert _rows(ours, prefix) == _rows(theirs, prefix)
    assert verify_sqlite(ours, signer.vkey, table_prefix=prefix).ok


def test_append_refuses_without_transaction_and_wrong_origin(make_log: LogFactory, engine: Engine,
                                                             prefix: str) -> None:
    _populated(make_log)
    lite = SqliteLog(connect(_path(engine), readonly=False), origin=ORIGIN, prefix=prefix)
    with pytest.raises(AuditAppendError, match="transaction"):
        lite.append_in([decision(1)])
    other = SqliteLog(lite.conn, origin="another.origin/log", prefix=prefix)
    lite.conn.execute("BEGIN IMMEDIATE")
    with pytest.raises(Exception, match="not 'another.origin/log'"):
        other.append_in([decision(1)])
    lite.conn.execute("ROLLBACK")
    assert lite.head().tree_size == 60


def test_damaged_frontier_refuses_the_append(make_log: LogFactory, engine: Engine, prefix: str) -> None:
    _populated(make_log)
    with engine.begin() as conn:
        conn.execute(sql("UPDATE {p}nodes SET hash = zeroblob(32) WHERE nid = 5",  # (level 5, 0): the frontier of 60
                         prefix))
    lite = SqliteLog(connect(_path(engine), readonly=False), origin=ORIGIN, prefix=prefix)
    lite.conn.execute("BEGIN IMMEDIATE")
    with pytest.raises(AuditAppendError, match="damaged"):
        lite.append_in([decision(1)])
    lite.conn.execute("ROLLBACK")


def test_appends_through_both_paths_at_once_make_one_log(make_log: LogFactory, engine: Engine, prefix: str,
                                                         signer: CheckpointSigner) -> None:
    """The gateway's group commit appending in threads while CLI-style sqlite3 appends (each its own
    connection, transaction and final checkpoint) run beside it: no fork, no gap, every entry once."""
    log = make_log(checkpoint_every=16, checkpoint_interval_ms=50, index_interval_ms=20)
    log.append(decision(0))
    errors: list[BaseException] = []

    def gateway(worker: int) -> None:
        try:
            for i in range(40):
                log.append(decision(1000 * worker + i))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    def cli() -> None:
        try:
            for i in range(15):
                _lite_append(_path(engine), prefix, [decision(5000 + 2 * i), decision(5001 + 2 * i)], signer)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=gateway, args=(w,)) for w in (1, 2)] + [threading.Thread(target=cli)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    log.close()
    with engine.connect() as conn:
        ids = [r[0] for r in conn.execute(text(f"SELECT decision_id FROM {prefix}entries ORDER BY idx"))]  # noqa: S608
    assert len(ids) == 1 + 80 + 30 == len(set(ids))
    report = verify_sqlite(_path(engine), signer.vkey, table_prefix=prefix)
    assert report.ok, report.message
    assert verify_database(engine, signer.vkey, table_prefix=prefix).as_dict() == report.as_dict()


def test_finish_is_best_effort_like_close(make_log: LogFactory, engine: Engine, prefix: str,
                                          signer: CheckpointSigner) -> None:
    """The appends are committed when `finish` runs: a signer that fails leaves them uncovered (logged, not
    raised, as `AuditLog.close` does), and the next `finish` covers them."""
    _populated(make_log).close()

    def broken(_: bytes) -> bytes:
        raise RuntimeError("the signing key is unavailable")

    failing = CheckpointSigner(ORIGIN, signer.public_key_bytes, broken)
    _lite_append(_path(engine), prefix, [decision(500)], failing)
    lite = SqliteLog(connect(_path(engine), readonly=False), origin=ORIGIN, prefix=prefix)
    head = lite.head()
    assert head.tree_size == 61 and head.checkpoint_size < 61 and lite.indexed_size() == 61
    assert not verify_sqlite(_path(engine), signer.vkey, table_prefix=prefix).ok  # uncovered
    lite.finish(signer)
    assert lite.head().checkpoint_size == 61
    assert verify_sqlite(_path(engine), signer.vkey, table_prefix=prefix).ok


def _exported(out: Path) -> dict[str, Any]:
    """The export's files: entries, key and checkpoints byte for byte (the last checkpoint's `published_at` is its
    signing time), the manifest without its `exported_at`."""
    import json

    manifest = json.loads((out / "manifest.json").read_text())
    manifest.pop("exported_at")
    checkpoints = [json.loads(line) for line in (out / "checkpoints.jsonl").read_text().splitlines()]
    return {"entries.jsonl": (out / "entries.jsonl").read_bytes(),
            "verifier.vkey": (out / "verifier.vkey").read_bytes(),
            "checkpoints": [{**c, "published_at": None} for c in checkpoints[-1:]] + checkpoints[:-1],
            "checkpoints.jsonl": (out / "checkpoints.jsonl").read_bytes().rsplit(b"\n", 2)[0], "manifest": manifest}


@pytest.mark.parametrize("covered", [False, True])
def test_export_writes_the_files_export_log_writes(make_log: LogFactory, engine: Engine, prefix: str,
                                                   signer: CheckpointSigner, tmp_path: Path, covered: bool) -> None:
    """`export_sqlite` on one copy, `export_log(AuditLog)` on the other: the same checkpoint signed first (or
    none when one covers the head already) and the same files — entries (several subjects per entry, entries
    without any), checkpoints, key, manifest — byte for byte but for the signing and export times; the export
    verifies."""
    from gateway.audit import export_log, verify_export
    from gateway.audit.export import export_sqlite

    log = _populated(make_log)
    log.append_many([decision(60 + i, subjects=["subj-b", "subj-a", f"subj-{i}"]) for i in range(5)])
    if covered:
        log.publish_checkpoint()
    log.close()
    theirs, ours = _copy(_path(engine), tmp_path / "a.db"), _copy(_path(engine), tmp_path / "b.db")
    engine_a = create_engine(f"sqlite:///{theirs}")
    log_a = AuditLog(engine_a, signer, origin=ORIGIN, table_prefix=prefix)
    summary_a = export_log(log_a, tmp_path / "a")
    log_a.close()
    engine_a.dispose()
    lite = SqliteLog(connect(ours, readonly=False), origin=ORIGIN, prefix=prefix)
    summary_b = export_sqlite(lite, tmp_path / "b", signer)
    lite.conn.close()
    assert {**summary_b.as_dict(), "path": ""} == {**summary_a.as_dict(), "path": ""}
    assert _exported(tmp_path / "b") == _exported(tmp_path / "a")
    assert _rows(ours, prefix) == _rows(theirs, prefix)  # the same checkpoint published (or none)
    if covered:
        a, b = (tmp_path / "a" / "checkpoints.jsonl").read_bytes(), (tmp_path / "b" / "checkpoints.jsonl").read_bytes()
        assert a == b
    assert b'"subjects":["subj-0","subj-a","subj-b"]' in (tmp_path / "b" / "entries.jsonl").read_bytes()
    assert verify_export(tmp_path / "b", signer.vkey).ok
