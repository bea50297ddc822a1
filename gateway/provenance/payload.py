"""Watermark payloads: how an id becomes bits, and why noise never becomes an id.

Why this module exists: a watermark decoder always returns *some* bits. An unmarked image
decodes to roughly fair coin flips, so a detection is only meaningful if a random word is
overwhelmingly unlikely to look like a valid payload. This module owns that guarantee; the
image watermarkers (and the video watermark) share it and the id space.

Layout of a payload word of ``n = id_bits + check_bits`` bits (most significant bit first)::

    word  = id (id_bits) || check (check_bits)
    check = CRC-32(domain || id as big-endian bytes) mod 2**check_bits
    sent  = word XOR mask      mask = first n bits of SHA-256(domain || "/mask")

The mask whitens the word (small ids are not runs of zeros) and makes constant decoder
outputs (all zeros / all ones from flat images) invalid by construction.

The math. For each id exactly one check value is valid, so exactly ``2**id_bits`` of the
``2**n`` words are valid: a fraction ``2**-check_bits``. XOR with a fixed mask and flipping
a fixed set of positions are bijections of the word space, so if the received word is
uniform (an unmarked image), *every* candidate word we try is uniform too, and each one is
valid with probability ``2**-check_bits``. With ``c`` candidates per decode the union bound
gives::

    P(false accept per decode) <= c * 2**-check_bits

Error correction is soft-decision "Chase" decoding: the decoder takes per-bit confidences
(the fraction of the watermark's repeated blocks that voted 1), picks the ``k`` least
reliable positions and tries all ``2**k`` flip patterns, keeping the valid candidate whose
flipped bits cost the least confidence. ``c = 2**k`` candidates.

Default image payload (``DWT_PAYLOAD``): 40-bit id + 32-bit check = 72 bits, and a decode
budget of ``c = 256`` candidates (shared across every attempt a detector makes on one
image, e.g. several rescalings) -> ``P <= 256 * 2**-32 = 2**-24``. CRC-32 over these short
messages detects every error pattern of weight <= 3 outright (Hamming distance >= 4), so a
single flip pattern cannot turn one marked id into another nearby one.

rivaGan carries exactly 32 bits (``RIVAGAN_PAYLOAD``): 24-bit id + 8-bit check, no
correction, ``P <= 2**-8`` per decode. That is a hint, not an identification: callers must
confirm a rivaGan id against the record (its perceptual hash or the C2PA manifest).
"""

from __future__ import annotations

import hashlib
import secrets
import zlib
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["DWT_PAYLOAD", "MARK_PAYLOAD", "RIVAGAN_PAYLOAD", "DecodedPayload", "PayloadCodec"]


@dataclass(frozen=True)
class DecodedPayload:
    """A valid payload found in received bits."""

    wm_id: int
    bits: NDArray[np.uint8]  # the transmitted (whitened) word that matched
    flipped: int  # how many received bits the correction flipped
    candidates: int  # how many candidate words were checked (the false-accept budget used)


@dataclass(frozen=True)
class PayloadCodec:
    """Encode an integer id into whitened, error-detecting bits and back."""

    id_bits: int
    check_bits: int
    domain: str = "consentgate/watermark/v1"

    def __post_init__(self) -> None:
        if not (1 <= self.check_bits <= 32) or self.id_bits < 1:
            raise ValueError("need 1 <= check_bits <= 32 and id_bits >= 1")

    @property
    def n_bits(self) -> int:
        return self.id_bits + self.check_bits

    def false_accept_bound(self, candidates: int) -> float:
        """Upper bound on P(an unmarked image yields a valid id) for one decode."""
        return min(1.0, candidates * 2.0 ** -self.check_bits)

    def new_id(self) -> int:
        """A uniformly random id (from the OS CSPRNG)."""
        return secrets.randbits(self.id_bits)

    def _check(self, wm_id: int) -> int:
        data = self.domain.encode() + wm_id.to_bytes((self.id_bits + 7) // 8, "big")
        return zlib.crc32(data) & ((1 << self.check_bits) - 1)

    def _mask(self) -> int:
        digest = hashlib.sha256(self.domain.encode() + b"/mask").digest()
        nbytes = (self.n_bits + 7) // 8
        return int.from_bytes(digest[:nbytes], "big") >> (nbytes * 8 - self.n_bits)

    def _valid_id(self, word: int) -> int | None:
        wm_id = word >> self.check_bits
        check = word & ((1 << self.check_bits) - 1)
        return wm_id if self._check(wm_id) == check else None

    def encode(self, wm_id: int) -> NDArray[np.uint8]:
        """The bits to embed for ``wm_id`` (length ``n_bits``, values 0/1)."""
        if not 0 <= wm_id < (1 << self.id_bits):
            raise ValueError(f"watermark id must fit in {self.id_bits} bits")
        word = ((wm_id << self.check_bits) | self._check(wm_id)) ^ self._mask()
        return _int_to_bits(word, self.n_bits)

    def decode(self, received: NDArray[np.floating] | NDArray[np.integer],
               max_candidates: int = 1) -> DecodedPayload | None:
        """Find the id in ``received`` (hard 0/1 bits or soft P(bit=1) in [0, 1]).

        Tries at most ``max_candidates`` words (rounded down to a power of two); see the module
        docstring for the false-accept bound this implies.
        """
        soft = np.asarray(received, dtype=np.float64).reshape(-1)
        if soft.shape[0] != self.n_bits:
            raise ValueError(f"expected {self.n_bits} bits, got {soft.shape[0]}")
        hard = (soft > 0.5).astype(np.uint8)
        k = min(max(int(max_candidates).bit_length() - 1, 0), self.n_bits)
        reliability = np.abs(soft - 0.5)
        weakest = np.argsort(reliability, kind="stable")[:k]
        base = _bits_to_int(hard)
        mask = self._mask()
        best: tuple[float, int, int] | None = None  # (cost, flips, word)
        for pattern in range(1 << k):
            word = base
            cost = 0.0
            flips = 0
            for j in range(k):
                if pattern >> j & 1:
                    word ^= 1 << (self.n_bits - 1 - int(weakest[j]))
                    cost += float(reliability[weakest[j]])
                    flips += 1
            if self._valid_id(word ^ mask) is None:
                continue
            if best is None or cost < best[0]:
                best = (cost, flips, word)
        if best is None:
            return None
        wm_id = self._valid_id(best[2] ^ mask)
        assert wm_id is not None
        return DecodedPayload(wm_id=wm_id, bits=_int_to_bits(best[2], self.n_bits),
                              flipped=best[1], candidates=1 << k)


def _int_to_bits(word: int, n: int) -> NDArray[np.uint8]:
    return np.array([(word >> (n - 1 - i)) & 1 for i in range(n)], dtype=np.uint8)


def _bits_to_int(bits: NDArray[np.uint8]) -> int:
    word = 0
    for b in bits.tolist():
        word = (word << 1) | int(b)
    return word


DWT_PAYLOAD = PayloadCodec(id_bits=40, check_bits=32)
# The 72-bit payload every mark that can carry it shares (image tileSync and dwtDctSvd, video,
# audio): one id space per method, one check. Decoders that try one candidate word per decode
# (Viterbi, ``gateway.provenance.fec``) keep P(false accept) <= decodes * 2**-32.
MARK_PAYLOAD = DWT_PAYLOAD
RIVAGAN_PAYLOAD = PayloadCodec(id_bits=24, check_bits=8, domain="consentgate/watermark/rivagan/v1")
