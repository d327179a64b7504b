"""kl.serve.Registry: versions, lineage, atomic aliases, write-ahead history; a promote or a
publish killed between its steps; bad input refused with nothing lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import kitchenlab as kl
from kitchenlab.serve import artifact


@pytest.fixture(scope="module")
def chefs():
    """Two different small chefs and their kitchen."""
    kitchen = kl.data.kitchen(200, seed=0)
    a = kl.models.make_mlp(kl.config.MLPConfig.tiny(), seed=0)
    b = kl.models.make_mlp(kl.config.MLPConfig.tiny(), seed=1)
    return a, b, kitchen


@pytest.fixture
def menu(chefs, tmp_path):
    """A menu with v1 (current) and v2 (published, not promoted)."""
    a, b, kitchen = chefs
    reg = kl.serve.Registry(tmp_path / "menu")
    reg.publish(a, normalizer=kitchen.normalizer, data={"train": "kitchen(200)"})
    reg.promote("v1", reason="opening night", by="test")
    reg.publish(b, normalizer=kitchen.normalizer, parent="v1", data={"reviews": 40})
    return reg


def _snapshot(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _checksum(reg, name):
    return artifact.read_manifest(reg.path(name))["weights"]["sha256"]


# ---------------------------------------------------------------- the happy path
def test_publish_versions_lineage_and_layout(menu, chefs):
    a, b, kitchen = chefs
    assert menu.versions() == ["v1", "v2"]
    assert menu.current == "v1" and menu.previous is None
    lineage = menu.lineage("v2")
    assert lineage["version"] == "v2" and lineage["parent"] == "v1"
    assert lineage["data"] == {"reviews": 40}
    assert menu.lineage("v1")["parent"] is None
    assert _checksum(menu, "v2") == kl.serve.checksum(artifact.flat_params(b))
    files = [p for p in menu.path("v2").rglob("*") if p.is_file()]
    assert files and not any(p.stat().st_mode & 0o222 for p in files)  # still laminated
    assert sorted(p.name for p in menu.root.iterdir()) == ["aliases.json", "history.jsonl",
                                                            "v1", "v2"]  # no staging left
    np.testing.assert_array_equal(  # a complete, servable version
        menu.open("v2").predict(kitchen.raw.test.x[:4]).logits,
        kl.evaluate.predict_logits(b, kitchen.normalizer(kitchen.raw.test.x[:4])))


def test_promote_rollback_history(menu):
    menu.promote("v2", reason="night shift", by="night")
    assert (menu.current, menu.previous) == ("v2", "v1")
    assert menu.rollback(reason="worse on old guests", by="maitre d") == "v1"
    assert (menu.current, menu.previous) == ("v1", "v2")
    menu.promote("v2", reason="second try", by="night")
    hist = menu.history()
    assert [(h["seq"], h["event"], h["version"], h["replaced"], h["status"]) for h in hist] == [
        (1, "promote", "v1", None, "done"), (2, "promote", "v2", "v1", "done"),
        (3, "rollback", "v1", "v2", "done"), (4, "promote", "v2", "v1", "done")]
    assert hist[2]["reason"] == "worse on old guests" and hist[2]["by"] == "maitre d"
    assert all("time" in h for h in hist)
    assert menu.rollback(to="v1", reason="explicit target") == "v1"


def test_a_running_service_keeps_its_version_until_reopened(menu, chefs):
    _, _, kitchen = chefs
    x = kitchen.raw.test.x[:16]
    running = menu.open("current")
    before = running.predict(x).logits
    menu.promote("v2", reason="night shift")
    np.testing.assert_array_equal(running.predict(x).logits, before)
    assert Path(running.folder).name == "v1"
    reopened = menu.open("current")
    assert Path(reopened.folder).name == "v2"
    assert not np.array_equal(reopened.predict(x).logits, before)


# ---------------------------------------------------------------- bad input, nothing lost
def test_publishing_over_an_existing_version_is_refused(menu, chefs):
    a, _, kitchen = chefs
    before = _snapshot(menu.root)
    with pytest.raises(FileExistsError, match=r"version folder '.*v2' already exists"):
        menu.publish(a, normalizer=kitchen.normalizer, version="v2")
    with pytest.raises(ValueError, match=r"version 'v7' does not exist .* \['v1', 'v2'\]"):
        menu.publish(a, normalizer=kitchen.normalizer, parent="v7")
    with pytest.raises(ValueError, match=r"version must be a name like 'v3', got 'latest'"):
        menu.publish(a, normalizer=kitchen.normalizer, version="latest")
    with pytest.raises(TypeError, match=r"data must be a dict"):
        menu.publish(a, normalizer=kitchen.normalizer, data="reviews")
    with pytest.raises(TypeError, match=r"normalizer must be a kl.data.Normalizer"):
        menu.publish(a, normalizer=None)
    assert _snapshot(menu.root) == before  # the refused publishes left nothing behind


def test_bad_moves_are_refused(menu):
    before = _snapshot(menu.root)
    with pytest.raises(ValueError, match=r"version 'v9' does not exist .*versions: \['v1', 'v2'\]"):
        menu.rollback(to="v9", reason="typo")
    with pytest.raises(ValueError, match=r"nothing to roll back to: no previous version"):
        menu.rollback(reason="nothing before v1")
    with pytest.raises(ValueError, match=r"'v1' is already current"):
        menu.promote("v1", reason="again")
    with pytest.raises(ValueError, match=r"reason must say why"):
        menu.promote("v2", reason=" ")
    with pytest.raises(ValueError, match=r"name must be a version like 'v1' or an alias"):
        menu.promote("best", reason="x")
    with pytest.raises(TypeError, match=r"name must be a version"):
        menu.resolve(2)
    assert _snapshot(menu.root) == before
    assert menu.current == "v1"


def test_an_incomplete_version_is_never_listed_or_promoted(menu, chefs):
    (menu.root / "v3").mkdir()  # e.g. a publish killed right after reserving the name
    assert menu.versions() == ["v1", "v2"]
    with pytest.raises(ValueError, match=r"version 'v3' does not exist"):
        menu.promote("v3", reason="half a book")
    a, _, kitchen = chefs
    assert menu.publish(a, normalizer=kitchen.normalizer) == "v4"  # v3's number stays taken


def test_a_torn_log_line_is_skipped_and_never_swallows_the_next(menu):
    with open(menu.root / "history.jsonl", "a") as f:
        f.write('{"seq": 2, "event": "prom')  # a crash in the middle of a write
    menu.promote("v2", reason="after the crash")
    hist = menu.history()
    assert [(h["seq"], h["version"], h["status"]) for h in hist] == [(1, "v1", "done"),
                                                                      (2, "v2", "done")]


def test_registry_root_must_be_a_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"root must be a folder, got a file"):
        kl.serve.Registry(tmp_path / "file")
    with pytest.raises(FileNotFoundError, match=r"registry .* does not exist"):
        kl.serve.Registry(tmp_path / "nowhere", create=False)
    with pytest.raises(ValueError, match=r"alias 'current' points to no version yet"):
        kl.serve.Registry(tmp_path / "empty").open("current")


# ---------------------------------------------------------------- killed between its steps
_KILL_PROMOTE = """
import os, signal, sys
import kitchenlab as kl
from kitchenlab.serve import registry

