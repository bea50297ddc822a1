"""RFC 6962 tree math against the published Certificate Transparency / transparency-dev vectors,
and every inclusion and consistency proof up to 64 leaves against a naive reference."""

from __future__ import annotations

import hashlib

import pytest

from gateway.audit.errors import ProofError
from gateway.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    MemoryTree,
    leaf_hash,
    node_hash,
    root_from_inclusion,
    verify_consistency,
    verify_inclusion,
)

# transparency-dev/merkle proof/verify_test.go (originally Certificate Transparency's tests).
LEAVES = [bytes.fromhex(x) for x in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f",
)]
ROOTS = [bytes.fromhex(x) for x in (
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
)]
# (leaf index 0-based, tree size, proof)
INCLUSION = [
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
CONSISTENCY = [
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]


def naive_root(leaves: list[bytes]) -> bytes:
    """MTH straight from RFC 6962 section 2.1."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(naive_root(leaves[:k]), naive_root(leaves[k:]))


def test_empty_tree_hash() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert MemoryTree().root() == EMPTY_ROOT


def test_published_roots_for_every_size() -> None:
    tree = MemoryTree()
    for size in range(1, 9):
        tree.append([leaf_hash(LEAVES[size - 1])])
        assert tree.root() == ROOTS[size - 1], size
        assert naive_root(LEAVES[:size]) == ROOTS[size - 1]


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_published_inclusion_proofs(index: int, size: int, proof: list[str]) -> None:
    tree = MemoryTree(leaf_hash(x) for x in LEAVES)
    expected = [bytes.fromhex(p) for p in proof]
    assert tree.inclusion_proof(index, size) == expected
    verify_inclusion(index, size, leaf_hash(LEAVES[index]), expected, ROOTS[size - 1])


@pytest.mark.parametrize(("first", "second", "proof"), CONSISTENCY)
def test_published_consistency_proofs(first: int, second: int, proof: list[str]) -> None:
    tree = MemoryTree(leaf_hash(x) for x in LEAVES)
    expected = [bytes.fromhex(p) for p in proof]
    assert tree.consistency_proof(first, second) == expected
    verify_consistency(first, second, ROOTS[first - 1], ROOTS[second - 1], expected)


def _corruptions(proof: list[bytes]) -> list[list[bytes]]:
    bad = [proof + [bytes(32)], [bytes(32), *proof]]
    if proof:
        bad.append(proof[:-1])
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([proof[i][0] ^ 8]) + proof[i][1:]
        bad.append(flipped)
    return bad


def test_every_inclusion_proof_up_to_64_leaves() -> None:
    data = [i.to_bytes(2, "big") for i in range(64)]
    tree = MemoryTree(leaf_hash(d) for d in data)
    roots = [naive_root(data[:n]) for n in range(65)]
    for size in range(1, 65):
        assert tree.root(size) == roots[size]
        for index in range(size):
            proof = tree.inclusion_proof(index, size)
            verify_inclusion(index, size, leaf_hash(data[index]), proof, roots[size])
            for bad in _corruptions(proof):
                with pytest.raises(ProofError):
                    verify_inclusion(index, size, leaf_hash(data[index]), bad, roots[size])
            if size > 1:
                other = (index + 1) % size
                with pytest.raises(ProofError):
                    verify_inclusion(other, size, leaf_hash(data[index]), proof, roots[size])


def test_every_consistency_proof_up_to_64_leaves() -> None:
    data = [i.to_bytes(2, "big") for i in range(64)]
    tree = MemoryTree(leaf_hash(d) for d in data)
    roots = [naive_root(data[:n]) for n in range(65)]
    for second in range(0, 65):
        for first in range(0, second + 1):
            proof = tree.consistency_proof(first, second)
            verify_consistency(first, second, roots[first], roots[second], proof)
            if 0 < first < second:
                for bad in _corruptions(proof):
                    with pytest.raises(ProofError):
                        verify_consistency(first, second, roots[first], roots[second], bad)
                with pytest.raises(ProofError):
                    verify_consistency(first, second, roots[second], roots[first], proof)


def test_inclusion_rejects_out_of_range() -> None:
    with pytest.raises(ProofError):
        root_from_inclusion(3, 3, bytes(32), [])
    with pytest.raises(ProofError):
        MemoryTree([bytes(32)]).inclusion_proof(0, 2)


def test_frontier_matches_full_tree_and_reports_finished_subtrees() -> None:
    frontier = Frontier()
    tree = MemoryTree()
    finished: dict[tuple[int, int], bytes] = {}
    for i in range(37):
        h = leaf_hash(i.to_bytes(4, "big"))
        for level, index, node in frontier.push(h):
            finished[(level, index)] = node
        tree.append([h])
        assert frontier.root() == tree.root()
    for (level, index), node in finished.items():
        assert tree.levels[level][index] == node
    assert len(finished) == sum(len(level) for level in tree.levels[1:])
