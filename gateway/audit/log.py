"""Why: the write side of the audit log. An append is durable when it returns, is sequenced under
a database lock so several processes share one gapless log, and concurrent appends in a process
are group-committed: one caller at a time leads, waits (at most `group_wait_ms`) until every
caller now appending has queued, commits them all in one transaction, wakes exactly those callers
and hands the lead to whoever queued meanwhile. Each waiter sleeps on its own lock: a thread wake
costs ~20 us on these machines, so nobody is woken without work. A batch is one transaction on
the log's own connection; on PostgreSQL it commits without waiting for the WAL flush, so the log
lock is never held across a disk flush, and its callers are answered after a shared durability
barrier (SPEC.md §5.1, issue #21.1). Checkpoints are signed apart from durability: every
`checkpoint_every` entries inside the batch that crosses the mark, and by a timer every
`checkpoint_interval_ms`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Engine, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError

from . import pgwire
from .canonical import CanonicalizationError, Prepared, prepare
from .errors import AuditAppendError, AuditConfigError, ProofError
from .indexer import CHUNK, LookupIndexer
from .merkle import EMPTY_ROOT, Frontier, frontier_nodes
from .notes import Checkpoint, CheckpointSigner
from .reader import AuditEntry, ConsistencyProof, Head, InclusionProof, LogReader
from .schema import audit_tables, node_id, statements

_log = logging.getLogger(__name__)
# A batch reads back the leaves another writer appended since its cached frontier, up to this
# many; further behind, it reloads the O(log n) frontier nodes instead.
_CATCH_UP = 4096
_WAL_CHECKPOINT_S = 0.2  # SQLite: how often the WAL is checkpointed beside the batch writer
_WAL_RESTART_PAGES = 4096  # SQLite: past this many WAL pages (16 MB) the writer rewinds the file
# PostgreSQL: a batch's COMMIT (asynchronous) followed by the durability barrier (see `_flush`).
_MERGED_BARRIER = (b"; COMMIT; BEGIN; SET LOCAL synchronous_commit TO on; "
                   b"SELECT pg_logical_emit_message(true, 'consentgate.audit', 'flush'); COMMIT")
_Rows = tuple[list[tuple[Any, ...]], list[tuple[int, str]], list[tuple[int, bytes]]]


@dataclass(frozen=True)
class AppendResult:
    """Where a record landed. `checkpoint` is set when a checkpoint covering it was signed in the
    same batch; otherwise one is pending (see `AuditLog.latest_checkpoint`)."""

    index: int
    leaf_hash: str
    checkpoint: dict[str, Any] | None


@dataclass
class AuditFaults:
    """Fault injection for tests of callers: the next `fail_appends` appends raise
    `AuditAppendError` before touching the database; the next `fail_commits` batches are rolled
    back after their writes; `fail_checkpoints` makes publishing fail."""

    fail_appends: int = 0
    fail_commits: int = 0
    fail_checkpoints: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take(self, name: str) -> bool:
        if not getattr(self, name):  # the usual case, read without the lock (asked once per append)
            return False
        with self._lock:
            left: int = getattr(self, name)
            if left <= 0:
                return False
            setattr(self, name, left - 1)
            return True


class _Pending:
    """One caller's records waiting in the queue. Its caller sleeps on `wake` (held from birth);
    whoever finishes the batch, or hands it the lead, releases it — so each caller is woken once,
    only when there is something for it to do (a shared condition woke every waiter per batch)."""

    __slots__ = ("items", "results", "error", "done", "wake", "flush")

    def __init__(self, items: list[Prepared]) -> None:
        self.items = items
        self.results: list[AppendResult] = []
        self.error: AuditAppendError | None = None
        self.done = False
        self.flush = 0  # committed asynchronously as this log's commit number N: durable after _flush(N)
        self.wake = threading.Lock()
        self.wake.acquire()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _batch_pg(p: str, ph: Sequence[str]) -> str:
    """PostgreSQL: a batch's rows and the new head in one statement. The records go as a text
    array, the other columns as three JSON documents (orjson, one C call each), unpacked by the
    server: psycopg dumps array parameters element by element in Python (its text form escapes each
    with a regex: ~2.5 ms for a batch of 8 decision records), and one statement per row cost a
    round of psycopg's per-statement Python work each. The records are not in the JSON: the server
    spent about a third of the statement's CPU parsing each ~1 KB record back out of a JSON string,
    and reads an `ARRAY['...', ...]` of SQL literals (quoted by libpq, in C) in about half that.
    `ph`: the seven placeholders (json x3, size, root, checkpoint size, records)."""
    e, s, n, size, root, cp, r = ph
    return (f"WITH e AS (INSERT INTO {p}entries (idx, leaf_hash, record, kind, tenant, use, decision, "  # noqa: S608
            f"time_us, decision_id) SELECT i, decode(h, 'hex'), ({r}::text[])[o], k, t, u, d, m, x "
            f"FROM json_to_recordset({e}) "
            f"AS b(i bigint, h text, o int, k text, t text, u text, d text, m bigint, x text)), "
            f"s AS (INSERT INTO {p}subjects (idx, subject_id) SELECT i, s FROM json_to_recordset({s}) "
            f"AS b(i bigint, s text)), "
            f"n AS (INSERT INTO {p}nodes (nid, hash) SELECT i, decode(h, 'hex') FROM json_to_recordset({n}) "
            f"AS b(i bigint, h text)) "
            f"UPDATE {p}head SET tree_size = {size}, root_hash = {root}, checkpoint_size = {cp} WHERE id = 1")


def _batch_json(rows: _Rows) -> tuple[bytes, bytes, bytes]:
    """The batch's columns but the records (`_batch_records`): entry `o` is the 1-based position
    of its record in that array."""
    entries, subjects, nodes = rows
    return (orjson.dumps([{"i": i, "h": h.hex(), "o": o, "k": k, "t": t, "u": u, "d": d, "m": m, "x": x}
                          for o, (i, h, _r, k, t, u, d, m, x) in enumerate(entries, 1)]),
            orjson.dumps([{"i": i, "s": sid} for i, sid in subjects]),
            orjson.dumps([{"i": i, "h": h.hex()} for i, h in nodes]))


def _batch_records(rows: _Rows) -> list[str]:
    return [entry[2] for entry in rows[0]]


class AuditLog:
    """An append-only, verifiable log of records in `engine`'s database."""

    def __init__(
        self,
        engine: Engine,
        signer: CheckpointSigner,
        *,
        origin: str,
        checkpoint_every: int = 256,
        checkpoint_interval_ms: int = 1000,
        table_prefix: str = "audit_",
        group_wait_ms: float = 1.0,
        index_interval_ms: int = 500,
    ) -> None:
        if checkpoint_every < 1:
            raise AuditConfigError("checkpoint_every must be >= 1")
        self.engine = engine
        self.signer = signer
        self.origin = origin
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval_ms = checkpoint_interval_ms
        self.tables = audit_tables(table_prefix)
        self.metadata = self.tables.metadata
        self.reader = LogReader(engine, self.tables)
        self.faults = AuditFaults()
        self._mutex = threading.Lock()
        self._arrival = threading.Condition(self._mutex)
        self._active = 0  # callers inside append_many
        self._lingering = False
        self.group_wait_s = group_wait_ms / 1000
        self._queue: list[_Pending] = []
        self._leading = False
        self._closed = False
        self._write_lock = threading.Lock()
        self._batches = self._batched = 0  # batches written by the group commit, and their entries
        self._writer_conn: Any = None  # the batch writer's own connection (_writer)
        self._prepared = ""  # PostgreSQL: the batch statement prepared on it
        self._escape: Any = None  # PostgreSQL: libpq's literal quoting for it
        self._flush_conn: Any = None  # PostgreSQL: the durability barrier's connection (_flush)
        self._flush_lock = threading.Lock()
        self._seq_mutex = threading.Lock()
        self._committed = 0  # asynchronous commits made by this log object
        self._flushed = 0  # of which the last finished barrier covers this many
        self._pg = engine.dialect.name == "postgresql"
        self._sqlite_file = engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:")
        self._wal_thread: threading.Thread | None = None
        self._wal_restart_due = False
        self._ph = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        self._frontier: Frontier | None = None
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        self._indexer: threading.Thread | None = None
        self.index_interval_ms = index_interval_ms
        self._sql = self._statements()
        self._lookups = LookupIndexer(engine, self.tables, self._write_lock)
        self.publisher: Callable[[Checkpoint], None] | None = None  # set_publisher

    def set_publisher(self, publish: Callable[[Checkpoint], None] | None) -> None:
        """Hand every checkpoint this process signs, once committed, to `publish` (see publish.py;
        wrap a slow one in `BackgroundPublisher`). Its failures are logged, never raised."""
        self.publisher = publish

    def _published(self, checkpoint: Checkpoint | None) -> None:
        if checkpoint is None or self.publisher is None:
            return
        try:
            self.publisher(checkpoint)
        except Exception:  # noqa: BLE001 - publication is apart from durability
            _log.warning("could not hand checkpoint %d to the publisher", checkpoint.tree_size, exc_info=True)

    # -- setup ---------------------------------------------------------------------------------
    def _statements(self) -> dict[str, str]:
        ph = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        p = self.tables.prefix  # validated by audit_tables: [a-z_][a-z0-9_]*; values are bound
        # Plain SQL for the hot path: executemany straight to the driver, no per-row ORM work.
        return {
            **statements(p, ph),
            # SQLite: take the write lock and read the head in one statement (RETURNING, 3.35+).
            "lock_read_sqlite": f"UPDATE {p}head SET tree_size = tree_size WHERE id = 1 "  # noqa: S608
            f"RETURNING origin, tree_size, root_hash, checkpoint_size",
            # PostgreSQL: a batch's rows and the head in one statement — each column as an array,
            # unnested server-side — instead of one statement per row (psycopg's per-statement
            # Python work in pipeline mode was most of a batch's client CPU, issue #21.1).
            "batch_pg": _batch_pg(p, [f"%({k})s" for k in ("e", "s", "n", "size", "root", "cp", "r")]),
            "lock": f"SELECT origin, tree_size, root_hash, checkpoint_size FROM {p}head "  # noqa: S608
            f"WHERE id = 1 FOR UPDATE",
            "leaves": f"SELECT idx, leaf_hash FROM {p}entries WHERE idx >= {ph} ORDER BY idx LIMIT {ph}",  # noqa: S608
        }

    def create_tables(self) -> None:
        """Create the tables and the head row if missing (idempotent, safe to race)."""
        if self.engine.dialect.name == "sqlite" and self.engine.url.database not in (None, "", ":memory:"):
            self._use_wal()
        for attempt in range(5):
            try:
                self.metadata.create_all(self.engine)
                break
            except DBAPIError:
                # Another process created a table between the existence check and CREATE.
                if attempt == 4:
                    raise
                self._stop.wait(0.05 * (attempt + 1))
        head = self.tables.head
        try:
            with self.engine.begin() as conn:
                if conn.execute(select(head.c.id)).first() is None:
                    conn.execute(insert(head).values(id=1, origin=self.origin, tree_size=0,
                                                     root_hash=EMPTY_ROOT, checkpoint_size=-1))
        except IntegrityError:
            pass  # another process created it first
        state = self.tables.lookup_state
        try:
            with self.engine.begin() as conn:
                if conn.execute(select(state.c.id)).first() is None:
                    conn.execute(insert(state).values(id=1, indexed_size=0))
        except IntegrityError:
            pass
        self._check_origin(self.reader.head())

    def _use_wal(self) -> None:
        # Switching the journal mode needs the database to itself and does not wait for a busy
        # one, so a process starting beside a busy writer retries; once in WAL mode (persistent
        # in the file) there is nothing to switch.
        for attempt in range(50):
            try:
                with self.engine.connect() as conn:
                    mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
                    if str(mode).lower() != "wal":
                        conn.exec_driver_sql("PRAGMA journal_mode=WAL")
                return
            except DBAPIError:
                if attempt == 49:
                    raise
                self._stop.wait(0.02 * (1 + attempt % 5))

    def _check_origin(self, head: Head) -> None:
        if head.origin != self.origin:
            raise AuditConfigError(f"tables hold the log {head.origin!r}, not {self.origin!r}")

    def start(self) -> None:
        """Start the checkpoint timer (appends start it too)."""
        with self._mutex:
            if self._timer is None and self.checkpoint_interval_ms > 0 and not self._closed:
                self._timer = threading.Thread(target=self._tick, name="audit-checkpoints", daemon=True)
                self._timer.start()
            if self._indexer is None and self.index_interval_ms > 0 and not self._closed:
                self._indexer = threading.Thread(target=self._index_loop, name="audit-indexer", daemon=True)
                self._indexer.start()

    def close(self) -> None:
        """Refuse further appends, stop the checkpoint timer and the indexer, index what is
        appended so far, and publish a last checkpoint when entries this process appended are not
        covered yet (so a short-lived writer, e.g. a CLI command, never leaves its entries without
        a signed checkpoint or postings)."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            timer, self._timer = self._timer, None
            indexer, self._indexer = self._indexer, None
        self._stop.set()
        if indexer is not None:
            indexer.join()
            try:
                # Up to the size seen now: with other processes still appending, "until nothing
                # is left" might never come.
                target = self.head().tree_size
                while self.reader.indexed_size() < target and self.index_pending() > 0:
                    pass
            except Exception:  # noqa: BLE001 - best effort: the next writer's indexer catches up
                _log.warning("could not index the last entries on close", exc_info=True)
        if timer is not None:
            timer.join()
            try:
                head = self.head()
                if head.tree_size > head.checkpoint_size:
                    self.publish_checkpoint()
            except Exception:  # noqa: BLE001 - best effort: the next writer's timer covers them
                _log.warning("could not publish a final checkpoint on close", exc_info=True)
        wal, self._wal_thread = self._wal_thread, None
        if wal is not None:
            wal.join()
        with self._write_lock, self._flush_lock:
            kept = (self._writer_conn, self._flush_conn)
            self._writer_conn = self._flush_conn = None
        for conn in kept:
            if conn is None:
                continue
            try:
                if self._sqlite_file:
                    cur = conn.cursor()
                    cur.execute("PRAGMA wal_autocheckpoint=1000")  # SQLite's default, for the pool's next user
                    cur.close()
                if self._pg:  # the pool's next user gets the server's settings back
                    dc = conn.driver_connection
                    dc.autocommit = True
                    if conn is kept[0]:
                        name = self._prepared
                        pgwire.simple(dc, f"RESET synchronous_commit; RESET bytea_output; DEALLOCATE {name}; "
                                          f"DEALLOCATE {name}_lock; DEALLOCATE {name}_leaves".encode())
                    dc.autocommit = False
                conn.close()  # back to the engine's pool
            except Exception:  # noqa: BLE001 - closing a broken connection
                _log.debug("could not return an audit connection", exc_info=True)
                try:
                    conn.invalidate()  # not back to the pool with this log's session settings
                except Exception:  # noqa: BLE001 - it is being thrown away
                    _log.debug("could not invalidate an audit connection", exc_info=True)
        closer = getattr(self.publisher, "close", None)
        if callable(closer):
            closer()  # a BackgroundPublisher: publish what is queued

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- appends -------------------------------------------------------------------------------
    def append(self, record: Mapping[str, Any]) -> AppendResult:
        """Append one record; durable when this returns. Raises AuditAppendError otherwise."""
        return self.append_many([record])[0]

    def append_many(self, records: Sequence[Mapping[str, Any]]) -> list[AppendResult]:
        """Append records atomically and contiguously, in order."""
        with self._mutex:
            self._active += 1
        try:
            return self._append(records)
        finally:
            with self._mutex:
                self._active -= 1
                if self._lingering and self._gathered():
                    self._arrival.notify()

    def _append(self, records: Sequence[Mapping[str, Any]]) -> list[AppendResult]:
        try:
            items = [prepare(r) for r in records]
        except CanonicalizationError as exc:
            raise AuditAppendError(f"record rejected: {exc}") from exc
        if self.faults.take("fail_appends"):
            raise AuditAppendError("injected append failure")
        if not items:
            return []
        if self._timer is None and self._indexer is None:
            self.start()
        pending = _Pending(items)
        with self._mutex:
            if self._closed:
                raise AuditAppendError("audit log is closed")
            self._queue.append(pending)
            if self._lingering and self._gathered():
                self._arrival.notify()
            lead = not self._leading
            self._leading = True
        if not lead:
            pending.wake.acquire()  # until our batch is done or the lead is handed to us
        if not pending.done:
            self._lead()
        if pending.error is not None:
            raise pending.error
        return pending.results

    def _gathered(self) -> bool:
        # Every caller now inside append_many has queued. (Committing half while the other half
        # encode measured slower: a SQLite commit costs about as much for 4 records as for 8.)
        return len(self._queue) >= self._active

    def _lead(self) -> None:
        """Commit everything queued in one transaction, wake its callers, and hand the lead to
        the first caller that queued meanwhile (or give it up when nobody did)."""
        with self._mutex:
            if self.group_wait_s > 0 and not self._gathered():
                # Callers already inside append_many (encoding their records, or just woken
                # from the last batch) join this one instead of paying a transaction of their
                # own right after it (bounded by group_wait_ms).
                self._lingering = True
                self._arrival.wait_for(self._gathered, self.group_wait_s)
                self._lingering = False
            batch, self._queue = self._queue, []
        try:
            self._commit(batch)
        finally:
            with self._mutex:
                if self._queue:
                    self._queue[0].wake.release()  # not done: it leads the next batch
                else:
                    self._leading = False
            # The next batch may take the log lock while this one waits for its flush.
            self._flush_batch(batch)
            for waiting in batch:
                waiting.wake.release()  # the leader's own lock is still held from its birth
            if self._wal_restart_due:
                self._wal_restart()

    def _lock_head(self, conn: Connection) -> Head:
        # Straight to the driver's cursor on the hot path: a SQLAlchemy statement costs ~14 us,
        # the driver's ~1 us, and a batch runs about six of them.
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        if self.engine.dialect.name == "sqlite":
            cur.execute(self._sql["lock_sqlite"])  # first statement: takes the write lock
            cur.execute(self._sql["read_head"])
        else:
            cur.execute(self._sql["lock"])  # locks the head row and reads it
        row = cur.fetchone()
        cur.close()
        if row is None:
            raise AuditAppendError("audit log tables are not initialised (call create_tables)")
        head = Head(str(row[0]), int(row[1]), bytes(row[2]), int(row[3]))
        self._check_origin(head)
        return head

    def _load_frontier(self, conn: Connection, head: Head) -> Frontier:
        current = self._frontier
        if current is not None and current.size == head.tree_size and current.root() == head.root_hash:
            return current
        ids = frontier_nodes(head.tree_size)
        found = self.reader.fetch_nodes(conn, ids)
        try:
            frontier = Frontier(head.tree_size, [found[i] for i in ids])
        except KeyError as exc:
            raise AuditAppendError(f"tree node {exc.args[0]} is missing: the log is damaged") from exc
        if frontier.root() != head.root_hash:
            raise AuditAppendError("stored tree does not match the head root: the log is damaged")
        return frontier

    def _write(self, conn: Connection, items: Sequence[Prepared], *, sign: bool) -> tuple[int, Frontier,
                                                                                          Checkpoint | None]:
        """Sequence `items` after the head inside the caller's transaction on `conn`: take the log
        lock, insert entries, subjects and completed nodes, update the head (signing a checkpoint
        when `sign` and the mark is crossed). Returns (first index, new frontier, checkpoint)."""
        head = self._lock_head(conn)
        _, frontier, rows = self._rows(self._load_frontier(conn, head), items)
        root = frontier.root()
        checkpoint = None
        cp_size = head.checkpoint_size
        if sign and frontier.size - max(cp_size, 0) >= self.checkpoint_every:
            checkpoint = self._sign(conn, frontier.size, root)
            cp_size = frontier.size
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        self._insert(cur, rows, (frontier.size, root, cp_size))
        cur.close()
        return head.tree_size, frontier, checkpoint

    def append_in(self, conn: Connection, records: Sequence[Mapping[str, Any]]) -> list[AppendResult]:
        """Append records inside the caller's open transaction on `conn` (a connection of this log's
        database), so they commit — or roll back — together with the caller's own writes: the
        consent ledger appends each registry mutation this way, and a failed append undoes the
        mutation. Durable only once the caller commits. The log lock is held from here until that
        commit; no checkpoint is signed here (the timer or the next batch covers the entries).
        Raises AuditAppendError; the caller must then roll back."""
        try:
            items = [prepare(r) for r in records]
        except CanonicalizationError as exc:
            raise AuditAppendError(f"record rejected: {exc}") from exc
        if self.faults.take("fail_appends"):
            raise AuditAppendError("injected append failure")
        if not items:
            return []
        if self._closed:
            raise AuditAppendError("audit log is closed")
        if self._timer is None and self._indexer is None:
            self.start()
        # Not under self._write_lock: the caller may already hold the database lock (SQLite's
        # write lock, a registry row lock), and a group-commit leader holding _write_lock while
        # it waits for that lock would deadlock. The database lock alone sequences; the cached
        # frontier is only read (it is replaced, never changed in place, and checked against the
        # head's size and root) and is not updated here, since the caller may still roll back.
        try:
            first, _frontier, _ = self._write(conn, items, sign=False)
        except AuditAppendError:
            raise
        except Exception as exc:  # noqa: BLE001 - the caller must see one error type and roll back
            raise AuditAppendError(f"append failed: {exc}") from exc
        return [AppendResult(first + i, item.leaf_hash.hex(), None) for i, item in enumerate(items)]

    def _commit(self, batch: list[_Pending]) -> None:
        """Sequence and write one batch in one transaction (`_write_batch`) and set each caller's
        results, or the one error of the batch on every caller in it."""
        try:
            with self._write_lock:
                items = [item for pending in batch for item in pending.items]
                first, checkpoint, flush = self._write_batch(items)
                self._batches += 1
                self._batched += len(items)
        except Exception as exc:  # noqa: BLE001 - every failure must reach the waiting callers
            error = exc if isinstance(exc, AuditAppendError) else AuditAppendError(f"append failed: {exc}")
            if error is not exc:
                error.__cause__ = exc
            for pending in batch:
                pending.error = error
                pending.done = True
            return
        self._published(checkpoint)
        cp_dict = None if checkpoint is None else checkpoint.as_dict()
        for pending in batch:
            for item in pending.items:
                pending.results.append(AppendResult(first, item.leaf_hash.hex(), cp_dict))
                first += 1
            pending.flush = flush
            pending.done = True

    # -- the batch writer ------------------------------------------------------------------------
    def _writer(self) -> Any:
        """The connection batches are written on: one per log, kept (a pool checkout and
        SQLAlchemy's transaction wrapper cost more than a SQLite batch of 8). Under _write_lock.

        SQLite file: its commits do not checkpoint the WAL (`wal_autocheckpoint=0`): a checkpoint
        copies pages back and syncs the file, and run by the batch writer it held every caller of
        the batch for that long; a thread does it instead (`_wal_loop`, PASSIVE, every 200 ms)."""
        if self._writer_conn is None:
            conn = self.engine.raw_connection()
            if self._pg:
                # Autocommit: the batch sends its own BEGIN and COMMIT (`_write_batch_pg`).
                # Batches commit without waiting for the WAL flush (callers are answered after
                # `_flush`); a batch that signs a checkpoint sets it back on for itself.
                from psycopg import pq

                dc: Any = conn.driver_connection
                dc.autocommit = True
                self._prepared = f"{self.tables.prefix}batch_{id(self):x}"
                # Prepared once per connection: the batch statement, the head lock and the
                # leaves read (parsing and planning those two cost the server ~110 us per batch;
                # the leaves read takes both bounds, so its generic plan is an index range scan —
                # with `idx >= $1 ... LIMIT $2` it read the whole table).
                name, p = self._prepared, self.tables.prefix
                pgwire.simple(dc, (
                    f"SET synchronous_commit TO off; SET bytea_output TO hex; PREPARE {name} "  # noqa: S608
                    f"(json, json, json, bigint, bytea, bigint, text[]) AS "
                    f"{_batch_pg(p, [f'${i}' for i in range(1, 8)])}; "
                    f"PREPARE {name}_lock AS {self._sql['lock']}; "
                    f"PREPARE {name}_leaves (bigint, bigint) AS SELECT idx, leaf_hash FROM {p}entries "
                    f"WHERE idx >= $1 AND idx < $2 ORDER BY idx").encode())
                self._escape = pq.Escaping(dc.pgconn)
            if self._sqlite_file:
                cur = conn.cursor()
                cur.execute("PRAGMA wal_autocheckpoint=0")
                cur.close()
                self._start_wal_checkpoints()
            self._writer_conn = conn
        return self._writer_conn

    def _start_wal_checkpoints(self) -> None:
        with self._mutex:
            if self._wal_thread is None and not self._closed:
                self._wal_thread = threading.Thread(target=self._wal_loop, name="audit-wal", daemon=True)
                self._wal_thread.start()

    def _wal_loop(self) -> None:
        while not self._stop.wait(_WAL_CHECKPOINT_S):
            try:
                with self.engine.connect() as conn:
                    row = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").first()
                if row is not None and row[1] is not None and int(row[1]) > _WAL_RESTART_PAGES:
                    self._wal_restart_due = True
            except Exception:  # noqa: BLE001 - the next round, or any other connection, checkpoints
                _log.warning("audit WAL checkpoint failed", exc_info=True)

    def _wal_restart(self) -> None:
        """SQLite only rewinds the WAL file when a writer starts after a checkpoint that left no
        frame behind; under a steady stream of batches the thread's checkpoints rarely catch the
        last batch, and the WAL could grow without bound. So, once it is past
        `_WAL_RESTART_PAGES`, the batch writer checkpoints once itself, between two batches (the
        thread has already copied all but the last few frames), and its next batch starts the
        file over. Called after a batch's callers were woken."""
        with self._write_lock:
            self._wal_restart_due = False
            if self._writer_conn is None:
                return
            try:
                cur = self._writer_conn.cursor()
                cur.execute("PRAGMA wal_checkpoint(PASSIVE)")
                cur.close()
            except Exception:  # noqa: BLE001 - the thread tries again; appends are unaffected
                _log.warning("audit WAL restart checkpoint failed", exc_info=True)

    def _drop_writer(self) -> None:
        conn, self._writer_conn = self._writer_conn, None
        if conn is not None:
            try:
                conn.invalidate()
            except Exception:  # noqa: BLE001 - it is being thrown away
                _log.debug("could not invalidate the audit writer connection", exc_info=True)

    def _write_batch(self, items: Sequence[Prepared]) -> tuple[int, Checkpoint | None, int]:
        """Sequence `items` after the head in one transaction on the writer connection: take the log
        lock, bring the cached frontier up to the head (reading back the leaves another process
        appended), insert entries with their query columns, subjects and completed nodes, update the
        head (signing a checkpoint when the mark is crossed) and commit. Returns (first index,
        checkpoint, 0 or the commit number `_flush` must cover before callers are answered).
        Under _write_lock.

        PostgreSQL: two round trips (lock + catch-up read; one statement for every write +
        COMMIT: `_write_batch_pg`), and the COMMIT does not wait for the WAL flush
        (`synchronous_commit = off` for the writer's session), so the log lock is held for no disk
        flush; callers are answered after the durability barrier (in the same message when nobody
        is queued behind the batch, else `_flush`). A batch that signs a checkpoint commits
        synchronously (a signed checkpoint is never visible before the entries under it are
        durable)."""
        conn = self._writer()
        dc = conn.driver_connection
        try:
            if self._pg:
                return self._write_batch_pg(dc, items)
            return self._write_batch_sqlite(dc, items)
        except BaseException:
            self._frontier = None
            if self._pg:
                # A new connection, not a ROLLBACK: psycopg follows a rollback with DEALLOCATE ALL
                # when it had prepared statements of its own on the connection, which also drops
                # the batch statement this log PREPAREd (the next batch then failed with "prepared
                # statement does not exist"). A failed batch is rare; reconnecting is cheap.
                self._drop_writer()
                raise
            try:
                dc.rollback()
            except Exception:  # noqa: BLE001 - a broken connection: start on a new one
                self._drop_writer()
            raise

    def _write_batch_sqlite(self, dc: Any, items: Sequence[Prepared]) -> tuple[int, Checkpoint | None, int]:
        cur = dc.cursor()
        try:
            cur.execute(self._sql["lock_read_sqlite"])  # first statement: takes the database write lock
            head = self._head_row(cur.fetchone())
            frontier = self._caught_up(cur, head, None)
            first, frontier, rows = self._rows(frontier, items)
            checkpoint, cp_size = self._maybe_sign(cur, head, frontier)
            self._insert(cur, rows, (frontier.size, frontier.root(), cp_size))
            if self.faults.take("fail_commits"):
                raise RuntimeError("injected commit failure")
        finally:
            cur.close()
        dc.commit()
        self._frontier = frontier
        return first, checkpoint, 0

    def _write_batch_pg(self, dc: Any, items: Sequence[Prepared]) -> tuple[int, Checkpoint | None, int]:
        """Two round trips, each one simple-protocol message of several statements sent straight
        through libpq (`pgwire`; psycopg's pipeline mode cost 2-3x the client CPU of a plain round
        trip, and its cursor another ~70 us per round trip): (1) BEGIN, the head row `FOR UPDATE`,
        the leaves since the cached frontier (a statement of its own, so it reads after the lock
        is granted); (2) the prepared batch statement with the rows as literals, and COMMIT (+ the
        barrier, when nobody is queued). The writer connection is in autocommit mode, so psycopg
        sends nothing else."""
        cached = self._frontier
        name = self._prepared.encode()
        read = b"BEGIN; EXECUTE %s_lock" % name
        if cached is not None:
            read += b"; EXECUTE %s_leaves(%d, %d)" % (name, cached.size, cached.size + _CATCH_UP + 1)
        results = pgwire.simple(dc, read)
        lock = results[1]
        head = self._head_row(None if lock.ntuples != 1 else (
            lock.get_value(0, 0).decode(), lock.get_value(0, 1), pgwire.bytea(lock.get_value(0, 2)),
            lock.get_value(0, 3)))
        leaves = None
        if cached is not None:
            got, value = results[2], results[2].get_value
            leaves = [(int(value(r, 0)), pgwire.bytea(value(r, 1))) for r in range(got.ntuples)]
        cur = dc.cursor()  # ~5 us; used only to read frontier nodes back or to sign, rarely
        try:
            frontier = self._caught_up(cur, head, leaves)
            first, frontier, rows = self._rows(frontier, items)
            checkpoint, cp_size = self._maybe_sign(cur, head, frontier)  # its own round trip, rarely
            literal = self._escape.escape_literal
            e, s, n = (literal(j) for j in _batch_json(rows))
            records = b",".join([literal(item.data) for item in items])
            write = (b"SET LOCAL synchronous_commit TO on; " if checkpoint is not None else b"") + (
                b"EXECUTE %s(%s, %s, %s, %d, decode('%s', 'hex'), %d, ARRAY[%s])"
                % (name, e, s, n, frontier.size, frontier.root().hex().encode(), cp_size, records))
            if self.faults.take("fail_commits"):
                pgwire.simple(dc, write)
                raise RuntimeError("injected commit failure")
            # Nobody queued for the next batch (e.g. every writer thread is in this one): the
            # durability barrier rides in the same message, after the COMMIT that released the
            # lock — one round trip and one backend fewer. Otherwise `_flush` runs it on its own
            # connection, so that the next batch may take the lock meanwhile.
            merged = checkpoint is None and not self._queue
            pgwire.simple(dc, write + (_MERGED_BARRIER if merged else b"; COMMIT"))
        finally:
            cur.close()
        self._frontier = frontier
        if checkpoint is not None:
            return first, checkpoint, 0  # committed synchronously
        with self._seq_mutex:
            self._committed += 1
            if merged:  # durable, and so is every commit before it
                self._flushed = max(self._flushed, self._committed)
            return first, checkpoint, self._committed

    def _head_row(self, row: Any) -> Head:
        if row is None:
            raise AuditAppendError("audit log tables are not initialised (call create_tables)")
        head = Head(str(row[0]), int(row[1]), bytes(row[2]), int(row[3]))
        self._check_origin(head)
        return head

    def _caught_up(self, cur: Any, head: Head, leaves: list[tuple[int, bytes]] | None) -> Frontier:
        """The frontier at the head: the cached one, or the cached one with the leaves appended
        since (by another process, or `append_in`) pushed onto it, or — far behind, or when that
        does not give the head's root — the O(log n) frontier nodes read back and checked."""
        cached = self._frontier
        if cached is not None and cached.size == head.tree_size and cached.root() == head.root_hash:
            return cached
        behind = head.tree_size - (cached.size if cached is not None else 0)
        if cached is not None and 0 < behind <= _CATCH_UP:
            if leaves is None:
                cur.execute(self._sql["leaves"], (cached.size, behind))
                leaves = [(int(i), bytes(h)) for i, h in cur.fetchall()]
            leaves = leaves[:behind]
            if [i for i, _ in leaves] == list(range(cached.size, head.tree_size)):
                frontier = cached.copy()
                for _, leaf in leaves:
                    frontier.push(leaf)
                if frontier.root() == head.root_hash:
                    return frontier
        ids = frontier_nodes(head.tree_size)
        found = self._raw_nodes(cur, ids)
        try:
            frontier = Frontier(head.tree_size, [found[i] for i in ids])
        except KeyError as exc:
            raise AuditAppendError(f"tree node {exc.args[0]} is missing: the log is damaged") from exc
        if frontier.root() != head.root_hash:
            raise AuditAppendError("stored tree does not match the head root: the log is damaged")
        return frontier

    def _raw_nodes(self, cur: Any, ids: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        out: dict[tuple[int, int], bytes] = {}
        p, ph = self.tables.prefix, self._ph
        leaves = [i for lvl, i in ids if lvl == 0]
        upper = {node_id(lvl, i): (lvl, i) for lvl, i in ids if lvl > 0}
        if leaves:
            cur.execute(f"SELECT idx, leaf_hash FROM {p}entries WHERE idx IN ({', '.join([ph] * len(leaves))})",  # noqa: S608
                        leaves)
            for idx, h in cur.fetchall():
                out[(0, int(idx))] = bytes(h)
        if upper:
            cur.execute(f"SELECT nid, hash FROM {p}nodes WHERE nid IN ({', '.join([ph] * len(upper))})",  # noqa: S608
                        list(upper))
            for nid, h in cur.fetchall():
                out[upper[int(nid)]] = bytes(h)
        return out

    @staticmethod
    def _rows(frontier: Frontier, items: Sequence[Prepared]) -> tuple[int, Frontier, _Rows]:
        """The rows of `items` appended after `frontier` (a copy is advanced, not `frontier`)."""
        frontier = frontier.copy()
        first = frontier.size
        entries: list[tuple[Any, ...]] = []
        subjects: list[tuple[int, str]] = []
        nodes: list[tuple[int, bytes]] = []
        push = frontier.push
        for item in items:  # plain loops and appends: this runs once per entry under the log lock
            idx = frontier.size
            c = item.columns
            entries.append((idx, item.leaf_hash, item.data.decode("utf-8"), c.kind, c.tenant,
                            c.use, c.decision, c.time_us, c.decision_id))
            for s in c.subjects:
                subjects.append((idx, s))
            for lvl, i, h in push(item.leaf_hash):
                nodes.append((node_id(lvl, i), h))
        return first, frontier, (entries, subjects, nodes)

    def _insert(self, cur: Any, rows: _Rows, head: tuple[int, bytes, int]) -> None:
        """Insert the rows and set the head (size, root, checkpoint size). PostgreSQL: one
        statement (`_batch_pg`); SQLite: `executemany` per table, which
        steps one prepared statement in C."""
        entries, subjects, nodes = rows
        if self._pg:
            # Named: the records' placeholder comes first in the text.
            e, s, n = (j.decode() for j in _batch_json(rows))
            size, root, cp = head
            cur.execute(self._sql["batch_pg"], {"e": e, "s": s, "n": n, "size": size, "root": root, "cp": cp,
                                                "r": _batch_records(rows)})
            return
        cur.executemany(self._sql["entry"], entries)
        if subjects:
            cur.executemany(self._sql["subject"], subjects)
        if nodes:
            cur.executemany(self._sql["node"], nodes)
        cur.execute(self._sql["set_head"], head)

    def _maybe_sign(self, cur: Any, head: Head, frontier: Frontier) -> tuple[Checkpoint | None, int]:
        if frontier.size - max(head.checkpoint_size, 0) < self.checkpoint_every:
            return None, head.checkpoint_size
        if self.faults.take("fail_checkpoints"):
            raise RuntimeError("injected checkpoint failure")
        checkpoint = self.signer.sign_checkpoint(self.origin, frontier.size, frontier.root())
        cur.execute(self._sql["checkpoint"], (frontier.size, frontier.root(), checkpoint.note, _now()))
        return checkpoint, frontier.size

    def _flush_batch(self, batch: list[_Pending]) -> None:
        """Wait until the batch's asynchronous commit is on disk before its callers are answered;
        a failure fails them all (fail closed: their entries may or may not have survived)."""
        needed = max((p.flush for p in batch if p.error is None), default=0)
        if not needed:
            return
        try:
            self._flush(needed)
        except Exception as exc:  # noqa: BLE001 - the callers must see one error type
            error = AuditAppendError(f"append not confirmed durable: {exc}")
            error.__cause__ = exc
            for pending in batch:
                if pending.error is None:
                    pending.error = error
                    pending.results = []

    def _flush(self, mine: int) -> None:
        """PostgreSQL durability barrier: a transaction that writes one WAL record (a logical
        decoding message, no table) and commits synchronously, in one round trip on the log's
        flush connection; its commit returns once the WAL up to it — and so every commit before
        it, this process's and others' — is on disk. Barriers are shared: one that starts after
        commit number `mine` covers it, so a batch that a barrier started meanwhile covered
        does not run its own (PostgreSQL also merges concurrent flushes of several processes)."""
        with self._flush_lock:
            if self._flushed >= mine:
                return
            with self._seq_mutex:
                covers = self._committed  # every commit counted here happened before this barrier
            if self._flush_conn is None:
                self._flush_conn = self.engine.raw_connection()
                self._flush_conn.driver_connection.autocommit = True  # back off in close()
            dc = self._flush_conn.driver_connection
            try:
                # Autocommit: one statement, its own synchronous transaction, one round trip.
                pgwire.simple(dc, b"SELECT pg_logical_emit_message(true, 'consentgate.audit', 'flush')")
            except BaseException:
                conn, self._flush_conn = self._flush_conn, None
                try:
                    conn.invalidate()
                except Exception:  # noqa: BLE001 - it is being thrown away
                    _log.debug("could not invalidate the audit flush connection", exc_info=True)
                raise
            with self._seq_mutex:  # a merged barrier (`_write_batch_pg`) may have covered more
                self._flushed = max(self._flushed, covers)

    # -- checkpoints ---------------------------------------------------------------------------
    def _sign(self, conn: Connection, size: int, root: bytes) -> Checkpoint:
        if self.faults.take("fail_checkpoints"):
            raise RuntimeError("injected checkpoint failure")
        checkpoint = self.signer.sign_checkpoint(self.origin, size, root)
        conn.exec_driver_sql(self._sql["checkpoint"], (size, root, checkpoint.note, _now()))
        return checkpoint

    def publish_checkpoint(self) -> Checkpoint:
        """Sign a checkpoint of the current tree now (returns the latest if nothing is new)."""
        with self._write_lock, self.engine.begin() as conn:
            head = self._lock_head(conn)
            if head.checkpoint_size == head.tree_size:
                latest = self.reader.latest_checkpoint(conn)
                if latest is not None:
                    return latest
            checkpoint = self._sign(conn, head.tree_size, head.root_hash)
            conn.exec_driver_sql(self._sql["set_head"], (head.tree_size, head.root_hash, head.tree_size))
        self._published(checkpoint)
        return checkpoint

    def _tick(self) -> None:
        while not self._stop.wait(self.checkpoint_interval_ms / 1000):
            try:
                head = self.reader.head()
                if head.tree_size > max(head.checkpoint_size, 0):
                    self.publish_checkpoint()
            except Exception:  # noqa: BLE001 - the timer must survive a bad moment of the database
                _log.exception("audit checkpoint publication failed")

    # -- postings ------------------------------------------------------------------------------
    def index_pending(self, max_entries: int = CHUNK) -> int:
        """Write the lookup postings of up to `max_entries` appended entries that have none yet
        (see `LookupIndexer`); returns how many entries it covered. The background indexer calls
        this every `index_interval_ms`; queries are complete either way (`LogReader.query`)."""
        return self._lookups.run(max_entries)

    def _index_loop(self) -> None:
        while not self._stop.wait(self.index_interval_ms / 1000):
            try:
                while self.index_pending() >= CHUNK and not self._stop.is_set():
                    pass  # catching up: go on at once
            except Exception:  # noqa: BLE001 - the indexer must survive a bad moment of the database
                _log.exception("audit lookup indexing failed")

    def batch_stats(self) -> tuple[int, int]:
        """(batches, entries) this log object has written through the group commit so far: their
        ratio is the batch size actually achieved (bench/audit.py prints it)."""
        with self._write_lock:
            return self._batches, self._batched

    # -- reads (see LogReader) -----------------------------------------------------------------
    def head(self) -> Head:
        return self.reader.head()

    def latest_checkpoint(self) -> Checkpoint | None:
        return self.reader.latest_checkpoint()

    def entry(self, index: int, *, tenant: str | None = None) -> AuditEntry:
        return self.reader.entry(index, tenant=tenant)

    def query(
        self,
        *,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        tenant: str | None = None,
        decision: str | None = None,
        subject: str | None = None,
        use: str | None = None,
        kind: str | None = None,
        decision_id: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
        descending: bool = False,
    ) -> tuple[list[AuditEntry], str | None]:
        """Filtered, paged entries; see `LogReader.query`. Returns (entries, next cursor or None)."""
        return self.reader.query(since=since, until=until, tenant=tenant, decision=decision,
                                 subject=subject, use=use, kind=kind, decision_id=decision_id,
                                 cursor=cursor, limit=limit, descending=descending)

    def inclusion_proof(self, index: int, tree_size: int | None = None) -> InclusionProof:
        """Proof of `index` in the tree of `tree_size` (default: the latest checkpoint's size)."""
        if tree_size is None:
            latest = self.latest_checkpoint()
            if latest is None or latest.tree_size <= index:
                raise ProofError(f"no checkpoint covers entry {index} yet (one is pending)")
            tree_size = latest.tree_size
        return self.reader.inclusion_proof(index, tree_size)

    def consistency_proof(self, first: int, second: int) -> ConsistencyProof:
        return self.reader.consistency_proof(first, second)

    def receipts(self, indexes: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Receipts of the covered entries among `indexes`; see `LogReader.receipts`."""
        return self.reader.receipts(indexes)

    def receipt(self, index: int, *, tenant: str | None = None) -> dict[str, Any]:
        """Entry `index`'s receipt against the latest checkpoint; see `LogReader.receipt`."""
        return self.reader.receipt(index, tenant=tenant)
