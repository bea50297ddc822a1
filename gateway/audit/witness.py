"""Why: a signature shows who signed a checkpoint, not that the log behind it was never rewritten.
A *witness* remembers the last checkpoint it saw and accepts a new one only with a consistency proof
that the new tree extends the old — so a log the key holder rewrote (a fork, a rollback, a split
view) is caught the next time the witness looks (Sigstore Rekor / C2SP tlog-witness are the
anchor). The witness trusts only the log's public key; proofs come from the source, which it does
not trust. Its state is one file holding the last signed note it accepted (written atomically).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .errors import AuditError, ProofError
from .notes import Checkpoint, PublicKeyLike, checkpoint_note_from
from .receipts import check_checkpoint, check_consistency


class CheckpointSource(Protocol):
    """Where the witness reads the log's latest signed checkpoint and consistency proofs."""

    def latest_checkpoint(self) -> str: ...

    def consistency(self, first: int, second: int) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class WitnessResult:
    ok: bool
    message: str
    previous_size: int | None
    size: int | None
    root_hash: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "message": self.message, "previous_size": self.previous_size, "size": self.size,
                "root_hash": self.root_hash}


def _write_state(path: Path, note: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(note)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def witness(source: CheckpointSource, public_key: PublicKeyLike, state: str | os.PathLike[str], *,
            origin: str | None = None) -> WitnessResult:
    """One witnessing step: verify the source's latest checkpoint, check it extends the one in
    `state` (a consistency proof between the two signed trees), and only then remember it. A fork,
    a rollback or a bad signature leaves the state as it was and returns ok=False."""
    path = Path(state)
    try:
        new = check_checkpoint(checkpoint_note_from(source.latest_checkpoint()), public_key, origin=origin)
    except AuditError as exc:
        return WitnessResult(False, f"the source's checkpoint does not verify: {exc}", None, None)
    except (OSError, ValueError) as exc:
        return WitnessResult(False, f"cannot read the source's checkpoint: {exc}", None, None)
    old: Checkpoint | None = None
    if path.exists():
        try:
            old = check_checkpoint(path.read_text(encoding="utf-8"), public_key, origin=origin)
        except (OSError, AuditError) as exc:
            return WitnessResult(False, f"the state file {path} holds no checkpoint by this key: {exc}", None,
                                 new.tree_size)
        if new.origin != old.origin:
            return WitnessResult(False, f"origin changed from {old.origin!r} to {new.origin!r}", old.tree_size,
                                 new.tree_size)
        if new.tree_size < old.tree_size:
            return WitnessResult(False, f"ROLLBACK: the log now signs {new.tree_size} entries, the witness saw "
                                 f"{old.tree_size}", old.tree_size, new.tree_size)
        if new.tree_size == old.tree_size:
            if new.root_hash != old.root_hash:
                return WitnessResult(False, f"FORK: two different trees of size {new.tree_size} are signed",
                                     old.tree_size, new.tree_size)
        else:
            try:
                proof = source.consistency(old.tree_size, new.tree_size)
                check_consistency(proof, public_key, origin=origin, first_checkpoint=old.note,
                                  second_checkpoint=new.note)
            except ProofError as exc:
                return WitnessResult(False, f"FORK: checkpoint {new.tree_size} does not extend the witnessed "
                                     f"checkpoint {old.tree_size}: {exc}", old.tree_size, new.tree_size)
            except (AuditError, OSError, ValueError, KeyError, TypeError) as exc:
                return WitnessResult(False, f"no usable consistency proof {old.tree_size} -> {new.tree_size}: {exc}",
                                     old.tree_size, new.tree_size)
    _write_state(path, new.note)
    previous = None if old is None else old.tree_size
    what = "first checkpoint remembered" if old is None else (
        "unchanged" if previous == new.tree_size else f"consistent with {previous}")
    return WitnessResult(True, f"ok: checkpoint {new.tree_size} {what}", previous, new.tree_size, new.root_hash.hex())


class LogSource:
    """A log read directly (the witness runs beside the database, e.g. at the operator)."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader  # an AuditLog or LogReader

    def latest_checkpoint(self) -> str:
        cp = self.reader.latest_checkpoint()
        if cp is None:
            raise ValueError("the log has no checkpoint yet")
        return str(cp.note)

    def consistency(self, first: int, second: int) -> Mapping[str, Any]:
        return dict(self.reader.consistency_proof(first, second).as_dict())
