"""The exercise checks of notebook 05: True for a right answer, False plus a hint (no raise)."""

import os
import shutil

import pytest

import kitchenlab as kl
from kitchenlab.checks import service as checks
from check_grading import ok as _ok, wrong as _wrong


@pytest.fixture(scope="module")
def shelf(tmp_path_factory):
    root = tmp_path_factory.mktemp("shelf")
    kitchen = kl.data.kitchen(200, seed=0)
    # notebook 05's recipe size: its largest weights file holds the knob values themselves
    model = kl.models.make_mlp(kl.config.MLPConfig.default(), seed=0)
    folder = kl.serve.laminate(model, root / "chef", normalizer=kitchen.normalizer)
    return root, folder, kl.serve.open_restaurant(folder)


US_ORDER = {"flour": (0.3, "kg"), "sugar": 150, "butter": 113, "eggs": 3, "milk": (0.12, "l"),
            "baking_powder": 8, "oven_temp": (350, "°F"), "bake_time": (0.75, "h")}


def test_unit_order(shelf, capsys):
    _, _, service = shelf
    _ok(checks.check_unit_order, service, US_ORDER, capsys=capsys)
    _wrong(checks.check_unit_order, service, None, capsys=capsys)
    wrong_unit = US_ORDER | {"oven_temp": (350, "°C")}  # the guest meant °F
    assert "oven_temp" in _wrong(checks.check_unit_order, service, wrong_unit, capsys=capsys)
    _wrong(checks.check_unit_order, service, US_ORDER | {"flour": (2, "cups")}, capsys=capsys)
    defaults = {k: (v[0] if isinstance(v, tuple) else v) for k, v in US_ORDER.items()}
    _wrong(checks.check_unit_order, service, defaults, capsys=capsys)  # no units: 0.3 g flour


def _damage(folder, copy, *, weights=True):
    shutil.copytree(folder, copy)
    if weights:
        files = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(copy, "weights"))
                 for f in fs]
        target = max(files, key=os.path.getsize)
    else:
        target = os.path.join(copy, "manifest.json")
    os.chmod(target, 0o644)
    data = bytearray(open(target, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(target, "wb").write(bytes(data))
    try:
        kl.serve.open_restaurant(copy)
    except ValueError as err:
        return err
    return None


def test_tamper_with_the_folders(shelf, capsys):
    root, folder, _ = shelf
    copy = root / "tampered"
    error = _damage(folder, copy)
    assert error is not None and "checksum" in str(error)
    # the hash prefixes in the message stay short (< 16 hex digits)
    assert not any(len(run) >= 16 for run in
                   "".join(c if c in "0123456789abcdef" else " " for c in str(error)).split())
    _ok(checks.check_tamper, error, capsys=capsys, copy=copy, original=folder)
    _ok(checks.check_tamper, error, capsys=capsys)  # without the folders: the error alone
    # a made-up error, not from opening the copy
    fake = ValueError("weights checksum mismatch")
    out = _wrong(checks.check_tamper, fake, capsys=capsys, copy=copy, original=folder)
    assert "open the damaged copy" in out
    # the original opened instead of the copy
    _wrong(checks.check_tamper, error, capsys=capsys, copy=folder, original=folder)
    _wrong(checks.check_tamper, None, capsys=capsys, copy=copy, original=folder)
    _wrong(checks.check_tamper, TypeError("checksum"), capsys=capsys)


def test_tamper_refuses_a_damaged_manifest(shelf, capsys):
    root, folder, _ = shelf
    copy = root / "manifest-damaged"
    error = _damage(folder, copy, weights=False)
    out = _wrong(checks.check_tamper, error or ValueError(f"{copy}: checksum"), capsys=capsys,
                 copy=copy, original=folder)
    assert "weights" in out


def test_tray_gain(capsys):
    rows = [{"batch": 1, "latency_s": 1e-4, "throughput": 1e4},
            {"batch": 64, "latency_s": 2e-4, "throughput": 3.2e5}]
    _ok(checks.check_tray_gain, rows, 32.0, capsys=capsys)
    _wrong(checks.check_tray_gain, rows, None, capsys=capsys)
    _wrong(checks.check_tray_gain, rows, 2.0, capsys=capsys)  # latency ratio, not throughput
    other = [dict(r, throughput=r["throughput"] * (2 if r["batch"] == 64 else 1)) for r in rows]
    _wrong(checks.check_tray_gain, other, 32.0, capsys=capsys)  # a constant fails elsewhere


def test_reexported():
    for name in ("check_unit_order", "check_tamper", "check_tray_gain"):
        assert callable(getattr(kl.checks, name))
