"""The payload codec: ids round-trip, noise never becomes an id, soft decoding repairs a few
weak bits, and the false-accept rate matches the math in ``payload``'s docstring."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from gateway.provenance.payload import DWT_PAYLOAD, RIVAGAN_PAYLOAD, PayloadCodec


@pytest.mark.parametrize("codec", [DWT_PAYLOAD, RIVAGAN_PAYLOAD])
def test_ids_round_trip(codec: PayloadCodec) -> None:
    for wm_id in [0, 1, (1 << codec.id_bits) - 1, codec.new_id(), codec.new_id()]:
        bits = codec.encode(wm_id)
        assert bits.shape == (codec.n_bits,)
        found = codec.decode(bits)
        assert found is not None and found.wm_id == wm_id and found.flipped == 0


def test_layout_and_bound() -> None:
    assert DWT_PAYLOAD.n_bits == 72 and DWT_PAYLOAD.id_bits == 40
    assert DWT_PAYLOAD.false_accept_bound(256) == 2.0 ** -24
    assert RIVAGAN_PAYLOAD.n_bits == 32


def test_whitening_makes_constant_words_invalid() -> None:
    for codec in (DWT_PAYLOAD, RIVAGAN_PAYLOAD):
        for value in (0, 1):
            assert codec.decode(np.full(codec.n_bits, value, dtype=np.uint8)) is None
    # id 0 is not sent as a run of zeros
    assert 20 < int(DWT_PAYLOAD.encode(0).sum()) < 52


def test_out_of_range_ids_and_wrong_lengths_are_refused() -> None:
    with pytest.raises(ValueError):
        DWT_PAYLOAD.encode(1 << 40)
    with pytest.raises(ValueError):
        DWT_PAYLOAD.encode(-1)
    with pytest.raises(ValueError):
        DWT_PAYLOAD.decode(np.zeros(64))


def test_every_error_of_weight_up_to_three_is_detected() -> None:
    word = DWT_PAYLOAD.encode(0x1234567890)
    n = DWT_PAYLOAD.n_bits
    for weight in (1, 2, 3):
        for positions in itertools.combinations(range(n), weight):
            received = word.copy()
            received[list(positions)] ^= 1
            assert DWT_PAYLOAD.decode(received) is None, positions


def test_random_words_never_decode_with_the_full_budget() -> None:
    rng = np.random.default_rng(2024)
    accepted = sum(
        DWT_PAYLOAD.decode(rng.random(72), max_candidates=256) is not None for _ in range(3000)
    )
    assert accepted == 0  # expected 3000 * 2**-24 = 0.0002


def test_false_accept_rate_matches_the_bound_on_a_weak_codec() -> None:
    """The same decoder on a deliberately weak codec: the measured rate sits near c * 2**-k,
    which shows the bound is the right order (and the strong test above is not vacuous)."""
    weak = PayloadCodec(id_bits=16, check_bits=10, domain="test/weak")
    rng = np.random.default_rng(7)
    trials = 6000
    accepted = sum(weak.decode(rng.random(weak.n_bits), max_candidates=8) is not None for _ in range(trials))
    expected = trials * weak.false_accept_bound(8)  # 46.9
    assert 0.4 * expected <= accepted <= 1.3 * expected


def test_soft_decoding_repairs_weak_wrong_bits() -> None:
    wm_id = DWT_PAYLOAD.new_id()
    bits = DWT_PAYLOAD.encode(wm_id)
    soft = np.where(bits == 1, 0.9, 0.1)
    wrong = [3, 30, 60, 71]
    soft[wrong] = np.where(bits[wrong] == 1, 0.45, 0.55)  # wrong side, low confidence
    assert DWT_PAYLOAD.decode(soft, max_candidates=1) is None
    found = DWT_PAYLOAD.decode(soft, max_candidates=256)
    assert found is not None and found.wm_id == wm_id and found.flipped == 4 and found.candidates == 256


def test_confident_wrong_bits_are_not_repaired() -> None:
    wm_id = DWT_PAYLOAD.new_id()
    bits = DWT_PAYLOAD.encode(wm_id)
    soft = np.where(bits == 1, 0.6, 0.4)
    soft[[0, 1]] = np.where(bits[[0, 1]] == 1, 0.0, 1.0)  # confidently wrong
    assert DWT_PAYLOAD.decode(soft, max_candidates=256) is None
