"""Data-parallel training and sharded serving (kl.distributed) against one device.

The main test process has the device count it started with (fixed at first JAX use), so
every test that needs several CPU devices runs its own Python process with
``JAX_PLATFORMS=cpu`` and ``jax_num_cpu_devices`` set there, and only there.

Tolerance: after N steps of Adam, knobs trained on a mesh equal one device's to
``KNOB_ATOL = 1e-5`` (measured: ~5e-7 after 600 steps). They are not bit-identical: each
device sums its half of the tray, then the halves are added (an all-reduce), a different
order of float additions than one device summing the whole tray.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from kitchenlab import data, distributed, models, train
from kitchenlab.config import MLPConfig, TrainConfig

KNOB_ATOL = 1e-5
REPO = Path(__file__).resolve().parents[1]


def run_with_devices(code: str, devices: int, timeout: float = 600) -> str:
    """Run ``code`` in a fresh process with ``devices`` XLA CPU devices; return its stdout."""
    prelude = ("import jax\n"
               f"jax.config.update('jax_num_cpu_devices', {devices})\n"
               "jax.config.update('jax_numpy_rank_promotion', 'raise')\n")
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join(
        [str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    out = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                         capture_output=True, text=True, timeout=timeout, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


# ---------------------------------------------------------------- in this process (any devices)
def test_make_mesh_refuses_bad_shapes():
    import jax

    with pytest.raises(ValueError, match="at least one device"):
        distributed.make_mesh([])
    with pytest.raises(ValueError, match="model must be a positive int"):
        distributed.make_mesh(model=0)
    n = len(jax.devices())
    with pytest.raises(ValueError, match=rf"model \({n + 1}\) must divide the number of "
                                         rf"devices \({n}\)"):
        distributed.make_mesh(model=n + 1)
    mesh = distributed.make_mesh()
    assert mesh.axis_names == ("data", "model") and mesh.shape["data"] == n


def test_fit_refuses_a_mesh_that_is_not_one():
    k = data.kitchen(200, seed=0)
    with pytest.raises(TypeError, match="mesh must be a jax.sharding.Mesh"):
        train.fit(models.make_mlp(MLPConfig.tiny()), k.train, k.val, TrainConfig.tiny(),
                  mesh="two kitchens")


@pytest.mark.parametrize("fused", [True, False])
def test_a_one_device_mesh_trains_like_no_mesh(fused):
    """The mesh path on one device: same trays, same steps, same knobs."""
    import jax
    from flax import nnx

    k = data.kitchen(300, seed=0)
    cfg = TrainConfig(epochs=3, batch_size=32, learning_rate=1e-2)
    a, b = models.make_mlp(MLPConfig.tiny(), seed=0), models.make_mlp(MLPConfig.tiny(), seed=0)
    ha = train.fit(a, k.train, k.val, cfg, fused=fused)
    hb = train.fit(b, k.train, k.val, cfg, fused=fused,
                   mesh=distributed.make_mesh(jax.devices()[:1]))
    np.testing.assert_allclose(ha.train_loss, hb.train_loss, rtol=1e-6)
    for u, v in zip(jax.tree.leaves(nnx.state(a)), jax.tree.leaves(nnx.state(b))):
        np.testing.assert_allclose(u, v, atol=1e-6)


def test_local_rows_of_a_single_process_are_every_row():
    import jax
    from jax.sharding import NamedSharding, PartitionSpec as P

    mesh = distributed.make_mesh()
    rows = distributed.local_rows(NamedSharding(mesh, P(None, "data")), (3, 8, 5), 1)
    np.testing.assert_array_equal(rows, np.arange(8))
    layout = distributed.Layout.for_run(mesh, batch_size=len(jax.devices()) * 4, width=8)
    tray = np.arange(6 * 4 * len(jax.devices()), dtype=np.float32).reshape(6, -1)
    np.testing.assert_array_equal(np.asarray(layout.feed(tray, 1)), tray)


def test_shuffled_trays_are_the_single_device_shuffles():
    import jax
    import jax.numpy as jnp

    k = data.kitchen(200, seed=0)
    keys = train.epoch_keys(jax.random.key(3), 4)[:, 0]
    xb, yb = distributed.shuffled_trays(keys, k.train.x, k.train.y, 16)
    assert xb.shape == (4, len(k.train) // 16, 16, 8) and yb.shape == xb.shape[:3]
    for e in range(4):
        x1, y1 = train.shuffle_batches(keys[e], jnp.asarray(k.train.x), jnp.asarray(k.train.y),
                                        16)
        np.testing.assert_array_equal(xb[e], x1)
        np.testing.assert_array_equal(yb[e], y1)


# ---------------------------------------------------------------- several CPU devices
def test_data_parallel_fit_equals_one_device_on_both_paths():
    """2 devices on the "data" axis, 600 Adam steps (fused) / 150 (loop): knobs within
    KNOB_ATOL of one device's, curves within 1e-5; the trays really are split."""
    out = run_with_devices(f"""
        import numpy as np
        from flax import nnx
        from kitchenlab import data, distributed, models, train
        from kitchenlab.config import MLPConfig, TrainConfig
        k = data.kitchen(2000, seed=0)
        mesh = distributed.make_mesh()
        assert dict(mesh.shape) == {{"data": 2, "model": 1}}
        def run(mesh, fused, epochs, on_epoch=None):
            m = models.make_mlp(MLPConfig.default(), seed=0)
            h = train.fit(m, k.train, k.val, TrainConfig(epochs=epochs, batch_size=64),
                          fused=fused, mesh=mesh, on_epoch=on_epoch)
            return h, m
        for fused, epochs in ((True, 32), (False, 8)):
            seen = []
            h1, m1 = run(None, fused, epochs)
            h2, m2 = run(mesh, fused, epochs, on_epoch=lambda e, m: seen.append(e))
            assert seen == list(range(epochs)), seen
            assert h2.message == h1.message == f"trained {{epochs}} epochs"
            np.testing.assert_allclose(h2.train_loss, h1.train_loss, atol=1e-5)
            np.testing.assert_allclose(h2.val_loss, h1.val_loss, atol=1e-5)
            diff = max(float(np.max(np.abs(a - b))) for a, b in
                       zip(jax.tree.leaves(nnx.state(m1)), jax.tree.leaves(nnx.state(m2))))
            assert diff <= {KNOB_ATOL}, (fused, diff)
            kernel = m2.hidden[0].kernel[...]
            assert len(kernel.sharding.device_set) == 2 and kernel.sharding.is_fully_replicated
        print("ok")
    """, devices=2)
    assert out.strip() == "ok"


