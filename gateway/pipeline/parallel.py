"""Why: one image check can use every core of a small machine — its models side by side, the face
detector's pyramid levels and verification crops on two threads — which gives one client the lowest
latency; but when several checks are in flight, splitting each one only adds threads that fight for
the same cores (and each ONNX Runtime call's own thread sync costs CPU). So a check splits across
cores only while the process has fewer checks in flight (itself included) than `split_below`
(default: its cores); otherwise it runs its models one after another, one thread each: one client gets
low latency, many clients get throughput (#21.3, #20). `split_below` 0 or 1 never splits. The models'
results are the same either way, only the schedule changes."""

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
    the cores shared among the checks in flight (at least 1) while fewer than `split_below` are in
    flight (itself included); else 1 (run the stages one after another)."""

    def __init__(self, split_below: int | None = None, cores: int | None = None) -> None:
        self.cores = cores if cores is not None else default_cores()
        self.split_below = self.cores if split_below is None else split_below
        if self.cores < 1 or self.split_below < 0:
            raise ValueError(f"cores must be >= 1 and split_below >= 0 (got {self.cores}, {self.split_below})")
        self._count = 0
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        return self._count

    def budget(self, in_flight: int) -> int:
        """The thread budget of a check that starts with `in_flight` checks running (itself included)."""
        if in_flight >= self.split_below or self.cores < 2:
            return 1
        return max(1, self.cores // max(1, in_flight))

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
