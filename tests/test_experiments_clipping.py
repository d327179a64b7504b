"""Notebook 02's gas-valve cap: the spiky kitchen, its trays, the cap's verdicts, the sweep.

The claims notebook 02 makes are asserted there over four apprentices; here each experiment
is checked against a reference (a hand replay of the shuffles, a fit, the panel's run) on
small grids, so that the tests stay quick and a broken experiment fails here first.
"""

import jax
import numpy as np
import pytest

import kitchenlab as kl
from kitchenlab.experiments import apprenticeship as E
from kitchenlab.experiments import clipping as C


@pytest.fixture(scope="module")
def kitchen():
    return kl.data.kitchen()


@pytest.fixture(scope="module")
def spiky(kitchen):
    return C.spiky_kitchen(kitchen)


def test_clip_verdict():
    ok = kl.train.History(np.zeros(3), None, np.array([0.5, 0.4, 0.35]), None)
    assert C.clip_verdict(ok, 0.0) == "spikes only"
    assert C.clip_verdict(ok, 0.06) == "too tight"
    bouncy = kl.train.History(np.zeros(3), None, np.array([0.5, 0.4, 0.6]), None)
    assert C.clip_verdict(bouncy, 0.0) == "too loose"
    blown = kl.train.History(np.zeros(0), None, np.zeros(0), None, diverged_at_step=5)
    assert C.clip_verdict(blown, 0.0) == "too loose"
    assert "5 %" in C.CLIP_WORDS["too tight"] and C.TIGHT_ORDINARY == 0.05


# ---------------------------------------------------------------- the spiky kitchen
def test_spiky_kitchen_mis_weighs_only_the_chosen_bags(kitchen, spiky):
    flour = kl.data.FEATURE_NAMES.index("flour")
    assert len(spiky.outliers) == 4 and np.all(np.diff(spiky.outliers) > 0)
    raw = kitchen.normalizer.inverse(spiky.train.x)
    np.testing.assert_allclose(raw[spiky.outliers, flour],
                               1000 * kitchen.raw.train.x[spiky.outliers, flour], rtol=1e-3)
    others = np.setdiff1d(np.arange(len(kitchen.train)), spiky.outliers)
    np.testing.assert_array_equal(spiky.train.x[others], kitchen.train.x[others])
    np.testing.assert_array_equal(spiky.train.y, kitchen.train.y)  # labels stay true
    assert spiky.val is kitchen.val
    assert np.all(spiky.train.x[spiky.outliers, flour] > 1000)  # thousands of spreads away


def test_spiky_kitchen_refuses_bad_settings(kitchen):
    with pytest.raises(ValueError, match="feature must be one of"):
        C.spiky_kitchen(kitchen, feature="salt")
    with pytest.raises(ValueError, match="n_outliers must be an int"):
        C.spiky_kitchen(kitchen, n_outliers=-1)
    with pytest.raises(ValueError, match="n_outliers must be an int"):
        C.spiky_kitchen(kitchen, n_outliers=2.5)
    with pytest.raises(ValueError, match="factor must be a finite number > 0"):
        C.spiky_kitchen(kitchen, factor=0.0)


def test_outlier_turns_replays_fits_shuffles(spiky):
    """The same trays as a hand replay of the shuffle (notebook 02's readable loop)."""
    config = E.default_config(seed=3)
    turns = C.outlier_turns(len(spiky.train), spiky.outliers, config)
    assert turns.shape == (config.epochs * 18,) and not turns.flags.writeable
    bad = np.zeros(len(spiky.train), bool)
    bad[spiky.outliers] = True
    day_keys = jax.random.split(jax.random.key(3), config.epochs)
    for day in (0, 7):
        shuffle_key, _ = jax.random.split(day_keys[day])
        order = np.asarray(jax.random.permutation(shuffle_key, len(spiky.train)))
        want = [bad[order[t * 64:(t + 1) * 64]].any() for t in range(18)]
        np.testing.assert_array_equal(turns[day * 18:(day + 1) * 18], want)


