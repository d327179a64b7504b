"""Timing helpers shared by the benchmark modules: medians of repeats, ratios in one run."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
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


def in_pinned_child(script: str, measure: Callable[[], dict],
                    cores_key: str | None = None) -> dict:
    """Run ``script --child`` in a fresh process pinned to one core, before JAX starts (as
    ``taskset -c N`` would, on the last core: the notebooks' timings pin the first), and
    return the JSON dict it prints last, plus ``cores_key``: 1 when given. Where a process
    cannot be pinned (not Linux), ``measure()`` runs here, on every core. Every thread XLA
    or ONNX Runtime starts in the child inherits the single core."""
    if hasattr(os, "sched_setaffinity"):
        core = max(os.sched_getaffinity(0))
        child = subprocess.run(
            [sys.executable, script, "--child"], check=True, stdout=subprocess.PIPE, text=True,
            preexec_fn=lambda: os.sched_setaffinity(0, {core}),
            env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                [str(Path(script).resolve().parent)] + sys.path)))
        result, cores = json.loads(child.stdout.strip().splitlines()[-1]), 1
    else:
        result, cores = measure(), os.cpu_count()
    return result if cores_key is None else result | {cores_key: cores}
