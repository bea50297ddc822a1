"""AuditLog against a real database: appends, checkpoints, proofs from stored nodes, queries,
fault hooks, and tamper detection by the verifier (each stored field of an entry)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine

from gateway.audit import (
    AuditAppendError,
    AuditConfigError,
    AuditLog,
    AuditNotFound,
    CheckpointSigner,
    canonical_json,
    export_log,
    leaf_hash,
    verify_consistency,
    verify_database,
    verify_export,
    verify_inclusion,
)
from gateway.audit.errors import ProofError
from gateway.audit.testing import assert_log_consistent

from .helpers import ORIGIN, LogFactory, decision, sql

pytestmark = pytest.mark.db


def test_append_assigns_contiguous_indexes_and_leaf_hashes(make_log: LogFactory) -> None:
    log = make_log(checkpoint_every=1000)
    results = [log.append(decision(i)) for i in range(5)]
    assert [r.index for r in results] == [0, 1, 2, 3, 4]
    assert results[3].leaf_hash == leaf_hash(canonical_json(decision(3))).hex()
    assert all(r.checkpoint is None for r in results)
    entry = log.entry(3)
    assert entry.checkpoint_pending and entry.inclusion_proof is None
    with pytest.raises(ProofError, match="pending"):
        log.inclusion_proof(3)
    assert entry.to_record()["audit"] == {"index": 3, "leaf_hash": results[3].leaf_hash, "checkpoint": None}
    checkpoint = log.publish_checkpoint()
    entry = log.entry(3)
    assert entry.checkpoint == checkpoint and entry.inclusion_proof is not None
    verify_inclusion(3, 5, entry.leaf_hash, entry.inclusion_proof, checkpoint.root_hash)
    assert entry.to_record()["audit"]["checkpoint"]["tree_size"] == 5
    assert_log_consistent(log)


def test_checkpoint_every_n_entries_is_signed_in_the_crossing_batch(make_log: LogFactory) -> None:
    log = make_log(checkpoint_every=4)
    results = [log.append(decision(i)) for i in range(9)]
    covered = [r.index for r in results if r.checkpoint is not None]
    assert covered == [3, 7]
    assert results[7].checkpoint is not None and results[7].checkpoint["tree_size"] == 8
    latest = log.latest_checkpoint()
    assert latest is not None and latest.tree_size == 8


def test_timer_publishes_a_checkpoint(make_log: LogFactory) -> None:
    log = make_log(checkpoint_every=10_000, checkpoint_interval_ms=20)
    log.append(decision(0))
    done = threading.Event()
    for _ in range(500):
        latest = log.latest_checkpoint()
        if latest is not None and latest.tree_size == 1:
            break
        done.wait(0.02)
    latest = log.latest_checkpoint()
    assert latest is not None and latest.tree_size == 1


def test_proofs_from_stored_nodes_for_every_size_up_to_64(make_log: LogFactory) -> None:
    log = make_log(checkpoint_every=1000)
    log.append_many([decision(i) for i in range(64)])
    leaves = [log.entry(i).leaf_hash for i in range(64)]
    from gateway.audit import MemoryTree

    tree = MemoryTree(leaves)
    roots = [tree.root(n) for n in range(65)]
    for size in range(1, 65):
        assert log.reader.root_at(size) == roots[size]
        for index in range(size):
            proof = log.inclusion_proof(index, size)
            assert proof.leaf_hash == leaves[index]
            verify_inclusion(index, size, leaves[index], proof.hashes, roots[size])
    for second in range(65):
        for first in range(second + 1):
            cproof = log.consistency_proof(first, second)
            assert (cproof.first_root, cproof.second_root) == (roots[first], roots[second])
            verify_consistency(first, second, roots[first], roots[second], cproof.hashes)


def test_concurrent_appends_are_gapless_and_verify(make_log: LogFactory) -> None:
    log = make_log(checkpoint_every=32)
    got: list[int] = []
    lock = threading.Lock()

    def work(t: int) -> None:
        for i in range(40):
            r = log.append(decision(t * 100 + i))
            with lock:
                got.append(r.index)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(got) == list(range(320))
    log.publish_checkpoint()
    report = assert_log_consistent(log)
    assert (report.entries, report.uncovered) == (320, 0)


class _CountingLog(AuditLog):
    """Counts transactions and their sizes (the group-commit tests need the batches)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.batches: list[int] = []

    def _commit(self, batch):  # type: ignore[no-untyped-def]
        self.batches.append(sum(len(p.items) for p in batch))
        super()._commit(batch)


