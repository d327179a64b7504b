"""Timing helpers shared by the benchmark modules: medians of repeats, ratios in one run."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def median_seconds(fn: Callable[[], object], *, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls, after ``warmup`` untimed calls.

    ``fn`` must block until its result is ready (``jax.block_until_ready``).
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def ratio(slow: float, fast: float, digits: int = 1) -> float:
    """How many times faster ``fast`` is than ``slow``."""
    return round(slow / fast, digits)
