"""Drive kitchenlab panels in JupyterLab in headless Chromium, as a learner would.

Two pieces, used by ``conftest.py`` and the tests:

* ``LabServer``: a JupyterLab server on 127.0.0.1 (random free port, random token) with its
  own settings, workspace, runtime, config and data folders, serving a temporary copy of the
  notebooks; ``stop()`` shuts it down over the REST API, then kills whatever is left of it
  and of its kernels (kernels run in their own process groups, so killing the server's
  group alone would leave them behind).
* ``check_slider(page, server, case, out_dir)``: opens ``case.notebook``, runs all cells
  from the Run menu, waits for the kernel to be idle, then presses keys on one slider's
  handle and checks, after every press, that the plot image changed, the readout shows the
  expected text and no error appeared; returns the key-press-to-new-image latencies.

A case is data (``SliderCase``), so one test per notebook is one entry in a list.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

# --------------------------------------------------------------------------------------
# Cases (data)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Move:
    """Keys pressed one at a time on the slider handle; afterwards the readout matches ``expect``.

    ``expect`` is a regular expression searched in the readout's text (HTML tags removed).
    Keys are noUiSlider's: ArrowLeft/ArrowRight (one step), PageDown/PageUp (5 steps),
    Home/End (minimum/maximum).
    """

    keys: tuple[str, ...]
    expect: str
    name: str = ""


@dataclass(frozen=True)
class Rapid:
    """``count`` presses of ``key`` in quick succession (after ``start`` keys, paced).

    The plot must end as the final value's plot: same readout (``expect``) and the same
    image bytes as when the final value is reached slowly.
    """

    key: str
    count: int
    expect: str
    start: tuple[str, ...] = ("Home",)
    back: str = "ArrowLeft"  # one step away and back again gives the slow reference image


@dataclass(frozen=True)
class SliderCase:
    """One notebook's browser check: which slider to move, how, and what the readout says."""

    id: str
    notebook: str          # path relative to the server's root folder
    slider: str            # text in the slider's description label
    moves: tuple[Move, ...]
    rapid: Rapid | None = None
    run_all_timeout_s: float = 180.0   # kernel start + every cell (a notebook takes <= 45 s)
    # Median key press -> new image. The 0.3 s goal lives in benchmarks/; this guards against
    # regressions with margin. $KITCHENLAB_BROWSER_MAX_LATENCY_S loosens it on a loaded machine.
    latency_limit_s: float = field(default_factory=lambda: float(
        os.environ.get("KITCHENLAB_BROWSER_MAX_LATENCY_S", 1.0)))
    image_timeout_s: float = 20.0      # one press (the first may compile)


@dataclass
class SliderReport:
    case: str
    latencies_s: list[float] = field(default_factory=list)
    screenshots: list[str] = field(default_factory=list)
    run_all_s: float = 0.0

    @property
    def median_s(self) -> float:
        return statistics.median(self.latencies_s) if self.latencies_s else float("nan")


# --------------------------------------------------------------------------------------
# The JupyterLab server
# --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LAB_SETTINGS = {
    # No news toast, no update check, no toasts at all: nothing may cover the notebook.
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True},
}


