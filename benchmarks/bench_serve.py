"""Restaurant service (notebook 05): compilation, batching, and an exact reload.

Keys:
  serve.jit_vs_eager                  steady latency of one order, eager / jit (goal >= 20)
  serve.batch64_vs_batch1_throughput  orders/s of the whole pipeline, tray 64 / tray 1 (>= 20)
  serve.aot_first_vs_steady           first request / steady latency of an AOT-compiled
                                      service (goal <= 3; plain jit's first request pays
                                      the compile, printed to stderr for comparison)
  serve.reload_identical              logits of a fresh process that opens the laminated
                                      folder == the original model's, byte for byte
  serve.disk_cache_vs_compile         AOT set-up of the served artifact (XLA compiles, plus
                                      dry runs) / the same set-up with the compiled program
                                      read from the persistent compile cache (the TensorRT
                                      engine file analogue notebook 05 teaches)

All compile timings time the laminated artifact the service runs (``exported.call``), with
XLA really compiling (the disk cache off) except in the cached row.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile


from timing import ratio


@contextlib.contextmanager
def disk_cache(folder: str):
    """A persistent compile cache in ``folder`` for the duration (as kl.setup() keeps one)."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc

    keys = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
            "jax_persistent_cache_min_entry_size_bytes")
    saved = {k: getattr(jax.config, k) for k in keys}
    for k, v in zip(keys, (folder, 0.0, -1)):
        jax.config.update(k, v)
    cc.reset_cache()
    try:
        yield
    finally:
        for k, v in saved.items():
            jax.config.update(k, v)
        cc.reset_cache()


def measure() -> dict:
    import kitchenlab as kl

    kitchen = kl.data.kitchen(2000, seed=0)
    model = kl.models.make_mlp(kl.config.MLPConfig.default(), seed=0)  # seeded, untrained:
    # speed and exactness do not depend on how good the knob settings are
    with tempfile.TemporaryDirectory() as tmp:
        folder = kl.serve.laminate(model, os.path.join(tmp, "chef"),
                                   normalizer=kitchen.normalizer)
        service = kl.serve.open_restaurant(folder, batch_sizes=(1, 64))

        # 1) mise-en-place: eager vs jit vs AOT vs AOT from the disk cache, on one order
        #    (medians over fresh trials of the served artifact)
        with disk_cache(os.path.join(tmp, "jax-cache")):
            rows = {r["mode"]: r for r in kl.serve.compare_compile_modes(
                service, kitchen.test.x[:1], trials=5, repeats=50, eager_repeats=10)}
        eager, jit, aot = rows["eager (op by op)"], rows["jax.jit"], rows["AOT lower().compile()"]
        cached = rows["AOT from the disk cache"]
        print(f"[bench] serve: jit first request {jit['first_s'] * 1e3:.1f} ms vs steady "
              f"{jit['steady_s'] * 1e6:.0f} µs; AOT first {aot['first_s'] * 1e6:.0f} µs vs "
              f"steady {aot['steady_s'] * 1e6:.0f} µs; AOT set-up {aot['setup_s'] * 1e3:.0f} ms "
              f"compiling, {cached['setup_s'] * 1e3:.0f} ms from the disk cache", file=sys.stderr)

        # 2) one oven tray: the whole pipeline (array orders) at tray 1 and tray 64
        sweep = {r["batch"]: r for r in kl.serve.batch_sweep(
            service, kitchen.raw.train.x, batch_sizes=(1, 64), repeats=100)}

        # 3) reopen in a brand-new process and compare bytes
        x_raw = kitchen.raw.test.x
        fresh = kl.serve.predict_in_fresh_process(folder, x_raw)
        original = kl.evaluate.predict_logits(model, kitchen.normalizer(x_raw))
        identical = fresh.dtype == original.dtype and fresh.tobytes() == original.tobytes()

    return {
        "serve.jit_vs_eager": ratio(eager["steady_s"], jit["steady_s"]),
        "serve.batch64_vs_batch1_throughput": ratio(sweep[64]["throughput"],
                                                    sweep[1]["throughput"]),
        "serve.aot_first_vs_steady": round(aot["first_s"] / aot["steady_s"], 1),
        "serve.reload_identical": bool(identical),
        "serve.disk_cache_vs_compile": ratio(aot["setup_s"], cached["setup_s"]),
    }


if __name__ == "__main__":
    print(measure())