step, root = sys.argv[1], sys.argv[2]
registry._reached = lambda s: os.kill(os.getpid(), signal.SIGKILL) if s == step else None
kl.serve.Registry(root).promote("v2", reason="night shift", by="child")
print("finished")
"""


@pytest.mark.parametrize("step", ["logged", "written", "swapped", None])
def test_a_killed_promote_leaves_current_at_a_complete_version(menu, step):
    """A real interruption: the promoting process is killed (SIGKILL: no clean-up, no
    finally) right after one of its steps. ``current`` then points at the complete old
    version (killed before the swap) or the complete new one (after it); the history
    reports an interrupted promote as interrupted; the next promote works."""
    old, new = _checksum(menu, "v1"), _checksum(menu, "v2")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", _KILL_PROMOTE, str(step), str(menu.root)],
                          capture_output=True, text=True, timeout=300, env=env)
    if step is None:
        assert proc.returncode == 0 and "finished" in proc.stdout, proc.stderr[-2000:]
    else:
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    reg = kl.serve.Registry(menu.root)
    folder = reg.path("current")
    manifest = artifact.read_manifest(folder)
    params = artifact.load_params(folder, manifest)  # complete: every checksum holds
    expected = old if step in ("logged", "written") else new
    assert manifest["weights"]["sha256"] == kl.serve.checksum(params) == expected
    reg.open("current").predict(np.zeros((2, 8), np.float32) + 100)
    last = reg.history()[-1]
    assert (last["version"], last["status"]) == (
        "v2", "interrupted" if step in ("logged", "written") else "done")
    assert not [p for p in reg.root.iterdir() if p.name.endswith(".tmp")] or step == "written"
    if reg.current == "v1":  # the interrupted promote can simply be done again
        reg.promote("v2", reason="again")
        statuses = [(h["seq"], h["status"]) for h in reg.history()]
        assert statuses == [(1, "done"), (2, "interrupted"), (2, "done")]


_KILL_PUBLISH = """
import os, signal, sys
import kitchenlab as kl
from kitchenlab.serve import registry

step, root = sys.argv[1], sys.argv[2]
registry._reached = lambda s: os.kill(os.getpid(), signal.SIGKILL) if s == step else None
kitchen = kl.data.kitchen(200, seed=0)
model = kl.models.make_mlp(kl.config.MLPConfig.tiny(), seed=2)
print(kl.serve.Registry(root).publish(model, normalizer=kitchen.normalizer, parent="v1"))
"""


@pytest.mark.parametrize("step", ["staged", "published"])
def test_a_killed_publish_leaves_no_half_version(menu, step):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", _KILL_PUBLISH, step, str(menu.root)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    reg = kl.serve.Registry(menu.root)
    if step == "staged":  # killed before the rename: v3 is reserved, empty, never listed
        assert reg.versions() == ["v1", "v2"] and not any((reg.root / "v3").iterdir())
    else:
        assert reg.versions() == ["v1", "v2", "v3"]
        artifact.load_params(reg.path("v3"))
        assert reg.lineage("v3")["parent"] == "v1"
    assert reg.current == "v1"