def _hammer(log: AuditLog, threads: int, per_thread: int) -> tuple[list[int], list[Exception]]:
    got: list[int] = []
    errors: list[Exception] = []
    lock = threading.Lock()

    def work(t: int) -> None:
        for i in range(per_thread):
            try:
                r = log.append(decision(t * 1000 + i))
            except AuditAppendError as exc:
                with lock:
                    errors.append(exc)
            else:
                with lock:
                    got.append(r.index)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return got, errors


def test_group_commit_gathers_every_concurrent_caller(engine: Engine, signer: CheckpointSigner,
                                                     prefix: str) -> None:
    # A generous wait makes the gathering deterministic: the leader waits until all eight
    # callers have queued, so 320 appends take about 40 transactions, not 320.
    log = _CountingLog(engine, signer, origin=ORIGIN, table_prefix=prefix, checkpoint_interval_ms=0,
                       group_wait_ms=2000)
    log.create_tables()
    try:
        got, errors = _hammer(log, threads=8, per_thread=40)
        assert not errors and sorted(got) == list(range(320))
        assert sum(log.batches) == 320
        assert len(log.batches) <= 80, log.batches
        assert max(log.batches) == 8
        # A lone caller never waits for company: one transaction per append.
        before = len(log.batches)
        for i in range(5):
            log.append(decision(10_000 + i))
        assert log.batches[before:] == [1] * 5
        log.publish_checkpoint()
        assert_log_consistent(log)
    finally:
        log.close()


def test_a_failed_batch_fails_exactly_its_callers(engine: Engine, signer: CheckpointSigner,
                                                 prefix: str) -> None:
    log = _CountingLog(engine, signer, origin=ORIGIN, table_prefix=prefix, checkpoint_interval_ms=0)
    log.create_tables()
    try:
        log.faults.fail_commits = 3
        got, errors = _hammer(log, threads=8, per_thread=25)
        assert len(got) + len(errors) == 200
        assert 3 <= len(errors) <= 3 * 8  # three whole batches failed, nothing else
        assert sorted(got) == list(range(len(got)))  # and left no gap
        log.publish_checkpoint()
        assert_log_consistent(log)
    finally:
        log.close()


def test_two_log_objects_on_one_database_share_one_tree(make_log: LogFactory, engine: Engine,
                                                        signer: CheckpointSigner, prefix: str) -> None:
    a = make_log(checkpoint_every=3)
    b = make_log(checkpoint_every=3)
    for i in range(10):
        assert (a if i % 2 else b).append(decision(i)).index == i
    assert_log_consistent(engine, signer.vkey, table_prefix=prefix)


def test_queries_filter_page_and_scope(make_log: LogFactory) -> None:
    log = make_log(checkpoint_every=1000)
    log.append_many([decision(i) for i in range(30)])
    log.append({"kind": "erasure", "subjects": ["subj-9"], "created_at": "2026-11-27T00:00:00Z"})
    entries, cursor = log.query(tenant="acme", decision="deny")
    assert cursor is None
    assert [e.index for e in entries] == [i for i in range(30) if i % 2 == 0 and i % 3 == 1]
    assert [e.index for e in log.query(kind="erasure")[0]] == [30]
    assert [e.index for e in log.query(subject="subj-9")[0]] == [30]
    assert [e.index for e in log.query(subject="subj-2")[0]] == [2, 7, 12, 17, 22, 27]
    assert [e.index for e in log.query(use="face_swap", tenant="globex")[0]] == [5, 11, 17, 23, 29]
    since = log.query(since="2026-11-26T12:00:10Z", until="2026-11-26T12:00:13Z")[0]
    assert [e.index for e in since] == [10, 11, 12]
    seen: list[int] = []
    cursor = None
    while True:
        page, cursor = log.query(limit=7, cursor=cursor)
        seen += [e.index for e in page]
        if cursor is None:
            break
    assert seen == list(range(31))
    assert [e.index for e in log.query(limit=3, descending=True)[0]] == [30, 29, 28]
    assert log.entry(1, tenant="globex").record["tenant"] == "globex"
    with pytest.raises(AuditNotFound):
        log.entry(1, tenant="acme")
    with pytest.raises(AuditNotFound):
        log.entry(31)
    with pytest.raises(ValueError):
        log.query(cursor="nope")


def test_fault_hooks_fail_closed_and_leave_no_gap(make_log: LogFactory) -> None:
    log = make_log(checkpoint_every=1000)
    log.append(decision(0))
    log.faults.fail_appends = 1
    with pytest.raises(AuditAppendError):
        log.append(decision(1))
    log.faults.fail_commits = 1
    with pytest.raises(AuditAppendError):
        log.append(decision(2))
    assert log.head().tree_size == 1
    assert log.append(decision(3)).index == 1
    assert_log_consistent(log)


