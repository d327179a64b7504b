"""Restaurant service (notebook 05): compilation, batching, and an exact reload.

Keys:
  serve.jit_vs_eager                  steady latency of one order, eager / jit (goal >= 20)
  serve.batch64_vs_batch1_throughput  orders/s of the whole pipeline, tray 64 / tray 1 (>= 20)
  serve.aot_first_vs_steady           first request / steady latency of an AOT-compiled
                                      service (goal <= 3; plain jit's first request pays
                                      the compile, printed to stderr for comparison)
  serve.reload_identical              logits of a fresh process that opens the laminated
                                      folder == the original model's, byte for byte
"""

from __future__ import annotations

import os
import sys
import tempfile


from timing import ratio


def measure() -> dict:
    import kitchenlab as kl

    kitchen = kl.data.kitchen(2000, seed=0)
    model = kl.models.make_mlp(kl.config.MLPConfig.default(), seed=0)  # seeded, untrained:
    # speed and exactness do not depend on how good the knob settings are
    with tempfile.TemporaryDirectory() as tmp:
        folder = kl.serve.laminate(model, os.path.join(tmp, "chef"),
                                   normalizer=kitchen.normalizer)
        service = kl.serve.open_restaurant(folder, batch_sizes=(1, 64))

        # 1) mise-en-place: eager vs jit vs AOT on one order (medians over fresh trials)
        rows = {r["mode"]: r for r in kl.serve.compare_compile_modes(
            service, kitchen.test.x[:1], trials=5, repeats=50, eager_repeats=10)}
        eager, jit, aot = rows["eager (op by op)"], rows["jax.jit"], rows["AOT lower().compile()"]
        print(f"[bench] serve: jit first request {jit['first_s'] * 1e3:.1f} ms vs steady "
              f"{jit['steady_s'] * 1e6:.0f} µs; AOT first {aot['first_s'] * 1e6:.0f} µs vs "
              f"steady {aot['steady_s'] * 1e6:.0f} µs", file=sys.stderr)

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
    }


if __name__ == "__main__":
    print(measure())
