"""Witnessing (#17.7): checkpoints go to a publish directory as they are signed; a witness keeps
the last checkpoint it accepted and takes a new one only with a consistency proof — a log the key
holder rewrote and re-signed after a checkpoint was witnessed (a fork), or rolled back, is refused
and the witness's state stays as it was."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import Engine

from gateway.audit import CheckpointSigner, MemoryTree, canonical_json, leaf_hash
from gateway.audit.errors import AuditConfigError
from gateway.audit.publish import BackgroundPublisher, publish_to_directory, publish_to_url, publisher_for
from gateway.audit.witness import LogSource, witness

from .helpers import ORIGIN, LogFactory, decision, sql

pytestmark = pytest.mark.db


def test_witness_accepts_extensions_and_refuses_a_fork(make_log: LogFactory, engine: Engine, prefix: str,
                                                       signer: CheckpointSigner, tmp_path: Path) -> None:
    log = make_log(checkpoint_every=10_000)
    state = tmp_path / "witness" / "state"
    log.append_many([decision(i) for i in range(6)])
    log.publish_checkpoint()
    first = witness(LogSource(log), signer.vkey, state)
    assert first.ok and first.size == 6 and "first checkpoint" in first.message
    log.append_many([decision(i) for i in range(6, 11)])
    log.publish_checkpoint()
    second = witness(LogSource(log), signer.vkey, state)
    assert second.ok and (second.previous_size, second.size) == (6, 11)
    assert witness(LogSource(log), signer.vkey, state).message.endswith("unchanged")
    saved = state.read_text()

    # The key holder rewrites entry 2 and re-signs a longer tree: self-consistent, but a fork.
    log.close()
    with engine.begin() as conn:
        rows = conn.execute(sql("SELECT record FROM {p}entries ORDER BY idx", prefix)).all()
        data = [r[0].encode() for r in rows]
        data[2] = canonical_json(decision(2, stage="input"))
        data.append(canonical_json(decision(11)))
        leaves = [leaf_hash(d) for d in data]
        conn.execute(sql("DELETE FROM {p}entries", prefix))
        conn.execute(sql("DELETE FROM {p}nodes", prefix))
        conn.execute(sql("DELETE FROM {p}subjects", prefix))
        tree = MemoryTree(leaves)
        for level in range(1, len(tree.levels)):
            for i, h in enumerate(tree.levels[level]):
                conn.execute(sql("INSERT INTO {p}nodes (nid, hash) VALUES (:n, :h)", prefix),
                             {"n": i * 64 + level, "h": h})
        for i, (d, h) in enumerate(zip(data, leaves, strict=True)):
            conn.execute(sql("INSERT INTO {p}entries (idx, leaf_hash, record, kind) "
                             "VALUES (:i, :h, :r, 'decision')", prefix), {"i": i, "h": h, "r": d.decode()})
        forged = signer.sign_checkpoint(ORIGIN, tree.size, tree.root())
        conn.execute(sql("INSERT INTO {p}checkpoints (tree_size, root_hash, note, published_at) "
                         "VALUES (:s, :r, :n, '2026-12-07T00:00:00Z')", prefix),
                     {"s": tree.size, "r": tree.root(), "n": forged.note})
        conn.execute(sql("UPDATE {p}head SET tree_size = :s, root_hash = :r, checkpoint_size = :s", prefix),
                     {"s": tree.size, "r": tree.root()})
    reopened = make_log(checkpoint_every=10_000)
    fork = witness(LogSource(reopened), signer.vkey, state)
    assert not fork.ok and fork.message.startswith("FORK") and (fork.previous_size, fork.size) == (11, 12)
    assert state.read_text() == saved  # the state is not moved to the forked tree


def test_witness_refuses_a_rollback_and_another_key(make_log: LogFactory, signer: CheckpointSigner,
                                                   tmp_path: Path) -> None:
    log = make_log(checkpoint_every=10_000)
    log.append_many([decision(i) for i in range(3)])
    log.publish_checkpoint()
    state = tmp_path / "state"
    state.write_text(signer.sign_checkpoint(ORIGIN, 9, b"\x01" * 32).note)  # it saw a longer log before
    rollback = witness(LogSource(log), signer.vkey, state)
    assert not rollback.ok and rollback.message.startswith("ROLLBACK")
    other = CheckpointSigner.generate(ORIGIN)
    refused = witness(LogSource(log), other.vkey, tmp_path / "fresh")
    assert not refused.ok and "does not verify" in refused.message and not (tmp_path / "fresh").exists()


def test_checkpoints_are_published_to_a_directory(make_log: LogFactory, signer: CheckpointSigner,
                                                  tmp_path: Path) -> None:
    log = make_log(checkpoint_every=4)
    out = tmp_path / "published"
    log.set_publisher(BackgroundPublisher(publish_to_directory(out)))
    log.append_many([decision(i) for i in range(5)])  # crosses the mark: signed in the batch
    log.append_many([decision(i) for i in range(5, 7)])
    last = log.publish_checkpoint()
    deadline = time.monotonic() + 5
    while not (out / "checkpoint").exists() or (out / "checkpoint").read_text() != last.note:
        assert time.monotonic() < deadline, "the published checkpoint did not appear"
        time.sleep(0.02)
    assert sorted(int(p.name) for p in (out / "checkpoints").iterdir()) == [5, 7]
    assert (out / "checkpoints" / "5").read_text().split("\n")[1] == "5"
    # An older checkpoint published late never moves the head backwards.
    publish_to_directory(out)(signer.sign_checkpoint(ORIGIN, 5, b"\x00" * 32))
    assert (out / "checkpoint").read_text() == last.note
    with pytest.raises(AuditConfigError, match="http"):
        publish_to_url("ftp://example.invalid/x")
    assert callable(publisher_for(str(tmp_path / "elsewhere"))) and (tmp_path / "elsewhere" / "checkpoints").is_dir()
