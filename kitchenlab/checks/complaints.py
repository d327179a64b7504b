"""Checks for notebook 09 (complaints and retraining): the KS gap by hand, the drift the
input alarm cannot see, and a fine-tune with frozen early stations."""

from __future__ import annotations

import re
from typing import Callable

import numpy as np

from kitchenlab.checks import Feedback


def check_ks_gap(fn: Callable | None) -> bool:
    """``fn(reference, current)`` for 1-D arrays: the largest gap between their empirical
    CDFs (the Kolmogorov-Smirnov statistic D)."""
    from kitchenlab.drift import ks_test

    fb = Feedback("Exercise 1 (the largest gap by hand)")
    if not fb.expect(callable(fn), "my_ks_gap is a function",
                     "define my_ks_gap(reference, current) and pass it in"):
        return fb.done()
    rng = np.random.default_rng(9)
    ref = rng.normal(size=3000)
    cases = {"the same distribution": rng.normal(size=1000),
             "shifted by half a spread": rng.normal(0.5, 1.0, size=1000),
             "twice as wide": rng.normal(0.0, 2.0, size=500),
             "far away": rng.normal(6.0, 1.0, size=800),
             "whole eggs (ties)": rng.integers(1, 6, size=700).astype(float)}
    for name, cur in cases.items():
        r = np.round(ref) if "ties" in name else ref
        want = float(ks_test(r, cur)[0])
        try:
            got = float(fn(r, cur))
        except Exception as err:  # noqa: BLE001 - feedback, not a crash
            fb.expect(False, "", f"my_ks_gap raised {type(err).__name__} on {name}: {err}")
            return fb.done()
        fb.expect(np.isclose(got, want, rtol=1e-9, atol=1e-12),
                  f"{name}: D = {got:.4f}, as kl.drift.ks_test",
                  f"{name}: got {got:.4f}, kl.drift.ks_test gives {want:.4f} — evaluate both "
                  "empirical CDFs (np.searchsorted(np.sort(a), grid, side='right') / len(a)) on "
                  "every value of both samples and take the largest absolute difference")
    return fb.done()


_BLIND = ("hot_oven", "hot oven", "the oven runs hot", "oven runs hot", "hot", "concept drift",
          "concept", "concept shift", "the hot oven", "a hot oven", "thermostat")


def check_blind_drift(answer) -> bool:
    """Which named drift moves no orders but changes outcomes (the input alarm misses it)?"""
    from kitchenlab.experiments.complaints import input_blind_drifts

    fb = Feedback("Exercise 2 (the drift the input alarm cannot see)")
    if not fb.expect(isinstance(answer, str) and answer.strip(), "you answered",
                     "answer with a string: the name of one drift in kl.data.DRIFTS"):
        return fb.done()
    given = re.sub(r"\s+", " ", answer.strip().lower().replace("_", " ").replace("-", " "))
    blind = input_blind_drifts()
    ok = given in {b.replace("_", " ") for b in _BLIND} | {b.replace("_", " ") for b in blind}
    fb.expect(ok, f"yes: {', '.join(blind)} — the orders look as they always did (PSI below "
              "the threshold), only reviews show the chef is wrong (concept drift)",
              f"{answer!r} moves the orders, so PSI sees it; look for the drift whose PSI stays "
              "low in the table of section 2 while accuracy falls")
    return fb.done()


_REPLAY = ("replay", "replaying", "replayed", "experience replay", "rehearsal", "rehearse",
           "old cakes", "replay old cakes", "replaying old cakes", "replay the old cakes",
           "replay of old data", "mixing in old data", "old data")
_FREEZE = ("freeze", "freezing", "frozen", "freezing the first station", "freeze the first station",
           "frozen layers", "freezing layers", "the frozen station", "first station frozen")


def _habit(answer) -> str | None:
    """"replay", "freeze" or None for a free-text answer naming one of the two habits."""
    if not isinstance(answer, str):
        return None
    given = re.sub(r"[^a-z ]", "", answer.strip().lower().replace("-", " ").replace("_", " "))
    given = re.sub(r"\s+", " ", given).strip()
    if given in _REPLAY:
        return "replay"
    if given in _FREEZE:
        return "freeze"
    return None


