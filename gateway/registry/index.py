"""Why: matching a face against the registry must be fast at any size, and templates are only ever
decrypted into memory — never searched in SQL.

`FaceIndex` holds one face model's decrypted templates. Below `hnsw_min_size` it searches exactly (a numpy
matrix product); above, a FAISS HNSW graph (inner product on L2-normalised vectors = cosine). HNSW cannot
delete, so removed templates are filtered out of the candidates and the graph is rebuilt from the live rows
in a background thread once enough have died; rows added meanwhile are carried over before the swap.
An optional `TemplateSource` lets `refresh_if_changed()` pull additions and removals incrementally.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class TemplateBatch:
    seqs: np.ndarray  # int64 (n,)
    subject_ids: list[str]
    vectors: np.ndarray  # float32 (n, dim), L2-normalised
    newest_seq: int = 0  # the newest seq the source looked at (rows it skipped included)


class TemplateSource(Protocol):
    """Where an index gets its rows from (the registry database, decrypted)."""

    def version(self) -> int: ...

    def added_since(self, after_seq: int) -> TemplateBatch: ...

    def removed_since(self, after_removal_seq: int) -> tuple[list[int], int]:
        """Template seqs removed after the given tombstone seq, and the newest tombstone seq."""
        ...


def _hnsw(dim: int, m: int, ef_construction: int, ef_search: int, vectors: np.ndarray) -> Any:
    import faiss  # imported lazily: small registries never need it

    index = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    index.hnsw.efSearch = ef_search
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


class FaceIndex:
    def __init__(
        self,
        dim: int,
        *,
        hnsw_min_size: int = 20000,
        hnsw_m: int = 32,
        ef_construction: int = 100,
        ef_search: int = 128,
        rebuild_dead_fraction: float = 0.1,
        background: bool = True,
        source: TemplateSource | None = None,
        poll_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dim = dim
        self.hnsw_min_size = hnsw_min_size
        self._hnsw_params = (hnsw_m, ef_construction, ef_search)
        self.rebuild_dead_fraction = rebuild_dead_fraction
        self.background = background
        self.source = source
        self.poll_interval_s = poll_interval_s
        self._clock = clock
        self._lock = threading.RLock()
        self._vectors = np.zeros((0, dim), np.float32)  # capacity buffer; rows [0, _n) are valid
        self._n = 0
        self._seqs = np.zeros(0, np.int64)
        self._subjects: list[str] = []
        self._known: set[int] = set()
        self._dead: set[int] = set()  # seqs removed but still inside the HNSW graph
        self._hnsw: Any = None  # covers rows [0, _hnsw_rows)
        self._hnsw_rows = 0
        self._rebuilding: threading.Thread | None = None
        self._seen_version: int | None = None
        self._last_seq = 0
        self._last_removal = 0
        self._last_poll = float("-inf")

    # ---- size and state ----
    @property
    def size(self) -> int:
        """Live templates."""
        with self._lock:
            return self._n - len(self._dead)

    @property
    def uses_hnsw(self) -> bool:
        return self._hnsw is not None

    # ---- mutation ----
    def add(self, seqs: Sequence[int] | np.ndarray, subject_ids: Sequence[str], vectors: np.ndarray) -> None:
        vecs = np.asarray(vectors, np.float32).reshape(-1, self.dim)
        seq_arr = np.asarray(seqs, np.int64)
        if not (len(vecs) == len(seq_arr) == len(subject_ids)):
            raise ValueError("seqs, subject_ids and vectors must have the same length")
        with self._lock:
            fresh = [i for i, s in enumerate(seq_arr.tolist()) if s not in self._known]
            if not fresh:
                return
            vecs, seq_arr = vecs[fresh], seq_arr[fresh]
            subs = [subject_ids[i] for i in fresh]
            need = self._n + len(vecs)
            if need > len(self._vectors):
                grown = np.zeros((max(need, 2 * len(self._vectors), 1024), self.dim), np.float32)
                grown[: self._n] = self._vectors[: self._n]
                self._vectors = grown
                self._seqs = np.concatenate([self._seqs[: self._n], np.zeros(len(grown) - self._n, np.int64)])
            self._vectors[self._n : need] = vecs
            self._seqs[self._n : need] = seq_arr
            self._subjects.extend(subs)
            self._known.update(seq_arr.tolist())
            self._n = need
            if self._hnsw is not None:
                self._hnsw.add(np.ascontiguousarray(vecs))
                self._hnsw_rows = need
        self._maybe_rebuild()

    def remove(self, seqs: Sequence[int]) -> None:
        with self._lock:
            gone = {int(s) for s in seqs} & self._known
            if not gone:
                return
            self._known -= gone
            if self._hnsw is None:
                self._install(*self._live_rows(gone), graph=None)
            else:
                self._dead |= gone  # filtered at search time until the next rebuild
        self._maybe_rebuild()

    def _live_rows(self, gone: set[int], start: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
        seqs = self._seqs[start : self._n]
        idx = np.nonzero(~np.isin(seqs, np.fromiter(gone, np.int64, len(gone))))[0] if gone else None
        if idx is None:
            return self._vectors[start : self._n].copy(), seqs.copy(), self._subjects[start : self._n]
        return (
            self._vectors[start : self._n][idx],
            seqs[idx],
            [self._subjects[start + i] for i in idx.tolist()],
        )

    def _install(self, vectors: np.ndarray, seqs: np.ndarray, subjects: list[str], graph: Any) -> None:
        self._vectors = np.ascontiguousarray(vectors, np.float32)
        self._seqs = seqs
        self._subjects = list(subjects)
        self._n = len(seqs)
        self._hnsw = graph

    # ---- rebuild ----
    def _maybe_rebuild(self) -> None:
        with self._lock:
            if self._rebuilding is not None:
                return
            live = self._n - len(self._dead)
            if self._hnsw is None:
                due = live >= self.hnsw_min_size
            else:
                due = live < self.hnsw_min_size or len(self._dead) > self.rebuild_dead_fraction * self._n
            if not due:
                return
        self.rebuild(wait=not self.background)

    def rebuild(self, wait: bool = True) -> None:
        """Rebuild from the live rows (HNSW or exact, by size) and swap in; in a thread unless `wait`.
        Searches keep using the old structure (dead rows filtered) until the swap."""
        with self._lock:
            thread = self._rebuilding
            if thread is None:
                vectors, seqs, subjects = self._live_rows(set(self._dead))
                thread = threading.Thread(
                    target=self._build,
                    args=(vectors, seqs, subjects, self._n),
                    daemon=True,
                    name="consentgate-face-index-rebuild",
                )
                self._rebuilding = thread
                thread.start()
        if wait:
            thread.join()

    def _build(self, vectors: np.ndarray, seqs: np.ndarray, subjects: list[str], snapshot_n: int) -> None:
        try:
            graph = _hnsw(self.dim, *self._hnsw_params, vectors) if len(seqs) >= self.hnsw_min_size else None
            with self._lock:
                # carry over rows added during the build; rows removed during it stay dead (filtered)
                more_v, more_s, more_subj = self._live_rows(set(self._dead), start=snapshot_n)
                if graph is not None and len(more_s):
                    graph.add(np.ascontiguousarray(more_v))
                self._install(
                    np.concatenate([vectors, more_v]),
                    np.concatenate([seqs, more_s]),
                    subjects + more_subj,
                    graph,
                )
                self._dead &= set(self._seqs.tolist())
                if graph is None and self._dead:
                    self._install(*self._live_rows(set(self._dead)), graph=None)
                    self._dead.clear()
        finally:
            with self._lock:
                self._rebuilding = None

    def wait_idle(self) -> None:
        """Wait for a background rebuild to finish (tests, benchmarks, shutdown)."""
        thread = self._rebuilding
        if thread is not None:
            thread.join()

    # ---- search ----
    def search(self, embeddings: np.ndarray, threshold: float, k: int = 5) -> list[list[tuple[str, float]]]:
        """Per query row: up to `k` (subject_id, cosine similarity) with similarity >= threshold,
        best first, one entry per subject (its best template)."""
        queries = np.ascontiguousarray(np.asarray(embeddings, np.float32).reshape(-1, self.dim))
        with self._lock:
            n = self._n
            if n == 0 or len(queries) == 0:
                return [[] for _ in range(len(queries))]
            fetch = min(n, 4 * k + min(len(self._dead), 256))
            if self._hnsw is not None:
                sims, labels = self._hnsw.search(queries, fetch)
            else:
                all_sims = queries @ self._vectors[:n].T
                if fetch < n:
                    part = np.argpartition(-all_sims, fetch - 1, axis=1)[:, :fetch]
                else:
                    part = np.tile(np.arange(n), (len(queries), 1))
                part_sims = np.take_along_axis(all_sims, part, axis=1)
                order = np.argsort(-part_sims, axis=1)
                labels = np.take_along_axis(part, order, axis=1)
                sims = np.take_along_axis(part_sims, order, axis=1)
            return [self._collect(sims[i], labels[i], threshold, k) for i in range(len(queries))]

    def _collect(
        self, sims: np.ndarray, labels: np.ndarray, threshold: float, k: int
    ) -> list[tuple[str, float]]:
        best: dict[str, float] = {}
        for sim, label in zip(sims.tolist(), labels.tolist(), strict=True):
            if label < 0 or sim < threshold:
                break  # results come best first
            if self._dead and int(self._seqs[label]) in self._dead:
                continue
            subject = self._subjects[label]
            if subject not in best:
                best[subject] = float(sim)
                if len(best) == k:
                    break
        return list(best.items())

    # ---- refresh from a source ----
    def refresh_if_changed(self, force: bool = False) -> bool:
        """Poll the source (at most every `poll_interval_s` unless forced); apply additions and removals.
        True when something was applied."""
        if self.source is None:
            return False
        now = self._clock()
        if not force and now - self._last_poll < self.poll_interval_s:
            return False
        self._last_poll = now
        version = self.source.version()  # read before the rows: a change racing us is seen next time
        if version == self._seen_version and not force:
            return False
        batch = self.source.added_since(self._last_seq)
        if len(batch.seqs):
            self.add(batch.seqs, batch.subject_ids, batch.vectors)
        self._last_seq = max(self._last_seq, batch.newest_seq, int(batch.seqs.max(initial=0)))
        removed, self._last_removal = self.source.removed_since(self._last_removal)
        if removed:
            self.remove(removed)
        self._seen_version = version
        return True
