"""Drive a real JupyterLab from headless Chromium: the support code of tests/browser/test_browser.py (the browser
itself is the ``chromium`` fixture of tests/conftest.py).

* :func:`prepare_workdir` copies the notebooks (outputs and saved widget state cleared, so "every prompt is numbered"
  means "ran in this browser"), ``images/`` and ``requirements.txt`` into a temporary folder outside the repository.
* :class:`JupyterLabServer` starts ``jupyter lab`` on 127.0.0.1 with a random token and throw-away config, data,
  runtime and settings folders, in its own process group, and stops it by signalling that group.
* :class:`NotebookPage` opens one notebook in a Playwright page, waits for a really ready kernel, runs all cells,
  waits for every code cell to have run, and reads errors, widgets and the head-count sliders from the page.

Facts this relies on (measured on this machine, see /work/shared/FINDINGS.md): the execution indicator says "idle"
before a kernel exists, so readiness is read from the kernel itself (``window.jupyterapp``, exposed with
``--LabApp.expose_app_in_browser``); restored tabs linger hidden, so every selector is scoped to the visible panel;
JupyterLab scrolls inside its own panel, so screenshots are element screenshots.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]

#: The visible notebook panel (restored or closed tabs stay in the page, hidden).
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"


def prepare_workdir(dest: Path, notebooks: list[Path]) -> Path:
    """Copy ``notebooks`` (cleared) into ``dest/notebooks`` and ``images/`` into ``dest/images``; return dest."""
    (dest / "notebooks").mkdir(parents=True)
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs = []
                cell.execution_count = None
        nb.metadata.pop("widgets", None)  # no saved widget state: every widget must come from this run
        nbformat.write(nb, dest / "notebooks" / path.name)
    if (ROOT / "images").is_dir():
        shutil.copytree(ROOT / "images", dest / "images")  # notebooks show ../images/NAME.svg
    shutil.copy(ROOT / "requirements.txt", dest / "requirements.txt")  # 00_start_here checks the pins it lists
    return dest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterLabServer:
    """``jupyter lab`` serving ``workdir`` on 127.0.0.1, isolated from the user's Jupyter configuration."""

    def __init__(self, workdir: Path, scratch: Path, log_path: Path | None = None) -> None:
        self.workdir, self.scratch = workdir, scratch
        self.token = secrets.token_hex(16)
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or scratch / "jupyterlab.log"
        self.process: subprocess.Popen | None = None

    # ---- start and stop -------------------------------------------------------------------------------

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        for name in ("config", "data", "runtime", "ipython"):
            (self.scratch / name).mkdir(parents=True, exist_ok=True)
        env.update(
            JUPYTER_CONFIG_DIR=str(self.scratch / "config"), JUPYTER_DATA_DIR=str(self.scratch / "data"),
            JUPYTER_RUNTIME_DIR=str(self.scratch / "runtime"), IPYTHONDIR=str(self.scratch / "ipython"),
            JUPYTERLAB_SETTINGS_DIR=str(self.scratch / "config" / "lab" / "user-settings"),
            JUPYTERLAB_WORKSPACES_DIR=str(self.scratch / "config" / "lab" / "workspaces"),
            JUPYTER_PLATFORM_DIRS="1", MHA_DEVICE="cpu", PYDEVD_DISABLE_FILE_VALIDATION="1",
        )
        env.pop("MPLBACKEND", None)  # the kernel's own default (inline) draws the figures
        return env

    def _write_user_settings(self) -> None:
        settings = self.scratch / "config" / "lab" / "user-settings" / "@jupyterlab"
        files = {
            # No "Jupyter news" toast over the page, no update check (there is no network anyway).
            "apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
            # Render every cell (JupyterLab 4 may leave cells outside the viewport out of the page).
            "notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        }
        for name, value in files.items():
            path = settings / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value))

    def start(self, timeout: float = 90.0) -> None:
        self._write_user_settings()
        command = [
            sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={self.port}", "--ServerApp.port_retries=0",
            "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.workdir}",
            "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
            "--ServerApp.open_browser=False", "--ServerApp.terminals_enabled=False",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-root")  # containers and CI runners often run as root
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        # A new session = a new process group: stop() signals the server AND its kernels, nothing else.
        self.process = subprocess.Popen(command, cwd=self.workdir, env=self._environment(), stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with code {self.process.returncode}; log:\n{self.log()}")
            try:
                self.api("GET", "/api/status")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"jupyter lab did not answer within {timeout:.0f} s; log:\n{self.log()}")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
            except ProcessLookupError:
                pass
        # Kernels run in the server's group; make sure none survives the server.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._log.close()
        self.process = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    # ---- the REST API ----------------------------------------------------------------------------------

    def api(self, method: str, path: str):
        request = urllib.request.Request(
            self.base_url + path, method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def shutdown_all_kernels(self) -> None:
        """Shut down every kernel (each notebook's kernel holds torch and a few hundred MB)."""
        for kernel in self.api("GET", "/api/kernels") or []:
            try:
                self.api("DELETE", f"/api/kernels/{kernel['id']}")
            except urllib.error.HTTPError:
                pass

    def notebook_url(self, name: str) -> str:
        # ?reset: start from an empty workspace, not the tabs a previous page left open.
        return f"{self.base_url}/lab/tree/notebooks/{name}?reset&token={self.token}"


# JavaScript run in the page. The app object is exposed by --LabApp.expose_app_in_browser.
_KERNEL_STATE = """() => {
    const app = window.jupyterapp;
    const widget = app && app.shell.currentWidget;
    const session = widget && widget.sessionContext;
    const kernel = session && session.session && session.session.kernel;
    if (!kernel) return 'no kernel';
    return kernel.connectionStatus + '/' + kernel.status + '/' + (session.isReady ? 'ready' : 'starting');
}"""

_CELL_STATE = """(panel) => {
    const cells = [...panel.querySelectorAll('.jp-Notebook .jp-Cell.jp-CodeCell')];
    const prompts = cells.map(c => (c.querySelector('.jp-InputArea-prompt') || {}).textContent || '');
    return {code: cells.length, done: prompts.filter(p => /\\[\\d+\\]/.test(p)).length,
            busy: prompts.filter(p => p.includes('*')).length};
}"""

_ERRORS = """(panel) => {
    const found = [];
    for (const out of panel.querySelectorAll('.jp-OutputArea-output')) {
        const mime = out.getAttribute('data-mime-type') || '';
        const text = out.textContent || '';
        if (mime === 'application/vnd.jupyter.stderr' && /Traceback|Error:/.test(text)) found.push(text.slice(0, 1500));
        if (/Error displaying widget/.test(text)) found.push('widget: ' + text.slice(0, 500));
    }
    return found;
}"""


_LOADING = """(panel) => [...panel.querySelectorAll('.jp-OutputArea-output')]
    .filter(out => (out.textContent || '').startsWith('Loading widget...')).length"""


class NotebookPage:
    """One notebook opened in a Playwright page of a running :class:`JupyterLabServer`."""

    def __init__(self, page, server: JupyterLabServer, name: str) -> None:
        self.page, self.server, self.name = page, server, name

    @property
    def panel(self):
        return self.page.locator(PANEL).first

    def open(self, timeout: float = 90.0) -> None:
        self.page.goto(self.server.notebook_url(self.name), timeout=timeout * 1000)
        self.page.locator(f"{PANEL} .jp-Notebook .jp-Cell").first.wait_for(timeout=timeout * 1000)
        self.wait_kernel_idle(timeout)

    def kernel_state(self) -> str:
        return self.page.evaluate(_KERNEL_STATE)

    def wait_kernel_idle(self, timeout: float) -> None:
        """Wait until the notebook's kernel exists, is connected and idle (not merely "the indicator says idle")."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.kernel_state()
            if state == "connected/idle/ready":
                return
            time.sleep(0.25)
        raise TimeoutError(f"{self.name}: kernel not ready after {timeout:.0f} s (last state: {state})")

    def run_all(self) -> None:
        """Run > Run All Cells, through the menu as a user would."""
        self.page.locator(".lm-MenuBar-item", has_text="Run").first.click()
        self.page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').first.click()

    def cell_state(self) -> dict:
        return self.page.evaluate(_CELL_STATE, self.panel.element_handle())

    def errors(self) -> list[str]:
        """Tracebacks, error outputs and "Error displaying widget" messages in the visible notebook."""
        return self.page.evaluate(_ERRORS, self.panel.element_handle())

    def wait_all_executed(self, timeout: float) -> dict:
        """Wait until every code cell shows an execution count and the kernel is idle; fail fast on an error."""
        deadline = time.monotonic() + timeout
        state: dict = {}
        while time.monotonic() < deadline:
            state = self.cell_state()
            if state["code"] and state["done"] == state["code"] and self.kernel_state() == "connected/idle/ready":
                return state
            errors = self.errors()
            if errors and not state["busy"]:
                raise AssertionError(f"{self.name}: error output while running:\n" + "\n---\n".join(errors))
            time.sleep(0.5)
        raise TimeoutError(f"{self.name}: only {state.get('done')} of {state.get('code')} code cells ran within "
                           f"{timeout:.0f} s (kernel: {self.kernel_state()})")

    def wait_widgets_settled(self, timeout: float = 30.0) -> int:
        """Wait until no widget output still reads "Loading widget..." (it becomes the widget, or an error such as
        "Error displaying widget: model not found", only once the widget manager has caught up); returns how many
        are still loading when the time is up (0 = all settled)."""
        deadline = time.monotonic() + timeout
        while True:
            loading = self.page.evaluate(_LOADING, self.panel.element_handle())
            if loading == 0 or time.monotonic() > deadline:
                return loading
            time.sleep(0.25)

    # ---- the head explorer's widgets -------------------------------------------------------------------

    def head_explorers(self):
        """The head explorers (``mh.head_explorer``) shown in the notebook's outputs."""
        return self.panel.locator(".jp-OutputArea .mha-head-explorer")

    @staticmethod
    def explorer_state(explorer) -> dict:
        return {
            "src": explorer.locator("img.mha-head-figure").first.get_attribute("src") or "",
            "readout": explorer.locator(".mha-head-readout").first.inner_text(),
            "slider": explorer.locator(".mha-head-slider .widget-readout").first.inner_text(),
        }

    def move_head_slider(self, explorer, timeout: float = 20.0) -> tuple[dict, dict]:
        """Press → on the head-count slider; wait until the figure and the read-out have changed."""
        explorer.scroll_into_view_if_needed()
        before = self.explorer_state(explorer)
        handle = explorer.locator('.mha-head-slider .noUi-handle[role="slider"]').first
        handle.focus()
        handle.press("ArrowRight")
        deadline = time.monotonic() + timeout
        after = before
        while time.monotonic() < deadline:
            after = self.explorer_state(explorer)
            if after["src"] != before["src"] and after["readout"] != before["readout"]:
                return before, after
            time.sleep(0.2)
        return before, after
