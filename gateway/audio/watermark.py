"""Why: a released voice must lead back to its decision even after the file is re-encoded or its
volume changed (issue #18 point 5), so the audio carries the same 72-bit payload as images and
video (`gateway.provenance.payload.DWT_PAYLOAD`: 40-bit id + 32-bit check) in its sound.

The mark: quantisation index modulation (QIM) of band-energy *ratios*. The audio (mono mix at
16 kHz) is cut into tiles of 48 ms; in each tile, sixteen 200 Hz bands between 400 and 3600 Hz form
eight disjoint pairs, and each pair carries one bit as the log ratio of its two bands' energies,
moved onto the even (bit 0) or odd (bit 1) cells of a lattice of step `STEP` nats. A ratio does
not change with volume (±6 dB is a common factor), MP3 at 128 kbps keeps band energies under
4 kHz closely, and the tiles are long enough that an encoder's few-ms delay stays inside them.
Bits repeat over the clip in a keyed order, and the detector adds up soft votes (the distance to
the lattice, weighted by the tile's energy; quiet tiles carry nothing), then decodes the 72 soft
bits with the payload's error-detecting check. The change is computed at 16 kHz as a difference
signal confined to 400–3600 Hz and added, upsampled, to every channel at the file's own rate.

Delays: an encoder may prepend samples (AAC's priming: ~870 samples at 16 kHz, not trimmed by every
demuxer), so the detector tries `OFFSETS` grid offsets 8 ms apart (0..120 ms), with `CANDIDATES`
Chase candidates each: an unmarked file yields a valid id with probability <= 16 * 16 * 2**-32 = 2**-24
(the image mark's bound).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from scipy.signal import istft, resample_poly, stft

from gateway.provenance.payload import DWT_PAYLOAD, DecodedPayload

__all__ = ["AudioMark", "detect", "embed_difference", "mark_samples"]

RATE = 16_000
NFFT = 512  # 32 ms
HOP = 256  # 16 ms
TILE_FRAMES = 3  # 48 ms
BAND_HZ = 200.0
FIRST_HZ = 400.0
BANDS = 16
PAIRS = BANDS // 2
STEP = 0.5  # QIM lattice step of the log band-energy ratio (nats)
ITERATIONS = 3
MIN_TILE_ENERGY = 1e-10  # absolute floor of the silence threshold (mean power per bin)
RELATIVE_FLOOR = 1e-3  # a band under -30 dB of the clip's loud tiles is silence: not marked, no vote
OFFSETS = 16
OFFSET_STEP = HOP // 2  # 8 ms
CANDIDATES = 16
KEY = b"consentgate/audio-watermark/v1"


@dataclass(frozen=True)
class AudioMark:
    """A detection: the payload found, how many tiles voted, and the mean |soft bit - 0.5| (0..0.5)."""

    payload: DecodedPayload
    tiles: int
    confidence: float
    offset_samples: int


def _band_bins() -> list[np.ndarray]:
    freqs = np.fft.rfftfreq(NFFT, 1 / RATE)
    return [np.where((freqs >= FIRST_HZ + b * BAND_HZ) & (freqs < FIRST_HZ + (b + 1) * BAND_HZ))[0]
            for b in range(BANDS)]


def _bit_order(n_tiles: int) -> np.ndarray:
    """Which payload bit each (tile, pair) slot carries: every bit once per round, in a keyed order."""
    slots = n_tiles * PAIRS
    rounds = -(-slots // DWT_PAYLOAD.n_bits)
    seed = int.from_bytes(hashlib.sha256(KEY).digest()[:8], "big")
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(DWT_PAYLOAD.n_bits) for _ in range(max(rounds, 1))])
    return order[:slots].reshape(n_tiles, PAIRS) if slots else np.zeros((0, PAIRS), int)


def _tile_energies(spec: np.ndarray, bins: list[np.ndarray]) -> np.ndarray:
    """(tiles, BANDS) mean power per bin of each band over each tile of TILE_FRAMES frames."""
    power = np.abs(spec) ** 2
    n_tiles = power.shape[1] // TILE_FRAMES
    power = power[:, : n_tiles * TILE_FRAMES].reshape(power.shape[0], n_tiles, TILE_FRAMES).mean(axis=2)
    return np.stack([power[b].mean(axis=0) for b in bins], axis=1)


def _floor(energy: np.ndarray) -> float:
    """The silence threshold of a clip, relative to its loud tiles (so a volume change moves it too)."""
    if energy.size == 0:
        return MIN_TILE_ENERGY
    return max(MIN_TILE_ENERGY, RELATIVE_FLOOR * float(np.percentile(energy, 90)))


def embed_difference(mono16: np.ndarray, bits: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """The signal to add (at 16 kHz) so that `mono16` carries `bits` (length DWT_PAYLOAD.n_bits)."""
    x = np.asarray(mono16, dtype=np.float64)
    if len(x) < NFFT * 2:
        return np.zeros(len(x), np.float32)
    bins = _band_bins()
    step = STEP * strength
    marked = x.copy()
    for _ in range(ITERATIONS):  # overlap-add blurs the gains a little: re-measure and correct
        _f, _t, spec = stft(marked, fs=RATE, nperseg=NFFT, noverlap=NFFT - HOP)
        energy = _tile_energies(spec, bins)
        n_tiles = energy.shape[0]
        order = _bit_order(n_tiles)
        gains = np.ones((n_tiles, BANDS))
        floor = _floor(energy)
        for p in range(PAIRS):
            a, b = energy[:, 2 * p], energy[:, 2 * p + 1]
            live = (a > floor) & (b > floor)
            ratio = np.log(np.maximum(a, 1e-20) / np.maximum(b, 1e-20))
            want = bits[order[:, p]].astype(np.float64)
            target = step * (2 * np.round((ratio / step - want) / 2) + want)  # nearest cell of the bit's parity
            delta = np.where(live, target - ratio, 0.0)  # in log power; split between the two bands
            gains[:, 2 * p] = np.exp(delta / 4)  # amplitude gain = exp(log-power change / 2), half each
            gains[:, 2 * p + 1] = np.exp(-delta / 4)
        gain_bins = np.ones((spec.shape[0], n_tiles))
        for band, idx in enumerate(bins):
            gain_bins[idx] = gains[:, band][None, :]
        frame_gain = np.repeat(gain_bins, TILE_FRAMES, axis=1)
        full = np.ones(spec.shape)
        full[:, : frame_gain.shape[1]] = frame_gain
        _t2, y = istft(spec * full, fs=RATE, nperseg=NFFT, noverlap=NFFT - HOP)
        y = np.asarray(y, dtype=np.float64)[: len(x)]
        if len(y) < len(x):
            y = np.concatenate([y, marked[len(y):]])
        marked = y
    return (marked - x).astype(np.float32)


def mark_samples(channels: np.ndarray, rate: int, mono16: np.ndarray, wm_id: int,
                 strength: float = 1.0) -> np.ndarray:
    """`channels` (channels, n) float32 at `rate` with the payload of `wm_id` added to every channel."""
    diff16 = embed_difference(mono16, DWT_PAYLOAD.encode(wm_id), strength)
    if rate == RATE:
        diff = diff16
    else:
        g = np.gcd(rate, RATE)
        diff = resample_poly(diff16, rate // g, RATE // g).astype(np.float32)
    n = channels.shape[1]
    diff = diff[:n] if len(diff) >= n else np.pad(diff, (0, n - len(diff)))
    out: np.ndarray = np.clip(channels + diff[None, :], -1.0, 1.0).astype(np.float32)
    return out


def soft_bits(mono16: np.ndarray, offset: int = 0) -> tuple[np.ndarray, int]:
    """P(bit = 1) for each payload bit from the tiles of `mono16[offset:]`, and how many tiles voted."""
    x = np.asarray(mono16[offset:], dtype=np.float64)
    n_bits = DWT_PAYLOAD.n_bits
    if len(x) < NFFT * 2:
        return np.full(n_bits, 0.5), 0
    bins = _band_bins()
    _f, _t, spec = stft(x, fs=RATE, nperseg=NFFT, noverlap=NFFT - HOP)
    energy = _tile_energies(spec, bins)
    order = _bit_order(energy.shape[0])
    votes = np.zeros(n_bits)
    weights = np.zeros(n_bits)
    voted = 0
    floor = _floor(energy)
    for p in range(PAIRS):
        a, b = energy[:, 2 * p], energy[:, 2 * p + 1]
        live = (a > floor) & (b > floor)
        ratio = np.log(np.maximum(a, 1e-20) / np.maximum(b, 1e-20)) / STEP
        nearest = np.round(ratio)
        confidence = 1 - 2 * np.abs(ratio - nearest)  # 1 at a lattice point, 0 half-way
        parity = np.mod(nearest, 2)  # the bit this cell says
        vote = np.where(parity == 1, 1.0, -1.0) * confidence
        weight = np.where(live, np.log1p(np.minimum(a, b) / floor), 0.0)
        np.add.at(votes, order[:, p], vote * weight)
        np.add.at(weights, order[:, p], weight)
        voted += int(live.sum())
    score = np.divide(votes, weights, out=np.zeros(n_bits), where=weights > 0)
    return (1 + np.clip(score, -1, 1)) / 2, voted


def detect(mono16: np.ndarray) -> AudioMark | None:
    """The payload in 16 kHz mono audio (a release, or a re-encoded / louder / quieter copy), or None."""
    best: AudioMark | None = None
    for k in range(OFFSETS):
        offset = k * OFFSET_STEP
        soft, tiles = soft_bits(mono16, offset)
        if tiles == 0:
            continue
        found = DWT_PAYLOAD.decode(soft, max_candidates=CANDIDATES)
        if found is None:
            continue
        mark = AudioMark(found, tiles, float(np.mean(np.abs(soft - 0.5))), offset)
        if best is None or mark.confidence > best.confidence:
            best = mark
    return best
