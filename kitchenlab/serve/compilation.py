"""Mise-en-place: prepare every station before the guests arrive (compilation).

The recipe the restaurant really runs is the laminated artifact: ``service.exported``, the
StableHLO that ``jax.export`` wrote, called through ``exported.call``. It is timed here four
ways, each on its first request and in steady state:

* eager: the Python model code op by op under ``jax.disable_jit`` — what serving would cost
  with no compiler at all (the artifact itself is one whole graph; it cannot run op by op);
* ``jax.jit`` of the artifact: XLA compiles it on the first call, so the first guest waits;
* ahead of time: ``jax.jit(exported.call).lower(shapes).compile()`` plus a few dry-run bakes
  before the doors open, so the first guest pays no compile;
* ahead of time from the persistent compile cache: the same, with the compiled program read
  back from the folder ``kl.setup()`` keeps on disk — the JAX analogue of a TensorRT engine
  file (a compiled plan, valid only for the device and compiler build it was made with).

XLA's own compile is measured with the persistent cache switched off for a moment
(``disk_cache_off``), so an earlier session's cache cannot hide it.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from typing import Callable

import numpy as np

EAGER, JIT, AOT, AOT_CACHED = ("eager (op by op)", "jax.jit", "AOT lower().compile()",
                               "AOT from the disk cache")


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


@contextlib.contextmanager
def disk_cache_off():
    """Switch JAX's persistent compile cache off inside the block (no reads, no writes).

    JAX decides once per process whether it uses the cache, so the flag alone changes
    nothing after the first compile: the cache is reset on entry and on exit (it then opens
    again from ``jax_compilation_cache_dir`` at the next compile).
    """
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc

    before = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    cc.reset_cache()
    try:
        yield
    finally:
        jax.config.update("jax_enable_compilation_cache", before)
        cc.reset_cache()


def disk_cache_on() -> bool:
    """Whether compiled programs are kept on disk (``kl.setup()`` turns this on)."""
    import jax

    return bool(jax.config.jax_compilation_cache_dir) and jax.config.jax_enable_compilation_cache


def compare_compile_modes(service, x: np.ndarray, *, trials: int = 3, repeats: int = 30,
                          eager_repeats: int = 5, dry_runs: int = 3) -> list[dict]:
    """Time the served artifact eager / jit / AOT / AOT-from-cache on normalized ``x`` (B, F).

    One row per mode: ``mode``, ``setup_s`` (work before the first request: compile, or
    read from disk, plus dry runs), ``first_s``, ``steady_s``, ``flops`` (XLA's count for
    one tray, AOT rows only) and ``logits`` (to check that the modes agree). jit and AOT are
    measured ``trials`` times on fresh functions with the disk cache off (so XLA really
    compiles; medians reported). The cached row is present only when a persistent cache is
    on (``disk_cache_on()``); it writes the program there once, then reads it ``trials`` times.
    """
    import jax
    import jax.numpy as jnp

    x = jnp.asarray(np.asarray(x, np.float32))
    params = {k: jax.device_put(v) for k, v in service.params.items()}
    spec = jax.ShapeDtypeStruct(x.shape, x.dtype)
    def recipe():  # the laminated StableHLO, what the service serves; a new Python function
        # each time, so no in-memory cache of an earlier trial (keyed by function) is reused
        return lambda p, batch: service.exported.call(p, batch)

    service.eager_forward(x[:1])  # rebuild the Python model once; not part of any timing
    rows = []

    # 1) eager: the Python model's ops dispatched one at a time
    first, steady = time_call(lambda: service.eager_forward(x), repeats=eager_repeats)
    rows.append({"mode": EAGER, "setup_s": 0.0, "first_s": first, "steady_s": steady,
                 "flops": None, "logits": service.eager_forward(x)})

    def prepare():  # ahead of time: compile for this exact shape, bake dry runs
        t0 = time.perf_counter()
        compiled = jax.jit(recipe()).lower(params, spec).compile()
        for _ in range(dry_runs):
            jax.block_until_ready(compiled(params, jnp.zeros_like(x)))
        return compiled, time.perf_counter() - t0

    def aot_row(mode):  # prepare ``trials`` times, time each program's first and steady calls
        runs = []
        for _ in range(trials):
            compiled, setup = prepare()
            runs.append((setup, *time_call(lambda: jax.block_until_ready(compiled(params, x)),
                                           repeats=repeats)))
        return _row(mode, runs, _flops(compiled), np.asarray(compiled(params, x)))

    with disk_cache_off():
        # 2) jit: a fresh function each trial, so its first call compiles
        runs = []
        for _ in range(trials):
            jitted = jax.jit(recipe())
            runs.append((0.0, *time_call(lambda: jax.block_until_ready(jitted(params, x)),
                                         repeats=repeats)))
        rows.append(_row(JIT, runs, None, np.asarray(jitted(params, x))))

        # 3) ahead of time, XLA compiling before the doors open
        rows.append(aot_row(AOT))

    # 4) ahead of time, the compiled program read back from the persistent cache
    if disk_cache_on():
        prepare()  # writes the program to disk (or finds it there already)
        rows.append(aot_row(AOT_CACHED))
    return rows


def _flops(compiled) -> float:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else (cost or {})
    return float(cost.get("flops", float("nan")))


def _row(mode, runs, flops, logits) -> dict:
    setup, first, steady = (statistics.median(col) for col in zip(*runs))
    return {"mode": mode, "setup_s": setup, "first_s": first, "steady_s": steady,
            "flops": flops, "logits": logits}
