"""Every notebook runs in a real JupyterLab in a real browser, and every widget a student moves reacts.

One JupyterLab server for the module (127.0.0.1, random token, throw-away configuration) serves a temporary copy of
all notebooks with their outputs cleared; headless Chromium (Debian's ``chromium``, driven by Playwright) opens each
one, runs all cells and waits until every code cell has run. Then: no traceback, no error output and no "Error
displaying widget" anywhere; and for every head explorer in the page (``mh.head_explorer``, found by its CSS
class), pressing → on its head-count slider must change the figure (the ``<img>``'s ``src``) and the head_dim
read-out; notebooks 10, 11, 12 and 14 then have their own widgets used on the same page (the mask editor, the
cost meter, the training replay, the layer/head picker: ``widgets_in_lab.py``), so JupyterLab starts once and notebook 12 trains once. The
notebooks are collected when the tests are, so a notebook added later is covered automatically.

This is the ``browser`` lane (``python -m pytest -m browser``); it needs Debian's ``chromium`` (the ``chromium``
fixture in tests/conftest.py fails with the install command when it is missing). On failure a screenshot of the notebook (and of each explorer) goes to ``test-artifacts/``; with
``MHA_BROWSER_SCREENSHOTS=1`` the explorers are saved before and after the move even when the test passes.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

import pytest
from jupyterlab_driver import PANEL, ROOT, JupyterLabServer, NotebookPage, prepare_workdir
from widgets_in_lab import widget_check_for

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
ARTIFACTS = ROOT / "test-artifacts"
ALWAYS_SCREENSHOT = os.environ.get("MHA_BROWSER_SCREENSHOTS", "") == "1"

#: Seconds for "run all" to finish, per notebook number; generous, because the two cores are shared.
RUN_TIMEOUT = {"08": 420.0, "12": 420.0}  # the two notebooks that train a model
DEFAULT_RUN_TIMEOUT = 180.0


@pytest.fixture(scope="module")
def browser(chromium):
    """One context for all pages: JupyterLab's scripts are loaded once and then come from the cache."""
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    yield context
    context.close()


