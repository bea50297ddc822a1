"""Lookup postings (tenant, decision id, subject) are written by the indexer after the append:
queries must be complete and exact on either side of the indexed boundary, a deleted posting
must fail `audit verify` naming the entry, a forged one must not leak another tenant's entry,
and migration 0002 must give an existing log its postings."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from gateway.audit import AuditLog, CheckpointSigner, verify_database
from gateway.audit.schema import lookup_keys

from .helpers import LogFactory, decision, sql

pytestmark = pytest.mark.db


def all_pages(log: AuditLog, descending: bool = False, limit: int = 3, **filters: str) -> list[int]:
    seen: list[int] = []
    cursor = None
    while True:
        entries, cursor = log.query(cursor=cursor, limit=limit, descending=descending, **filters)
        seen.extend(e.index for e in entries)
        if cursor is None:
            return seen


def expected(records: list[dict[str, object]], **filters: str) -> list[int]:
    def keep(r: dict[str, object]) -> bool:
        for key, value in filters.items():
            if key == "subject":
                faces = r["findings"]["faces"]  # type: ignore[index]
                if value not in {m["subject_id"] for f in faces for m in f["matches"]}:  # type: ignore[index]
                    return False
            elif r.get(key) != value:
                return False
        return True

    return [i for i, r in enumerate(records) if keep(r)]


FILTERS = [{"tenant": "acme"}, {"tenant": "globex", "decision": "deny"}, {"subject": "subj-3"},
           {"subject": "subj-1", "tenant": "globex"}, {"decision_id": "0" * 31 + "7"},
           {"tenant": "acme", "use": "face_swap"}]


@pytest.mark.parametrize("indexed", [0, 7, 20, 30])
def test_queries_are_exact_on_both_sides_of_the_indexed_boundary(make_log: LogFactory, indexed: int) -> None:
    log = make_log(index_interval_ms=0)
    records = [decision(i) for i in range(30)]
    for r in records:
        log.append(r)
    if indexed:
        assert log.index_pending(max_entries=indexed) == indexed
    assert log.reader.indexed_size() == indexed
    for filters in FILTERS:
        want = expected(records, **filters)
        assert all_pages(log, **filters) == want, filters
        assert all_pages(log, descending=True, **filters) == want[::-1], filters


def test_background_indexer_catches_up(make_log: LogFactory) -> None:
    log = make_log(index_interval_ms=20)
    for i in range(50):
        log.append(decision(i))
    import time

    deadline = time.monotonic() + 10
    while log.reader.indexed_size() < 50 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert log.reader.indexed_size() == 50
    assert all_pages(log, subject="subj-2") == [i for i in range(50) if i % 5 == 2]


def test_close_indexes_what_was_appended(make_log: LogFactory) -> None:
    log = make_log(index_interval_ms=60_000)  # the background indexer would not run in time
    for i in range(30):
        log.append(decision(i))
    assert log.reader.indexed_size() == 0
    log.close()
    assert log.reader.indexed_size() == 30


def test_deleted_posting_fails_verify_and_forged_one_leaks_nothing(make_log: LogFactory, engine: Engine,
                                                                  signer: CheckpointSigner, prefix: str) -> None:
    log = make_log(index_interval_ms=0)
    for i in range(12):
        log.append(decision(i))
    log.index_pending()
    log.publish_checkpoint()
    assert verify_database(engine, signer.vkey, table_prefix=prefix).ok
    # Entry 4 is acme's; a forged posting files it under globex too.
    with engine.begin() as conn:
        conn.execute(sql("INSERT INTO {p}lookup (key, idx) VALUES ('t:globex', 4)", prefix))
    assert 4 not in all_pages(log, tenant="globex")
    report = verify_database(engine, signer.vkey, table_prefix=prefix)
    assert not report.ok and report.first_bad_index == 4 and "beyond" in report.message
    with engine.begin() as conn:
        conn.execute(sql("DELETE FROM {p}lookup WHERE key = 't:globex' AND idx = 4", prefix))
        conn.execute(sql("DELETE FROM {p}lookup WHERE key = 's:subj-3' AND idx = 8", prefix))
    assert 8 not in all_pages(log, subject="subj-3")  # what a deleted posting would hide ...
    report = verify_database(engine, signer.vkey, table_prefix=prefix)
    assert not report.ok and report.first_bad_index == 8 and "posting" in report.message  # ... is caught


def test_postings_built_in_sql_are_lookup_keys_of_the_stored_columns(make_log: LogFactory, engine: Engine,
                                                                     prefix: str) -> None:
    """The indexer builds the postings in the database (one INSERT ... SELECT); they must be exactly
    `lookup_keys` of each entry's stored columns: no tenant, no decision id, several subjects,
    non-ASCII values included."""
    log = make_log(index_interval_ms=0)
    records = [decision(i) for i in range(6)]
    records.append(decision(6, subjects=["subj-x", "subj-\u00fc\u2603"], tenant="\u00c4cme \u2603"))
    records.append({"kind": "erasure", "subjects": ["subj-9"], "actor": "cli",
                    "created_at": "2026-12-08T01:00:00.000001Z"})  # neither tenant nor decision id
    records.append({"kind": "grant", "subjects": ["subj-1", "subj-2"], "tenant": "operator", "actor": "cli",
                    "created_at": "2026-12-08T01:00:01.000001Z", "grant": {"id": "g1", "uses": ["txt2img"]}})
    log.append_many(records)
    assert log.index_pending() == len(records)
    with engine.connect() as conn:
        columns = conn.execute(sql("SELECT idx, tenant, decision_id FROM {p}entries ORDER BY idx", prefix)).all()
        subjects: dict[int, list[str]] = {}
        for idx, subject in conn.execute(sql("SELECT idx, subject_id FROM {p}subjects", prefix)):
            subjects.setdefault(int(idx), []).append(subject)
        stored = sorted((k, int(i)) for k, i in conn.execute(sql("SELECT key, idx FROM {p}lookup", prefix)))
    want = sorted((key, int(idx)) for idx, tenant, decision_id in columns
                  for key in lookup_keys(tenant, decision_id, subjects.get(int(idx), ())))
    assert stored == want
    assert ("t:\u00c4cme \u2603", 6) in stored and ("s:subj-\u00fc\u2603", 6) in stored
    assert [k for k, i in stored if i == 7] == ["s:subj-9"]  # the erasure: its subject only
    assert sorted(k for k, i in stored if i == 8) == ["s:subj-1", "s:subj-2", "t:operator"]
    assert all_pages(log, subject="subj-\u00fc\u2603") == [6] and all_pages(log, tenant="operator") == [8]


def test_migration_0002_gives_an_existing_log_its_postings(tmp_path: Path) -> None:
    from alembic import command

    from gateway.migrations import alembic_config, upgrade_head

    url = f"sqlite:///{tmp_path}/gw.db"
    command.upgrade(alembic_config(url), "0001")
    engine = create_engine(url)
    with engine.begin() as conn:  # a log written before 0002: entries, subjects, head; no postings
        conn.execute(text("INSERT INTO audit_head (id, origin, tree_size, root_hash, checkpoint_size) "
                          "VALUES (1, 'o', 2, x'00', -1)"))
        conn.execute(text("INSERT INTO audit_entries (idx, leaf_hash, record, kind, tenant, decision_id) "
                          "VALUES (0, x'00', '{}', 'decision', 'acme', 'd0'), (1, x'00', '{}', 'erasure', NULL, NULL)"))
        conn.execute(text("INSERT INTO audit_subjects (idx, subject_id) VALUES (0, 's1')"))
    upgrade_head(url)
    with engine.connect() as conn:
        keys = sorted(tuple(r) for r in conn.execute(text("SELECT key, idx FROM audit_lookup")))
        state = conn.execute(text("SELECT indexed_size FROM audit_lookup_state")).scalar()
        names = {r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'index'"))}
    assert keys == [("d:d0", 0), ("s:s1", 0), ("t:acme", 0)]
    assert state == 2
    assert "ix_audit_entries_tenant" not in names and "ix_audit_subjects_subject" not in names
