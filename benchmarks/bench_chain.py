"""A chain of kitchens: data-parallel training equals one device; two processes equal one.

Keys:
* ``chain.sharded_vs_single_max_abs_diff``: largest knob difference after the default
  ``ChainJob`` (8 epochs x 9 Adam steps) trained on a 2-device mesh vs one device
  (float rounding from the split sums; the tests hold it under 1e-5);
* ``chain.two_process_equal``: two worker processes (one CPU device each, joined by
  ``jax.distributed`` over gloo) end with the same knobs as each other and, within 1e-5,
  as one process on a 2-device mesh; ``chain.two_process_vs_one_process_max_abs_diff``
  is that difference;
* ``chain.data_parallel_speedup``: one device's fused run time / the 2-device mesh's
  (compiled, median of 5). On a 2-core CPU two XLA devices compete for the same cores
  XLA already uses for one, so ~1x (or below) is the honest expectation;
* ``chain.launch_seconds``: wall time of the two-process launch (imports, joining,
  compiling in each process, training).
"""

from __future__ import annotations

import sys

from timing import median_seconds, ratio

TOLERANCE = 1e-5


def measure() -> dict:
    import jax

    from kitchenlab import chain, data, distributed, models, train
    from kitchenlab.config import MLPConfig, TrainConfig

    if len(jax.devices()) < 2:
        raise RuntimeError("bench_chain needs 2 XLA devices: run it through benchmarks/run.py")
    job = chain.ChainJob()
    mesh = distributed.make_mesh(jax.devices()[:2])
    print("[chain] one device vs a 2-device mesh ...", file=sys.stderr, flush=True)
    one = chain.train_job(job)
    sharded = chain.train_job(job, mesh)
    print("[chain] two processes ...", file=sys.stderr, flush=True)
    launched = chain.launch(job, processes=2, timeout=600)
    two_vs_one = chain.max_abs_diff(launched.workers[0].params, sharded["params"])

    print("[chain] timing compiled runs ...", file=sys.stderr, flush=True)
    kitchen = data.kitchen(job.n_cakes, seed=job.seed)
    config = TrainConfig(epochs=job.epochs, batch_size=job.batch_size,
                         learning_rate=job.learning_rate)

    def run(on_mesh):
        model = models.make_mlp(MLPConfig(width=job.width, depth=job.depth), seed=0)
        train.fit(model, kitchen.train, kitchen.val, config, mesh=on_mesh)
        jax.block_until_ready(jax.tree.leaves(model))

    t_one = median_seconds(lambda: run(None), repeats=5)
    t_mesh = median_seconds(lambda: run(mesh), repeats=5)
    return {
        "chain.sharded_vs_single_max_abs_diff": float(
            f"{chain.max_abs_diff(one['params'], sharded['params']):.2g}"),
        "chain.two_process_equal": bool(launched.workers_agree() and two_vs_one <= TOLERANCE),
        "chain.two_process_vs_one_process_max_abs_diff": float(f"{two_vs_one:.2g}"),
        "chain.data_parallel_speedup": ratio(t_one, t_mesh, 2),
        "chain.launch_seconds": round(launched.seconds, 1),
    }
