"""Why: the read side's values — a query, the head, an entry, its proofs — apart from the SQLAlchemy
reader, so that what reads the log without SQLAlchemy (`sqlite.py`: the CLI on the default SQLite data
dir, which cannot afford its import, #22.6) returns the very same objects. `reader.py` re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from .canonical import time_us
from .notes import Checkpoint

MAX_LIMIT = 1000


@dataclass(frozen=True)
class AuditQuery:
    """One filtered, paged read of the log: entries matching every given filter, in log order
    (newest first with `descending`), `limit` at a time. `since` is inclusive and `until` exclusive
    (on `created_at`); `cursor` is the one the previous page returned; `tenant` restricts the read
    to one tenant. `LogReader.query(q)`; `AuditLog.query(**q.as_kwargs())`."""

    since: datetime | str | None = None
    until: datetime | str | None = None
    tenant: str | None = None
    decision: str | None = None
    subject: str | None = None
    use: str | None = None
    kind: str | None = None
    decision_id: str | None = None
    cursor: str | None = None
    limit: int = 100
    descending: bool = False

    def as_kwargs(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Head:
    origin: str
    tree_size: int
    root_hash: bytes
    checkpoint_size: int


@dataclass(frozen=True)
class InclusionProof:
    index: int
    tree_size: int
    leaf_hash: bytes
    hashes: list[bytes]

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "tree_size": self.tree_size,
            "leaf_hash": self.leaf_hash.hex(),
            "hashes": [h.hex() for h in self.hashes],
        }


@dataclass(frozen=True)
class ConsistencyProof:
    first: int
    second: int
    first_root: bytes
    second_root: bytes
    hashes: list[bytes]

    def as_dict(self) -> dict[str, Any]:
        return {
            "first": self.first,
            "second": self.second,
            "first_root": self.first_root.hex(),
            "second_root": self.second_root.hex(),
            "hashes": [h.hex() for h in self.hashes],
        }


@dataclass(frozen=True)
class AuditEntry:
    """One log entry. `checkpoint` is the latest checkpoint if it covers the entry, else None
    (a checkpoint is pending); `inclusion_proof` is filled by `entry()` when it is covered."""

    index: int
    leaf_hash: bytes
    record: dict[str, Any]
    checkpoint: Checkpoint | None = None
    inclusion_proof: list[bytes] | None = None

    @property
    def checkpoint_pending(self) -> bool:
        return self.checkpoint is None

    def audit_field(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "leaf_hash": self.leaf_hash.hex(),
            "checkpoint": None if self.checkpoint is None else self.checkpoint.as_dict(),
        }

    def to_record(self) -> dict[str, Any]:
        """The stored record with its `audit` field filled in."""
        return {**self.record, "audit": self.audit_field()}

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.audit_field(),
            "record": self.to_record(),
            "checkpoint_pending": self.checkpoint_pending,
            "inclusion_proof": None
            if self.inclusion_proof is None
            else [h.hex() for h in self.inclusion_proof],
        }


def time_bound(value: datetime | str | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        value = value.isoformat()
    bound = time_us(value)
    if bound is None:
        raise ValueError(f"not an RFC 3339 time: {value!r}")
    return bound
