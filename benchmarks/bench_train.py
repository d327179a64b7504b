"""Training speed claims: fused scan vs per-step nnx.jit, vs PyTorch eager, vmapped sweeps.

All runs train the default MLP (8 -> 32 -> 32 -> 2) with Adam on the same 1,200 normalized
cakes for 30 epochs of 18 batches of 64 (540 steps). Times are medians of repeats after a
warm-up call, so compilation is excluded everywhere; it is reported separately.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import kitchenlab as kl
from timing import median_seconds, ratio

EPOCHS, BATCH, LR = 30, 64, 3e-3


def _setup():
    kitchen = kl.data.kitchen(2000, seed=0)
    config = kl.config.TrainConfig(optimizer="adam", learning_rate=LR, epochs=EPOCHS,
                                   batch_size=BATCH)
    return kitchen, config


def _batches(kitchen, seed=0):
    """The same fixed batches for every baseline: (epochs, steps, B, F) and (epochs, steps, B)."""
    rng = np.random.default_rng(seed)
    n = len(kitchen.train) // BATCH * BATCH
    idx = np.stack([rng.permutation(len(kitchen.train))[:n] for _ in range(EPOCHS)])
    x = kitchen.train.x[idx].reshape(EPOCHS, -1, BATCH, kitchen.train.x.shape[1])
    y = kitchen.train.y[idx].reshape(EPOCHS, -1, BATCH)
    return x, y


def fused_seconds(kitchen, config) -> float:
    def run():
        model = kl.models.make_mlp(seed=0)
        kl.train.fit(model, kitchen.train, kitchen.val, config)
        jax.block_until_ready(nnx.state(model))
    return median_seconds(run, repeats=7)


def nnx_jit_seconds(kitchen) -> float:
    """The textbook loop: ``nnx.jit`` on a stateful step, one Python call per batch."""
    x, y = _batches(kitchen)
    x, y = jnp.asarray(x), jnp.asarray(y)
    step = nnx.jit(kl.train.nnx_train_step)

    def run():
        model = kl.models.make_mlp(seed=0)
        optimizer = nnx.Optimizer(model, optax.adam(LR), wrt=nnx.Param)
        for e in range(EPOCHS):
            for i in range(x.shape[1]):
                loss = step(model, optimizer, x[e, i], y[e, i])
        jax.block_until_ready(loss)
    return median_seconds(run, repeats=3)


def torch_eager_seconds(kitchen) -> float | None:
    """The same MLP, Adam and batches in PyTorch eager mode (None when torch is absent)."""
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    # One thread: for a model this small, torch's intra-op threads only add overhead
    # (measured: slower with 2); the baseline gets its best setting.
    torch.set_num_threads(1)
    x, y = _batches(kitchen)
    x, y = torch.from_numpy(x), torch.from_numpy(y).long()

    def run():
        model = torch.nn.Sequential(
            torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 32), torch.nn.ReLU(),
            torch.nn.Linear(32, 2))
        opt = torch.optim.Adam(model.parameters(), lr=LR)
        loss_fn = torch.nn.CrossEntropyLoss()
        for e in range(EPOCHS):
            for i in range(x.shape[1]):
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(x[e, i]), y[e, i])
                loss.backward()
                opt.step()
        return float(loss.detach())
    return median_seconds(run, repeats=3)


def sweep_vs_serial(kitchen, config) -> tuple[float, float]:
    rates = np.logspace(-4, 0, 16)

    def vmapped():
        s = kl.sweep.sweep(kl.models.make_mlp(seed=0), kitchen.train, kitchen.val, config,
                           learning_rate=rates)
        return s.val_loss

    def serial():
        for lr in rates:
            model = kl.models.make_mlp(seed=0)
            kl.train.fit(model, kitchen.train, kitchen.val, config.replace(learning_rate=float(lr)))
        jax.block_until_ready(nnx.state(model))
    return median_seconds(vmapped, repeats=3), median_seconds(serial, repeats=3)


def lr_panel_seconds() -> float | None:
    """Recompute + redraw + PNG of notebook 02's learning-rate panel, median over slider values."""
    try:
        from kitchenlab.widgets import apprenticeship
    except ImportError:
        return None
    panel = apprenticeship.learning_rate_panel()
    name = next(iter(panel.controls))
    values = [1e-3, 3e-2, 0.3, 3.0, 1e-2, 0.1, 1.0]
    panel.render(**{name: values[0]})  # first compile
    times = []
    for v in values:
        t0 = time.perf_counter()
        panel.render(**{name: v})
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def measure() -> dict:
    kitchen, config = _setup()
    t0 = time.perf_counter()
    kl.train.fit(kl.models.make_mlp(seed=0), kitchen.train, kitchen.val, config)
    compile_s = time.perf_counter() - t0
    fused = fused_seconds(kitchen, config)
    nnxjit = nnx_jit_seconds(kitchen)
    torch_s = torch_eager_seconds(kitchen)
    sweep_s, serial_s = sweep_vs_serial(kitchen, config)
    panel_s = lr_panel_seconds()
    return {
        "train.fused_seconds": round(fused, 3),
        "train.fused_first_call_seconds": round(compile_s, 2),
        "train.nnxjit_loop_seconds": round(nnxjit, 3),
        "train.fused_vs_nnxjit": ratio(nnxjit, fused),
        "train.torch_eager_seconds": None if torch_s is None else round(torch_s, 3),
        "train.fused_vs_torch_eager": None if torch_s is None else ratio(torch_s, fused),
        "train.sweep16_seconds": round(sweep_s, 3),
        "train.serial16_seconds": round(serial_s, 3),
        "train.sweep16_vs_serial": ratio(serial_s, sweep_s),
        "widgets.lr_response_s": None if panel_s is None else round(panel_s, 3),
    }
