"""Why: StopNCII-style hash lists let a person block images of themselves without handing the images over.

PDQ hashes (256 bits, 64 hex) are held in memory as four uint64 words per entry; a lookup XORs and
popcounts every entry against each query hash (the caller passes the identity and dihedral hashes, so a
flipped or rotated copy is caught) and keeps each subject's smallest Hamming distance.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np

from gateway.registry.errors import InvalidRequest

PDQ_HEX_LEN = 64
_HEX = re.compile(r"^[0-9a-f]+$")


def normalise_pdq_hex(value: str) -> str:
    h = value.strip().lower()
    if len(h) != PDQ_HEX_LEN or not _HEX.match(h):
        raise InvalidRequest(f"a PDQ hash is {PDQ_HEX_LEN} hex digits (256 bits); got {value[:80]!r}")
    return h


def _words(hexes: Sequence[str]) -> np.ndarray:
    raw = b"".join(bytes.fromhex(h) for h in hexes)
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(len(hexes), PDQ_HEX_LEN // 16)


class HashIndex:
    """Immutable snapshot of the hash list: (subject_id, pdq hex) entries."""

    def __init__(self, entries: Iterable[tuple[str, str]]) -> None:
        pairs = list(entries)
        self._subjects = np.array([s for s, _ in pairs], dtype=object)
        hexes = [normalise_pdq_hex(h) for _, h in pairs]
        self._words = _words(hexes) if hexes else np.zeros((0, PDQ_HEX_LEN // 16), np.uint64)

    def __len__(self) -> int:
        return len(self._subjects)

    def search(self, hashes: Sequence[str], max_distance: int) -> list[tuple[str, int]]:
        """(subject_id, smallest distance over all query hashes) for subjects within `max_distance`,
        nearest first."""
        if not len(self._subjects) or not hashes:
            return []
        queries = _words([normalise_pdq_hex(h) for h in hashes])
        best: dict[str, int] = {}
        for q in queries:
            dist = np.bitwise_count(self._words ^ q).sum(axis=1)
            for i in np.nonzero(dist <= max_distance)[0].tolist():
                subject, d = str(self._subjects[i]), int(dist[i])
                if d < best.get(subject, max_distance + 1):
                    best[subject] = d
        return sorted(best.items(), key=lambda kv: (kv[1], kv[0]))
