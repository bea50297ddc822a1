"""Why: the filters whose values scatter over a B-tree (tenant, decision id, subject) made every
append batch dirty ~24 of its ~35 SQLite pages. Their lookups are postings `(key, idx)` written here,
apart from the appends, a few thousand entries per transaction; `LogReader.query` covers the
not-yet-indexed tail through the stored columns, so results never depend on this having run.
"""

from __future__ import annotations

import contextlib
import threading

from sqlalchemy import Engine

from .errors import AuditAppendError
from .schema import AuditTables, statements

CHUNK = 5000  # entries per transaction: bounds how long the indexer holds the append lock


class LookupIndexer:
    """Writes the postings of entries [indexed_size, tree size) and advances `indexed_size`, one
    transaction per call, sequenced by the `lookup_state` row (any process may run it, none twice
    over the same range). On SQLite it also holds `append_lock`: an appender that met the indexer's
    transaction inside SQLite would wait in SQLite's busy handler, which sleeps 1, 2, 5, 10 ms ...
    (8 writers: 9.1k appends/s with the indexer every 200 ms, 11.8k without it, 10.7k with the
    lock); PostgreSQL's row locks keep the two apart without it."""

    def __init__(self, engine: Engine, tables: AuditTables, append_lock: threading.Lock) -> None:
        self.engine = engine
        self.append_lock = append_lock
        self._lock = threading.Lock()
        self.sqlite = engine.dialect.name == "sqlite"
        ph = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        shared = statements(tables.prefix, ph)  # prefix validated by audit_tables; values are bound
        p = tables.prefix
        self._sql = {
            "lock_sqlite": shared["lock_lookups_sqlite"],
            "read": shared["indexed"],
            "lock": f"{shared['indexed']} FOR UPDATE",
            "tree_size": f"SELECT tree_size FROM {p}head WHERE id = 1",  # noqa: S608
            "postings": shared["postings"],
            "advance": shared["advance"],
        }

    def run(self, max_entries: int = CHUNK) -> int:
        """Index up to `max_entries` entries; returns how many were covered (0: caught up)."""
        held = self.append_lock if self.sqlite else contextlib.nullcontext()
        with self._lock, held, self.engine.begin() as conn:
            cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                return self._run(cur, max_entries)
            finally:
                cur.close()

    def _run(self, cur: object, max_entries: int) -> int:
        execute, fetchone = cur.execute, cur.fetchone  # type: ignore[attr-defined]
        if self.sqlite:
            execute(self._sql["lock_sqlite"])
            execute(self._sql["read"])
        else:
            execute(self._sql["lock"])
        row = fetchone()
        if row is None:
            raise AuditAppendError("audit log tables are not initialised (call create_tables)")
        start = int(row[0])
        execute(self._sql["tree_size"])
        size_row = fetchone()
        end = min(int(size_row[0]) if size_row else 0, start + max(1, max_entries))
        if end <= start:
            return 0
        execute(self._sql["postings"], (start, end) * 3)
        execute(self._sql["advance"], (end,))
        return end - start
