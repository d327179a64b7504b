import math
import os

import numpy as np
import pytest

from kitchenlab import data, models, sweep, train
from kitchenlab.config import MLPConfig, TrainConfig


@pytest.fixture(scope="module")
def kitchen():
    return data.kitchen(400, seed=0)


CFG = TrainConfig(epochs=8, batch_size=32, learning_rate=1e-2)


def test_sweep_equals_separate_runs(kitchen):
    rates = [1e-3, 1e-2, 1e-1]
    s = sweep.sweep(models.make_mlp(MLPConfig.tiny(), seed=0), kitchen.train, kitchen.val, CFG,
                    learning_rate=rates)
    assert s.val_loss.shape == (3, CFG.epochs)
    for i, lr in enumerate(rates):
        h = train.fit(models.make_mlp(MLPConfig.tiny(), seed=0), kitchen.train, kitchen.val,
                      CFG.replace(learning_rate=lr))
        np.testing.assert_allclose(s.val_loss[i], h.val_loss, rtol=2e-4, atol=1e-5)


def test_sweep_flags_exploded_runs(kitchen):
    s = sweep.sweep(models.make_mlp(MLPConfig.tiny(), seed=0), kitchen.train, kitchen.val,
                    CFG.replace(optimizer="sgd"), learning_rate=[1e-2, 1e2, 1e-2])
    assert s.diverged_at_step[0] == -1 and s.diverged_at_step[1] >= 1


@pytest.mark.parametrize("axes,match", [
    ({"learning_rate": [1e-3, -1.0]}, "learning_rate values must be > 0"),
    ({"learning_rate": [1e-3, math.nan]}, "must be finite"),
    ({"dropout": [0.1, 1.0]}, r"dropout values must be in \[0, 1\)"),
    ({"weight_decay": [-1e-3]}, "weight_decay values must be >= 0"),
    ({"learning_rate": [1e-3], "dropout": [0.1, 0.2]}, "equal lengths"),
    ({"temperature": [1.0]}, "unknown sweep axis"),
    ({}, "at least one axis"),
    ({"learning_rate": []}, "at least one value"),
])
def test_sweep_bad_axes(kitchen, axes, match):
    with pytest.raises(ValueError, match=match):
        sweep.sweep(models.make_mlp(MLPConfig.tiny(), seed=0), kitchen.train, kitchen.val,
                    CFG, **axes)


def test_sweep_spreads_runs_over_two_cpu_devices():
    """With two XLA CPU devices (as kl.setup() makes them) the runs are sharded, same results."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import jax, numpy as np
        jax.config.update("jax_num_cpu_devices", 2)
        from kitchenlab import data, models, optim, sweep, train
        from kitchenlab.config import MLPConfig, TrainConfig
        k = data.kitchen(400, seed=0)
        cfg = TrainConfig(epochs=4, batch_size=32)
        rates = [1e-3, 3e-3, 1e-2]  # 3 runs: padded to 4, two per device
        hp, k_pad = sweep.shard_runs(optim.hyper(cfg)._replace(
            learning_rate=jax.numpy.asarray(rates)), 3)
        assert k_pad == 4 and len(hp.learning_rate.sharding.device_set) == 2
        assert hp.momentum.ndim == 0  # shared settings stay scalars
        s = sweep.sweep(models.make_mlp(MLPConfig.tiny(), seed=0), k.train, k.val, cfg,
                        learning_rate=rates)
        for i, lr in enumerate(rates):
            h = train.fit(models.make_mlp(MLPConfig.tiny(), seed=0), k.train, k.val,
                          cfg.replace(learning_rate=lr))
            np.testing.assert_allclose(s.val_loss[i], h.val_loss, rtol=1e-4, atol=1e-5)
        print("ok")
    """)
    # The child asks for CPU devices: on a GPU host it must not start (and preallocate) the GPU.
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env=env)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
