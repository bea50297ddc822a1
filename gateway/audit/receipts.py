"""Why: a proof is only worth something if someone outside can check it with nothing but the log's
public key. A *receipt* bundles what that takes for one entry — its leaf hash, index, an inclusion
proof and the signed checkpoint the proof leads to — and the `check_*` functions here are the
offline side of it (the anchor is Rekor's CLI and Sunlight's one-file receipt tool). The shapes
are plain JSON (SPEC.md §8) so a browser or another language can check them as well.

    receipt      {index, leaf_hash, inclusion_proof: {index, tree_size, leaf_hash, hashes[]},
                  checkpoint: {tree_size, root_hash, note}}
    consistency  {first, second, first_root, second_root, hashes[]}  (+ optional signed notes)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .canonical import canonical_json
from .errors import ProofError
from .merkle import leaf_hash, verify_consistency, verify_inclusion
from .notes import Checkpoint, PublicKeyLike, VerifierKey, checkpoint_note_from, parse_checkpoint, verifier_key


@dataclass(frozen=True)
class CheckedReceipt:
    """What a checked receipt shows: entry `index` (leaf `leaf_hash`) is in the log signed at
    `checkpoint`."""

    index: int
    leaf_hash: bytes
    checkpoint: Checkpoint

    def as_dict(self) -> dict[str, Any]:
        return {"ok": True, "index": self.index, "leaf_hash": self.leaf_hash.hex(),
                "origin": self.checkpoint.origin, "tree_size": self.checkpoint.tree_size,
                "root_hash": self.checkpoint.root_hash.hex()}


def _hex(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise ProofError(f"{what} must be a hex string")
    try:
        raw = bytes.fromhex(value)
    except ValueError as exc:
        raise ProofError(f"{what} is not hex") from exc
    if len(raw) != 32:
        raise ProofError(f"{what} must be 32 bytes")
    return raw


def _int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProofError(f"{what} must be a non-negative integer")
    return value


def _key(public_key: PublicKeyLike, origin: str | None) -> VerifierKey:
    return verifier_key(public_key, origin)


def check_checkpoint(checkpoint: Mapping[str, Any] | str, public_key: PublicKeyLike, *,
                     origin: str | None = None) -> Checkpoint:
    """Verify a signed checkpoint (its note, or `{note, ...}` JSON) with `public_key`; when the
    JSON also states `tree_size` / `root_hash`, they must agree with the signed note. Raises
    ProofError."""
    note = checkpoint_note_from(checkpoint) if isinstance(checkpoint, str) else checkpoint.get("note")
    if not isinstance(note, str):
        raise ProofError("checkpoint carries no signed note")
    parsed = parse_checkpoint(note, _key(public_key, origin))
    if origin is not None and parsed.origin != origin:
        raise ProofError(f"checkpoint is for origin {parsed.origin!r}, not {origin!r}")
    if isinstance(checkpoint, Mapping):
        if "tree_size" in checkpoint and checkpoint["tree_size"] != parsed.tree_size:
            raise ProofError("checkpoint tree_size differs from its signed note")
        if "root_hash" in checkpoint and _hex(checkpoint["root_hash"], "root_hash") != parsed.root_hash:
            raise ProofError("checkpoint root_hash differs from its signed note")
    return parsed


def check_receipt(receipt: Mapping[str, Any], public_key: PublicKeyLike, *, origin: str | None = None,
                  record: Mapping[str, Any] | None = None) -> CheckedReceipt:
    """Verify a receipt offline: the checkpoint's signature, then the inclusion proof of the leaf
    up to the checkpoint's root. With `record`, also that the leaf is that record's (its `audit`
    field removed, RFC 8785 canonical JSON). Raises ProofError naming what failed."""
    if not isinstance(receipt, Mapping):
        raise ProofError("a receipt is a JSON object")
    cp_data = receipt.get("checkpoint")
    if not isinstance(cp_data, Mapping):
        raise ProofError("receipt has no checkpoint (the entry may not be covered yet)")
    checkpoint = check_checkpoint(cp_data, public_key, origin=origin)
    proof = receipt.get("inclusion_proof")
    if not isinstance(proof, Mapping):
        raise ProofError("receipt has no inclusion_proof")
    index = _int(proof.get("index", receipt.get("index")), "index")
    if "index" in receipt and receipt["index"] != index:
        raise ProofError("receipt index differs from its proof's")
    size = _int(proof.get("tree_size"), "tree_size")
    if size != checkpoint.tree_size:
        raise ProofError(f"proof is for tree size {size}, the checkpoint signs {checkpoint.tree_size}")
    leaf = _hex(proof.get("leaf_hash", receipt.get("leaf_hash")), "leaf_hash")
    if "leaf_hash" in receipt and _hex(receipt["leaf_hash"], "leaf_hash") != leaf:
        raise ProofError("receipt leaf_hash differs from its proof's")
    hashes = proof.get("hashes")
    if not isinstance(hashes, list):
        raise ProofError("inclusion proof needs a list of hashes")
    if record is not None:
        body = {k: v for k, v in record.items() if k != "audit"}
        if leaf_hash(canonical_json(body)) != leaf:
            raise ProofError("the record does not hash to the receipt's leaf")
    verify_inclusion(index, size, leaf, [_hex(h, "proof hash") for h in hashes], checkpoint.root_hash)
    return CheckedReceipt(index, leaf, checkpoint)


def check_consistency(proof: Mapping[str, Any], public_key: PublicKeyLike | None = None, *,
                      origin: str | None = None, first_checkpoint: Mapping[str, Any] | str | None = None,
                      second_checkpoint: Mapping[str, Any] | str | None = None) -> tuple[int, int]:
    """Verify a consistency proof `{first, second, first_root, second_root, hashes}`. Given signed
    checkpoints (with `public_key`), their sizes and roots must be the proof's — so the proof
    shows the second signed tree extends the first. Returns (first, second); raises ProofError."""
    first, second = _int(proof.get("first"), "first"), _int(proof.get("second"), "second")
    first_root = _hex(proof.get("first_root"), "first_root")
    second_root = _hex(proof.get("second_root"), "second_root")
    for which, cp, size, root in (("first", first_checkpoint, first, first_root),
                                  ("second", second_checkpoint, second, second_root)):
        if cp is None:
            continue
        if public_key is None:
            raise ProofError("checking signed checkpoints needs the public key")
        parsed = check_checkpoint(cp, public_key, origin=origin)
        if (parsed.tree_size, parsed.root_hash) != (size, root):
            raise ProofError(f"the {which} checkpoint signs size {parsed.tree_size} with another root "
                             f"than the proof's size {size}")
    hashes = proof.get("hashes")
    if not isinstance(hashes, list):
        raise ProofError("consistency proof needs a list of hashes")
    verify_consistency(first, second, first_root, second_root, [_hex(h, "proof hash") for h in hashes])
    return first, second
