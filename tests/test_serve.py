"""kl.serve: laminate -> reopen (same and fresh process) -> serve; bad input; atomic writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import kitchenlab as kl
from kitchenlab.serve import artifact


@pytest.fixture(scope="module")
def chef():
    """A small trained model, its kitchen, and a laminated folder of it."""
    kitchen = kl.data.kitchen(400, seed=0)
    model = kl.models.make_mlp(kl.config.MLPConfig.tiny(), seed=0)
    kl.train.fit(model, kitchen.train, kitchen.val, kl.config.TrainConfig.tiny())
    return model, kitchen


@pytest.fixture(scope="module")
def folder(chef, tmp_path_factory):
    model, kitchen = chef
    return kl.serve.laminate(model, tmp_path_factory.mktemp("shelf") / "chef",
                             normalizer=kitchen.normalizer)


@pytest.fixture(scope="module")
def service(folder):
    return kl.serve.open_restaurant(folder, batch_sizes=(1, 4))


def order(**changes):
    base = {"flour": 250.0, "sugar": 120.0, "butter": 120.0, "eggs": 3.0, "milk": 100.0,
            "baking_powder": 5.0, "oven_temp": 180.0, "bake_time": 35.0}
    return base | changes


# ---------------------------------------------------------------- laminate / reopen
def test_folder_layout_and_manifest(folder, chef):
    model, kitchen = chef
    assert folder.is_absolute()
    names = {p.name for p in folder.iterdir()}
    assert names == {"manifest.json", "weights", "forward.jax_export"}
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format_version"] == kl.serve.FORMAT_VERSION
    assert [f["name"] for f in manifest["features"]] == list(kl.data.FEATURE_NAMES)
    assert [f["unit"] for f in manifest["features"]] == list(kl.data.FEATURE_UNITS.values())
    assert manifest["labels"] == list(kl.data.LABELS)
    assert manifest["normalizer"] == kitchen.normalizer.to_dict()
    assert manifest["weights"]["sha256"] == kl.serve.checksum(artifact.flat_params(model))
    assert {"jax", "flax", "orbax-checkpoint", "kitchenlab"} <= set(manifest["versions"])
    assert not any(f.stat().st_mode & 0o222 for f in folder.rglob("*") if f.is_file())
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_reloaded_service_is_bit_identical(service, chef):
    model, kitchen = chef
    x_raw = kitchen.raw.test.x
    expected = kl.evaluate.predict_logits(model, kitchen.normalizer(x_raw))
    plated = service.predict(x_raw)
    np.testing.assert_array_equal(plated.logits, expected)
    np.testing.assert_array_equal(plated.probs, kl.serve.softmax(expected))
    for b in (1, 4):  # the ahead-of-time compiled trays agree with the jit path too
        np.testing.assert_array_equal(
            service.predict(x_raw[:b]).logits,
            kl.evaluate.predict_logits(model, kitchen.normalizer(x_raw[:b])))


def test_fresh_process_is_bit_identical(folder, chef):
    model, kitchen = chef
    x_raw = kitchen.raw.test.x[:16]
    logits = kl.serve.predict_in_fresh_process(folder, x_raw)
    assert logits.tobytes() == kl.evaluate.predict_logits(model, kitchen.normalizer(x_raw)).tobytes()


def test_load_model_is_a_trainable_copy(folder, chef):
    model, kitchen = chef
    copy = kl.serve.load_model(folder)
    assert isinstance(copy, kl.models.MLP)
    x = kitchen.test.x
    np.testing.assert_array_equal(kl.evaluate.predict_logits(copy, x),
                                  kl.evaluate.predict_logits(model, x))


def test_exported_function_has_symbolic_batch(service):
    x_aval = service.exported.in_avals[-1]  # (params..., x): x comes last
    assert x_aval.shape[1] == 8
    assert not isinstance(x_aval.shape[0], int)  # a symbolic "b"
    for b in (1, 3, 17):  # one artifact, any tray size
        assert service.predict(np.tile(list(order().values()), (b, 1))).logits.shape == (b, 2)


# ---------------------------------------------------------------- the pipeline
def test_postprocess_plates_probabilities(service):
    plated = service.postprocess(np.array([[0.0, 2.0], [3.0, -1.0]], np.float32))
    np.testing.assert_allclose(plated.probs.sum(axis=1), 1.0, rtol=1e-6)
    assert plated.labels == ["good cake", "burnt"]
    np.testing.assert_allclose(plated.confidence, plated.probs.max(axis=1))


def test_orders_as_dicts_units_and_arrays_agree(service):
    raw = np.array([list(order().values())], np.float32)
    converted = order(flour=(0.25, "kg"), milk=(0.1, "l"), oven_temp=(356.0, "°F"),
                      bake_time=(35 / 60, "h"))
    np.testing.assert_allclose(service.measure(converted), raw, rtol=1e-6)
    assert service.serve(order())[0].label == service.serve(raw)[0].label
    assert service.predict([order(), order(sugar=200.0)]).logits.shape == (2, 2)


def test_verdict_flags_ingredients_never_seen(service):
    (verdict,) = service.serve(order(flour=900.0))
    assert any("flour" in n for n in verdict.notes) and "careful" in str(verdict)


@pytest.mark.parametrize("bad, error, words", [
    (order(salt=3.0), ValueError, ["unknown ingredient", "salt"]),
    (order(suger=3.0), ValueError, ["did you mean 'sugar'"]),
    ({k: v for k, v in order().items() if k != "eggs"}, ValueError, ["missing", "eggs"]),
    (order(flour=(2, "cups")), ValueError, ["flour", "'cups'", "kg"]),
    (order(flour="250g"), TypeError, ["flour", "number", "str"]),
    (order(eggs=True), TypeError, ["eggs", "bool"]),
    (order(milk=float("nan")), ValueError, ["milk", "finite"]),
    (order(oven_temp=(float("inf"), "°F")), ValueError, ["oven_temp", "finite"]),
    (np.zeros((2, 7)), ValueError, ["(B, 8)", "(2, 7)"]),
    (np.array([[np.nan] * 8]), ValueError, ["non-finite", "'flour'"]),
    ("flour=250", TypeError, ["orders must be"]),
])
def test_bad_orders_raise_clear_errors(service, bad, error, words):
    with pytest.raises(error) as info:
        service.serve(bad)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_service_is_read_only(service, chef):
    _, kitchen = chef
    with pytest.raises(TypeError, match="refuses to be trained"):
        service.fit(kitchen.train)
    with pytest.raises(AttributeError, match="read-only"):
        service.config = None
    with pytest.raises(ValueError):
        service.params["head.bias"][0] = 1.0  # read-only arrays
    for name in ("update", "train"):
        with pytest.raises(TypeError, match="refuses to be trained"):
            getattr(service, name)()
    with pytest.raises(TypeError, match="laminated Service: it refuses to be trained"):
        kl.train.fit(service, kitchen.train, kitchen.val, kl.config.TrainConfig.tiny())


def test_cost_analysis_counts_flops(service):
    cost = service.cost_analysis(4)
    c = service.config
    macs = 4 * (c.n_features * c.width + c.width * c.width * (c.depth - 1) + c.width * c.n_classes)
    assert cost["flops"] >= 2 * macs  # at least the matrix multiplications


# ---------------------------------------------------------------- writing safely
def test_force_semantics(chef, tmp_path):
    model, kitchen = chef
    target = kl.serve.laminate(model, tmp_path / "a", normalizer=kitchen.normalizer)
    before = (target / "manifest.json").read_bytes()
    with pytest.raises(FileExistsError, match="force=True"):
        kl.serve.laminate(model, target, normalizer=kitchen.normalizer)
    assert (target / "manifest.json").read_bytes() == before
    kl.serve.laminate(model, target, normalizer=kitchen.normalizer, force=True, note="v2")
    assert json.loads((target / "manifest.json").read_text())["note"] == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # no temp/old siblings left
    precious = tmp_path / "holiday_photos"
    precious.mkdir()
    (precious / "beach.jpg").write_bytes(b"...")
    with pytest.raises(ValueError, match="not a laminated model"):
        kl.serve.laminate(model, precious, normalizer=kitchen.normalizer, force=True)
    assert (precious / "beach.jpg").exists()


def test_relative_path_is_made_absolute(chef, tmp_path, monkeypatch):
    model, kitchen = chef
    monkeypatch.chdir(tmp_path)
    assert kl.serve.laminate(model, "rel", normalizer=kitchen.normalizer) == tmp_path / "rel"


def test_failed_write_leaves_nothing(chef, tmp_path, monkeypatch):
    model, kitchen = chef

    def boom(*args, **kwargs):
        raise RuntimeError("power cut while writing the manifest")

    monkeypatch.setattr(artifact, "library_versions", boom)
    with pytest.raises(RuntimeError, match="power cut"):
        kl.serve.laminate(model, tmp_path / "chef", normalizer=kitchen.normalizer)
    assert list(tmp_path.iterdir()) == []


def test_laminate_rejects_bad_arguments(chef, tmp_path):
    model, kitchen = chef
    with pytest.raises(TypeError, match="normalizer"):
        kl.serve.laminate(model, tmp_path / "x", normalizer={"mean": 0})
    with pytest.raises(TypeError, match="model"):
        kl.serve.laminate("chef", tmp_path / "x", normalizer=kitchen.normalizer)
    with pytest.raises(TypeError, match="folder"):
        kl.serve.laminate(model, 42, normalizer=kitchen.normalizer)
    with pytest.raises(ValueError, match="labels"):
        kl.serve.laminate(model, tmp_path / "x", normalizer=kitchen.normalizer, labels=["a"])


# ---------------------------------------------------------------- damaged folders
def _copy(folder: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(folder, dst)
    for p in dst.rglob("*"):
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    return dst


def _biggest_weight_file(folder: Path) -> Path:
    return max((p for p in (folder / "weights").rglob("*") if p.is_file()),
               key=lambda p: p.stat().st_size)


def test_not_a_laminated_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        kl.serve.open_restaurant(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="not a laminated model"):
        kl.serve.open_restaurant(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "something-else"}')
    with pytest.raises(ValueError, match="not a laminated model"):
        kl.serve.open_restaurant(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        kl.serve.open_restaurant(tmp_path)


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty"])
def test_corrupted_weights_are_refused(folder, tmp_path, damage):
    bad = _copy(folder, tmp_path / "bad")
    target = _biggest_weight_file(bad)
    data = bytearray(target.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    elif damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data = bytearray()
    target.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupted|checksum"):
        kl.serve.open_restaurant(bad)


def test_corrupted_export_is_refused(folder, tmp_path):
    bad = _copy(folder, tmp_path / "bad")
    path = bad / "forward.jax_export"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="forward.jax_export"):
        kl.serve.open_restaurant(bad)


@pytest.mark.parametrize("edit, words", [
    (lambda m: m.update(format_version=99), ["format_version is 99", "upgrade kitchenlab"]),
    (lambda m: m.update(format_version=0), ["format_version must be an int from 1", "got 0"]),
    (lambda m: m.update(format_version="2"), ["format_version must be an int", "'2'"]),
    (lambda m: m["model"]["config"].update(width=64), ["weight shapes", "width=64"]),
    (lambda m: m["model"]["config"].update(depth=-1), ["valid MLPConfig", "depth"]),
    (lambda m: m["model"]["config"].update(colour="red"), ["valid MLPConfig", "colour"]),
    (lambda m: m.update(labels=["burnt"]), ["labels", "1 entries"]),
    (lambda m: m["normalizer"].update(mean=[0.0]), ["normalizer mean"]),
    (lambda m: m.pop("weights"), ["lacks", "weights"]),
])
def test_incompatible_manifest_is_refused(folder, tmp_path, edit, words):
    bad = _copy(folder, tmp_path / "bad")
    manifest = json.loads((bad / "manifest.json").read_text())
    edit(manifest)
    (bad / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError) as info:
        kl.serve.open_restaurant(bad)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_export_runs_on_cpu_and_cuda_and_other_backends_are_refused(folder, monkeypatch):
    manifest = kl.serve.read_manifest(folder)
    assert manifest["export"]["platforms"] == ["cpu", "cuda"]
    assert artifact.backend_platform() == "cpu"
    monkeypatch.setattr(artifact, "backend_platform", lambda: "rocm")
    with pytest.raises(ValueError, match=r"exported for platforms \['cpu', 'cuda'\], but this "
                                         r"process runs JAX on 'rocm'.*JAX_PLATFORMS=cpu"):
        kl.serve.open_restaurant(folder)


def test_an_older_format_version_still_opens(folder, chef, tmp_path):
    """Version 1 folders (CPU-only export, no fsync) read exactly like version 2."""
    model, kitchen = chef
    old = _copy(folder, tmp_path / "v1")
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["format_version"] = 1
    (old / "manifest.json").write_text(json.dumps(manifest))
    x = kitchen.raw.test.x[:5]
    np.testing.assert_array_equal(kl.serve.open_restaurant(old).predict(x).logits,
                                  kl.serve.open_restaurant(folder).predict(x).logits)


def test_forward_refuses_empty_and_non_finite_trays(service):
    with pytest.raises(ValueError, match=r"x is empty: shape \(0, 8\); need at least one order"):
        service.forward(np.zeros((0, 8), np.float32))
    x = np.zeros((3, 8), np.float32)
    x[2, 5] = np.inf
    with pytest.raises(ValueError, match="non-finite .* first at order 2, column 5: inf"):
        service.forward(x)
    with pytest.raises(ValueError, match=r"x must have shape \(N, F\), got shape \(8,\)"):
        service.forward(np.zeros(8, np.float32))
    with pytest.raises(ValueError, match="x has 7 features per order, but the model expects 8"):
        service.forward(np.zeros((2, 7), np.float32))


def test_odd_trays_are_padded_to_a_bounded_set_of_programs(folder, chef):
    """Every tray size from 1 to 40, and 2500 orders at once: at most 11 compiled programs
    (powers of two up to 1024), and the same logits as one order at a time."""
    model, kitchen = chef
    svc = kl.serve.open_restaurant(folder, batch_sizes=(), warm=False)
    x = np.tile(kitchen.test.x, (30, 1))[:2500]
    expected = kl.evaluate.predict_logits(model, x)
    for b in range(1, 41):
        np.testing.assert_allclose(svc.forward(x[:b]), expected[:b], rtol=1e-6, atol=1e-6)
    assert svc.compiled_batch_sizes == (1, 2, 4, 8, 16, 32, 64)
    np.testing.assert_allclose(svc.forward(x), expected, rtol=1e-6, atol=1e-6)
    assert max(svc.compiled_batch_sizes) == 1024 and len(svc.compiled_batch_sizes) <= 11
    assert [kl.serve.service.tray_size(n) for n in (1, 3, 5, 64, 65, 1000, 5000)] == \
        [1, 4, 8, 64, 128, 1024, 1024]


# ---------------------------------------------------------------- a laminate killed midway
_KILL_CHILD = """
import os, signal, sys
import kitchenlab as kl
from kitchenlab.serve import artifact