def test_bad_records_and_wrong_origin_are_refused(make_log: LogFactory, engine: Engine,
                                                  signer: CheckpointSigner, prefix: str) -> None:
    log = make_log()
    with pytest.raises(AuditAppendError):
        log.append({"no": "kind"})
    with pytest.raises(AuditAppendError):
        log.append({"kind": "decision", "score": float("nan")})
    assert log.head().tree_size == 0
    other = AuditLog(engine, signer, origin="other.example/log", table_prefix=prefix)
    with pytest.raises(AuditConfigError):
        other.create_tables()


ENTRY_FIELDS = [
    ("leaf_hash", "X'" + "00" * 32 + "'"),
    ("record", "'{\"kind\":\"decision\"}'"),
    ("kind", "'erasure'"),
    ("tenant", "'someone-else'"),
    ("use", "NULL"),
    ("decision", "'allow-ish'"),
    ("time_us", "0"),
]


@pytest.mark.parametrize(("column", "value"), ENTRY_FIELDS)
def test_changing_any_stored_field_names_the_entry(make_log: LogFactory, engine: Engine, prefix: str,
                                                    column: str, value: str) -> None:
    log = make_log(checkpoint_every=8, index_interval_ms=0)  # indexed here, not between tamperings
    log.append_many([decision(i) for i in range(20)])
    log.publish_checkpoint()
    while log.index_pending():
        pass
    if engine.dialect.name != "sqlite":
        value = value.replace("X'", "'\\x")
    for index in (0, 13, 19):
        with engine.begin() as conn:
            old = conn.execute(sql(f"SELECT {column} FROM {{p}}entries WHERE idx = {index}",  # noqa: S608
                                   prefix)).scalar()
            conn.execute(sql(f"UPDATE {{p}}entries SET {column} = {value} WHERE idx = {index}",  # noqa: S608
                             prefix))
        report = verify_database(engine, log.signer.vkey, table_prefix=prefix)
        assert not report.ok
        assert report.first_bad_index == index, report.message
        with engine.begin() as conn:
            conn.execute(sql(f"UPDATE {{p}}entries SET {column} = :v WHERE idx = {index}",  # noqa: S608
                             prefix), {"v": old})
        assert verify_database(engine, log.signer.vkey, table_prefix=prefix).ok


def test_subject_rows_deletions_and_rewrites_are_caught(make_log: LogFactory, engine: Engine,
                                                        prefix: str) -> None:
    # The indexer runs here, before any tampering, and not in the background: a background run
    # between two tamperings would index the tampered value (a race the loaded machine found).
    log = make_log(checkpoint_every=8, index_interval_ms=0)
    log.append_many([decision(i) for i in range(20)])
    log.publish_checkpoint()
    while log.index_pending():
        pass
    key = log.signer.vkey
    with engine.begin() as conn:
        conn.execute(sql("UPDATE {p}subjects SET subject_id = 'x' WHERE idx = 11", prefix))
    assert verify_database(engine, key, table_prefix=prefix).first_bad_index == 11
    with engine.begin() as conn:
        conn.execute(sql("UPDATE {p}subjects SET subject_id = 'subj-1' WHERE idx = 11", prefix))
        conn.execute(sql("DELETE FROM {p}subjects WHERE idx = 12", prefix))
    assert verify_database(engine, key, table_prefix=prefix).first_bad_index == 12
    with engine.begin() as conn:
        conn.execute(sql("INSERT INTO {p}subjects (idx, subject_id) VALUES (12, 'subj-2')", prefix))
        conn.execute(sql("DELETE FROM {p}entries WHERE idx = 5", prefix))
    assert verify_database(engine, key, table_prefix=prefix).first_bad_index == 5


def test_record_rewritten_with_its_leaf_hash_contradicts_tree_and_checkpoint(
        make_log: LogFactory, engine: Engine, prefix: str) -> None:
    log = make_log(checkpoint_every=8)
    log.append_many([decision(i) for i in range(20)])
    log.publish_checkpoint()
    with engine.begin() as conn:
        forged = json.loads(conn.execute(sql("SELECT record FROM {p}entries WHERE idx = 7", prefix)).scalar())
        forged["decision"] = "allow"
        data = canonical_json(forged)
        conn.execute(sql("UPDATE {p}entries SET record = :r, leaf_hash = :h, decision = 'allow' "
                         "WHERE idx = 7", prefix), {"r": data.decode(), "h": leaf_hash(data)})
    report = verify_database(engine, log.signer.vkey, table_prefix=prefix)
    # Leaf and columns agree with the forged record; the stored pair node over (6, 7) does not.
    assert not report.ok and report.first_bad_index == 6, report.message
    with pytest.raises(AssertionError, match="does not verify"):
        assert_log_consistent(log)


