"""environment.yml (Binder) and pyproject.toml must name the same packages, pinned consistently."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps = {}
    for spec in data["project"]["dependencies"]:
        m = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", spec)
        deps[_norm(m.group(1))] = m.group(2).replace(" ", "")
    return data, deps


def _env_pins():
    text = (ROOT / "environment.yml").read_text()
    pins, conda = {}, []
    in_pip = False
    for line in text.splitlines():
        stripped = line.split("#")[0].rstrip()
        if re.match(r"^\s*-\s*pip:\s*$", stripped):
            in_pip = True
            continue
        m = re.match(r"^\s+-\s+(\S+)$", stripped)
        if not m:
            continue
        item = m.group(1)
        if in_pip and line.startswith("      "):
            name, _, version = item.partition("==")
            assert version, f"environment.yml pip entry {item!r} must be pinned with =="
            pins[_norm(name)] = version
        else:
            conda.append(item)
    return pins, conda


def _version_tuple(v: str):
    return tuple(int(p) for p in re.findall(r"\d+", v)[:3])


def _satisfies(version: str, spec: str) -> bool:
    for clause in filter(None, spec.split(",")):
        op, bound = re.match(r"(>=|<=|==|<|>|!=)(.+)", clause).groups()
        a, b = _version_tuple(version), _version_tuple(bound)
        ok = {">=": a >= b, "<=": a <= b, "==": a == b, "<": a < b, ">": a > b, "!=": a != b}[op]
        if not ok:
            return False
    return True


def test_every_dependency_is_pinned_in_environment_yml_and_vice_versa():
    _, deps = _pyproject()
    pins, _ = _env_pins()
    assert set(deps) == set(pins), (
        f"only in pyproject.toml: {sorted(set(deps) - set(pins))}; "
        f"only in environment.yml: {sorted(set(pins) - set(deps))}")


def test_pins_satisfy_the_ranges():
    _, deps = _pyproject()
    pins, _ = _env_pins()
    for name, spec in deps.items():
        assert _satisfies(pins[name], spec), f"{name}=={pins[name]} is outside {spec!r}"


def test_python_and_binder_layout():
    data, _ = _pyproject()
    pins, conda = _env_pins()
    assert "python=3.11" in conda and "pip" in conda
    assert data["project"]["requires-python"] == ">=3.11"
    text = (ROOT / "environment.yml").read_text()
    assert not re.search(r"^\s+-\s+(-e\s+)?\.\s*$", text, re.M), "no '.'/-e . line: it defeats Binder's cache"
    post = (ROOT / "postBuild").read_text()
    assert "--no-deps" in post


def test_installed_versions_match_the_pins():
    from importlib.metadata import PackageNotFoundError, version

    pins, _ = _env_pins()
    for name, pinned in pins.items():
        try:
            assert version(name) == pinned, f"{name}: installed {version(name)}, pinned {pinned}"
        except PackageNotFoundError:
            raise AssertionError(f"{name} is pinned in environment.yml but not installed")


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"^make test$", ci, re.M)
    assert "make test" in readme and "make lab" in readme