step, folder = sys.argv[1], sys.argv[2]
artifact._reached = lambda s: os.kill(os.getpid(), signal.SIGKILL) if s == step else None
kitchen = kl.data.kitchen(200, seed=0)
model = kl.models.make_mlp(kl.config.MLPConfig.tiny(), seed=1)  # a different chef
kl.serve.laminate(model, folder, normalizer=kitchen.normalizer, force=True)
print("finished")
"""


@pytest.mark.parametrize("step", ["weights", "export", "manifest", "swapped", None])
def test_a_killed_laminate_leaves_the_old_model_or_the_new_one(chef, tmp_path, step):
    """A real interruption: the laminating process is killed (SIGKILL, no clean-up runs)
    right after one of its steps. The folder then holds the complete old model (killed
    before the swap) or the complete new one (after it), never neither."""
    import signal
    import subprocess
    import sys

    model, kitchen = chef
    folder = kl.serve.laminate(model, tmp_path / "chef", normalizer=kitchen.normalizer)
    old = kl.serve.read_manifest(folder)["weights"]["sha256"]
    new_model = kl.models.make_mlp(kl.config.MLPConfig.tiny(), seed=1)
    new = kl.serve.checksum(artifact.flat_params(new_model))
    assert new != old
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", _KILL_CHILD, str(step), str(folder)],
                          capture_output=True, text=True, timeout=300, env=env)
    if step is None:
        assert proc.returncode == 0 and "finished" in proc.stdout, proc.stderr[-2000:]
    else:
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    manifest = kl.serve.read_manifest(folder)
    params = artifact.load_params(folder, manifest)  # complete: every checksum holds
    expected = old if step in ("weights", "export", "manifest") else new
    assert manifest["weights"]["sha256"] == kl.serve.checksum(params) == expected
    kl.serve.open_restaurant(folder).predict(kitchen.raw.test.x[:3])