def test_export_verifies_offline_and_catches_edits(make_log: LogFactory, tmp_path: Path) -> None:
    log = make_log(checkpoint_every=5)
    log.append_many([decision(i) for i in range(6)])
    log.append_many([decision(i) for i in range(6, 17)])
    summary = export_log(log, tmp_path / "exp")
    assert (summary.entries, summary.checkpoints) == (17, 2)
    pub = log.signer.public_key_bytes
    report = verify_export(tmp_path / "exp", pub)
    assert report.ok and report.entries == 17 and report.checkpoints == 2, report.message
    assert not verify_export(tmp_path / "exp", CheckpointSigner.generate(ORIGIN).vkey).ok
    lines = (tmp_path / "exp" / "entries.jsonl").read_text().splitlines(keepends=True)

    def check(edited: list[str]) -> int | None:
        (tmp_path / "exp" / "entries.jsonl").write_text("".join(edited))
        return verify_export(tmp_path / "exp", pub).first_bad_index

    assert check(lines[:9] + [lines[9].replace('"tenant":"globex"', '"tenant":"acme"', 1)] + lines[10:]) == 9
    assert check(lines[:9] + [lines[9].replace('"decision":"allow"', '"decision":"deny"')] + lines[10:]) == 9
    assert check(lines[:4] + lines[5:]) == 4
    assert check(lines[:16]) == 16
    (tmp_path / "exp" / "entries.jsonl").write_text("".join(lines))
    cps = (tmp_path / "exp" / "checkpoints.jsonl").read_text()
    (tmp_path / "exp" / "checkpoints.jsonl").write_text(cps.replace("\\n6\\n", "\\n7\\n", 1))
    report = verify_export(tmp_path / "exp", pub)
    assert not report.ok and "signature" in report.message


def test_parallel_verification_agrees_with_serial(make_log: LogFactory, engine: Engine, prefix: str,
                                                  tmp_path: Path) -> None:
    log = make_log(checkpoint_every=100)
    log.append_many([decision(i) for i in range(12_000)])
    export_log(log, tmp_path / "exp")
    key = log.signer.vkey
    assert verify_database(engine, key, table_prefix=prefix, workers=2).ok
    with engine.begin() as conn:
        conn.execute(sql("UPDATE {p}entries SET tenant = 'x' WHERE idx = 11000", prefix))
    serial = verify_database(engine, key, table_prefix=prefix, workers=1)
    parallel = verify_database(engine, key, table_prefix=prefix, workers=2)
    assert serial.first_bad_index == parallel.first_bad_index == 11000
    assert verify_export(tmp_path / "exp", key, workers=2).ok


def test_verify_export_reports_a_missing_directory(tmp_path: Path) -> None:
    report = verify_export(tmp_path / "nowhere", b"\x01" * 32)
    assert not report.ok and "cannot read export" in report.message
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "manifest.json").write_text(json.dumps({"origin": ORIGIN}))
    report = verify_export(tmp_path / "half", b"\x01" * 32)
    assert not report.ok and "entries.jsonl is unreadable" in report.message


def test_decision_id_is_a_verified_query_column(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    from gateway.audit import AuditLog, CheckpointSigner, verify_database

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'a.db'}")
    signer = CheckpointSigner.generate("test/log")
    log = AuditLog(engine, signer, origin="test/log", checkpoint_every=1)
    log.create_tables()
    for i in range(3):
        log.append({"kind": "decision", "decision_id": f"d{i}", "tenant": "t", "created_at": "2026-01-01T00:00:00Z"})
    log.publish_checkpoint()
    found, _ = log.query(decision_id="d1")
    assert [e.index for e in found] == [1]
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_entries SET decision_id = 'zz' WHERE idx = 2"))
    report = verify_database(engine, signer)
    assert not report.ok and report.first_bad_index == 2
    log.close()


def test_close_publishes_a_final_checkpoint(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    from gateway.audit import AuditLog, CheckpointSigner

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'c.db'}")
    signer = CheckpointSigner.generate("test/log")
    log = AuditLog(engine, signer, origin="test/log", checkpoint_every=1000, checkpoint_interval_ms=600_000)
    log.create_tables()
    log.append({"kind": "erasure", "subjects": ["s1"], "created_at": "2026-01-01T00:00:00Z"})
    assert log.latest_checkpoint() is None  # neither N entries nor T ms reached
    log.close()
    reopened = AuditLog(engine, signer, origin="test/log")
    checkpoint = reopened.latest_checkpoint()
    assert checkpoint is not None and checkpoint.tree_size == 1
    reopened.close()
