"""Fewer pans (notebook 06): what magnitude and structured pruning save, in one run.

Keys:
  prune.size_ratio_90                    stored bytes at 90 % sparsity (kernels in CSR) /
                                         dense bytes, the notebook's cake chef (global masks)
  prune.acc_drop_90_pts                  float32 - pruned test accuracy at 90 %, no fine-tune,
                                         percentage points, mean of 3 seeds
  prune.acc_drop_90_after_finetune_pts   the same after the masked fine-tune (goal <= 1.0)
  prune.structured50_speedup_b1024       float32 forward, banquet MLP width 1024, batch 1024:
                                         dense / half the hidden units removed (goal >= 1.5)
  prune.unstructured90_speedup_b1024     dense / 90 % of the weights zeroed (same shapes:
                                         reported as measured, about 1)

Timings run in a child process pinned to one CPU core (median of interleaved repeats, as
``kl.quant_speed.time_pair``).
"""

from __future__ import annotations

import json
import os
import sys

from bench_quant import chefs
from timing import in_pinned_child


def child() -> dict:
    import numpy as np

    import kitchenlab as kl

    models, kitchen = chefs()
    drops, tuned_drops, size = [], [], None
    for seed, model in models.items():
        s = kl.prune.sparsity_sweep(model, kitchen.train, kitchen.test, sparsities=(0.9,),
                                    scope="global")
        drops.append(round(100 * float(s["float_accuracy"] - s["accuracy"][0]), 2) + 0.0)
        tuned_drops.append(round(100 * float(s["float_accuracy"] - s["finetuned_accuracy"][0]), 2) + 0.0)
        size = size or s["sparse_bytes"][0] / s["dense_bytes"]
    print(f"[bench] prune: 90 % accuracy drop (points) per seed: pruned {drops}, "
          f"fine-tuned {tuned_drops}", file=sys.stderr)
    speed = kl.prune.pruning_speed(width=1024, batch=1024, sparsity=0.9, units=0.5, budget_s=1.5)
    print(f"[bench] prune: banquet w1024 b1024 dense {speed['dense_s'] * 1e3:.1f} ms, "
          f"unstructured 90 % {speed['unstructured_s'] * 1e3:.1f} ms, structured 50 % "
          f"{speed['structured_s'] * 1e3:.1f} ms", file=sys.stderr)
    return {
        "prune.size_ratio_90": round(float(size), 3),
        "prune.acc_drop_90_pts": round(float(np.mean(drops)), 2) + 0.0,
        "prune.acc_drop_90_after_finetune_pts": round(float(np.mean(tuned_drops)), 2) + 0.0,
        "prune.structured50_speedup_b1024": round(speed["structured_speedup"], 2),
        "prune.unstructured90_speedup_b1024": round(speed["unstructured_speedup"], 2),
    }


def measure() -> dict:
    return in_pinned_child(os.path.abspath(__file__), child)


if __name__ == "__main__":
    print(json.dumps(child()) if "--child" in sys.argv else measure())
