"""Why: one image check can use every core of a small machine — its models side by side, the face
detector's pyramid levels and verification crops on two threads — which gives one client the lowest
latency. Whether several checks in flight should still split was measured rather than assumed
(#21.3, #20; 2-core machine, 4 closed-loop clients, same run): splitting costs no more CPU per check
than running the stages one after another,
and the clients got more checks/s with every check split (1024²: 5.7/s) than when only a check alone
splits (5.1/s) or none does (4.9/s) — checks that run their stages one after another leave a core idle
whenever too few of them are runnable. So by default every check splits; `split_below` caps it for
deployments that want the other trade (a check splits only while fewer than `split_below` checks are
in flight, itself included: 2 = only a check that is alone; 0 or 1 = never). The models' results are
the same either way; only the schedule changes."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["InFlight", "default_cores"]


def default_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform says, else the count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class InFlight:
    """Counts the checks in flight in this process and gives each, when it starts, its thread budget:
    at least 2 (the cores shared among the checks in flight) on a machine with two or more cores,
    unless `split_below` (None: no limit) checks or more are in flight, itself included; then 1 (its
    stages run one after another, one thread each)."""

    def __init__(self, split_below: int | None = None, cores: int | None = None) -> None:
        self.cores = cores if cores is not None else default_cores()
        self.split_below = split_below
        if self.cores < 1 or (split_below is not None and split_below < 0):
            raise ValueError(f"cores must be >= 1 and split_below >= 0 (got {self.cores}, {split_below})")
        self._count = 0
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        return self._count

    def budget(self, in_flight: int) -> int:
        """The thread budget of a check that starts with `in_flight` checks running (itself included)."""
        if self.cores < 2 or (self.split_below is not None and in_flight >= self.split_below):
            return 1
        return max(2, self.cores // max(1, in_flight))

    @contextmanager
    def admit(self) -> Iterator[int]:
        """Count one check in flight for the block; yields its thread budget."""
        with self._lock:
            self._count += 1
            in_flight = self._count
        try:
            yield self.budget(in_flight)
        finally:
            with self._lock:
                self._count -= 1
