"""Spice packets (notebook 06): INT8 size, accuracy and speed, each against float32 in one run.

Keys:
  quant.size_ratio                 float32 bytes / int8 bytes of the quantized weight matrices
                                   (the integers; exactly 4.0)
  quant.size_ratio_with_scales     the same with the per-channel float scales, widest banquet
  quant.onnx_file_ratio            float32 / int8 ONNX file size, widest banquet
  quant.acc_drop_pts               float32 - int8 (weights + activations) test accuracy of the
                                   notebook's cake chef, percentage points, mean of 3 seeds
                                   (goal <= 0.5)
  quant.acc_drop_pts_onnxruntime   the same for ONNX Runtime's quantize_dynamic model
  quant.jax_int8_vs_f32_b1024      from-scratch W8A8 in XLA vs float32, widest banquet,
                                   batch 1024 (reported as measured: XLA's CPU int8 dot has
                                   no int8 kernel)
  quant.jax_int8_vs_f32_b1         the same at batch 1
  quant.ort_int8_vs_f32_b64        ONNX Runtime int8 vs its float32, widest banquet, batch 64,
                                   one thread (goal >= 2.0)
  quant.ort_int8_vs_f32_b1024      the same at batch 1024 (goal >= 3.0)
  quant.ort_int8_vs_f32_b1_w64     a cake-sized MLP (width 64) at batch 1 (< 1: slower)
  quant.cpu_int8                   this CPU's int8 instruction sets (from /proc/cpuinfo)

Speeds are end to end (activation quantization included), median of interleaved repeats
(``kl.quant_speed.time_pair`` says why),
measured in a child process pinned to one CPU core (both engines on one core: XLA's thread
pool and ONNX Runtime's ``intra_op_num_threads = 1``). The whole table goes to stderr.
"""

from __future__ import annotations

import json
import os
import sys

from timing import in_pinned_child

WIDTHS = (64, 256, 1024, 2048)  # the widest is the banquet the goals refer to
BATCHES = (1, 64, 1024)
SEEDS = (0, 1, 2)


def chefs(seeds=SEEDS):
    """The notebook's cake chef (width 64, Adam 3e-3, 30 epochs), one per seed, and the kitchen."""
    import kitchenlab as kl

    kitchen = kl.data.kitchen(2000, seed=0)
    config = kl.config.MLPConfig(width=64)
    out = {}
    for seed in seeds:
        model = kl.models.make_mlp(config, seed=seed)
        kl.train.fit(model, kitchen.train, kitchen.val,
                     kl.config.TrainConfig(learning_rate=3e-3, epochs=30, seed=seed))
        out[seed] = model
    return out, kitchen


def child() -> dict:
    import tempfile

    import numpy as np
    from flax import nnx

    import kitchenlab as kl
    from kitchenlab import quant_speed as S

    print("[bench] quant: " + "; ".join(S.describe_cpu()), file=sys.stderr)
    # 1) accuracy and size on the cake chef
    models, kitchen = chefs()
    drops, ort_drops, ratios = [], [], []
    for seed, model in models.items():
        params = nnx.split(model)[1]
        float_acc = kl.evaluate.evaluate(model, kitchen.test)["accuracy"]
        q = kl.quantize.quantize_model(model, activations=True)
        acc = float((np.asarray(q(kitchen.test.x)).argmax(1) == kitchen.test.y).mean())
        with tempfile.TemporaryDirectory() as tmp:
            _, int8 = kl.onnx_export.export_pair(kl.serve.artifact.flat_params(model), tmp)
            ort_acc = float((int8(kitchen.test.x).argmax(1) == kitchen.test.y).mean())
        drops.append(round(100 * (float_acc - acc), 2) + 0.0)
        ort_drops.append(round(100 * (float_acc - ort_acc), 2) + 0.0)
        ratios.append(kl.quantize.nbytes(params, kernels_only=True)
                      / kl.quantize.nbytes(q.params, kernels_only=True, scales=False))
    print(f"[bench] quant: accuracy drop (points) per seed: JAX W8A8 {drops}, "
          f"ONNX Runtime {ort_drops}", file=sys.stderr)

    # 2) speed: both engines, every width and batch
    rows = S.speed_sweep(WIDTHS, BATCHES, budget_s=1.0,
                         progress=lambda m: print(f"[bench] quant: {m}", file=sys.stderr))
    for r in rows:
        print(f"[bench] quant: {r['engine']:<12} w{r['width']:<5} b{r['batch']:<5} "
              f"f32 {r['f32_s'] * 1e3:9.3f} ms  int8 {r['int8_s'] * 1e3:9.3f} ms  "
              f"{r['speedup']:5.2f}x  size {r['size_ratio']:.2f}x  err {r['rel_error']:.1%}",
              file=sys.stderr)
    wide = max(WIDTHS)
    banquet = kl.quant_speed.banquet(wide)
    bparams = nnx.split(banquet)[1]
    bq = kl.quantize.quantize_params(bparams)
    flags = S.cpu_int8_features()["flags"]
    return {
        "quant.size_ratio": round(float(np.mean(ratios)), 2),
        "quant.size_ratio_with_scales": round(kl.quantize.nbytes(bparams, kernels_only=True)
                                              / kl.quantize.nbytes(bq, kernels_only=True), 2),
        "quant.onnx_file_ratio": round(S.lookup(rows, "onnxruntime", wide, 1, "size_ratio"), 2),
        "quant.acc_drop_pts": round(float(np.mean(drops)), 2) + 0.0,
        "quant.acc_drop_pts_onnxruntime": round(float(np.mean(ort_drops)), 2) + 0.0,
        "quant.jax_int8_vs_f32_b1024": round(S.lookup(rows, "jax", wide, 1024), 2),
        "quant.jax_int8_vs_f32_b1": round(S.lookup(rows, "jax", wide, 1), 2),
        "quant.ort_int8_vs_f32_b64": round(S.lookup(rows, "onnxruntime", wide, 64), 2),
        "quant.ort_int8_vs_f32_b1024": round(S.lookup(rows, "onnxruntime", wide, 1024), 2),
        "quant.ort_int8_vs_f32_b1_w64": round(S.lookup(rows, "onnxruntime", 64, 1), 2),
        "quant.cpu_int8": ("unknown" if flags is None else
                           ",".join(n for n, ok in flags.items() if ok) or "none"),
    }


def measure() -> dict:
    return in_pinned_child(os.path.abspath(__file__), child)


if __name__ == "__main__":
    print(json.dumps(child()) if "--child" in sys.argv else measure())