class LabServer:
    def __init__(self, root: Path, work: Path, log_path: Path):
        self.root, self.work, self.log_path = Path(root), Path(work), Path(log_path)
        self.port = free_port()
        self.token = base64.urlsafe_b64encode(os.urandom(18)).decode()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self._log = None
        self._known: dict[int, psutil.Process] = {}

    # -- start ------------------------------------------------------------------------
    def start(self, timeout_s: float = 90.0) -> "LabServer":
        dirs = {name: self.work / name for name in
                ("settings", "workspaces", "runtime", "config", "data", "ipython")}
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        for rel, value in LAB_SETTINGS.items():
            path = dirs["settings"] / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value))
        env = dict(os.environ,
                   JUPYTER_CONFIG_DIR=str(dirs["config"]), JUPYTER_DATA_DIR=str(dirs["data"]),
                   JUPYTER_RUNTIME_DIR=str(dirs["runtime"]), IPYTHONDIR=str(dirs["ipython"]),
                   JUPYTER_PLATFORM_DIRS="1", PYTHONUNBUFFERED="1")
        cmd = [sys.executable, "-m", "jupyterlab",
               f"--port={self.port}", "--port-retries=0",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.token={self.token}",
               "--ServerApp.open_browser=False", "--ServerApp.password=",
               f"--ServerApp.root_dir={self.root}",
               f"--ServerApp.runtime_dir={dirs['runtime']}",
               f"--LabApp.user_settings_dir={dirs['settings']}",
               f"--LabApp.workspaces_dir={dirs['workspaces']}",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.expose_app_in_browser=True",   # window.jupyterapp: kernel status
               "--ServerApp.shutdown_no_activity_timeout=1800",  # a last-resort reaper
               "--MappingKernelManager.cull_idle_timeout=0"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.api("GET", "/api/status")
                return self
            except OSError:
                time.sleep(0.3)
        raise TimeoutError(f"JupyterLab did not answer within {timeout_s:.0f} s:\n{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def api(self, method: str, path: str, body=None, timeout: float = 10.0):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    def lab_url(self, notebook: str) -> str:
        return f"{self.url}/lab/tree/{notebook}?token={self.token}&reset"

    def _remember_children(self):
        """Keep handles on the server's descendants (kernels) so stop() can reap them."""
        if self.proc is None:
            return
        try:
            for p in psutil.Process(self.proc.pid).children(recursive=True):
                self._known.setdefault(p.pid, p)
        except psutil.Error:
            pass

    # -- kernels ----------------------------------------------------------------------
    def shutdown_kernels(self):
        """Delete every session and kernel (one notebook's kernel must not outlive its test)."""
        self._remember_children()
        try:
            for s in self.api("GET", "/api/sessions"):
                self.api("DELETE", f"/api/sessions/{s['id']}", timeout=30)
            for k in self.api("GET", "/api/kernels"):
                self.api("DELETE", f"/api/kernels/{k['id']}", timeout=30)
        except OSError:
            pass

    # -- stop -------------------------------------------------------------------------
    def stop(self):
        if self.proc is None:
            return
        self._remember_children()
        if self.proc.poll() is None:
            try:
                self.api("POST", "/api/shutdown", timeout=10)  # also shuts the kernels down
                self.proc.wait(timeout=20)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.wait(timeout=10)
        leftovers = [p for p in self._known.values() if p.is_running()]
        for p in leftovers:  # kernels in their own process groups
            try:
                os.killpg(p.pid, signal.SIGKILL) if os.getpgid(p.pid) == p.pid else p.kill()
            except (OSError, psutil.Error):
                pass
        psutil.wait_procs(leftovers, timeout=10)
        if self._log:
            self._log.close()
        self.proc = None


def copy_tree_for_server(repo: Path, dest: Path) -> Path:
    """A disposable copy of notebooks/ (and the browser fixtures) for the server to open."""
    src = repo / "notebooks"
    if src.is_dir():
        shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    else:
        dest.mkdir(parents=True)
    shutil.copytree(Path(__file__).parent / "fixtures", dest / "_browser_fixtures")
    return dest


# --------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------

_JS_NOTEBOOK_STATE = """
() => {
  const app = window.jupyterapp;
  if (!app || !app.shell) return {ready: false, why: 'no app yet'};
  const w = app.shell.currentWidget;
  if (!w || !w.content || !w.sessionContext) return {ready: false, why: 'no notebook yet'};
  const kernel = w.sessionContext.session && w.sessionContext.session.kernel;
  const cells = w.content.widgets.filter(c => c.model.type === 'code'
                                          && c.model.sharedModel.getSource().trim() !== '');
  let pending = 0, errors = [];
  for (const c of cells) {
    if (c.model.executionCount === null) pending += 1;
    for (const o of c.model.outputs.toJSON()) {
      if (o.output_type === 'error') {
        const first = c.model.sharedModel.getSource().split(String.fromCharCode(10))[0].slice(0, 80);
        errors.push('cell ' + w.content.widgets.indexOf(c) + ' (' + first + '): '
                    + o.ename + ': ' + o.evalue);
      }
    }
  }
  return {ready: true, status: kernel ? kernel.status : 'no kernel', pending, errors,
          n: cells.length};
}
"""

_JS_INSTRUMENT = """
(img) => {
  // Page-clock timestamps of every key press and every new image, for latencies.
  if (window.__kl) { window.__kl.keys = []; window.__kl.images = []; return; }
  window.__kl = {keys: [], images: []};
  document.addEventListener('keydown', e => window.__kl.keys.push(performance.now()), true);
  new MutationObserver(() => window.__kl.images.push(performance.now()))
      .observe(img, {attributes: true, attributeFilter: ['src']});
}
"""

_JS_IMAGE_BYTES = """
async (img) => {
  const buf = await (await fetch(img.src)).arrayBuffer();
  let s = ''; const b = new Uint8Array(buf);
  for (let i = 0; i < b.length; i += 8192) s += String.fromCharCode.apply(null, b.subarray(i, i + 8192));
  return btoa(s);
}
"""


class PanelCheckError(AssertionError):
    pass


class NotebookPage:
    """One open notebook in JupyterLab and one panel's slider inside it."""

    def __init__(self, page, server: LabServer, case: SliderCase, out_dir: Path,
                 report: SliderReport):
        self.page, self.server, self.case, self.out, self.report = page, server, case, out_dir, report
        self.stderr_before = 0

    # -- screenshots ------------------------------------------------------------------
    def shot(self, label: str):
        path = self.out / f"{self.case.id}-{len(self.report.screenshots):02d}-{label}.png"
        try:
            self.page.screenshot(path=str(path), timeout=15_000)
            self.report.screenshots.append(str(path))
        except Exception as err:  # a screenshot must never hide the real failure
            print(f"screenshot {path.name} failed: {err}")

    # -- open and run -----------------------------------------------------------------
    def state(self) -> dict:
        return self.page.evaluate(_JS_NOTEBOOK_STATE)

    def open_and_run_all(self):
        page, case = self.page, self.case
        page.goto(self.server.lab_url(case.notebook), wait_until="domcontentloaded",
                  timeout=60_000)
        page.locator(".jp-NotebookPanel").first.wait_for(state="visible", timeout=60_000)
        page.wait_for_function(
            f"() => {{ const s = ({_JS_NOTEBOOK_STATE})(); return s.ready && s.status === 'idle'; }}",
            timeout=90_000)  # the kernel has started
        start = time.monotonic()
        # Run -> Run All Cells, from the menu bar as a learner does.
        page.locator("#jp-menu-panel .lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        deadline = start + case.run_all_timeout_s
        seen_busy = False
        while True:
            s = self.state()
            if s.get("errors"):
                self.shot("run-all-error")
                raise PanelCheckError(f"{case.notebook}: a cell raised during Run All: {s['errors']}")
            seen_busy = seen_busy or s.get("status") == "busy" or s.get("pending", 1) < s.get("n", 0)
            if seen_busy and s.get("pending") == 0 and s.get("status") == "idle":
                break
            if time.monotonic() > deadline:
                self.shot("run-all-timeout")
                raise PanelCheckError(f"{case.notebook}: Run All did not finish within "
                                      f"{case.run_all_timeout_s:.0f} s (last state {s})")
            time.sleep(0.25)
        self.report.run_all_s = time.monotonic() - start
        # The status bar says what the learner sees.
        page.locator("#jp-main-statusbar", has_text="Idle").wait_for(timeout=30_000)
        self.stderr_before = self.count_stderr()

    def count_stderr(self) -> int:
        return self.page.locator(
            '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]').count()

    # -- the panel --------------------------------------------------------------------
    def find_panel(self):
        page, case = self.page, self.case
        label = page.locator(".widget-slider .widget-label, .widget-hslider .widget-label",
                             has_text=case.slider).first
        try:
            label.wait_for(state="attached", timeout=30_000)
        except Exception:
            self.shot("no-slider")
            raise PanelCheckError(f"{case.notebook}: no slider labelled {case.slider!r}")
        slider = label.locator("xpath=ancestor::div[contains(@class,'widget-slider') or "
                               "contains(@class,'widget-hslider')][1]")
        panel = slider.locator("xpath=ancestor::div[.//*[contains(@class,'kl-plot')]][1]")
        self.handle = slider.locator(".noUi-handle").first
        self.slider_readout = slider.locator(".widget-readout").first
        self.img = panel.locator("img.kl-plot, .kl-plot img").first
        self.readout = panel.locator(".kl-readout").first
        self.panel = panel
        self.img.wait_for(state="attached", timeout=30_000)
        self.page.wait_for_function("(img) => !!img.getAttribute('src')",
                                    arg=self.img.element_handle(), timeout=30_000)
        self.panel.scroll_into_view_if_needed(timeout=10_000)
        self.img.evaluate(_JS_INSTRUMENT)
        self.assert_no_error("after Run All")

    def src(self) -> str:
        return self.img.get_attribute("src") or ""

    def value(self) -> str:
        # aria-valuenow can be rounded (0.45 and 0.50 both read "0.5"): add the slider's
        # own readout, which uses the widget's readout format.
        readout = self.slider_readout.inner_text(timeout=5_000) if self.slider_readout.count() else ""
        return f"{self.handle.get_attribute('aria-valuenow') or ''} ({readout})"

    def readout_text(self) -> str:
        return self.readout.inner_text(timeout=5_000)

    def assert_no_error(self, when: str):
        errors = self.panel.locator(".kl-error")
        if errors.count():
            self.shot("panel-error")
            raise PanelCheckError(f"{self.case.notebook}: the panel shows an error {when}: "
                                  f"{errors.first.inner_text()[:600]}")
        n = self.count_stderr()
        if n > self.stderr_before:
            self.shot("stderr")
            raise PanelCheckError(f"{self.case.notebook}: {n - self.stderr_before} new error/stderr "
                                  f"output(s) {when}")

    def wait_new_image(self, old_src: str, what: str):
        """Wait until the image's src changes (or an error box appears)."""
        try:
            self.page.wait_for_function(
                """([img, panel, old]) => img.getAttribute('src') !== old
                                         || !!panel.querySelector('.kl-error')""",
                arg=[self.img.element_handle(), self.panel.element_handle(), old_src],
                timeout=self.case.image_timeout_s * 1000)
        except Exception:
            self.assert_no_error(what)
            self.shot("no-new-image")
            raise PanelCheckError(f"{self.case.notebook}: no new plot within "
                                  f"{self.case.image_timeout_s:.0f} s {what} "
                                  f"(readout: {self.readout_text()!r})")
        self.assert_no_error(what)

    def wait_readout(self, pattern: str, what: str, timeout_s: float = 10.0):
        deadline = time.monotonic() + timeout_s
        text = ""
        while time.monotonic() < deadline:
            text = self.readout_text()
            if re.search(pattern, text):
                return text
            self.assert_no_error(what)
            time.sleep(0.05)
        self.shot("wrong-readout")
        raise PanelCheckError(f"{self.case.notebook}: {what}: readout {text!r} does not match "
                              f"{pattern!r}")

    def press(self, key: str) -> float:
        """Press one key on the handle and wait for the new plot; returns the latency (s)."""
        before_src, before_value = self.src(), self.value()
        self.page.evaluate("() => { window.__kl.keys = []; window.__kl.images = []; }")
        self.handle.press(key)
        after_value, deadline = self.value(), time.monotonic() + 3.0
        while after_value == before_value and time.monotonic() < deadline:
            time.sleep(0.05)  # a busy page may update the handle a moment after the key
            after_value = self.value()
        if after_value == before_value:
            self.shot("did-not-move")
            raise PanelCheckError(f"{self.case.notebook}: {key} did not move the slider "
                                  f"(value stays {before_value}); fix the case's keys")
        self.wait_new_image(before_src, f"after {key} ({before_value} -> {after_value})")
        t = self.page.evaluate("() => window.__kl")
        latency = (t["images"][0] - t["keys"][0]) / 1000.0
        self.report.latencies_s.append(latency)
        return latency

    def image_sha(self) -> str:
        data = self.img.evaluate(_JS_IMAGE_BYTES)
        return hashlib.sha256(base64.b64decode(data)).hexdigest()

    def wait_settled(self, quiet_s: float = 1.0, timeout_s: float = 60.0):
        """Kernel idle and no new image for ``quiet_s``."""
        deadline = time.monotonic() + timeout_s
        last_src, since = self.src(), time.monotonic()
        while time.monotonic() < deadline:
            src = self.src()
            if src != last_src:
                last_src, since = src, time.monotonic()
            if time.monotonic() - since >= quiet_s and self.state().get("status") == "idle":
                return
            time.sleep(0.05)
        raise PanelCheckError(f"{self.case.notebook}: the panel kept changing for {timeout_s:.0f} s")


def check_slider(page, server: LabServer, case: SliderCase, out_dir: Path) -> SliderReport:
    """The whole browser check of one notebook's slider (see the module docstring)."""
    report = SliderReport(case.id)
    nb = NotebookPage(page, server, case, out_dir, report)
    try:
        nb.open_and_run_all()
        nb.find_panel()
        nb.shot("after-run-all")
        for i, move in enumerate(case.moves):
            what = move.name or "+".join(move.keys)
            for key in move.keys:
                nb.press(key)
            nb.wait_readout(move.expect, f"after move {i} ({what})")
            nb.assert_no_error(f"after move {i} ({what})")
            nb.shot(f"move{i}-{re.sub(r'[^A-Za-z0-9]+', '', what)}")
        if case.rapid is not None:
            r = case.rapid
            for key in r.start:
                nb.press(key)
            nb.wait_settled(quiet_s=0.5)
            nb.handle.focus()
            for _ in range(r.count):
                nb.page.keyboard.press(r.key)   # no waiting between presses
            # Coalesced panels skip stale values: the last value is drawn within 2 s of the
            # last press (not after ten computes in a row).
            nb.wait_readout(r.expect, f"within 2 s of the last of {r.count} rapid {r.key} "
                            "presses", timeout_s=2.0)
            nb.wait_settled()
            nb.assert_no_error(f"after {r.count} rapid {r.key} presses")
            rapid_sha, rapid_text = nb.image_sha(), nb.readout_text()
            nb.shot("rapid")
            nb.press(r.back)
            nb.wait_settled(quiet_s=0.3)
            nb.press(r.key)      # the final value again, reached slowly
            nb.wait_readout(r.expect, "reaching the rapid moves' final value slowly")
            nb.wait_settled(quiet_s=0.3)
            slow_sha = nb.image_sha()
            if slow_sha != rapid_sha:
                nb.shot("rapid-mismatch")
                raise PanelCheckError(
                    f"{case.notebook}: after {r.count} rapid {r.key} presses the plot is not the "
                    f"final value's plot (readout {rapid_text!r}); a stale update won")
        median = report.median_s
        if median > case.latency_limit_s:
            raise PanelCheckError(
                f"{case.notebook}: median key press -> new plot {median:.2f} s > "
                f"{case.latency_limit_s:.1f} s (each: {[round(x, 3) for x in report.latencies_s]})")
        return report
    except Exception:
        nb.shot("FAILED")
        raise