def check_frozen(parent, shift, answer=None) -> bool:
    """A night shift with the first hidden layer frozen: its knobs are exactly the parent's,
    the later stations moved, and the chef still learned the new guests. ``answer``: which
    habit keeps the old guests, "freezing" the first station or "replay"? Graded against
    the learner's own runs (frozen, with and without replay)."""
    import jax
    from flax import nnx

    fb = Feedback("Exercise 3 (frozen first station)")
    runs = getattr(shift, "runs", None)
    if not fb.expect(runs is not None and hasattr(shift, "model"),
                     "shift is a night shift", "pass the result of kl.finetune.night_shift"):
        return fb.done()
    frozen = [k for k, r in enumerate(runs) if r["freeze"] >= 1]
    if not fb.expect(bool(frozen), f"{len(frozen)} run(s) with the first station frozen",
                     "call night_shift(..., freeze=(1,)): freeze counts the leading hidden "
                     "layers to freeze (1 = the first station), one value per group of runs"):
        return fb.done()
    first = nnx.state(parent.hidden[0], nnx.Param)
    same, moved = True, False
    for k in frozen:
        child = shift.model(k)
        a = jax.tree.leaves(nnx.state(child.hidden[0], nnx.Param))
        same &= all(np.array_equal(x, y) for x, y in zip(a, jax.tree.leaves(first)))
        moved |= not np.array_equal(np.asarray(child.head.kernel[...]),
                                    np.asarray(parent.head.kernel[...]))
    fb.expect(same, "the first station's knobs are exactly the laminated ones",
              "the first hidden layer changed: freeze=(1,) should keep it bit for bit")
    fb.expect(moved, "the later stations (the head) did move",
              "nothing moved at all: was the learning rate 0, or every layer frozen?")
    if "new guests" in shift.scores:
        gain = float(np.mean(shift.final("new guests")[frozen])
                     - shift.parent_scores["new guests"])
        fb.expect(gain > 0.02, "and still learned the new guests (more than 2 points)",
                  f"new-guest accuracy changed by {gain:+.2f}: too little learning")
    plain = [k for k in frozen if runs[k]["replay"] == 0.0]
    replayed = [k for k in frozen if runs[k]["replay"] > 0.0]
    if "old guests" not in shift.scores or not plain or not replayed:
        fb.expect(False, "", "to compare the habits, taste the old guests (checks=checks) and "
                  "run the frozen chef with and without replay (replay_on=(0.0, 1.0))")
        return fb.done()
    base = shift.parent_scores["old guests"]
    lost_plain = base - float(np.mean(shift.final("old guests")[plain]))
    lost_replay = base - float(np.mean(shift.final("old guests")[replayed]))
    forgot = "still forgot more than a point" if lost_plain > 0.01 else "forgot less than a point"
    kept = "kept them within a point" if abs(lost_replay) <= 0.01 else "moved more than a point"
    facts = (f"frozen and trained on reviews alone, the chef {forgot} of the old guests; "
             f"frozen with replay it {kept}")
    truth = "replay" if lost_plain - lost_replay >= 0.005 else None  # half a point apart
    habit = _habit(answer)
    if answer is None:
        fb.expect(False, "", "now answer: which habit keeps the old guests, freezing the first "
                  "station or replay? (answer = \"...\")")
    elif habit is None:
        fb.expect(False, "", f"answer with one habit, \"freezing\" or \"replay\" (got {answer!r})")
    elif truth is None:  # e.g. a night too short to forget: either answer is fair
        fb.expect(True, f"your runs do not separate the habits clearly: {facts}", "")
    else:
        fb.expect(habit == truth, f"replay: {facts} -- freezing one station leaves the rest free "
                  "to drift towards the new guests",
                  f"{answer!r} is not what your runs show: {facts}. Which habit made the "
                  "difference?")
    return fb.done()
