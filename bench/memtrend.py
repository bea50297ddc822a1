"""Why: "no memory growth after warm-up" (issue #21.4) is a claim about a trend, and one RSS figure at
the end of a run cannot carry it: the resident set of a serving process moves in a saw-tooth (glibc
trims, the models' scratch buffers) and part of it is file-backed (shared libraries and weights paged
in as code paths are first touched), which is not memory the process allocated. This module reads a
process's resident set split into anonymous and file-backed pages, and judges a series of samples:
quarter means and floors, and the least-squares trend with its standard error over the whole run
after the warm-up and over its second half — a leak is a trend that stays significant, settling is
one that fades.

Used by bench/load.py; pure functions besides `proc_memory`, so the verdict is tested on made-up
series (tests/bench/test_memtrend.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass

FIELDS = {"VmRSS:": "rss", "RssAnon:": "anon", "RssFile:": "file", "RssShmem:": "shmem"}


def proc_memory(pid: int) -> dict[str, float]:
    """The resident set of `pid` in MB: `rss` (all), `anon` (heap, arenas, stacks: what the process
    allocated), `file` (mapped files: libraries, weights), `shmem`; NaN where the kernel has no field."""
    out = dict.fromkeys(FIELDS.values(), math.nan)
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key = line.split(maxsplit=1)[0] if line.strip() else ""
            if key in FIELDS:
                out[FIELDS[key]] = int(line.split()[1]) / 1024
    return out


@dataclass(frozen=True)
class Trend:
    """The judgement of one series (MB, sampled at request counts): least-squares slopes in MB per
    1k requests with their standard errors, over the whole series and over its second half."""

    quarter_means: tuple[float, ...]
    quarter_mins: tuple[float, ...]  # the floor of each quarter: the level right after a trim
    slope_mb_per_1k: float  # over every sample (the whole run after the warm-up)
    slope_se_mb_per_1k: float  # its standard error (NaN under 4 samples)
    late_slope_mb_per_1k: float  # over the second half of the samples
    late_slope_se_mb_per_1k: float
    samples: int

    @staticmethod
    def _significant(b: float, se: float) -> bool:
        return not math.isnan(se) and b > 2 * se

    @property
    def rising(self) -> bool:
        """A slope over the run more than two standard errors above zero: growth that a saw-tooth
        around a flat level would not show."""
        return self._significant(self.slope_mb_per_1k, self.slope_se_mb_per_1k)

    @property
    def late_rising(self) -> bool:
        return self._significant(self.late_slope_mb_per_1k, self.late_slope_se_mb_per_1k)

    @property
    def verdict(self) -> str:
        if self.samples < 8:
            return "too few samples to judge"
        if not self.rising:
            return "flat (no significant trend after the warm-up)"
        if not self.late_rising:
            return "rising early, no significant trend over the second half (settling, or too noisy to tell)"
        return "rising through the run (a leak, or settling slower than the run)"


def _quarters(values: list[float]) -> list[list[float]]:
    n = len(values)
    if n < 4:
        return [[v] for v in values]
    bounds = [round(n * q / 4) for q in range(5)]
    return [values[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def quarter_means(values: list[float]) -> tuple[float, ...]:
    """The mean of each quarter of `values` (fewer than 4 values: each value)."""
    return tuple(sum(q) / len(q) for q in _quarters(values))


def quarter_mins(values: list[float]) -> tuple[float, ...]:
    """The lowest value of each quarter of `values` (fewer than 4 values: each value)."""
    return tuple(min(q) for q in _quarters(values))


def slope(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares slope of ys over xs and its standard error (NaN when it cannot be estimated)."""
    n = len(xs)
    if n < 3:
        return (math.nan, math.nan)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return (math.nan, math.nan)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    a = my - b * mx
    if n < 4:
        return (b, math.nan)
    residual = sum((y - a - b * x) ** 2 for x, y in zip(xs, ys, strict=True)) / (n - 2)
    return (b, math.sqrt(residual / sxx))


def trend(at_requests: list[int], values_mb: list[float]) -> Trend:
    """Judge a series of samples taken after `at_requests` requests each."""
    xs = [a / 1000 for a in at_requests]
    half = len(values_mb) // 2
    b, se = slope(xs, values_mb)
    late, late_se = slope(xs[half:], values_mb[half:])
    return Trend(quarter_means(values_mb), quarter_mins(values_mb), b, se, late, late_se, len(values_mb))
