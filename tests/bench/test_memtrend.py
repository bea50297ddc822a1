"""Why: bench/load.py's memory verdict is what "no growth after warm-up" (#21.4) is read from; it must
call a steady rise under a saw-tooth "rising" and a saw-tooth around a flat level "flat", whatever the
absolute level, and read the anonymous/file split of a real process."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from memtrend import proc_memory, quarter_means, quarter_mins, slope, trend  # noqa: E402

AT = [i * 250 for i in range(40)]  # a sample every 250 requests: 10k requests
SAW = [(-12.0, -4.0, 4.0, 12.0)[i % 4] for i in range(40)]  # the +-12 MB saw-tooth of periodic trims


def test_a_steady_rise_under_a_saw_tooth_is_rising() -> None:
    values = [700 + 3 * a / 1000 + s for a, s in zip(AT, SAW, strict=True)]  # +3 MB per 1k requests
    t = trend(AT, values)
    assert t.rising and t.late_rising and t.verdict.startswith("rising through")
    assert 2.5 < t.slope_mb_per_1k < 3.5


def test_a_saw_tooth_around_a_flat_level_is_flat() -> None:
    t = trend(AT, [700 + s for s in SAW])
    assert not t.rising and t.verdict.startswith("flat")
    assert abs(t.slope_mb_per_1k) < 2 * t.slope_se_mb_per_1k + 1e-9


def test_settling_that_has_stopped_by_the_second_half_is_told_from_a_leak() -> None:
    values = [700 + 40 * (1 - math.exp(-a / 800)) + s for a, s in zip(AT, SAW, strict=True)]
    t = trend(AT, values)
    assert t.rising and not t.late_rising and t.verdict.startswith("rising early")


def test_too_few_samples_are_not_judged() -> None:
    t = trend([0, 100, 200], [1.0, 50.0, 99.0])
    assert not t.rising and t.verdict == "too few samples to judge"


def test_quarters_and_slope() -> None:
    assert quarter_means([1, 1, 2, 2, 3, 3, 4, 4]) == (1, 2, 3, 4)
    assert quarter_mins([5, 1, 6, 2, 7, 3, 8, 4]) == (1, 2, 3, 4)
    b, se = slope([0, 1, 2, 3, 4], [1, 3, 5, 7, 9])
    assert b == 2 and se == 0
    assert math.isnan(slope([1, 1, 1], [1, 2, 3])[0])


def test_this_process_has_anonymous_and_file_backed_pages() -> None:
    mem = proc_memory(os.getpid())
    assert mem["anon"] > 1 and mem["file"] > 1
    assert abs(mem["anon"] + mem["file"] + mem["shmem"] - mem["rss"]) < 1
