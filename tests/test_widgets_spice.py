"""The spice panels (notebook 06): every slider extreme draws and reads out, from the grids."""

import numpy as np
import pytest

import kitchenlab as kl
from kitchenlab.widgets import spice as W

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = kl.prune.FinetuneConfig(epochs=3, batch_size=32)


@pytest.fixture(scope="module")
def chef():
    kitchen = kl.data.kitchen(400, seed=0)
    model = kl.models.make_mlp(kl.config.MLPConfig(width=16), seed=0)
    kl.train.fit(model, kitchen.train, kitchen.val, kl.config.TrainConfig(epochs=5))
    return model, kitchen


@pytest.fixture(scope="module")
def quant(chef):
    model, kitchen = chef
    return W.quant_panel(model, kitchen.test)


@pytest.fixture(scope="module")
def pruning(chef):
    model, kitchen = chef
    return W.prune_panel(model, kitchen.train, kitchen.test, config=TINY)


def test_quant_controls(quant):
    bits = quant.controls["bits"]
    assert (bits.min, bits.max, bits.value) == (2, 8, 8)
    assert list(quant.controls) == ["bits", "per_channel"]


@pytest.mark.parametrize("bits", [2, 5, 8])
@pytest.mark.parametrize("per_channel", [True, False])
def test_quant_extremes_render(quant, chef, bits, per_channel):
    model, kitchen = chef
    view, png, text = quant.render(bits=bits, per_channel=per_channel)
    assert png.startswith(PNG_MAGIC) and len(png) > 5000
    assert f"<b>{bits} bits</b>" in text
    assert ("output channel" if per_channel else "per tensor") in text
    # the looked-up accuracy is the quantized model's
    q = kl.quantize.quantize_model(model, bits=bits, per_channel=per_channel)
    acc = (np.asarray(q(kitchen.test.x)).argmax(1) == kitchen.test.y).mean()
    assert view.accuracy == pytest.approx(acc)
    assert view.kernel_bytes == kl.quantize.packed_bytes(
        kl.quantize.nnx.split(model)[1], bits, per_channel=per_channel)


def test_quant_unreachable_values_are_clipped(quant):
    assert quant.compute(bits=1).bits == 2 and quant.compute(bits=12.4).bits == 8


def test_fewer_bits_more_error(quant):
    assert quant.compute(bits=2).max_error > quant.compute(bits=8).max_error
    assert quant.compute(bits=2).kernel_bytes < quant.compute(bits=8).kernel_bytes


def test_prune_extremes_render(pruning):
    for sparsity in (0.0, 0.5, 0.95):
        view, png, text = pruning.render(sparsity=sparsity)
        assert png.startswith(PNG_MAGIC) and len(png) > 5000
        assert f"sparsity {sparsity:.0%}</b>" in text
    assert pruning.compute(sparsity=1.0).sparsity == pytest.approx(0.95)
    assert pruning.compute(sparsity=-1).sparsity == 0.0
    assert pruning.compute(sparsity=0.9).sparse_bytes < pruning.compute(sparsity=0.1).sparse_bytes


def test_widgets_build_without_error(quant, pruning):
    box = quant.widget
    quant.controls["bits"].value = 2
    assert quant.wait()
    assert "kl-error" not in quant._text.value and "<b>2 bits</b>" in quant._text.value
    quant.controls["per_channel"].value = False
    assert quant.wait()
    assert "per tensor" in quant._text.value
    pruning.widget
    pruning.controls["sparsity"].value = 0.9
    assert pruning.wait()
    assert "kl-error" not in pruning._text.value and "sparsity 90%" in pruning._text.value
    assert "kl-panel" in box._dom_classes
