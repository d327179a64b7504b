"""Every notebook follows the course conventions (DESIGN.md, "Notebook conventions")."""

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _load(path):
    return json.loads(path.read_text())


def _source(cell):
    return "".join(cell["source"])


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_conventions(path):
    nb = _load(path)
    cells = nb["cells"]
    first = cells[0]
    assert first["cell_type"] == "markdown" and _source(first).startswith("# "), "opens with a title"
    intro = " ".join(_source(c) for c in cells[:3] if c["cell_type"] == "markdown").lower()
    assert "run time" in intro or "runs in" in intro, "the opening says the run time"
    code = [c for c in cells if c["cell_type"] == "code"]
    assert "kl.setup(" in _source(code[0]), "first code cell calls kl.setup(...)"
    text = "\n".join(_source(c) for c in code)
    assert "from kitchenlab import *" not in text
    assert "import kitchenlab as kl" in text
    assert any("your turn" in _source(c).lower() for c in cells if c["cell_type"] == "markdown")
    assert "kl.checks.check_" in text, "exercises are checked by kitchenlab.checks"
    solutions = [c for c in code if c["metadata"].get("jupyter", {}).get("source_hidden")]
    assert solutions, "worked solutions sit in collapsed cells"
    for c in solutions:  # the answer must not show above the learner's attempt
        assert c["metadata"]["jupyter"].get("outputs_hidden"), \
            f"solution outputs must be collapsed too: {_source(c)[:60]!r}"
    md = "\n".join(_source(c) for c in cells if c["cell_type"] == "markdown")
    assert re.search(r"^#+ .*recap", md, re.I | re.M), "ends with a recap section"
    assert re.search(r"^#+ .*further reading", md, re.I | re.M), "and further reading"
    assert re.search(r"predict,? then run", md, re.I), "one 'predict, then run' question"


def test_stated_run_times_equal_the_readme_table():
    """The "**Run time:** about N s" of every notebook is the README's measured seconds."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from sync_run_times import readme_times, stated_seconds

    table = readme_times((Path(__file__).resolve().parents[1] / "README.md").read_text())
    for path in NOTEBOOKS:
        assert path.stem in table, f"{path.stem} is missing from the README's notebook table"
        stated = stated_seconds(path)
        assert stated == round(table[path.stem][0]), (
            f"{path.stem} says about {stated} s, the README measured {table[path.stem][0]} s: "
            "run tools/sync_run_times.py after make test")
        first = "".join(_load(path)["cells"][0]["source"])
        assert "one CPU core" in first, f"{path.stem}: say the run time is for one CPU core"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_as_a_fresh_run(path):
    code = [c for c in _load(path)["cells"] if c["cell_type"] == "code" and _source(c).strip()]
    counts = [c["execution_count"] for c in code]
    assert counts == list(range(1, len(code) + 1)), "stored outputs come from one top-to-bottom run"
    for c in code:
        for out in c["outputs"]:
            assert out["output_type"] != "error", f"error output in: {_source(c)[:60]!r}"
            if out["output_type"] == "stream":
                assert out["name"] != "stderr", f"stderr output in: {_source(c)[:60]!r}: {''.join(out['text'])[:200]}"
        src = _source(c)
        tags = c["metadata"].get("tags", [])
        if re.search(r"\.widget\b|(?<!message)_panel\(|display\(.*panel", src) and not src.lstrip().startswith("#"):
            assert "nbval-ignore-output" in tags, f"widget cell needs nbval-ignore-output: {src[:60]!r}"
