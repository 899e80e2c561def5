"""The one timing rule for every speed figure superres reports: the benchmark scripts' and the
report's quality-versus-speed plot (tests never time)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(
    run: Callable[[], object],
    repeats: int,
    warmup: int = 1,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Median time of ``run()`` over ``repeats`` calls, after ``warmup`` untimed ones: wall
    time, or with ``clock=time.process_time`` this process's CPU time (steadier on a busy
    machine)."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = clock()
        run()
        times.append(clock() - start)
    return statistics.median(times)
