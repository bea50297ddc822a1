"""Evidence that holds (#17.6, #17.8): the verifier fails when no signed checkpoint covers the
whole log — including after someone with database access deleted the checkpoints and rewrote
entries, nodes and head consistently — and when the log does not extend a checkpoint an auditor
saved; receipts, checkpoints and consistency proofs check offline with only the public key."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import Engine

from gateway.audit import (
    CheckpointSigner,
    MemoryTree,
    ProofError,
    canonical_json,
    check_checkpoint,
    check_consistency,
    check_receipt,
    checkpoint_note_from,
    leaf_hash,
    verify_database,
)

from .helpers import ORIGIN, LogFactory, decision, sql

pytestmark = pytest.mark.db


def _rewrite(engine: Engine, prefix: str, index: int, record: dict[str, Any]) -> None:
    """What an insider with write access to the database can do without the signing key: replace
    a record, recompute every leaf-derived value (leaf hash, nodes, head root), drop checkpoints."""
    with engine.begin() as conn:
        rows = conn.execute(sql("SELECT idx, record FROM {p}entries ORDER BY idx", prefix)).all()
        data = [r[1].encode() for r in rows]
        data[index] = canonical_json(record)
        leaves = [leaf_hash(d) for d in data]
        conn.execute(sql("UPDATE {p}entries SET record = :r, leaf_hash = :h WHERE idx = :i", prefix),
                     {"r": data[index].decode(), "h": leaves[index], "i": index})
        tree = MemoryTree(leaves)
        conn.execute(sql("DELETE FROM {p}nodes", prefix))
        for level in range(1, len(tree.levels)):
            for i, h in enumerate(tree.levels[level]):
                conn.execute(sql("INSERT INTO {p}nodes (nid, hash) VALUES (:n, :h)", prefix),
                             {"n": i * 64 + level, "h": h})
        conn.execute(sql("DELETE FROM {p}checkpoints", prefix))
        conn.execute(sql("UPDATE {p}head SET root_hash = :r, checkpoint_size = -1", prefix),
                     {"r": tree.root()})


def test_a_log_without_any_checkpoint_does_not_verify(make_log: LogFactory, engine: Engine, prefix: str,
                                                     signer: CheckpointSigner) -> None:
    log = make_log(checkpoint_every=10_000)
    log.append_many([decision(i) for i in range(5)])
    report = verify_database(engine, signer.vkey, table_prefix=prefix)
    assert not report.ok and report.uncovered == 5
    assert "no signed checkpoint covers the whole log" in report.message and "no checkpoint at all" in report.message
    log.publish_checkpoint()
    assert verify_database(engine, signer.vkey, table_prefix=prefix).ok


def test_a_tail_after_the_last_checkpoint_fails_verification(make_log: LogFactory, engine: Engine, prefix: str,
                                                            signer: CheckpointSigner) -> None:
    log = make_log(checkpoint_every=10_000)
    log.append_many([decision(i) for i in range(4)])
    log.publish_checkpoint()
    log.append(decision(4))
    report = verify_database(engine, signer.vkey, table_prefix=prefix)
    assert not report.ok and report.uncovered == 1 and "1 of 5 entries" in report.message
    relaxed = verify_database(engine, signer.vkey, table_prefix=prefix, require_covered=False)
    assert relaxed.ok and relaxed.uncovered == 1


def test_deleting_checkpoints_and_rewriting_consistently_is_caught(
        make_log: LogFactory, engine: Engine, prefix: str, signer: CheckpointSigner) -> None:
    log = make_log(checkpoint_every=10_000)
    log.append_many([decision(i) for i in range(9)])
    log.publish_checkpoint()
    log.close()
    assert verify_database(engine, signer.vkey, table_prefix=prefix).ok
    _rewrite(engine, prefix, 3, decision(3, stage="input"))
    report = verify_database(engine, signer.vkey, table_prefix=prefix)
    assert not report.ok and report.first_bad_index is None
    assert "no signed checkpoint covers the whole log" in report.message


def test_a_stored_checkpoint_that_disagrees_with_the_tree_fails(
        make_log: LogFactory, engine: Engine, prefix: str, signer: CheckpointSigner) -> None:
    log = make_log(checkpoint_every=10_000)
    log.append_many([decision(i) for i in range(6)])
    log.publish_checkpoint()
    note = log.latest_checkpoint().note  # type: ignore[union-attr]
    log.close()
    _rewrite(engine, prefix, 2, decision(2, stage="input"))
    with engine.begin() as conn:  # put the (genuine) checkpoint back: it no longer matches
        conn.execute(sql("INSERT INTO {p}checkpoints (tree_size, root_hash, note, published_at) "
                         "VALUES (6, :r, :n, '2026-01-01T00:00:00Z')", prefix),
                     {"r": check_checkpoint(note, signer.vkey).root_hash, "n": note})
    report = verify_database(engine, signer.vkey, table_prefix=prefix)
    assert not report.ok and report.first_bad_index == 0 and "differs from what checkpoint 6 signed" in report.message


def test_saved_checkpoint_must_be_extended(make_log: LogFactory, engine: Engine, prefix: str,
                                           signer: CheckpointSigner) -> None:
    log = make_log(checkpoint_every=10_000)
    log.append_many([decision(i) for i in range(7)])
    saved = log.publish_checkpoint().note
    log.append_many([decision(i) for i in range(7, 12)])
    log.publish_checkpoint()
    report = verify_database(engine, signer.vkey, table_prefix=prefix, saved=[saved])
    assert report.ok and report.saved_checked == 1
    # A checkpoint signed by another key, or of another log, is refused.
    other = CheckpointSigner.generate(ORIGIN).sign_checkpoint(ORIGIN, 3, b"\x00" * 32).note
    assert "saved checkpoint" in verify_database(engine, signer.vkey, table_prefix=prefix, saved=[other]).message
    # The key holder forks the log: it re-signs a rewritten history.
    log.close()
    _rewrite(engine, prefix, 5, decision(5, stage="input"))
    with engine.connect() as conn:
        rows = conn.execute(sql("SELECT leaf_hash FROM {p}entries ORDER BY idx", prefix)).all()
    tree = MemoryTree([bytes(r[0]) for r in rows])
    forged = signer.sign_checkpoint(ORIGIN, tree.size, tree.root())
    with engine.begin() as conn:
        conn.execute(sql("INSERT INTO {p}checkpoints (tree_size, root_hash, note, published_at) "
                         "VALUES (:s, :r, :n, '2026-01-01T00:00:00Z')", prefix),
                     {"s": tree.size, "r": tree.root(), "n": forged.note})
        conn.execute(sql("UPDATE {p}head SET checkpoint_size = :s", prefix), {"s": tree.size})
    assert verify_database(engine, signer.vkey, table_prefix=prefix).ok  # self-consistent again...
    report = verify_database(engine, signer.vkey, table_prefix=prefix, saved=[saved])
    assert not report.ok and "saved checkpoint 7: the log is not an extension of it" in report.message


def test_saved_checkpoint_beyond_the_log_means_truncation(make_log: LogFactory, engine: Engine, prefix: str,
                                                         signer: CheckpointSigner) -> None:
    log = make_log(checkpoint_every=10_000)
    log.append_many([decision(i) for i in range(3)])
    log.publish_checkpoint()
    beyond = signer.sign_checkpoint(ORIGIN, 10, b"\x11" * 32).note
    report = verify_database(engine, signer.vkey, table_prefix=prefix, saved=[beyond])
    assert not report.ok and "truncated or forked" in report.message


def test_receipts_check_offline_and_tampering_fails(make_log: LogFactory, signer: CheckpointSigner) -> None:
    log = make_log(checkpoint_every=10_000)
    records = [decision(i) for i in range(11)]
    log.append_many(records)
    with pytest.raises(ProofError, match="pending"):
        log.receipt(4)
    log.publish_checkpoint()
    receipt = json.loads(json.dumps(log.receipt(4)))  # as it travels
    checked = check_receipt(receipt, signer.vkey, origin=ORIGIN, record=records[4])
    assert (checked.index, checked.checkpoint.tree_size) == (4, 11)
    with pytest.raises(ProofError, match="does not hash"):
        check_receipt(receipt, signer.vkey, record=records[5])
    with pytest.raises(ProofError, match="no signature by key"):
        check_receipt(receipt, CheckpointSigner.generate(ORIGIN).vkey)
    moved = {**receipt, "index": 5, "inclusion_proof": {**receipt["inclusion_proof"], "index": 5}}
    with pytest.raises(ProofError, match="expected root"):
        check_receipt(moved, signer.vkey)
    bent = json.loads(json.dumps(receipt))
    bent["inclusion_proof"]["hashes"][0] = "00" * 32
    with pytest.raises(ProofError):
        check_receipt(bent, signer.vkey)
    lied = {**receipt, "checkpoint": {**receipt["checkpoint"], "root_hash": "11" * 32}}
    with pytest.raises(ProofError, match="differs from its signed note"):
        check_receipt(lied, signer.vkey)


def test_consistency_proofs_between_signed_checkpoints(make_log: LogFactory, signer: CheckpointSigner) -> None:
    log = make_log(checkpoint_every=10_000)
    log.append_many([decision(i) for i in range(5)])
    first = log.publish_checkpoint()
    log.append_many([decision(i) for i in range(5, 13)])
    second = log.publish_checkpoint()
    proof = json.loads(json.dumps(log.consistency_proof(5, 13).as_dict()))
    assert check_consistency(proof, signer.vkey, first_checkpoint=first.as_dict(),
                             second_checkpoint=second.note) == (5, 13)
    other = CheckpointSigner.generate(ORIGIN).sign_checkpoint(ORIGIN, 5, first.root_hash)
    with pytest.raises(ProofError):
        check_consistency(proof, signer.vkey, first_checkpoint=other.note)
    forked = signer.sign_checkpoint(ORIGIN, 5, b"\x22" * 32)
    with pytest.raises(ProofError, match="another root"):
        check_consistency(proof, signer.vkey, first_checkpoint=forked.note)
    proof["hashes"][0] = "33" * 32
    with pytest.raises(ProofError):
        check_consistency(proof, signer.vkey)


def test_checkpoint_note_from_accepts_note_json_and_receipt() -> None:
    note = CheckpointSigner.generate(ORIGIN).sign_checkpoint(ORIGIN, 1, b"\x00" * 32).note
    assert checkpoint_note_from(note) == note
    assert checkpoint_note_from(json.dumps({"note": note, "tree_size": 1})) == note
    assert checkpoint_note_from(json.dumps({"checkpoint": {"note": note}})) == note
    with pytest.raises(ProofError):
        checkpoint_note_from("{\"tree_size\": 1}")