def test_spikes_come_from_the_mis_weighed_trays(spiky):
    """Every note far above the ordinary band sits on a tray with a mis-weighed bag."""
    run = C.clip_curves(2.0, spiky=spiky)
    norms = run.history.grad_norm
    assert norms.shape == run.spiky_turns.shape
    assert np.all(run.spiky_turns[norms > 10.0])
    assert np.sum(norms > 10.0) >= 10  # and there are spikes to see


# ---------------------------------------------------------------- the cap
def test_a_cap_between_band_and_spikes_rescues_and_touches_no_ordinary_turn(kitchen, spiky):
    run = C.clip_curves(2.0, spiky=spiky, kitchen=kitchen)
    assert run.baseline.diverged and not run.history.diverged
    c = run.counts()
    assert c["ordinary_trimmed"] == 0 and c["spiky_trimmed"] > 0
    assert c["ordinary"] + c["spiky"] == 360
    assert abs(run.history.val_loss[-1] - run.clean.val_loss[-1]) < 0.02
    assert run.verdict == "spikes only" and run.label == "clip norm = 2"


def test_a_cap_above_every_ordinary_note_changes_nothing(kitchen):
    plain = E.lr_curves(0.1, kitchen=kitchen).history
    assert plain.grad_norm.max() < 2.0
    capped = E.lr_curves(0.1, kitchen=kitchen,
                         config=E.default_config(clip_norm=2.0)).history
    np.testing.assert_array_equal(capped.train_loss, plain.train_loss)
    np.testing.assert_array_equal(capped.val_loss, plain.val_loss)


def test_tight_and_loose_caps(spiky):
    tight = C.clip_curves(0.01, spiky=spiky)
    assert tight.verdict == "too tight" and bool(np.all(tight.trimmed))
    loose = C.clip_curves(1000.0, spiky=spiky)
    assert loose.history.diverged and loose.verdict == "too loose"


def test_clip_curves_is_pure(spiky):
    a = C.clip_curves(0.5, spiky=spiky)
    b = C.clip_curves(0.5, spiky=spiky)
    np.testing.assert_array_equal(a.history.train_loss, b.history.train_loss)
    np.testing.assert_array_equal(a.history.grad_norm, b.history.grad_norm)


# ---------------------------------------------------------------- the cap sweep
def test_cap_sweep_finds_the_three_regimes(spiky):
    caps = np.array([0.01, 0.1, 0.3, 1.0, 2.0, 5.0, 30.0, 300.0, 1000.0])
    sweep = C.cap_sweep(spiky, caps=caps, seeds=(0,))
    words = list(sweep.verdicts[0])
    assert words[:2] == ["too tight"] * 2
    assert words[3:6] == ["spikes only"] * 3
    assert words[-2:] == ["too loose"] * 2 and bool(np.all(sweep.diverged[0, -2:]))
    np.testing.assert_array_equal(sweep.ordinary_trimmed[0, :2], [1.0, 1.0])
    assert sweep.ordinary_trimmed[0, 4] == 0.0 and sweep.spiky_trimmed[0, 4] > 0.3
    assert np.all((sweep.spiky_trimmed >= 0) & (sweep.spiky_trimmed <= 1))
    # the sweep's run at cap 2 is the panel's run at cap 2
    run = C.clip_curves(2.0, spiky=spiky)
    np.testing.assert_allclose(sweep.val_loss[0, 4], run.history.val_loss, rtol=1e-4, atol=1e-5)
    assert np.isinf(sweep.final_val_loss()[0, -1])


def test_race_and_cap_sweep_reuse_one_compiled_program(kitchen, spiky):
    """Same number of runs and the same swept fields: after a race, a cap sweep of as many
    runs compiles nothing (notebook 02 relies on it: one sweep compile, not two)."""
    from compile_count import count_compiles

    E.race(kitchen, learning_rates=(0.1, 0.3), seeds=(0,))  # 6 runs: a size no other test uses
    C.outlier_turns(len(spiky.train), spiky.outliers, E.default_config())  # its small helpers
    with count_compiles() as compiles:
        sweep = C.cap_sweep(spiky, caps=np.geomspace(0.5, 5.0, 6), seeds=(0,))
    assert compiles[0] == 0, f"{compiles[0]} programs compiled"
    assert sweep.val_loss.shape == (1, 6, 20)
