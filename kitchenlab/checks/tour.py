"""Checks for notebook 00 (the kitchen tour): the analogy map and a first jitted function."""

from __future__ import annotations

from kitchenlab.checks import Feedback, close

# kitchen phrase -> accepted ML names (compared after _normalize: lower case, hyphens and
# underscores as spaces). The full map is DESIGN.md's table.
ANALOGY: dict[str, tuple[str, ...]] = {
    "safety cap on the gas valve": ("gradient clipping", "clipping", "grad clipping",
                                    "clip by global norm", "gradient norm clipping",
                                    "clip grad norm", "norm clipping", "clipping gradients"),
    "guest tasters who give no notes": ("validation set", "validation", "validation data",
                                        "val set", "held out set", "holdout set",
                                        "validation split", "dev set", "development set"),
    "pre-measured spice packets": ("quantization", "int8 quantization", "int8",
                                   "quantisation", "weight quantization", "int8 quantisation"),
    "the judge's notes on every step": ("backpropagation", "gradients", "gradient", "backprop",
                                        "back propagation", "jax.grad", "grad",
                                        "backward pass", "partial derivatives"),
    "whipped cream kept in the fridge": ("kv cache", "key value cache", "kv caching"),
    "how boldly knobs are turned": ("learning rate", "step size", "lr", "eta", "η"),
}


def _normalize(text) -> str:
    return " ".join(str(text).strip().lower().replace("-", " ").replace("_", " ").split())


EXERCISE = ("safety cap on the gas valve", "guest tasters who give no notes",
            "pre-measured spice packets", "the judge's notes on every step")  # notebook 00


def check_analogy(answers, required=EXERCISE) -> bool:
    """``answers`` maps kitchen phrases (keys of ``ANALOGY``) to the ML names they stand for.

    Every phrase in ``required`` (the exercise's four) must be answered; other known
    phrases may be added and are checked too.
    """
    fb = Feedback("The analogy map")
    if not isinstance(answers, dict):
        fb.expect(False, "", f"answers should be a dict {{kitchen phrase: ML name}}, "
                  f"got {type(answers).__name__}")
        return fb.done()
    for phrase in required:
        if phrase not in answers:
            fb.expect(False, "", f"{phrase!r} is missing: keep every phrase of the exercise "
                      "and answer it")
    for phrase, accepted in ANALOGY.items():
        if phrase not in answers:
            continue
        given = answers[phrase]
        if given is None:
            fb.expect(False, "", f"{phrase!r}: still None — find it in the map above")
            continue
        ok = _normalize(given) in accepted
        fb.expect(ok, f"{phrase!r} is {accepted[0]}",
                  f"{phrase!r}: {given!r} is not it — look for the row in the map")
    if not fb.lines:
        fb.expect(False, "", "no known kitchen phrase among the keys: copy them from the cell")
    return fb.done()


def check_oven_converter(fn) -> bool:
    """``fn``: a ``jax.jit``-compiled function turning °F into °C, element-wise."""
    import jax.numpy as jnp

    fb = Feedback("The oven-dial converter")
    if not callable(fn):
        fb.expect(False, "", f"expected a function, got {type(fn).__name__} — define it with def")
        return fb.done()
    fb.expect(hasattr(fn, "lower"), "it is jit-compiled",
              "wrap it with jax.jit (as a decorator @jax.jit or fn = jax.jit(fn))")
    import numpy as np

    # Known dials, then random ones of other sizes: a function that returns a fixed answer
    # (or only works for 4 ovens) cannot pass.
    dials = [jnp.array([212.0, 356.0, 392.0, 428.0])]
    dials += [jnp.asarray(np.random.default_rng(n).uniform(-40.0, 500.0, n), jnp.float32)
              for n in (3, 9)]
    shapes_ok, values_ok = True, True
    for fahrenheit in dials:
        want = (np.asarray(fahrenheit, np.float64) - 32.0) * 5.0 / 9.0
        try:
            got = fn(fahrenheit)
        except Exception as err:  # a learner's bug is feedback, not a crash
            fb.expect(False, "", f"calling it on {fahrenheit.shape[0]} ovens raised "
                      f"{type(err).__name__}: {err}")
            return fb.done()
        shapes_ok &= getattr(got, "shape", None) == fahrenheit.shape
        values_ok &= shapes_ok and close(got, want, rtol=1e-4, atol=1e-3)
    fb.expect(shapes_ok, "one answer per oven, for 4, 3 and 9 ovens",
              "return one temperature per oven: work on the whole array (no fixed answer)")
    fb.expect(values_ok, "212 °F → 100 °C, 356 °F → 180 °C, and random dials: correct",
              "°C = (°F − 32) × 5 / 9; check the order of the operations")
    return fb.done()


_LOWERING = "/jax/core/compile/jaxpr_to_mlir_module_duration"  # one event per new program


def check_compiles_once(fn) -> bool:
    """``fn(knobs, notes, learning_rate) -> knobs``: a jitted SGD step that compiles once
    for every learning rate (the rate traced, not baked into the program)."""
    import jax
    import numpy as np

    fb = Feedback("One compile for every learning rate")
    if not callable(fn):
        fb.expect(False, "", f"expected a function, got {type(fn).__name__}")
        return fb.done()
    fb.expect(hasattr(fn, "lower"), "it is jit-compiled",
              "wrap it with jax.jit (a decorator), keeping learning_rate a normal argument")
    knobs = np.array([1.0, -2.0, 0.5], np.float32)
    notes = np.array([0.3, 0.1, -0.2], np.float32)
    compiled = [0]

    def listener(event, duration_secs, **kwargs):
        if event == _LOWERING:
            compiled[0] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    right = True
    try:
        for rate in (0.0123, 0.0456, 0.789, 1.5):  # rates no notebook cell used before
            got = np.asarray(fn(knobs, notes, rate))
            right &= bool(np.allclose(got, knobs - rate * notes, rtol=1e-5, atol=1e-6))
    except Exception as err:  # a learner's bug is feedback, not a crash
        fb.expect(False, "", f"calling it raised {type(err).__name__}: {err}")
        return fb.done()
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    fb.expect(right, "knobs − learning_rate × notes, for 4 learning rates",
              "the step should return knobs - learning_rate * notes")
    fb.expect(compiled[0] <= 1, f"{compiled[0]} compilation(s) for 4 learning rates",
              f"{compiled[0]} compilations for 4 learning rates: a static learning_rate is baked "
              "into the program, so every new value compiles again; drop static_argnames")
    return fb.done()
