"""Checks for notebook 05 (restaurant service)."""

from __future__ import annotations

import numpy as np

from kitchenlab.checks import Feedback

# The guest's order of exercise 1, in the default units (g, ml, count, °C, min).
US_ORDER_IN_DEFAULT_UNITS = {"flour": 300.0, "sugar": 150.0, "butter": 113.0, "eggs": 3.0,
                             "milk": 120.0, "baking_powder": 8.0, "oven_temp": 176.667,
                             "bake_time": 45.0}


def check_unit_order(service, order) -> bool:
    """Exercise 1: the guest's order written with unit-tagged amounts."""
    fb = Feedback("Exercise 1 (an order in other units)")
    if not fb.expect(isinstance(order, dict), "order is a dict",
                     "order should be a dict {ingredient: amount or (amount, unit)}"):
        return fb.done()
    fb.expect(any(isinstance(v, tuple) for v in order.values()),
              "you used (amount, unit) pairs", "write amounts like (0.3, 'kg') or (350, '°F')")
    try:
        raw = service.measure(order)[0]
    except (TypeError, ValueError) as err:
        fb.expect(False, "", f"the service refused the order: {err}")
        return fb.done()
    expected = np.array([US_ORDER_IN_DEFAULT_UNITS[n] for n in service.feature_names])
    wrong = [n for n, a, b in zip(service.feature_names, raw, expected)
             if not np.isclose(a, b, rtol=1e-3)]
    fb.expect(not wrong, "every ingredient converts to the right amount",
              f"check {wrong}: in default units they should be "
              f"{ {n: US_ORDER_IN_DEFAULT_UNITS[n] for n in wrong} }")
    return fb.done()


def check_tamper(error, *, copy=None, original=None) -> bool:
    """Exercise 2: the error raised when opening a laminated folder with damaged weights.

    With ``copy`` (the damaged folder) and ``original`` (the laminated one) the check also
    looks at the folders: the copy's weights differ from the original's by a few bytes, its
    manifest is untouched, and the error came from opening the copy.
    """
    import os

    fb = Feedback("Exercise 2 (a tampered recipe book)")
    if not fb.expect(error is not None, "you caught an error",
                     "open the damaged copy inside try/except ValueError as err: error = err"):
        return fb.done()
    fb.expect(isinstance(error, ValueError), "it is a ValueError",
              f"expected a ValueError, got {type(error).__name__}")
    text = str(error)
    fb.expect("checksum" in text or "corrupted" in text,
              "the message names the problem (checksum / corrupted weights)",
              "flip a byte in the *weights* files of the copy, not in the manifest")
    if copy is None or original is None:
        return fb.done()
    copy, original = os.path.abspath(os.fspath(copy)), os.path.abspath(os.fspath(original))
    if not fb.expect(os.path.isdir(copy) and copy != original, "the copy is a separate folder",
                     f"copy the laminated folder first (shutil.copytree) to {copy!r}"):
        return fb.done()
    fb.expect(copy in text, "the error comes from opening the copy",
              "open the damaged copy (kl.serve.open_restaurant(copy)), not the original")
    changed = _changed_bytes(os.path.join(original, "weights"), os.path.join(copy, "weights"))
    fb.expect(0 < changed <= 16, f"{changed} byte(s) of the weights changed, nothing else",
              "change one byte of one file under weights/ (found "
              f"{'no' if changed == 0 else changed} changed bytes)")
    with open(os.path.join(original, "manifest.json"), "rb") as a, \
            open(os.path.join(copy, "manifest.json"), "rb") as b:
        fb.expect(a.read() == b.read(), "the manifest is untouched",
                  "leave manifest.json as it was: the lesson is that the checksum catches a "
                  "change to the weights")
    return fb.done()


def _changed_bytes(a: str, b: str) -> int:
    """How many bytes differ between two folder trees (a missing file counts fully)."""
    import os

    total = 0
    names = set()
    for root in (a, b):
        for d, _, files in os.walk(root):
            names |= {os.path.relpath(os.path.join(d, f), root) for f in files}
    for name in names:
        try:
            x = open(os.path.join(a, name), "rb").read()
            y = open(os.path.join(b, name), "rb").read()
        except OSError:
            total += 1 << 20
            continue
        if len(x) != len(y):
            total += abs(len(x) - len(y))
        total += int(np.count_nonzero(np.frombuffer(x[:len(y)], np.uint8)
                                      != np.frombuffer(y[:len(x)], np.uint8)))
    return total


def check_tray_gain(rows, answer) -> bool:
    """Exercise 3: how many times more orders/s a tray of 64 serves than a tray of 1."""
    fb = Feedback("Exercise 3 (what one tray buys)")
    by_batch = {r["batch"]: r for r in rows}
    expected = by_batch[64]["throughput"] / by_batch[1]["throughput"]
    if not fb.expect(answer is not None, "you computed an answer",
                     "answer = throughput at batch 64 / throughput at batch 1"):
        return fb.done()
    fb.expect(np.isclose(float(answer), expected, rtol=1e-6),
              f"{float(answer):.0f}× more orders per second",
              f"expected {expected:.0f}: divide orders/s (not latency) at 64 by that at 1")
    per_order = by_batch[64]["latency_s"] / 64 / by_batch[1]["latency_s"]
    fb.expect(per_order < 1, f"each order on a full tray costs {per_order:.0%} of a lone order's "
              "time", "compare latency_s / batch for the two trays")
    return fb.done()
