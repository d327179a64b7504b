"""Fixtures for the browser tests: Chromium, one JupyterLab server per session, one page per test.

Chromium is Debian's (``/usr/bin/chromium``, or ``$KITCHENLAB_CHROMIUM``); Playwright's own
browser downloads are not used. Without Chromium the tests are skipped locally and fail
when ``$CI`` is set. Screenshots, the server log and the latency table go to
``test-output/browser/`` at the repository root.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

import labdriver

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "test-output" / "browser"
INSTALL_HINT = "install Chromium: apt-get install -y chromium"

# The fixture notebooks are opened in the browser, not run by nbval.
collect_ignore_glob = ["fixtures/*"]

_REPORTS: list[labdriver.SliderReport] = []
_USED_OUT: list[Path] = []


def _chromium() -> str | None:
    override = os.environ.get("KITCHENLAB_CHROMIUM")  # when set, the only candidate
    candidates = [override] if override else ["/usr/bin/chromium", shutil.which("chromium"),
                                              shutil.which("chromium-browser")]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _missing(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} and CI is set: the browser tests must run in CI ({INSTALL_HINT})",
                    pytrace=False)
    pytest.skip(f"{reason}; {INSTALL_HINT}")


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = _chromium()
    if path is None:
        _missing(f"Chromium not found at {os.environ.get('KITCHENLAB_CHROMIUM') or '/usr/bin/chromium'}")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("the playwright Python package is missing (pip install -e '.[test]')")
    return path


@pytest.fixture(scope="session")
def out_dir() -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in [*OUT.glob("*.png"), *OUT.glob("*-console.log")]:
        old.unlink()
    _USED_OUT.append(OUT)
    return OUT


@pytest.fixture(scope="session")
def lab_server(chromium_path, out_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("lab")
    root = labdriver.copy_tree_for_server(REPO, work / "root")
    server = labdriver.LabServer(root, work / "jupyter", out_dir / "jupyterlab-server.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()  # REST shutdown, then kill the process group and every kernel left


@pytest.fixture(scope="session")
def browser_context(chromium_path, lab_server):
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="kl-chromium-")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=chromium_path, headless=True,
            viewport={"width": 1280, "height": 1000},
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"])
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def lab_page(browser_context, lab_server, out_dir, request):
    """A fresh tab; afterwards the tab is closed and every kernel shut down (also on failure)."""
    page = browser_context.new_page()
    page.set_default_timeout(30_000)
    log = (out_dir / f"{request.node.name}-console.log").open("w")
    page.on("console", lambda m: log.write(f"{m.type}: {m.text}\n"))
    page.on("pageerror", lambda e: log.write(f"pageerror: {e}\n"))
    try:
        yield page
    finally:
        page.close()
        log.close()
        lab_server.shutdown_kernels()


@pytest.fixture
def record_report():
    return _REPORTS.append


def pytest_terminal_summary(terminalreporter):
    if not _USED_OUT:
        return
    tr = terminalreporter
    tr.section("browser: key press -> new plot")
    for r in _REPORTS:
        lat = ", ".join(f"{x:.3f}" for x in r.latencies_s)
        tr.write_line(f"{r.case:<28} run-all {r.run_all_s:5.1f} s   median {r.median_s:.3f} s  "
                      f"({len(r.latencies_s)} presses: {lat})")
    tr.write_line(f"screenshots and server log: {OUT}")
