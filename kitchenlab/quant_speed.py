"""Do spice packets make the kitchen faster? INT8 vs float32, measured, engine by engine.

Two engines run the same banquet MLP (8 -> w -> w -> w -> 2) in float32 and in INT8:

* ``"jax"``: the from-scratch W8A8 path of ``kl.quantize`` (per-row activation quantization,
  ``lax.dot_general`` int8 x int8 -> int32), compiled by XLA;
* ``"onnxruntime"``: the same weights as an ONNX graph, quantized by ONNX Runtime's
  ``quantize_dynamic`` and run on one thread by kernels written for int8 (VNNI, AMX).

Every speed is end to end (activation quantization included) and a ratio to the same
engine's float32, timed in the same run, interleaved, median of repeats (see ``time_pair``).
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from typing import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from kitchenlab import quantize
from kitchenlab.config import MLPConfig

ENGINES = ("jax", "onnxruntime")
WIDTHS = (64, 256, 1024, 2048)  # banquet widths: from cake-sized to where matmuls dominate
BATCHES = (1, 64, 1024)  # one guest, one tray, a banquet hall

# CPU flags that matter for int8 matrix products (x86 from "flags", ARM from "Features").
INT8_FLAGS = {
    "avx2": "AVX2: int8 products via vpmaddubsw, no dedicated dot-product instruction",
    "avx512_vnni": "AVX-512 VNNI: vpdpbusd, int8 dot products into int32 (Cascade Lake+, Zen 4+)",
    "avx_vnni": "AVX-VNNI: the same instruction on 256-bit registers (Alder Lake+, Zen 5)",
    "amx_int8": "AMX-INT8: int8 matrix tiles (Sapphire Rapids+)",
    "asimddp": "ARM dot product (SDOT/UDOT)",
    "i8mm": "ARM int8 matrix multiply (SMMLA)",
}


def cpu_int8_features(cpuinfo: str | None = "/proc/cpuinfo") -> dict:
    """This CPU's name and which int8 instruction sets it has, from ``/proc/cpuinfo``.

    Returns ``{"cpu": str, "machine": str, "flags": {flag: bool} or None, "source": str}``;
    ``flags`` is None where the file does not exist (macOS, Windows): unknown, not absent.
    """
    cpu, flags, source = platform.processor() or platform.machine(), None, "unavailable"
    text = None
    if cpuinfo and os.path.exists(cpuinfo):
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            text = f.read()
    if text is not None:
        source, found = cpuinfo, set()
        for line in text.splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("flags", "features"):
                found |= set(value.split())
            elif key in ("model name", "cpu model", "hardware") and value.strip():
                cpu = value.strip()
        flags = {name: name in found for name in INT8_FLAGS}
    return {"cpu": cpu, "machine": platform.machine(), "flags": flags, "source": source}


def describe_cpu(features: dict | None = None) -> list[str]:
    """Human lines: the CPU, then each int8 feature it has (or that flags are unknown)."""
    f = features or cpu_int8_features()
    lines = [f"CPU: {f['cpu']} ({f['machine']})"]
    if f["flags"] is None:
        lines.append("int8 instruction flags: unknown here (no /proc/cpuinfo: macOS or Windows)")
        return lines
    have = [name for name, ok in f["flags"].items() if ok]
    lines += [f"  has {name}: {INT8_FLAGS[name]}" for name in have]
    missing = [n for n in ("avx512_vnni", "avx_vnni", "amx_int8") if not f["flags"][n]]
    if missing:
        lines.append("  lacks " + ", ".join(missing))
    return lines


def has_int8_dot(features: dict | None = None) -> bool | None:
    """Whether the CPU has a dedicated int8 dot-product instruction (None: cannot tell)."""
    f = features or cpu_int8_features()
    if f["flags"] is None:
        return None
    return any(f["flags"][n] for n in ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm"))


def banquet_config(width: int) -> MLPConfig:
    """The banquet recipe: 8 -> width -> width -> width -> 2, wide enough for matmuls to dominate."""
    return MLPConfig(width=width, depth=3)


def banquet(width: int, *, seed: int = 0):
    """An untrained banquet MLP for timing: He-scaled weights drawn by numpy from ``seed``
    (speed does not depend on how good the knob settings are)."""
    config = banquet_config(width)
    rng = np.random.default_rng(seed)
    sizes = [config.n_features] + [width] * config.depth + [config.n_classes]
    layers = [{"kernel": (rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(np.float32),
               "bias": np.zeros(b, np.float32)} for a, b in zip(sizes[:-1], sizes[1:])]
    return quantize.mlp_from_layers(config, layers)


def time_pair(a: Callable[[], object], b: Callable[[], object], *, budget_s: float = 0.3,
              min_repeats: int = 5, max_repeats: int = 200) -> tuple[float, float]:
    """Median seconds of ``a()`` and ``b()`` over interleaved repeats (a, b, a, b, ...),
    after one warm-up each. Both must block until done.

    Interleaving makes a busy spell of the machine slow both alike, so their ratio holds.
    On a busy machine the median still hurts JAX more than ONNX Runtime: a JAX call hands
    its work to XLA's worker threads and waits for them, and each hand-off waits for a
    free core, while an ONNX Runtime session on one thread computes on the calling thread
    (on this course's 2-core machine shared by ~8 busy processes, a 1024-wide float32 pass
    at batch 1 had a median of 3 ms in JAX against 0.1 ms in ONNX Runtime; pinned to one
    quiet core, both about 0.1 ms). Measure on a quiet machine, pinned to one core, as the
    benchmarks do.
    """
    a(), b()
    ta, tb = [], []
    start = time.perf_counter()
    while len(ta) < max_repeats and (len(ta) < min_repeats
                                     or time.perf_counter() - start < budget_s):
        for fn, out in ((a, ta), (b, tb)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return float(np.median(ta)), float(np.median(tb))


def compiled_forward(graphdef, params, *, int8: bool = False) -> Callable:
    """``x -> logits`` for these params, compiled once, with no per-call nnx cost.

    The model's structure (``graphdef``, the shape of the params tree) is closed over and
    only the flat list of arrays is passed on each call. Passing ``graphdef`` as a static
    argument instead makes every call hash it: about 45 us, most of a small model's
    time at batch 1 (measured: 60 us a call against 14 us). ``int8`` runs the W8A8 path
    of ``kl.quantize`` on quantized ``params`` (activations packed per row, int8 dots).
    """
    leaves, treedef = jax.tree.flatten(params)

    @jax.jit
    def run(leaves, x):  # (B, F) -> (B, C)
        p = jax.tree.unflatten(treedef, leaves)
        if int8:
            return quantize.mlp_forward(quantize.mlp_layers(p), x, activations=True)
        return nnx.merge(graphdef, p)(x)

    return lambda x: run(leaves, x)


def _engines(model, engines: tuple[str, ...], folder: str) -> dict:
    """``{engine: (float32 fn, int8 fn, size ratio, input type)}``; fns block until done."""
    out = {}
    if "jax" in engines:
        graphdef, params = nnx.split(model)
        q = quantize.quantize_model(model, activations=True)
        f32_run = compiled_forward(graphdef, params)
        int8_run = compiled_forward(q.graphdef, q.params, int8=True)

        def f32(x):
            return jax.block_until_ready(f32_run(x))

        def int8(x):
            return jax.block_until_ready(int8_run(x))

        ratio = quantize.nbytes(params) / quantize.nbytes(q.params)
        out["jax"] = (f32, int8, ratio, jnp.asarray)
    if "onnxruntime" in engines:
        from kitchenlab import onnx_export
        from kitchenlab.serve.artifact import flat_params

        f32, int8 = onnx_export.export_pair(flat_params(model), folder)
        out["onnxruntime"] = (f32, int8, f32.nbytes / int8.nbytes, np.asarray)
    return out


def speed_sweep(widths: Iterable[int] = WIDTHS, batches: Iterable[int] = BATCHES, *,
                engines: Iterable[str] = ENGINES, budget_s: float = 0.3, seed: int = 0,
                progress: Callable[[str], None] | None = None) -> list[dict]:
    """Time float32 and INT8 for every (engine, width, batch): one row each.

    Rows: engine, width, batch, f32_s, int8_s, speedup (f32_s / int8_s: > 1 means int8
    is faster), size_ratio (float32 bytes / int8 bytes of the whole model), rel_error
    (max |int8 - float32| logit / max |float32| logit). Models are seeded and untrained:
    speed does not depend on how good the knob settings are.
    """
    engines = tuple(engines)
    unknown = set(engines) - set(ENGINES)
    if not engines or unknown:
        raise ValueError(f"engines must be a non-empty subset of {ENGINES}, got {engines}")
    widths, batches = [int(w) for w in widths], [int(b) for b in batches]
    if not widths or not batches or min(widths + batches) < 1:
        raise ValueError(f"widths and batches must be non-empty lists of ints >= 1, got "
                         f"{widths} and {batches}")
    rng = np.random.default_rng(seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="kitchenlab-onnx-") as tmp:
        for width in widths:
            t0 = time.perf_counter()
            model = banquet(width, seed=seed)
            runs = _engines(model, engines, os.path.join(tmp, f"w{width}"))
            for batch in batches:
                x = rng.standard_normal((batch, model.config.n_features)).astype(np.float32)
                for engine, (f32, int8, size_ratio, to_input) in runs.items():
                    xi = to_input(x)
                    ref, got = np.asarray(f32(xi)), np.asarray(int8(xi))
                    t_f32, t_int8 = time_pair(lambda: f32(xi), lambda: int8(xi), budget_s=budget_s)
                    rows.append({"engine": engine, "width": width, "batch": batch,
                                 "f32_s": t_f32, "int8_s": t_int8, "speedup": t_f32 / t_int8,
                                 "size_ratio": size_ratio,
                                 "rel_error": float(np.abs(got - ref).max() / np.abs(ref).max())})
            if progress is not None:
                progress(f"width {width}: measured in {time.perf_counter() - t0:.1f} s")
    return rows


def lookup(rows: list[dict], engine: str, width: int, batch: int, key: str = "speedup"):
    """One number from ``speed_sweep``'s rows."""
    for r in rows:
        if (r["engine"], r["width"], r["batch"]) == (engine, width, batch):
            return r[key]
    raise KeyError(f"no row for engine={engine!r}, width={width}, batch={batch}")