def test_hidden_layers_split_over_a_model_axis_train_the_same():
    """A (2 data x 2 model) mesh: hidden units split over "model", trays over "data"."""
    out = run_with_devices(f"""
        import numpy as np
        from flax import nnx
        from kitchenlab import data, distributed, models, train
        from kitchenlab.config import MLPConfig, TrainConfig
        k = data.kitchen(600, seed=0)
        cfg = TrainConfig(epochs=6, batch_size=32)
        one = models.make_mlp(MLPConfig.default(), seed=0)
        train.fit(one, k.train, k.val, cfg)
        for shape in ((1, 2), (2, 2)):
            devices = jax.devices()[:shape[0] * shape[1]]
            mesh = distributed.make_mesh(devices, model=shape[1])
            m = models.make_mlp(MLPConfig.default(), seed=0)
            train.fit(m, k.train, k.val, cfg, mesh=mesh)
            def spec(a):  # trailing Nones are implied
                return tuple(a.sharding.spec) + (None,) * (a.ndim - len(a.sharding.spec))
            assert spec(m.hidden[0].kernel[...]) == (None, "model")
            assert spec(m.hidden[1].bias[...]) == ("model",)
            assert spec(m.head.kernel[...]) == ("model", None)
            assert spec(m.head.bias[...]) == (None,)
            shard = m.hidden[0].kernel[...].addressable_shards[0].data
            assert shard.shape == (8, 32 // shape[1]), shard.shape
            diff = max(float(np.max(np.abs(a - b))) for a, b in
                       zip(jax.tree.leaves(nnx.state(one)), jax.tree.leaves(nnx.state(m))))
            assert diff <= {KNOB_ATOL}, (shape, diff)
        print("ok")
    """, devices=4)
    assert out.strip() == "ok"


