"""Mise-en-place: prepare every station before the guests arrive (compilation).

The same recipe run three ways, each timed on its first request and in steady state:

* eager: op by op under ``jax.disable_jit`` (Python walks the recipe for every cake);
* ``jax.jit``: traced and compiled by XLA on the first call, so the first guest waits;
* ahead of time: ``jax.jit(f).lower(shapes).compile()`` before the doors open, plus a few
  dry-run bakes, so the first guest is served like the hundredth.

This is the JAX way of what ONNX Runtime / TensorRT do elsewhere: turn a graph of ops
into one fused, compiled program for a fixed input shape.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import numpy as np


def time_call(fn: Callable[[], object], *, repeats: int = 30) -> tuple[float, float]:
    """(first call seconds, median of the next ``repeats`` calls). ``fn`` must block."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return first, statistics.median(times)


def compare_compile_modes(service, x: np.ndarray, *, trials: int = 3, repeats: int = 30,
                          eager_repeats: int = 5, dry_runs: int = 3) -> list[dict]:
    """Time eager vs jit vs AOT on normalized features ``x`` (B, F); one row per mode.

    Each row: ``mode``, ``setup_s`` (work before the first request: compile + dry runs
    for AOT), ``first_s``, ``steady_s``, ``flops`` (XLA's count for one tray, AOT only)
    and ``logits`` (to check that the modes agree). jit and AOT are measured ``trials``
    times on fresh functions (no compilation reused in memory; medians reported).
    """
    import jax
    import jax.numpy as jnp

    from kitchenlab.serve import artifact

    x = jnp.asarray(np.asarray(x, np.float32))
    params = {k: jax.device_put(v) for k, v in service.params.items()}
    spec = jax.ShapeDtypeStruct(x.shape, x.dtype)
    service.eager_forward(x[:1])  # rebuild the model once; not part of any timing
    rows = []

    # 1) eager: every op dispatched from Python, one at a time
    first, steady = time_call(lambda: service.eager_forward(x), repeats=eager_repeats)
    rows.append({"mode": "eager (op by op)", "setup_s": 0.0, "first_s": first,
                 "steady_s": steady, "flops": None, "logits": service.eager_forward(x)})

    # 2) jit: a fresh function each trial, so its first call traces and compiles
    runs = []
    for _ in range(trials):
        jitted = jax.jit(artifact.make_forward(service.config))
        runs.append((0.0, *time_call(lambda: jax.block_until_ready(jitted(params, x)),
                                     repeats=repeats)))
    rows.append(_row("jax.jit", runs, None, np.asarray(jitted(params, x))))

    # 3) ahead of time: compile for this exact shape and bake dry runs before serving
    runs = []
    for _ in range(trials):
        t0 = time.perf_counter()
        compiled = jax.jit(artifact.make_forward(service.config)).lower(params, spec).compile()
        for _ in range(dry_runs):
            jax.block_until_ready(compiled(params, jnp.zeros_like(x)))
        setup = time.perf_counter() - t0
        runs.append((setup, *time_call(lambda: jax.block_until_ready(compiled(params, x)),
                                       repeats=repeats)))
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else (cost or {})
    rows.append(_row("AOT lower().compile()", runs, float(cost.get("flops", float("nan"))),
                     np.asarray(compiled(params, x))))
    return rows


def _row(mode, runs, flops, logits) -> dict:
    setup, first, steady = (statistics.median(col) for col in zip(*runs))
    return {"mode": mode, "setup_s": setup, "first_s": first, "steady_s": steady,
            "flops": flops, "logits": logits}