@pytest.fixture(scope="module")
def lab(browser):
    """One JupyterLab for all notebooks, serving a cleared copy of them from a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="mha-browser-") as tmp:
        workdir = prepare_workdir(Path(tmp) / "work", NOTEBOOKS)
        server = JupyterLabServer(workdir, Path(tmp) / "scratch")
        server.start()
        try:
            yield server
        finally:
            server.stop()


def _screenshot(locator, name: str) -> Path | None:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    try:
        locator.screenshot(path=str(path), timeout=10_000)
        return path
    except Exception:  # the page may be gone; a missing screenshot must not hide the real failure
        return None


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_jupyterlab(lab, browser, notebook):
    page = browser.new_page()
    nb = NotebookPage(page, lab, notebook.name)
    stem = notebook.stem
    timings = {}
    try:
        start = time.monotonic()
        nb.open()
        timings["open"] = time.monotonic() - start
        nb.run_all()
        state = nb.wait_all_executed(RUN_TIMEOUT.get(notebook.name[:2], DEFAULT_RUN_TIMEOUT))
        timings["run all"] = time.monotonic() - start - timings["open"]
        assert state["code"] > 0, f"{notebook.name}: no code cells found in the page"
        loading = nb.wait_widgets_settled()
        assert loading == 0, f"{notebook.name}: {loading} widget(s) still say 'Loading widget...'"
        errors = nb.errors()
        assert not errors, f"{notebook.name}: errors in the outputs:\n" + "\n---\n".join(errors)

        explorers = nb.head_explorers()
        for i in range(explorers.count()):
            explorer = explorers.nth(i)
            before, after = nb.move_head_slider(explorer)
            if ALWAYS_SCREENSHOT:
                _screenshot(explorer, f"{stem}-explorer{i}-after.png")
            assert before["src"], f"{notebook.name}: explorer {i} shows no figure"
            assert after["slider"] != before["slider"], f"{notebook.name}: explorer {i}: the slider did not move"
            assert after["src"] != before["src"], f"{notebook.name}: explorer {i}: the figure did not change"
            old = re.search(r"head_dim = (\d+)", before["readout"])
            new = re.search(r"head_dim = (\d+)", after["readout"])
            assert old and new and old.group(1) != new.group(1), (
                f"{notebook.name}: explorer {i}: the head_dim read-out did not change: "
                f"{before['readout']!r} -> {after['readout']!r}"
            )
        check_widgets = widget_check_for(notebook)
        if check_widgets is not None:
            check_widgets(nb)
        errors = nb.errors()
        assert not errors, f"{notebook.name}: errors after moving the widgets:\n" + "\n---\n".join(errors)
        print(f"{notebook.name}: opened in {timings['open']:.1f} s, ran in {timings['run all']:.1f} s, "
              f"{state['code']} code cells, {explorers.count()} head explorer(s)")
    except BaseException:
        shots = [_screenshot(nb.panel, f"{stem}-failure.png")]
        explorers = nb.head_explorers()
        shots += [_screenshot(explorers.nth(i), f"{stem}-explorer{i}-failure.png") for i in range(explorers.count())]
        print("screenshots:", ", ".join(str(s) for s in shots if s))
        print("JupyterLab log (tail):\n" + lab.log()[-1500:])
        raise
    finally:
        page.close()
        lab.shutdown_all_kernels()


def test_the_harness_sees_tracebacks_and_broken_widgets(lab, browser):
    """The checks above would catch a failure: a notebook with a broken widget and an exception is reported."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    broken_widget = (
        "from IPython.display import display\n"
        "# A widget view whose model does not exist: what a student sees after reopening a notebook\n"
        "view = {'model_id': '0' * 32, 'version_major': 2, 'version_minor': 0}\n"
        "display({'application/vnd.jupyter.widget-view+json': view, 'text/plain': 'no model'}, raw=True)"
    )
    nb = new_notebook(cells=[new_code_cell(broken_widget), new_code_cell("1 / 0")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(nb, lab.workdir / "notebooks" / "zz_harness_check.ipynb")
    page = browser.new_page()
    try:
        check = NotebookPage(page, lab, "zz_harness_check.ipynb")
        check.open()
        check.run_all()
        try:
            check.wait_all_executed(60)  # both cells run (the error is in the last one) ...
        except AssertionError as exc:  # ... or the wait stops early at the error: either is fine here
            assert "ZeroDivisionError" in str(exc)
        assert check.wait_widgets_settled() == 0
        errors = "\n".join(check.errors())
        assert "ZeroDivisionError" in errors
        assert "Error displaying widget" in errors
        shot = _screenshot(check.panel, "harness-check.png")
        assert shot is not None and shot.stat().st_size > 0
        shot.unlink()
    finally:
        page.close()
        lab.shutdown_all_kernels()


def test_presentation_mode_for_teachers(lab, browser):
    """TEACHING.md tells teachers to present with View > Appearance > Presentation Mode: it exists and enlarges text."""
    page = browser.new_page()
    try:
        nb = NotebookPage(page, lab, NOTEBOOKS[0].name)
        nb.open()
        prose = f"{PANEL} .jp-RenderedMarkdown p"
        size = f"parseFloat(getComputedStyle(document.querySelector('{prose}')).fontSize)"
        page.locator(prose).first.wait_for()
        before = page.evaluate(size)
        page.locator(".lm-MenuBar-item", has_text="View").first.click()
        page.locator(".lm-Menu-item", has_text="Appearance").first.hover()  # a submenu of View
        page.locator('.lm-Menu-item[data-command="application:toggle-presentation-mode"]').first.click()
        page.locator("#main.jp-mod-presentationMode").wait_for(timeout=10_000)
        after = page.evaluate(size)
        assert after > before, f"presentation mode did not enlarge the text: {before} px -> {after} px"
    finally:
        page.close()
        lab.shutdown_all_kernels()
