"""Why: the log's tables, defined once so `AuditLog`, the verifier and Alembic (through
`audit_metadata`) agree; a prefix lets tests and several logs share one database.

    <p>head         one row: origin, tree size, root hash, size of the latest checkpoint;
                    writers lock it (SELECT ... FOR UPDATE / SQLite write lock) to sequence appends
    <p>entries      idx, leaf hash, canonical record text, query columns
    <p>subjects     (idx, subject_id) pairs for subject filters
    <p>nodes        hashes of complete subtrees of level >= 1, keyed by nid = index * 64 + level
    <p>checkpoints  every signed checkpoint published
    <p>lookup       (key, idx) postings for the filters whose values scatter over an index —
                    "t:<tenant>", "d:<decision_id>", "s:<subject_id>" — written by the indexer
                    in batches of thousands after the append, not by the append itself
    <p>lookup_state one row: `indexed_size`, the entries [0, indexed_size) that have postings
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import AuditConfigError

if TYPE_CHECKING:  # imported where the tables are built: the SQLite reader (sqlite.py) needs none of it
    from sqlalchemy import MetaData, Table

_PREFIX = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")


def check_prefix(prefix: str) -> str:
    """`prefix` when it is a valid table prefix (it is put into SQL text; values are always bound)."""
    if not _PREFIX.match(prefix):
        raise AuditConfigError(f"table prefix {prefix!r} must match {_PREFIX.pattern}")
    return prefix


def statements(prefix: str, ph: str) -> dict[str, str]:
    """The SQL that every writer and reader of the tables shares (`AuditLog`, `LookupIndexer` and the
    bare-sqlite3 `SqliteLog` alike), written once for the prefix and the driver's placeholder (`?` or
    `%s`): the same statements on the same tables is what lets their appends interleave."""
    p = check_prefix(prefix)  # values are always bound; only the validated prefix is put in the text
    values = ", ".join([ph] * 9)
    return {
        "entry": f"INSERT INTO {p}entries (idx, leaf_hash, record, kind, tenant, use, decision, "  # noqa: S608
        f"time_us, decision_id) VALUES ({values})",
        "subject": f"INSERT INTO {p}subjects (idx, subject_id) VALUES ({ph}, {ph})",  # noqa: S608
        "node": f"INSERT INTO {p}nodes (nid, hash) VALUES ({ph}, {ph})",  # noqa: S608
        "set_head": f"UPDATE {p}head SET tree_size = {ph}, root_hash = {ph}, checkpoint_size = {ph} "  # noqa: S608
        f"WHERE id = 1",
        "read_head": f"SELECT origin, tree_size, root_hash, checkpoint_size FROM {p}head WHERE id = 1",  # noqa: S608
        # SQLite: the first statement of a writer's transaction takes the database write lock.
        "lock_sqlite": f"UPDATE {p}head SET tree_size = tree_size WHERE id = 1",  # noqa: S608
        "checkpoint": f"INSERT INTO {p}checkpoints (tree_size, root_hash, note, published_at) "  # noqa: S608
        f"VALUES ({ph}, {ph}, {ph}, {ph})",
        # the lookup postings (the indexer's work, after the append)
        "lock_lookups_sqlite": f"UPDATE {p}lookup_state SET indexed_size = indexed_size WHERE id = 1",  # noqa: S608
        "indexed": f"SELECT indexed_size FROM {p}lookup_state WHERE id = 1",  # noqa: S608
        "posting": f"INSERT INTO {p}lookup (key, idx) VALUES ({ph}, {ph})",  # noqa: S608
        # Every posting of the entries [start, end) built by the database itself (`lookup_keys` in
        # SQL): the rows never travel to the client, and on SQLite the work runs without the GIL.
        # Parameters: (start, end) three times. Sorted, so the B-tree is filled in key order.
        "postings": f"INSERT INTO {p}lookup (key, idx) SELECT k, i FROM ("  # noqa: S608
        f"SELECT 't:' || tenant AS k, idx AS i FROM {p}entries "
        f"WHERE idx >= {ph} AND idx < {ph} AND tenant IS NOT NULL "
        f"UNION ALL SELECT 'd:' || decision_id, idx FROM {p}entries "
        f"WHERE idx >= {ph} AND idx < {ph} AND decision_id IS NOT NULL "
        f"UNION ALL SELECT 's:' || subject_id, idx FROM {p}subjects WHERE idx >= {ph} AND idx < {ph}"
        f") AS b ORDER BY k, i",
        "advance": f"UPDATE {p}lookup_state SET indexed_size = {ph} WHERE id = 1",  # noqa: S608
    }


def node_id(level: int, index: int) -> int:
    return index * 64 + level


@dataclass(frozen=True)
class AuditTables:
    metadata: MetaData
    prefix: str
    head: Table
    entries: Table
    subjects: Table
    nodes: Table
    checkpoints: Table
    lookup: Table
    lookup_state: Table


def audit_tables(prefix: str = "audit_", metadata: MetaData | None = None) -> AuditTables:
    """Define the audit tables with `prefix` on `metadata` (a new MetaData by default)."""
    from sqlalchemy import (
        BigInteger,
        Column,
        Index,
        Integer,
        LargeBinary,
        MetaData,
        PrimaryKeyConstraint,
        Table,
        Text,
    )

    check_prefix(prefix)
    # SQLite only treats a column declared exactly INTEGER as the rowid; keep BIGINT elsewhere.
    row_id = BigInteger().with_variant(Integer(), "sqlite")
    md = MetaData() if metadata is None else metadata
    head = Table(
        f"{prefix}head",
        md,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("origin", Text, nullable=False),
        Column("tree_size", BigInteger, nullable=False),
        Column("root_hash", LargeBinary, nullable=False),
        Column("checkpoint_size", BigInteger, nullable=False),
    )
    entries = Table(
        f"{prefix}entries",
        md,
        Column("idx", row_id, primary_key=True, autoincrement=False),
        Column("leaf_hash", LargeBinary, nullable=False),
        Column("record", Text, nullable=False),
        Column("kind", Text, nullable=False),
        Column("tenant", Text),
        Column("use", Text),
        Column("decision", Text),
        Column("time_us", BigInteger),
        Column("decision_id", Text),
        Index(f"ix_{prefix}entries_kind", "kind", "idx"),
        Index(f"ix_{prefix}entries_decision", "decision", "idx"),
        Index(f"ix_{prefix}entries_use", "use", "idx"),
        Index(f"ix_{prefix}entries_time", "time_us"),
    )
    subjects = Table(
        f"{prefix}subjects",
        md,
        Column("idx", BigInteger, nullable=False),
        Column("subject_id", Text, nullable=False),
        PrimaryKeyConstraint("idx", "subject_id"),
    )
    nodes = Table(
        f"{prefix}nodes",
        md,
        Column("nid", row_id, primary_key=True, autoincrement=False),
        Column("hash", LargeBinary, nullable=False),
    )
    checkpoints = Table(
        f"{prefix}checkpoints",
        md,
        Column("tree_size", row_id, primary_key=True, autoincrement=False),
        Column("root_hash", LargeBinary, nullable=False),
        Column("note", Text, nullable=False),
        Column("published_at", Text, nullable=False),
    )
    lookup = Table(
        f"{prefix}lookup",
        md,
        Column("key", Text, nullable=False),
        Column("idx", BigInteger, nullable=False),
        PrimaryKeyConstraint("key", "idx"),
        sqlite_with_rowid=False,
    )
    lookup_state = Table(
        f"{prefix}lookup_state",
        md,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("indexed_size", BigInteger, nullable=False),
    )
    return AuditTables(md, prefix, head, entries, subjects, nodes, checkpoints, lookup, lookup_state)


def lookup_keys(tenant: str | None, decision_id: str | None, subjects: Iterable[str]) -> list[str]:
    """The postings of one entry (see the module docstring); the indexers build the same keys in SQL
    (`statements()["postings"]`), tests/audit/test_lookup.py holds the two to each other."""
    keys = [] if tenant is None else [f"t:{tenant}"]
    if decision_id is not None:
        keys.append(f"d:{decision_id}")
    keys.extend(f"s:{s}" for s in subjects)
    return keys


def audit_metadata(prefix: str = "audit_") -> MetaData:
    """A fresh MetaData holding the audit tables (for Alembic's target_metadata)."""
    return audit_tables(prefix).metadata
