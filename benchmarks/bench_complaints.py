"""Notebook 09: the drift panel's response time and the vmapped night shift.

* ``complaints.slider_response_s``: median seconds of ``panel.render(kind, severity)`` for
  the drift panel over 10 severities: 1000 guests generated, served through the laminated
  service, PSI per ingredient and the alarm, then the redraw and the PNG.
* ``complaints.nightshift_vmapped_vs_serial``: the notebook's night shift (5 seeds x with
  and without replay = 10 fine-tuning runs, 40 epochs each) as ONE vmapped call vs the same
  10 runs one compiled call at a time (both compiled before timing; same runs, same knobs).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

from timing import median_seconds, ratio


def measure() -> dict:
    import jax

    import kitchenlab as kl
    from kitchenlab.experiments import complaints as X
    from kitchenlab.widgets import complaints as panel_module

    kl.setup(seed=0, quiet=True)
    kitchen = kl.data.kitchen(2000, seed=0)
    model = kl.models.make_mlp(kl.config.MLPConfig.default(), seed=0)
    kl.train.fit(model, kitchen.train, kitchen.val,
                 kl.config.TrainConfig(optimizer="adam", learning_rate=3e-3, epochs=30))
    with tempfile.TemporaryDirectory() as shelf:
        folder = kl.serve.laminate(model, os.path.join(shelf, "v1"), normalizer=kitchen.normalizer)
        service = kl.serve.open_restaurant(folder, batch_sizes=(1, 1024))
        parent = kl.finetune.load_parent(folder)

        # 1) the drift panel
        panel = panel_module.panel(service, kitchen.raw.train.x)
        panel.render(kind="fan_oven", severity=0.5)  # warm matplotlib
        times = []
        for i in range(10):
            t0 = time.perf_counter()
            panel.render(kind="fan_oven", severity=i / 9)
            times.append(time.perf_counter() - t0)

    # 2) the night shift: one vmapped call vs run by run
    reviews, checks, _ = X.night_tables(parent)
    old = parent.measure(kitchen.raw.train)
    kwargs = dict(replay=old, config=X.NIGHT, checks=checks)

    def together():
        shift = kl.finetune.night_shift(parent.model, reviews, seeds=range(5),
                                        replay_on=(0.0, 1.0), **kwargs)
        jax.block_until_ready(shift.params)

    def one_by_one():
        for replay in (0.0, 1.0):
            for seed in range(5):
                shift = kl.finetune.night_shift(parent.model, reviews, seeds=(seed,),
                                                replay_on=(replay,), **kwargs)
                jax.block_until_ready(shift.params)

    t_vmap = median_seconds(together, repeats=5, warmup=1)
    t_serial = median_seconds(one_by_one, repeats=3, warmup=1)
    return {"complaints.slider_response_s": round(statistics.median(times), 3),
            "complaints.nightshift_vmapped_vs_serial": ratio(t_serial, t_vmap)}
