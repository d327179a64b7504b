"""Measuring ingredients: turn an order (named amounts with units, or an array) into model input.

The chef was trained on normalized numbers, so every order is validated, converted to the
pantry's units (g, ml, count, °C, min) and normalized with the statistics laminated with the
model. Orders may be

* one dict ``{"flour": 250, "oven_temp": (356, "°F"), ...}`` (bare numbers are in the
  default unit of ``kl.data.FEATURE_UNITS``; a ``(value, unit)`` pair converts),
* a list of such dicts,
* an array (F,) or (B, F) of raw amounts in the default units.

Shapes: B = orders on the tray, F = features per order.
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from kitchenlab.data import check_features

# unit -> function converting a value in that unit to the default unit (the key of the outer dict)
CONVERSIONS: dict[str, dict[str, Callable[[float], float]]] = {
    "g": {"g": lambda v: v, "kg": lambda v: v * 1000.0, "mg": lambda v: v / 1000.0},
    "ml": {"ml": lambda v: v, "l": lambda v: v * 1000.0, "cl": lambda v: v * 10.0},
    "count": {"count": lambda v: v},
    "°C": {"°C": lambda v: v, "C": lambda v: v, "°F": lambda v: (v - 32.0) * 5.0 / 9.0,
           "F": lambda v: (v - 32.0) * 5.0 / 9.0, "K": lambda v: v - 273.15},
    "min": {"min": lambda v: v, "h": lambda v: v * 60.0, "s": lambda v: v / 60.0},
}


def to_default_unit(name: str, value: float, unit: str, default_unit: str) -> float:
    """Convert ``value`` of ingredient ``name`` from ``unit`` to its ``default_unit``."""
    table = CONVERSIONS.get(default_unit, {default_unit: lambda v: v})
    if not isinstance(unit, str) or unit not in table:
        raise ValueError(f"order: {name} given in unit {unit!r}; expected one of "
                         f"{sorted(table)} (default {default_unit!r})")
    return float(table[unit](value))


def _number(name: str, value: Any, where: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{where}: {name} must be a number or a (number, unit) pair, "
                        f"got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{where}: {name} must be a finite amount, got {value}")
    return value


def order_row(order: Mapping[str, Any], names: Sequence[str], units: Mapping[str, str], *,
              where: str = "order") -> list[float]:
    """One order dict -> amounts in default units, in the model's feature order."""
    if not isinstance(order, Mapping):
        raise TypeError(f"{where} must be a dict of ingredient -> amount, "
                        f"got {type(order).__name__}")
    unknown = [k for k in order if k not in units]
    if unknown:
        hints = [f"{k!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(
            str(k), names, n=1)) else repr(k) for k in unknown]
        raise ValueError(f"{where} has unknown ingredient(s) {', '.join(hints)}; "
                         f"the menu knows {list(names)}")
    missing = [n for n in names if n not in order]
    if missing:
        raise ValueError(f"{where} is missing ingredient(s) {missing}; every order needs "
                         f"all of {list(names)}")
    row = []
    for name in names:
        value = order[name]
        if isinstance(value, tuple):
            if len(value) != 2:
                raise TypeError(f"{where}: {name} must be a number or a (number, unit) pair, "
                                f"got a tuple of length {len(value)}: {value!r}")
            amount = _number(name, value[0], where)
            row.append(to_default_unit(name, amount, value[1], units[name]))
        else:
            row.append(_number(name, value, where))
    return row


def measure(orders, names: Sequence[str], units: Mapping[str, str]) -> np.ndarray:
    """Orders (dict, list of dicts, or array) -> raw amounts (B, F) float32 in default units."""
    if isinstance(orders, Mapping):
        return np.asarray([order_row(orders, names, units)], dtype=np.float32)
    if isinstance(orders, (list, tuple)) and orders and all(isinstance(o, Mapping) for o in orders):
        return np.asarray([order_row(o, names, units, where=f"order {i}")
                           for i, o in enumerate(orders)], dtype=np.float32)
    if isinstance(orders, (str, bytes)) or orders is None:
        raise TypeError(f"orders must be a dict, a list of dicts or an array (B, {len(names)}), "
                        f"got {type(orders).__name__}")
    try:
        x = np.asarray(orders, dtype=np.float32)
    except (TypeError, ValueError):
        raise TypeError(f"orders must be a dict, a list of dicts or a numeric array "
                        f"(B, {len(names)}), got {type(orders).__name__}") from None
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != len(names):
        raise ValueError(f"orders must have shape (B, {len(names)}) or ({len(names)},) "
                         f"(one column per ingredient: {list(names)}), got shape {x.shape}")
    return check_features(x, "orders", item="order", columns=names)


def out_of_range(x_raw: np.ndarray, features: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """Per order, the ingredients outside the range the chef was trained on (never seen)."""
    low = np.asarray([f["low"] for f in features], np.float32)
    high = np.asarray([f["high"] for f in features], np.float32)
    notes = []
    for row in np.asarray(x_raw):
        notes.append([f"{f['name']} {v:g} {f['unit']} outside trained range "
                      f"[{f['low']:g}, {f['high']:g}]"
                      for f, v, bad in zip(features, row, (row < low) | (row > high)) if bad])
    return notes
