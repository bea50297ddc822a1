"""FaceIndex: exact and HNSW agree, removals are filtered then rebuilt away, refresh from a source."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.registry.index import FaceIndex, TemplateBatch


def unit(rng: np.random.Generator, n: int, dim: int = 128) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    out: np.ndarray = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def near(rng: np.random.Generator, x: np.ndarray, noise: float = 0.03) -> np.ndarray:
    y = x + noise * rng.standard_normal(x.shape).astype(np.float32)
    out: np.ndarray = y / np.linalg.norm(y, axis=1, keepdims=True)
    return out


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(7)
    vectors = unit(rng, 6000)
    return vectors, [f"s{i // 2}" for i in range(len(vectors))]  # two templates per subject


def build(data: tuple[np.ndarray, list[str]], hnsw_min_size: int) -> FaceIndex:
    vectors, subjects = data
    index = FaceIndex(128, hnsw_min_size=hnsw_min_size, background=False)
    index.add(np.arange(1, len(vectors) + 1), subjects, vectors)
    return index


def test_exact_and_hnsw_agree(data: tuple[np.ndarray, list[str]]) -> None:
    exact, hnsw = build(data, 10**9), build(data, 1000)
    assert not exact.uses_hnsw and hnsw.uses_hnsw
    rng = np.random.default_rng(1)
    queries = near(rng, data[0][rng.choice(len(data[0]), 300, replace=False)])
    a, b = exact.search(queries, 0.5), hnsw.search(queries, 0.5)
    assert all(r for r in a)
    assert [[s for s, _ in r] for r in a] == [[s for s, _ in r] for r in b]
    assert np.allclose([r[0][1] for r in a], [r[0][1] for r in b], atol=1e-5)
    assert exact.search(unit(rng, 5), 0.5) == [[]] * 5  # unrelated vectors are far below threshold


def test_one_entry_per_subject_best_first(data: tuple[np.ndarray, list[str]]) -> None:
    exact = build(data, 10**9)
    res = exact.search(data[0][:1], -1.0, k=3)[0]
    assert res[0][0] == "s0" and abs(res[0][1] - 1.0) < 1e-5
    assert len(res) == 3 and len({s for s, _ in res}) == 3
    assert [s for _, s in res] == sorted((s for _, s in res), reverse=True)


@pytest.mark.parametrize("hnsw_min_size", [10**9, 1000])
def test_removed_templates_never_match(data: tuple[np.ndarray, list[str]], hnsw_min_size: int) -> None:
    index = build(data, hnsw_min_size)
    index.rebuild_dead_fraction = 0.5  # keep dead rows in the graph first: they must be filtered
    index.remove([1, 2])  # both templates of s0
    assert index.size == len(data[0]) - 2
    assert all(s != "s0" for s, _ in index.search(data[0][:1], 0.0, k=5)[0])
    index.remove(list(range(3, 3001)))  # now over the fraction: rebuilt without them
    index.wait_idle()
    assert index.size == len(data[0]) - 3000 and index.uses_hnsw == (hnsw_min_size == 1000)
    res = index.search(data[0][[2, 4000]], 0.9)
    assert res[0] == [] and res[1][0][0] == "s2000"


def test_background_rebuild_switches_to_hnsw_and_keeps_late_rows(data: tuple[np.ndarray, list[str]]) -> None:
    vectors, subjects = data
    index = FaceIndex(128, hnsw_min_size=2000, background=True)
    index.add(np.arange(1, 3001), subjects[:3000], vectors[:3000])  # starts a background build
    index.add(np.arange(3001, 6001), subjects[3000:], vectors[3000:])  # arrives during or after it
    index.remove([6000])
    index.wait_idle()
    assert index.uses_hnsw and index.size == 5999
    res = index.search(vectors[[10, 5000, 5999]], 0.9)
    assert [r[0][0] if r else None for r in res] == ["s5", "s2500", None]


class FakeSource:
    def __init__(self) -> None:
        self.v = 0
        self.rows: list[tuple[int, str, np.ndarray]] = []
        self.tombstones: list[int] = []
        self.reads = 0

    def version(self) -> int:
        return self.v

    def added_since(self, after_seq: int) -> TemplateBatch:
        self.reads += 1
        rows = [r for r in self.rows if r[0] > after_seq]
        vecs = np.stack([r[2] for r in rows]) if rows else np.zeros((0, 128), np.float32)
        return TemplateBatch(
            np.array([r[0] for r in rows], np.int64),
            [r[1] for r in rows],
            vecs,
            newest_seq=max([after_seq] + [r[0] for r in rows]),
        )

    def removed_since(self, after: int) -> tuple[list[int], int]:
        return self.tombstones[after:], len(self.tombstones)


def test_refresh_from_source_is_incremental_and_rate_limited(data: tuple[np.ndarray, list[str]]) -> None:
    now = [0.0]
    src = FakeSource()
    index = FaceIndex(128, source=src, poll_interval_s=1.0, clock=lambda: now[0])
    vectors = data[0]
    src.rows.append((1, "a", vectors[0]))
    src.v = 1
    assert index.refresh_if_changed() and index.size == 1
    src.rows.append((2, "b", vectors[1]))
    src.v = 2
    assert not index.refresh_if_changed()  # polled less than a second ago
    now[0] = 1.0
    assert index.refresh_if_changed() and index.size == 2
    now[0] = 2.0
    assert not index.refresh_if_changed() and src.reads == 2  # version unchanged: no row reads
    src.tombstones.append(1)
    src.v = 3
    now[0] = 3.0
    assert index.refresh_if_changed()
    res = index.search(vectors[:2], 0.9)
    assert res[0] == [] and [s for s, _ in res[1]] == ["b"] and abs(res[1][0][1] - 1.0) < 1e-5
