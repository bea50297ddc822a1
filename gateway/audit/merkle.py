"""Why: the RFC 6962 / RFC 9162 Merkle tree math, shared by the database log, the in-memory
tree the verifier rebuilds, and proof checking — one implementation, tested against the
published Certificate Transparency vectors.

Nodes are addressed as (level, index): level 0 holds leaf hashes, node (l, i) is the root of the
complete subtree over leaves [i * 2**l, (i + 1) * 2**l). Only complete subtrees are ever stored;
hashes of incomplete right edges are folded from complete ones on demand (`range_nodes`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

from .errors import ProofError

_sha256 = hashlib.sha256
HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeId = tuple[int, int]
NodeFetcher = Callable[[Iterable[NodeId]], dict[NodeId, bytes]]


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash: SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def range_nodes(start: int, end: int) -> list[NodeId]:
    """Complete subtrees covering leaves [start, end), left to right, largest first.

    Valid for the ranges RFC 9162's recursion produces (start aligned to the range's split).
    """
    nodes: list[NodeId] = []
    while start < end:
        level = (end - start).bit_length() - 1
        if start:
            level = min(level, (start & -start).bit_length() - 1)
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def fold(hashes: Sequence[bytes]) -> bytes:
    """Hash of a range from its complete subtrees (as listed by `range_nodes`)."""
    if not hashes:
        return EMPTY_ROOT
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Leaf ranges whose hashes form PATH(index, D[0:size]), deepest sibling first."""
    if not 0 <= index < size:
        raise ProofError(f"index {index} is not in a tree of size {size}")
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo = lo + k
    ranges.reverse()
    return ranges


def consistency_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """Leaf ranges whose hashes form PROOF(first, D[0:second]) (RFC 9162 2.1.4.1)."""
    if not 0 <= first <= second:
        raise ProofError(f"no consistency proof from size {first} to size {second}")
    if first == 0 or first == second:
        return []
    ranges: list[tuple[int, int]] = []
    lo, hi, m, complete = 0, second, first, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    if not complete:
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


def hashes_of(ranges: Sequence[tuple[int, int]], fetch: NodeFetcher) -> list[bytes]:
    """Resolve leaf ranges to their hashes with one batched node fetch."""
    per_range = [range_nodes(a, b) for a, b in ranges]
    found = fetch({node for nodes in per_range for node in nodes})
    try:
        return [fold([found[n] for n in nodes]) for nodes in per_range]
    except KeyError as exc:
        raise ProofError(f"node {exc.args[0]} is missing from the tree store") from exc


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """Root implied by an inclusion proof (RFC 9162 2.1.3.2); raises ProofError if malformed."""
    if not 0 <= index < size:
        raise ProofError(f"index {index} is not in a tree of size {size}")
    if len(leaf) != HASH_SIZE or any(len(p) != HASH_SIZE for p in proof):
        raise ProofError("hashes must be 32 bytes")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Raise ProofError unless `proof` shows leaf `index` is in the tree of `size` with `root`."""
    if root_from_inclusion(index, size, leaf, proof) != root:
        raise ProofError("inclusion proof does not lead to the expected root")


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise ProofError unless `proof` shows tree `first` is a prefix of tree `second` (RFC 9162)."""
    if not 0 <= first <= second:
        raise ProofError(f"size {first} cannot precede size {second}")
    if any(len(p) != HASH_SIZE for p in proof):
        raise ProofError("hashes must be 32 bytes")
    if first == second:
        if proof or first_root != second_root:
            raise ProofError("equal sizes need equal roots and an empty proof")
        return
    if first == 0:
        if proof:
            raise ProofError("a proof from the empty tree must be empty")
        return
    if not proof:
        raise ProofError("consistency proof is empty")
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if fr != first_root or sr != second_root:
        raise ProofError("consistency proof does not lead to the expected roots")


def frontier_nodes(size: int) -> list[NodeId]:
    """The complete subtrees (left to right) whose fold is the root of a tree of `size` leaves."""
    return range_nodes(0, size)


class Frontier:
    """The right edge of a growing tree: enough to append in O(log n) and to give the root.

    `push` returns the complete subtrees it finished, for the caller to store.
    """

    __slots__ = ("size", "hashes", "levels", "_root")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        levels = [level for level, _ in frontier_nodes(size)]
        if len(levels) != len(hashes):
            raise ValueError("frontier hashes do not match the tree size")
        self.size = size
        self.hashes = list(hashes)
        self.levels = levels
        self._root: bytes | None = None

    def copy(self) -> Frontier:
        twin = Frontier.__new__(Frontier)  # no need to re-derive the levels: the append path copies per batch
        twin.size, twin.hashes, twin.levels, twin._root = self.size, list(self.hashes), list(self.levels), self._root
        return twin

    def push(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        # The append path runs this once per entry: node_hash inlined, lists held in locals.
        index = self.size
        node, level = leaf, 0
        levels, hashes = self.levels, self.hashes
        finished: list[tuple[int, int, bytes]] = []
        while levels and levels[-1] == level:
            levels.pop()
            node = _sha256(b"\x01" + hashes.pop() + node).digest()
            level += 1
            finished.append((level, index >> level, node))
        levels.append(level)
        hashes.append(node)
        self.size += 1
        self._root = None
        return finished

    def root(self) -> bytes:
        if self._root is None:
            self._root = fold(self.hashes)
        return self._root


class MemoryTree:
    """A whole tree held in memory (all complete subtrees), for verification and tests."""

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self.levels: list[list[bytes]] = [list(leaves)]
        self._build_from(0)

    def _build_from(self, start: int) -> None:
        level = 0
        while len(self.levels[level]) >= 2:
            below = self.levels[level]
            if level + 1 == len(self.levels):
                self.levels.append([])
            above = self.levels[level + 1]
            first = min(start >> 1, len(above))
            del above[first:]
            above.extend(node_hash(below[i], below[i + 1]) for i in range(2 * first, len(below) - 1, 2))
            start = first
            level += 1

    def append(self, leaves: Iterable[bytes]) -> None:
        start = len(self.levels[0])
        self.levels[0].extend(leaves)
        self._build_from(start)

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def fetch(self, ids: Iterable[NodeId]) -> dict[NodeId, bytes]:
        out: dict[NodeId, bytes] = {}
        for level, index in ids:
            if level < len(self.levels) and index < len(self.levels[level]):
                out[(level, index)] = self.levels[level][index]
        return out

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        if not 0 <= size <= self.size:
            raise ProofError(f"tree has {self.size} leaves, not {size}")
        return hashes_of([(0, size)], self.fetch)[0] if size else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        size = self.size if size is None else size
        if size > self.size:
            raise ProofError(f"tree has {self.size} leaves, not {size}")
        return hashes_of(inclusion_ranges(index, size), self.fetch)

    def consistency_proof(self, first: int, second: int | None = None) -> list[bytes]:
        second = self.size if second is None else second
        if second > self.size:
            raise ProofError(f"tree has {self.size} leaves, not {second}")
        return hashes_of(consistency_ranges(first, second), self.fetch)
