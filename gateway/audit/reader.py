"""Why: everything an auditor reads — entries with filters and paging, one entry with its proof,
checkpoints, inclusion and consistency proofs — served from the stored subtree hashes with a
couple of indexed lookups, never by re-reading the log.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Engine, and_, exists, select
from sqlalchemy.engine import Connection

from .errors import AuditNotFound, ProofError
from .merkle import EMPTY_ROOT, NodeId, consistency_ranges, hashes_of, inclusion_ranges
from .notes import Checkpoint
from .schema import AuditTables, node_id
from .values import MAX_LIMIT, AuditEntry, AuditQuery, ConsistencyProof, Head, InclusionProof
from .values import time_bound as _time_bound

__all__ = ["MAX_LIMIT", "AuditEntry", "AuditQuery", "ConsistencyProof", "Head", "InclusionProof", "LogReader"]


class LogReader:
    """Read side of a log stored in `tables` on `engine`."""

    def __init__(self, engine: Engine, tables: AuditTables) -> None:
        self.engine = engine
        self.t = tables

    # -- state ---------------------------------------------------------------------------------
    def head(self, conn: Connection | None = None) -> Head:
        if conn is None:
            with self.engine.connect() as c:
                return self.head(c)
        h = self.t.head
        row = conn.execute(
            select(h.c.origin, h.c.tree_size, h.c.root_hash, h.c.checkpoint_size).where(h.c.id == 1)
        ).first()
        if row is None:
            raise AuditNotFound("audit log tables are not initialised (call create_tables)")
        return Head(row[0], int(row[1]), bytes(row[2]), int(row[3]))

    def latest_checkpoint(self, conn: Connection | None = None) -> Checkpoint | None:
        if conn is None:
            with self.engine.connect() as c:
                return self.latest_checkpoint(c)
        cp = self.t.checkpoints
        row = conn.execute(
            select(cp.c.tree_size, cp.c.root_hash, cp.c.note).order_by(cp.c.tree_size.desc()).limit(1)
        ).first()
        if row is None:
            return None
        return Checkpoint(self.head(conn).origin, int(row[0]), bytes(row[1]), str(row[2]))

    def fetch_nodes(self, conn: Connection, ids: Iterable[NodeId]) -> dict[NodeId, bytes]:
        ids = list(ids)
        out: dict[NodeId, bytes] = {}
        leaves = [i for lvl, i in ids if lvl == 0]
        upper = {node_id(lvl, i): (lvl, i) for lvl, i in ids if lvl > 0}
        e, n = self.t.entries, self.t.nodes
        if leaves:
            for idx, h in conn.execute(select(e.c.idx, e.c.leaf_hash).where(e.c.idx.in_(leaves))):
                out[(0, int(idx))] = bytes(h)
        if upper:
            for nid, h in conn.execute(select(n.c.nid, n.c.hash).where(n.c.nid.in_(list(upper)))):
                out[upper[int(nid)]] = bytes(h)
        return out

    def indexed_size(self, conn: Connection | None = None) -> int:
        """How many entries (from index 0) have their lookup postings written."""
        if conn is None:
            with self.engine.connect() as c:
                return self.indexed_size(c)
        st = self.t.lookup_state
        value = conn.execute(select(st.c.indexed_size).where(st.c.id == 1)).scalar()
        return 0 if value is None else int(value)

    # -- proofs --------------------------------------------------------------------------------
    def _size_ok(self, conn: Connection, size: int) -> None:
        current = self.head(conn).tree_size
        if size > current:
            raise ProofError(f"the log has {current} entries, not {size}")

    def root_at(self, size: int, conn: Connection | None = None) -> bytes:
        if conn is None:
            with self.engine.connect() as c:
                return self.root_at(size, c)
        self._size_ok(conn, size)
        if size == 0:
            return EMPTY_ROOT
        return hashes_of([(0, size)], lambda ids: self.fetch_nodes(conn, ids))[0]

    def inclusion_proof(self, index: int, tree_size: int, conn: Connection | None = None) -> InclusionProof:
        if conn is None:
            with self.engine.connect() as c:
                return self.inclusion_proof(index, tree_size, c)
        self._size_ok(conn, tree_size)
        ranges = inclusion_ranges(index, tree_size)
        hashes = hashes_of([(index, index + 1), *ranges], lambda ids: self.fetch_nodes(conn, ids))
        return InclusionProof(index, tree_size, hashes[0], hashes[1:])

    def consistency_proof(self, first: int, second: int) -> ConsistencyProof:
        with self.engine.connect() as conn:
            self._size_ok(conn, second)
            ranges = consistency_ranges(first, second)
            whole = [(0, first), (0, second)]
            hashes = hashes_of([*whole, *ranges], lambda ids: self.fetch_nodes(conn, ids))
        first_root = hashes[0] if first else EMPTY_ROOT
        second_root = hashes[1] if second else EMPTY_ROOT
        return ConsistencyProof(first, second, first_root, second_root, hashes[2:])

    def receipt(self, index: int, *, tenant: str | None = None) -> dict[str, Any]:
        """The receipt of entry `index` against the latest checkpoint (see receipts.py):
        `{index, leaf_hash, inclusion_proof, checkpoint}`. Raises AuditNotFound for no such entry
        (or one of another tenant, when `tenant` is given) and ProofError while no checkpoint
        covers it yet."""
        e = self.t.entries
        with self.engine.connect() as conn:
            row = conn.execute(select(e.c.leaf_hash, e.c.tenant).where(e.c.idx == index)).first()
            if row is None or (tenant is not None and row[1] != tenant):
                raise AuditNotFound(f"no audit entry {index}")
            checkpoint = self.latest_checkpoint(conn)
            if checkpoint is None or checkpoint.tree_size <= index:
                raise ProofError(f"no signed checkpoint covers entry {index} yet (one is pending)")
            proof = self.inclusion_proof(index, checkpoint.tree_size, conn)
        return {"index": index, "leaf_hash": bytes(row[0]).hex(), "inclusion_proof": proof.as_dict(),
                "checkpoint": checkpoint.as_dict()}

    def receipts(self, indexes: Iterable[int]) -> dict[int, dict[str, Any]]:
        """Receipts (as `receipt`) of the given entries that the latest checkpoint covers, all
        against that one checkpoint, read on one connection; uncovered or unknown indexes are left
        out."""
        wanted = sorted(set(indexes))
        out: dict[int, dict[str, Any]] = {}
        if not wanted:
            return out
        with self.engine.connect() as conn:
            checkpoint = self.latest_checkpoint(conn)
            if checkpoint is None:
                return out
            size = checkpoint.tree_size
            for index in wanted:
                if index >= size:
                    break
                proof = self.inclusion_proof(index, size, conn)
                out[index] = {"index": index, "leaf_hash": proof.leaf_hash.hex(), "inclusion_proof": proof.as_dict(),
                              "checkpoint": checkpoint.as_dict()}
        return out

    # -- entries -------------------------------------------------------------------------------
    def entry(self, index: int, *, tenant: str | None = None, with_proof: bool = True) -> AuditEntry:
        e = self.t.entries
        with self.engine.connect() as conn:
            row = conn.execute(
                select(e.c.idx, e.c.leaf_hash, e.c.record, e.c.tenant).where(e.c.idx == index)
            ).first()
            if row is None or (tenant is not None and row[3] != tenant):
                raise AuditNotFound(f"no audit entry {index}")
            checkpoint = self.latest_checkpoint(conn)
            if checkpoint is None or checkpoint.tree_size <= index:
                return AuditEntry(index, bytes(row[1]), json.loads(row[2]))
            proof = None
            if with_proof:
                proof = self.inclusion_proof(index, checkpoint.tree_size, conn).hashes
            return AuditEntry(index, bytes(row[1]), json.loads(row[2]), checkpoint, proof)

    def query(self, q: AuditQuery | None = None, /, **filters: Any) -> tuple[list[AuditEntry], str | None]:
        """The page of entries `q` (or an `AuditQuery` of the keyword filters) selects, and the
        cursor of the next page (None when there is none)."""
        q = q if q is not None else AuditQuery(**filters)
        since, until, tenant, decision, subject = q.since, q.until, q.tenant, q.decision, q.subject
        use, kind, decision_id, cursor = q.use, q.kind, q.decision_id, q.cursor
        limit, descending = q.limit, q.descending
        e, s, lk = self.t.entries, self.t.subjects, self.t.lookup
        limit = max(1, min(int(limit), MAX_LIMIT))
        conds: list[Any] = []
        lo, hi = _time_bound(since), _time_bound(until)
        if lo is not None:
            conds.append(e.c.time_us >= lo)
        if hi is not None:
            conds.append(e.c.time_us < hi)
        for column, value in ((e.c.tenant, tenant), (e.c.decision, decision), (e.c.use, use),
                              (e.c.kind, kind), (e.c.decision_id, decision_id)):
            if value is not None:
                conds.append(column == value)
        if subject is not None:
            conds.append(exists().where(and_(s.c.idx == e.c.idx, s.c.subject_id == subject)))
        after: int | None = None
        if cursor is not None:
            try:
                after = int(cursor)
                if not 0 <= after < 2**63:
                    raise ValueError("cursor out of range")
            except ValueError as exc:
                raise ValueError(f"invalid cursor {cursor!r}") from exc
        # The filters whose values scatter (subject, decision id, tenant) are driven by the
        # postings for the indexed entries and by the stored columns for the not-yet-indexed tail;
        # every other condition (the driver's own column too) still applies, so a forged posting
        # can never bring in an entry that does not match.
        driver = (f"s:{subject}" if subject is not None else f"d:{decision_id}" if decision_id is not None
                  else f"t:{tenant}" if tenant is not None else None)
        with self.engine.connect() as conn:
            indexed = self.indexed_size(conn) if driver is not None else 0
            parts = []
            if indexed > 0:
                idx_col = lk.c.idx
                head_conds = [lk.c.key == driver, idx_col < indexed]
                if after is not None:
                    head_conds.append(idx_col < after if descending else idx_col > after)
                parts.append(select(e.c.idx, e.c.leaf_hash, e.c.record).select_from(
                    lk.join(e, e.c.idx == lk.c.idx)).where(*head_conds, *conds)
                    .order_by(idx_col.desc() if descending else idx_col.asc()).limit(limit + 1))
            tail_conds = list(conds)
            if indexed > 0:
                tail_conds.append(e.c.idx >= indexed)
            if after is not None:
                tail_conds.append(e.c.idx < after if descending else e.c.idx > after)
            order = e.c.idx.desc() if descending else e.c.idx.asc()
            parts.append(select(e.c.idx, e.c.leaf_hash, e.c.record).where(*tail_conds).order_by(order)
                         .limit(limit + 1))
            if descending:
                parts.reverse()  # the tail holds the newest entries
            rows: list[Any] = []
            for stmt in parts:
                if len(rows) > limit:
                    break
                rows.extend(conn.execute(stmt).all())
            rows = rows[: limit + 1]
            checkpoint = self.latest_checkpoint(conn)
        more = len(rows) > limit
        rows = rows[:limit]
        covered = -1 if checkpoint is None else checkpoint.tree_size
        entries = [
            AuditEntry(int(i), bytes(h), json.loads(r), checkpoint if int(i) < covered else None)
            for i, h, r in rows
        ]
        return entries, (str(entries[-1].index) if more and entries else None)
