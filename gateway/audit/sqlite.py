"""Why: a command-line tool that reads, verifies or appends to a SQLite log once and exits cannot
afford SQLAlchemy's import (~0.2 CPU-s, as much as the rest of the command: the CLI's start-up goal,
#22.6). This is the log on a bare `sqlite3` connection of the standard library — the same SQL on the
same tables (schema.py), the same values (values.py), the same verification (`verify.verify_rows`):

- `SqliteLog.query / receipts / inclusion_proof / head / latest_checkpoint` read as `LogReader` does;
- `verify_sqlite` verifies as `verify_database` does;
- `SqliteLog.append_in` appends inside the caller's open transaction as `AuditLog.append_in` does
  (the write lock, the head, the frontier read back and checked, the entry, subject and node rows,
  the head; no checkpoint), and `finish` does what `AuditLog.close` does for such a writer: the
  lookup postings of the entries not indexed yet (as `LookupIndexer`), then a signed checkpoint when
  the head is not covered (as `AuditLog.publish_checkpoint`).

Appends here and through `AuditLog` interleave on one database: both sequence under SQLite's write
lock and check the stored frontier against the head's root, so neither can fork the log
(SPEC.md §5.2). tests/audit/test_sqlite.py writes the same records through both on two copies of one
database and compares every row, and compares every read with `LogReader`'s.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .canonical import CanonicalizationError, prepare
from .errors import AuditAppendError, AuditConfigError, AuditNotFound, ProofError
from .merkle import EMPTY_ROOT, Frontier, NodeId, consistency_ranges, frontier_nodes, hashes_of, inclusion_ranges
from .notes import Checkpoint, CheckpointSigner, PublicKeyLike
from .schema import check_prefix, node_id, statements
from .values import MAX_LIMIT, AuditEntry, AuditQuery, ConsistencyProof, Head, InclusionProof, time_bound
from .verify import StoredHead, VerifyReport, verify_rows

__all__ = ["CHUNK", "SqliteLog", "connect", "verify_sqlite"]

_log = logging.getLogger(__name__)
CHUNK = 5000  # postings: entries per transaction, as LookupIndexer
_TIMEOUT_S = 30  # as gateway.db opens SQLite: busy timeout 30 s


def connect(path: str | Path, *, readonly: bool) -> sqlite3.Connection:
    """A connection to the SQLite file at `path` (which must exist), opened as the gateway opens it
    (busy timeout, synchronous=NORMAL; WAL is kept by the file), in autocommit mode: writers send
    their own `BEGIN IMMEDIATE` and `COMMIT`. `readonly` opens it `mode=ro`."""
    file = Path(path)
    if not file.is_file():
        raise AuditConfigError(f"no database at {file}")
    mode = "ro" if readonly else "rw"
    conn = sqlite3.connect(f"file:{quote(str(file.resolve()))}?mode={mode}", uri=True, timeout=_TIMEOUT_S,
                           isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout={_TIMEOUT_S * 1000}")
    if not readonly:
        conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class SqliteLog:
    """The log in the tables prefixed `prefix` on `conn` (a `connect` connection). `origin`, when
    given, is the origin the head must name (as `AuditLog` checks it)."""

    def __init__(self, conn: sqlite3.Connection, *, origin: str | None = None, prefix: str = "audit_") -> None:
        self.conn = conn
        self.origin = origin
        self.p = p = check_prefix(prefix)
        self._sql = {  # the statements of log.py / indexer.py, on SQLite
            **statements(p, "?"),
            "latest": f"SELECT tree_size, root_hash, note FROM {p}checkpoints "  # noqa: S608
            f"ORDER BY tree_size DESC LIMIT 1",
        }

    # -- state ---------------------------------------------------------------------------------
    def head(self) -> Head:
        row = self.conn.execute(self._sql["read_head"]).fetchone()
        if row is None:
            raise AuditNotFound("audit log tables are not initialised (call create_tables)")
        return Head(str(row[0]), int(row[1]), bytes(row[2]), int(row[3]))

    def latest_checkpoint(self) -> Checkpoint | None:
        row = self.conn.execute(self._sql["latest"]).fetchone()
        if row is None:
            return None
        return Checkpoint(self.head().origin, int(row[0]), bytes(row[1]), str(row[2]))

    def indexed_size(self) -> int:
        row = self.conn.execute(self._sql["indexed"]).fetchone()
        return 0 if row is None or row[0] is None else int(row[0])

    def fetch_nodes(self, ids: Iterable[NodeId]) -> dict[NodeId, bytes]:
        ids = list(ids)
        out: dict[NodeId, bytes] = {}
        leaves = [i for lvl, i in ids if lvl == 0]
        upper = {node_id(lvl, i): (lvl, i) for lvl, i in ids if lvl > 0}
        if leaves:
            marks = ", ".join("?" * len(leaves))
            for idx, h in self.conn.execute(f"SELECT idx, leaf_hash FROM {self.p}entries WHERE idx IN ({marks})",  # noqa: S608
                                            leaves):
                out[(0, int(idx))] = bytes(h)
        if upper:
            marks = ", ".join("?" * len(upper))
            for nid, h in self.conn.execute(f"SELECT nid, hash FROM {self.p}nodes WHERE nid IN ({marks})",  # noqa: S608
                                            list(upper)):
                out[upper[int(nid)]] = bytes(h)
        return out

    # -- proofs (LogReader's) --------------------------------------------------------------------
    def inclusion_proof(self, index: int, tree_size: int) -> InclusionProof:
        current = self.head().tree_size
        if tree_size > current:
            raise ProofError(f"the log has {current} entries, not {tree_size}")
        hashes = hashes_of([(index, index + 1), *inclusion_ranges(index, tree_size)], self.fetch_nodes)
        return InclusionProof(index, tree_size, hashes[0], hashes[1:])

    def consistency_proof(self, first: int, second: int) -> ConsistencyProof:
        """As `LogReader.consistency_proof` (the witness's read)."""
        current = self.head().tree_size
        if second > current:
            raise ProofError(f"the log has {current} entries, not {second}")
        hashes = hashes_of([(0, first), (0, second), *consistency_ranges(first, second)], self.fetch_nodes)
        return ConsistencyProof(first, second, hashes[0] if first else EMPTY_ROOT, hashes[1] if second else EMPTY_ROOT,
                                hashes[2:])

    def receipts(self, indexes: Iterable[int]) -> dict[int, dict[str, Any]]:
        """As `LogReader.receipts`: the receipts of the given entries the latest checkpoint covers."""
        wanted = sorted(set(indexes))
        out: dict[int, dict[str, Any]] = {}
        checkpoint = self.latest_checkpoint() if wanted else None
        if checkpoint is None:
            return out
        size = checkpoint.tree_size
        for index in wanted:
            if index >= size:
                break
            proof = self.inclusion_proof(index, size)
            out[index] = {"index": index, "leaf_hash": proof.leaf_hash.hex(), "inclusion_proof": proof.as_dict(),
                          "checkpoint": checkpoint.as_dict()}
        return out

    # -- entries (LogReader.query) ---------------------------------------------------------------
    def query(self, q: AuditQuery | None = None, /, **filters: Any) -> tuple[list[AuditEntry], str | None]:
        """As `LogReader.query`, statement for statement: the page of entries and the next cursor."""
        q = q if q is not None else AuditQuery(**filters)
        p = self.p
        limit = max(1, min(int(q.limit), MAX_LIMIT))
        conds: list[tuple[str, tuple[Any, ...]]] = []
        lo, hi = time_bound(q.since), time_bound(q.until)
        if lo is not None:
            conds.append(("e.time_us >= ?", (lo,)))
        if hi is not None:
            conds.append(("e.time_us < ?", (hi,)))
        for column, value in (("tenant", q.tenant), ("decision", q.decision), ("use", q.use), ("kind", q.kind),
                              ("decision_id", q.decision_id)):
            if value is not None:
                conds.append((f"e.{column} = ?", (value,)))
        if q.subject is not None:
            conds.append((f"EXISTS (SELECT 1 FROM {p}subjects s WHERE s.idx = e.idx AND s.subject_id = ?)",  # noqa: S608
                          (q.subject,)))
        after: int | None = None
        if q.cursor is not None:
            try:
                after = int(q.cursor)
                if not 0 <= after < 2**63:
                    raise ValueError("cursor out of range")
            except ValueError as exc:
                raise ValueError(f"invalid cursor {q.cursor!r}") from exc
        driver = (f"s:{q.subject}" if q.subject is not None else f"d:{q.decision_id}" if q.decision_id is not None
                  else f"t:{q.tenant}" if q.tenant is not None else None)
        direction = "DESC" if q.descending else "ASC"
        before_after = "<" if q.descending else ">"
        indexed = self.indexed_size() if driver is not None else 0
        parts: list[tuple[str, list[Any]]] = []
        if indexed > 0:
            where = [("lk.key = ?", (driver,)), ("lk.idx < ?", (indexed,))]
            if after is not None:
                where.append((f"lk.idx {before_after} ?", (after,)))
            parts.append(_select(f"{p}lookup lk JOIN {p}entries e ON e.idx = lk.idx", [*where, *conds],
                                 f"lk.idx {direction}", limit + 1))
        tail = list(conds)
        if indexed > 0:
            tail.append(("e.idx >= ?", (indexed,)))
        if after is not None:
            tail.append((f"e.idx {before_after} ?", (after,)))
        parts.append(_select(f"{p}entries e", tail, f"e.idx {direction}", limit + 1))
        if q.descending:
            parts.reverse()  # the tail holds the newest entries
        rows: list[Any] = []
        for sql, params in parts:
            if len(rows) > limit:
                break
            rows.extend(self.conn.execute(sql, params).fetchall())
        rows = rows[: limit + 1]
        checkpoint = self.latest_checkpoint()
        more = len(rows) > limit
        rows = rows[:limit]
        covered = -1 if checkpoint is None else checkpoint.tree_size
        entries = [AuditEntry(int(i), bytes(h), json.loads(r), checkpoint if int(i) < covered else None)
                   for i, h, r in rows]
        return entries, (str(entries[-1].index) if more and entries else None)

    # -- writes ----------------------------------------------------------------------------------
    def _locked_head(self, cur: sqlite3.Cursor) -> Head:
        cur.execute(self._sql["lock_sqlite"])  # takes the database write lock, as log.py's first statement does
        row = cur.execute(self._sql["read_head"]).fetchone()
        if row is None:
            raise AuditAppendError("audit log tables are not initialised (call create_tables)")
        head = Head(str(row[0]), int(row[1]), bytes(row[2]), int(row[3]))
        if self.origin is not None and head.origin != self.origin:
            raise AuditConfigError(f"tables hold the log {head.origin!r}, not {self.origin!r}")
        return head

    def _frontier(self, head: Head) -> Frontier:
        ids = frontier_nodes(head.tree_size)
        found = self.fetch_nodes(ids)
        try:
            frontier = Frontier(head.tree_size, [found[i] for i in ids])
        except KeyError as exc:
            raise AuditAppendError(f"tree node {exc.args[0]} is missing: the log is damaged") from exc
        if frontier.root() != head.root_hash:
            raise AuditAppendError("stored tree does not match the head root: the log is damaged")
        return frontier

    def append_in(self, records: Sequence[Mapping[str, Any]]) -> list[tuple[int, str]]:
        """Append `records` inside the transaction the caller opened on `conn` (`BEGIN IMMEDIATE`),
        so they commit or roll back with the caller's own writes — `AuditLog.append_in` on a DB-API
        connection: no checkpoint is signed here (`finish` signs one). Returns each record's
        (index, leaf hash hex). Raises AuditAppendError; the caller must then roll back."""
        try:
            items = [prepare(r) for r in records]
        except CanonicalizationError as exc:
            raise AuditAppendError(f"record rejected: {exc}") from exc
        if not items:
            return []
        if not self.conn.in_transaction:
            raise AuditAppendError("append_in needs the caller's open transaction (BEGIN IMMEDIATE)")
        cur = self.conn.cursor()
        try:
            head = self._locked_head(cur)
            frontier = self._frontier(head)
            entries: list[tuple[Any, ...]] = []
            subjects: list[tuple[int, str]] = []
            nodes: list[tuple[int, bytes]] = []
            for item in items:  # AuditLog._rows
                idx = frontier.size
                c = item.columns
                entries.append((idx, item.leaf_hash, item.data.decode("utf-8"), c.kind, c.tenant, c.use,
                                c.decision, c.time_us, c.decision_id))
                subjects.extend((idx, s) for s in c.subjects)
                nodes.extend((node_id(lvl, i), h) for lvl, i, h in frontier.push(item.leaf_hash))
            cur.executemany(self._sql["entry"], entries)
            if subjects:
                cur.executemany(self._sql["subject"], subjects)
            if nodes:
                cur.executemany(self._sql["node"], nodes)
            cur.execute(self._sql["set_head"], (frontier.size, frontier.root(), head.checkpoint_size))
        except (AuditAppendError, AuditConfigError):
            raise
        except Exception as exc:  # noqa: BLE001 - the caller must see one error type and roll back
            raise AuditAppendError(f"append failed: {exc}") from exc
        finally:
            cur.close()
        return [(head.tree_size + i, item.leaf_hash.hex()) for i, item in enumerate(items)]

    def index_pending(self, max_entries: int = CHUNK) -> int:
        """`LookupIndexer.run` on SQLite: the postings of up to `max_entries` entries not indexed yet,
        in one transaction; returns how many entries it covered (0: caught up)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            cur = self.conn.cursor()
            cur.execute(self._sql["lock_lookups_sqlite"])
            row = cur.execute(self._sql["indexed"]).fetchone()
            if row is None:
                raise AuditAppendError("audit log tables are not initialised (call create_tables)")
            start = int(row[0])
            size_row = cur.execute(f"SELECT tree_size FROM {self.p}head WHERE id = 1").fetchone()  # noqa: S608
            end = min(int(size_row[0]) if size_row else 0, start + max(1, max_entries))
            if end <= start:
                self.conn.execute("ROLLBACK")
                return 0
            cur.execute(self._sql["postings"], (start, end) * 3)
            cur.execute(self._sql["advance"], (end,))
            self.conn.execute("COMMIT")
            return end - start
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    def publish_checkpoint(self, signer: CheckpointSigner) -> Checkpoint:
        """`AuditLog.publish_checkpoint`: sign a checkpoint of the current tree now (the latest one
        when nothing is new)."""
        origin = self.origin or signer.name
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            cur = self.conn.cursor()
            head = self._locked_head(cur)
            if head.checkpoint_size == head.tree_size:
                latest = self.latest_checkpoint()
                if latest is not None:
                    self.conn.execute("ROLLBACK")
                    return latest
            checkpoint = signer.sign_checkpoint(origin, head.tree_size, head.root_hash)
            cur.execute(self._sql["checkpoint"], (head.tree_size, head.root_hash, checkpoint.note, _now()))
            cur.execute(self._sql["set_head"], (head.tree_size, head.root_hash, head.tree_size))
            self.conn.execute("COMMIT")
            return checkpoint
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    def finish(self, signer: CheckpointSigner) -> None:
        """What `AuditLog.close` does after this process appended: the postings up to the head seen
        now, then a checkpoint when the head is not covered — so a short-lived writer never leaves
        its entries without a signed checkpoint. Best effort, as there: the appends are committed
        already, so a failure here is logged, not raised (the gateway's indexer and timer, or the
        next writer, cover them)."""
        try:
            target = self.head().tree_size
            while self.indexed_size() < target and self.index_pending() > 0:
                pass
        except Exception:  # noqa: BLE001 - best effort, as in AuditLog.close: the next writer's indexer catches up
            _log.warning("could not index the last entries", exc_info=True)
        try:
            head = self.head()
            if head.tree_size > head.checkpoint_size:
                self.publish_checkpoint(signer)
        except Exception:  # noqa: BLE001 - best effort, as in AuditLog.close: the next writer's timer covers them
            _log.warning("could not publish a final checkpoint", exc_info=True)


def _select(source: str, where: list[tuple[str, tuple[Any, ...]]], order: str, limit: int) -> tuple[str, list[Any]]:
    clause = " AND ".join(sql for sql, _ in where)
    params = [v for _, values in where for v in values]
    sql = f"SELECT e.idx, e.leaf_hash, e.record FROM {source}"  # noqa: S608 - names are fixed, values bound
    if clause:
        sql += f" WHERE {clause}"
    return f"{sql} ORDER BY {order} LIMIT ?", [*params, limit]


def _lookup_problems(path: str | Path, p: str, size: int) -> list[tuple[int, str]]:
    """`verify._lookup_problems` in SQL text (its statements as SQLAlchemy compiles them for SQLite)."""
    found: list[tuple[int, str]] = []
    conn = connect(path, readonly=True)
    try:
        conn.execute("PRAGMA mmap_size=1073741824")
        row = conn.execute(f"SELECT indexed_size FROM {p}lookup_state WHERE id = 1").fetchone()  # noqa: S608
        if row is None or row[0] is None:
            return [(-1, "the lookup state row is missing")]
        indexed = int(row[0])
        n = min(indexed, size)
        if indexed > size:
            found.append((size, f"lookup state claims {indexed} indexed entries of {size}"))

        def scalar(sql: str, *params: Any) -> Any:
            return conn.execute(sql, params).fetchone()[0]

        for label, column, prefix in (("tenant", "tenant", "t:"), ("decision id", "decision_id", "d:")):
            first = scalar(f"SELECT min(e.idx) FROM {p}entries e WHERE e.idx < ? AND e.{column} IS NOT NULL "  # noqa: S608
                           f"AND NOT (EXISTS (SELECT 1 FROM {p}lookup lk WHERE lk.key = ? || e.{column} "
                           f"AND lk.idx = e.idx))", n, prefix)
            if first is not None:
                found.append((int(first), f"its {label} has no lookup posting (filtered queries would miss it)"))
        first = scalar(f"SELECT min(s.idx) FROM {p}subjects s WHERE s.idx < ? AND NOT (EXISTS (SELECT 1 FROM "  # noqa: S608
                       f"{p}lookup lk WHERE lk.key = ? || s.subject_id AND lk.idx = s.idx))", n, "s:")
        if first is not None:
            found.append((int(first), "a subject has no lookup posting (filtered queries would miss it)"))
        expected = sum(int(scalar(sql, n) or 0) for sql in (
            f"SELECT count(*) FROM {p}entries WHERE idx < ? AND tenant IS NOT NULL",  # noqa: S608
            f"SELECT count(*) FROM {p}entries WHERE idx < ? AND decision_id IS NOT NULL",  # noqa: S608
            f"SELECT count(*) FROM {p}subjects WHERE idx < ?",  # noqa: S608
        ))
        actual = int(scalar(f"SELECT count(*) FROM {p}lookup WHERE idx < ?", n) or 0)  # noqa: S608
        if actual > expected:
            extra = scalar(
                f"SELECT min(lk.idx) FROM {p}lookup lk WHERE lk.idx < ? "  # noqa: S608
                f"AND NOT (EXISTS (SELECT 1 FROM {p}entries e WHERE e.idx = lk.idx "
                f"AND (? || e.tenant = lk.key OR ? || e.decision_id = lk.key))) "
                f"AND NOT (EXISTS (SELECT 1 FROM {p}subjects s WHERE s.idx = lk.idx AND ? || s.subject_id = lk.key))",
                n, "t:", "d:", "s:")
            message = f"{actual - expected} lookup postings beyond the stored columns"
            found.append((int(extra), message) if extra is not None else (-1, message))
        elif actual < expected and not found:
            found.append((-1, f"{expected - actual} lookup postings missing"))
    finally:
        conn.close()
    return found


def verify_sqlite(path: str | Path, public_key: PublicKeyLike, *, table_prefix: str = "audit_",
                  check_canonical: bool = False, workers: int | None = 1, require_covered: bool = True,
                  saved: Iterable[str] = ()) -> VerifyReport:
    """`verify_database` on the SQLite file at `path`, read-only through sqlite3."""
    p = check_prefix(table_prefix)
    conn = connect(path, readonly=True)
    try:
        head = conn.execute(f"SELECT origin, tree_size, root_hash FROM {p}head WHERE id = 1").fetchone()  # noqa: S608
        if head is None:
            return VerifyReport(False, 0, 0, None, "audit tables are not initialised")
        size = int(head[1])

        def entries() -> Iterator[Any]:
            reader = connect(path, readonly=True)
            try:
                reader.execute("PRAGMA mmap_size=1073741824")
                yield from reader.execute(
                    f"SELECT idx, leaf_hash, record, kind, tenant, use, decision, time_us, decision_id "  # noqa: S608
                    f"FROM {p}entries WHERE idx < ? ORDER BY idx", (size,))
            finally:
                reader.close()

        return verify_rows(
            StoredHead(str(head[0]), size, bytes(head[2])),
            public_key,
            subjects=lambda: conn.execute(f"SELECT idx, subject_id FROM {p}subjects WHERE idx < ? "  # noqa: S608
                                          f"ORDER BY idx, subject_id", (size,)),
            entries=entries,
            lookups=lambda: _lookup_problems(path, p, size),
            nodes=lambda: conn.execute(f"SELECT nid, hash FROM {p}nodes"),  # noqa: S608
            checkpoints=lambda: conn.execute(f"SELECT tree_size, root_hash, note FROM {p}checkpoints "  # noqa: S608
                                             f"WHERE tree_size <= ?", (size,)),
            check_canonical=check_canonical, workers=workers, require_covered=require_covered, saved=saved,
        )
    finally:
        conn.close()