def test_uneven_trays_and_widths_are_refused_and_settings_compile_once():
    out = run_with_devices("""
        import re, sys
        sys.path.insert(0, "tests")
        from compile_count import count_compiles
        from kitchenlab import data, distributed, models, train
        from kitchenlab.config import MLPConfig, TrainConfig
        k = data.kitchen(400, seed=0)
        mesh = distributed.make_mesh()  # 3 devices on "data"
        for cfg, mc, pattern in (
                (TrainConfig(epochs=2, batch_size=32), MLPConfig.tiny(),
                 r"batch_size \\(32\\) must be divisible by the mesh's 'data' axis \\(3 devices\\)"
                 r".*Try batch_size=30"),
                (TrainConfig(epochs=2, batch_size=30), MLPConfig(width=10),
                 r"width \\(10\\) must be divisible by the mesh's 'model' axis \\(3 devices\\)")):
            m = distributed.make_mesh(model=3) if "width" in pattern else mesh
            try:
                train.fit(models.make_mlp(mc), k.train, k.val, cfg, mesh=m)
            except ValueError as err:
                assert re.search(pattern, str(err)), str(err)
            else:
                raise AssertionError("no error for " + pattern)
        cfg = TrainConfig(epochs=2, batch_size=30)
        for fused in (True, False):
            train.fit(models.make_mlp(MLPConfig.tiny()), k.train, k.val, cfg, mesh=mesh,
                      fused=fused)
            with count_compiles() as n:
                train.fit(models.make_mlp(MLPConfig.tiny(), seed=1), k.train, k.val,
                          cfg.replace(learning_rate=0.05, optimizer="sgd"), mesh=mesh,
                          fused=fused)
            assert n[0] == 0, (fused, n[0])
        print("ok")
    """, devices=3)
    assert out.strip() == "ok"


def test_sharded_service_pads_odd_trays_and_equals_the_service(tmp_path):
    """A tray split over 2 devices: any size (padded as documented), the same logits."""
    out = run_with_devices(f"""
        import re
        import numpy as np
        from kitchenlab import data, distributed, models, serve
        from kitchenlab.config import MLPConfig
        k = data.kitchen(400, seed=0)
        folder = serve.laminate(models.make_mlp(MLPConfig.default(), seed=0),
                                {str(tmp_path / "chef")!r}, normalizer=k.normalizer)
        service = serve.open_restaurant(folder)
        sharded = distributed.ShardedService(service)
        assert sharded.n_devices == 2
        assert [sharded.tray_size(n) for n in (1, 2, 3, 5, 64, 65)] == [2, 2, 4, 8, 64, 128]
        for n in (1, 3, 64, 77):
            x = k.test.x[:n]
            np.testing.assert_allclose(sharded.forward(x), service.forward(x), rtol=1e-6,
                                       atol=1e-6)
        orders = k.raw.test.as_dicts(5)
        assert sharded.predict(orders).labels == service.predict(orders).labels
        tray = sharded.layout(5)
        assert tray.shape == (8, 8) and len(tray.sharding.device_set) == 2
        for bad, pattern in ((np.zeros((0, 8)), "x is empty"),
                             (np.zeros((2, 7)), r"x must have shape \\(B, 8\\)"),
                             (np.full((2, 8), np.nan), "non-finite")):
            try:
                sharded.forward(bad)
            except ValueError as err:
                assert re.search(pattern, str(err)), str(err)
            else:
                raise AssertionError(pattern)
        try:
            sharded.fit()
        except TypeError as err:
            assert "refuses to be trained" in str(err)
        print("ok")
    """, devices=2)
    assert out.strip() == "ok"


def test_sharded_service_needs_a_service():
    with pytest.raises(TypeError, match="service must be a kl.serve.Service"):
        distributed.ShardedService(models.make_mlp(MLPConfig.tiny()))
