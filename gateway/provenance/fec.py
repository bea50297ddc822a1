"""Forward error correction for mark payloads: a rate-1/3 convolutional code with soft Viterbi.

Why: a mark is a noisy channel whose noise is the host image plus whatever the internet did to
the copy. Repeating each payload bit ~10 times (what a plain spread-spectrum mark does) only
adds energy; a convolutional code (constraint length 7, generators 133/171/165 octal, free
distance 15) spends the same cells on parity and corrects the scattered weak bits a
repetition code loses, about 5 dB better at the error rates that matter. The decoder takes
soft values (log-likelihood ratios) and returns the single most likely word, so the
false-accept bound of ``gateway.provenance.payload`` holds unchanged: the payload check is
applied to one candidate per decode. Shared by every mark that carries the 72-bit payload
(image and audio alike).

``list_viterbi_decode`` returns the ``L`` most likely words instead of one (parallel list
Viterbi): when the most likely word fails the payload check, the right one is often second or
tenth. Each listed word is one more candidate for the payload check, so a caller that checks
the list counts ``L`` candidates against its false-accept budget (``payload``), never one.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from numpy.typing import NDArray

__all__ = ["K", "RATE", "coded_length", "conv_encode", "list_viterbi_decode", "viterbi_decode"]

K = 7  # constraint length: 6 bits of memory, 64 states
RATE = 3
_GENERATORS = (0o133, 0o171, 0o165)
_STATES = 1 << (K - 1)


def coded_length(n_bits: int) -> int:
    """Coded bits for ``n_bits`` of payload (zero-tail terminated)."""
    return RATE * (n_bits + K - 1)


def _parity(x: NDArray[np.int64]) -> NDArray[np.int64]:
    x = x.copy()
    out = np.zeros_like(x)
    while np.any(x):
        out ^= x & 1
        x >>= 1
    return out


@cache
def _trellis() -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
    """For every next state: its two predecessor states and the +-1 outputs on each branch."""
    ns = np.arange(_STATES, dtype=np.int64)
    prev = [(ns >> 1) | (msb << (K - 2)) for msb in (0, 1)]
    outs = []
    for p in prev:
        register = (p << 1) | (ns & 1)  # K bits: the new input is the lowest bit
        outs.append(np.stack([2.0 * _parity(register & g) - 1.0 for g in _GENERATORS], axis=1))
    return prev[0], prev[1], outs[0], outs[1]


def conv_encode(bits: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Encode 0/1 ``bits`` (tail of K-1 zeros appended) into ``coded_length(len(bits))`` bits."""
    state = 0
    out: list[int] = []
    for b in [*bits.tolist(), *([0] * (K - 1))]:
        register = ((state << 1) | int(b)) & ((1 << K) - 1)
        out.extend(bin(register & g).count("1") & 1 for g in _GENERATORS)
        state = register & (_STATES - 1)
    return np.array(out, dtype=np.uint8)


def viterbi_decode(llr: NDArray[np.float64], n_bits: int) -> NDArray[np.uint8]:
    """Most likely ``n_bits`` payload bits given per coded bit ``llr`` (> 0 means 1 is likelier)."""
    steps = n_bits + K - 1
    values = np.asarray(llr, dtype=np.float64).reshape(steps, RATE)
    p0, p1, o0, o1 = _trellis()
    metric = np.full(_STATES, -np.inf)
    metric[0] = 0.0
    choices = np.zeros((steps, _STATES), dtype=bool)
    for t in range(steps):
        m0 = metric[p0] + o0 @ values[t]
        m1 = metric[p1] + o1 @ values[t]
        choices[t] = m1 > m0
        metric = np.where(choices[t], m1, m0)
    state = 0  # zero-tail: the path ends in state 0
    bits = np.zeros(steps, dtype=np.uint8)
    for t in range(steps - 1, -1, -1):
        bits[t] = state & 1
        state = int(p1[state] if choices[t, state] else p0[state])
    return bits[:n_bits]


def list_viterbi_decode(llr: NDArray[np.float64], n_bits: int, size: int) -> list[NDArray[np.uint8]]:
    """The ``size`` most likely ``n_bits`` payload words, most likely first (the first is
    ``viterbi_decode``'s). Parallel list Viterbi: every state keeps its ``size`` best paths."""
    steps = n_bits + K - 1
    values = np.asarray(llr, dtype=np.float64).reshape(steps, RATE)
    p0, p1, o0, o1 = _trellis()
    preds = np.stack([p0, p1], axis=1)
    metric = np.full((_STATES, size), -np.inf)
    metric[0, 0] = 0.0
    back = np.zeros((steps, _STATES, size), dtype=np.int64)  # per (state, rank): index among 2 * size
    for t in range(steps):
        candidates = np.concatenate([metric[p0] + (o0 @ values[t])[:, None],
                                     metric[p1] + (o1 @ values[t])[:, None]], axis=1)
        order = np.argsort(-candidates, axis=1)[:, :size]
        back[t] = order
        metric = np.take_along_axis(candidates, order, axis=1)
    ranks = np.flatnonzero(np.isfinite(metric[0]))  # zero-tail: paths end in state 0
    state = np.zeros(ranks.shape, dtype=np.int64)
    rank = ranks.astype(np.int64)
    bits = np.zeros((ranks.shape[0], steps), dtype=np.uint8)
    for t in range(steps - 1, -1, -1):
        bits[:, t] = state & 1
        source, rank = np.divmod(back[t, state, rank], size)
        state = preds[state, source]
    return [bits[i, :n_bits] for i in range(ranks.shape[0])]
