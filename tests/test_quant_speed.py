"""kl.quant_speed: CPU flags from /proc/cpuinfo (or their absence) and the sweep's rows."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import kitchenlab as kl
from kitchenlab import quant_speed as S

X86 = """processor\t: 0
model name\t: Some Xeon
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni amx_tile amx_int8
"""
ARM = """processor\t: 0
Features\t: fp asimd asimddp i8mm
CPU implementer\t: 0x41
"""


def test_flags_from_cpuinfo(tmp_path):
    (tmp_path / "x86").write_text(X86)
    f = S.cpu_int8_features(str(tmp_path / "x86"))
    assert f["cpu"] == "Some Xeon" and f["flags"]["avx512_vnni"] and f["flags"]["amx_int8"]
    assert not f["flags"]["avx_vnni"] and S.has_int8_dot(f)
    lines = S.describe_cpu(f)
    assert any("avx512_vnni" in line for line in lines) and any("lacks avx_vnni" in line for line in lines)
    (tmp_path / "arm").write_text(ARM)
    f = S.cpu_int8_features(str(tmp_path / "arm"))
    assert f["flags"]["asimddp"] and f["flags"]["i8mm"] and S.has_int8_dot(f)
    (tmp_path / "old").write_text("flags\t: fpu sse2 avx2\n")
    assert S.has_int8_dot(S.cpu_int8_features(str(tmp_path / "old"))) is False


def test_missing_cpuinfo_means_unknown(tmp_path):
    f = S.cpu_int8_features(str(tmp_path / "nope"))
    assert f["flags"] is None and S.has_int8_dot(f) is None
    assert "unknown" in S.describe_cpu(f)[1]
    assert S.cpu_int8_features(None)["flags"] is None


def test_time_pair_interleaves_and_takes_the_median():
    calls = []
    a, b = S.time_pair(lambda: calls.append("a"), lambda: calls.append("b"), budget_s=0.0,
                       min_repeats=4)
    assert calls == ["a", "b"] * 5 and a >= 0 and b >= 0
    # one slow call of each (a busy moment of the machine) does not move the answer
    slow = {"a": [0.03, 0, 0, 0, 0], "b": [0, 0, 0.03, 0, 0]}
    import time

    def sleeper(name):
        return lambda: time.sleep(slow[name].pop(0) if slow[name] else 0)

    a, b = S.time_pair(sleeper("a"), sleeper("b"), budget_s=0.0, min_repeats=4)
    assert a < 0.02 and b < 0.02


def test_compiled_forward_equals_the_model_in_float32_and_int8():
    model = S.banquet(32, seed=0)
    graphdef, params = nnx.split(model)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((5, 8)), jnp.float32)
    np.testing.assert_allclose(np.asarray(S.compiled_forward(graphdef, params)(x)),
                               np.asarray(model(x)), rtol=1e-6, atol=1e-6)
    q = kl.quantize.quantize_model(model, activations=True)
    np.testing.assert_allclose(np.asarray(S.compiled_forward(q.graphdef, q.params, int8=True)(x)),
                               np.asarray(q(x)), rtol=1e-5, atol=1e-5)


def test_speed_sweep_rows():
    rows = S.speed_sweep(widths=(16,), batches=(1, 4), budget_s=0.0)
    assert len(rows) == 4
    assert {r["engine"] for r in rows} == set(S.ENGINES)
    for r in rows:
        assert r["f32_s"] > 0 and r["int8_s"] > 0
        assert r["speedup"] == pytest.approx(r["f32_s"] / r["int8_s"])
        assert r["size_ratio"] > 0 and 0 <= r["rel_error"] < 0.1
    assert S.lookup(rows, "jax", 16, 4) == rows[2]["speedup"]
    with pytest.raises(KeyError, match="no row"):
        S.lookup(rows, "jax", 32, 4)


def test_speed_sweep_bad_input():
    with pytest.raises(ValueError, match="engines must be a non-empty subset"):
        S.speed_sweep(engines=("tensorrt",))
    with pytest.raises(ValueError, match="widths and batches must be"):
        S.speed_sweep(widths=(), batches=(1,))
    with pytest.raises(ValueError, match="widths and batches must be"):
        S.speed_sweep(widths=(0,), batches=(1,))
