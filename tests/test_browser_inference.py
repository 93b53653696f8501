"""Notebook 10's mask editor works in a real JupyterLab: clicking its cells and its alignment switch updates the
read-out, the weights and the three forms of the mask.

One JupyterLab (127.0.0.1, random token, throw-away configuration; see tests/jupyterlab_driver.py) serves a cleared
copy of notebook 10; headless Chromium runs all its cells, then clicks the editor as a student would. Without
chromium the test skips, unless CI is "true": then a missing browser fails. On failure a screenshot of the editor goes
to ``test-artifacts/`` (with ``MHA_BROWSER_SCREENSHOTS=1`` also before and after the clicks when it passes).
"""

from __future__ import annotations

import os
import time

import pytest
from jupyterlab_driver import ROOT, notebook_in_lab

NOTEBOOK = ROOT / "notebooks" / "10_attention_at_inference.ipynb"
ARTIFACTS = ROOT / "test-artifacts"
ALWAYS_SCREENSHOT = os.environ.get("MHA_BROWSER_SCREENSHOTS", "") == "1"


@pytest.fixture(scope="module")
def page_of_notebook_10():
    with notebook_in_lab(NOTEBOOK, prefix="mha-browser-10-") as nb:
        nb.open()
        nb.run_all()
        nb.wait_all_executed(180.0)
        assert nb.wait_widgets_settled() == 0, "a widget still says 'Loading widget...'"
        yield nb


def _state(editor) -> dict:
    return {
        "readout": editor.locator(".mha-mask-readout").first.inner_text(),
        "weights": editor.locator(".mha-mask-weights").first.inner_text(),
        "forms": editor.locator(".mha-mask-forms").first.inner_text(),
    }


def _wait_for(editor, predicate, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    state = _state(editor)
    while time.monotonic() < deadline:
        state = _state(editor)
        if predicate(state):
            return state
        time.sleep(0.2)
    return state


def test_mask_editor_reacts_to_clicks(page_of_notebook_10):
    nb = page_of_notebook_10
    editor = nb.panel.locator(".jp-OutputArea .mha-mask-editor").first
    try:
        editor.wait_for(timeout=30_000)
        editor.scroll_into_view_if_needed()
        start = _state(editor)
        if ALWAYS_SCREENSHOT:
            ARTIFACTS.mkdir(exist_ok=True)
            editor.screenshot(path=str(ARTIFACTS / "10-mask-editor-start.png"))
        assert "15 of 18 allowed (causal, bottom_right)" in start["readout"], start["readout"]

        # Block query 0's four visible keys: the row becomes fully masked, and the editor says so.
        for j in range(4):
            editor.locator(f".mha-cell-0-{j}").first.click()
        dead = _wait_for(editor, lambda s: "fully masked rows: [0]" in s["readout"])
        assert "fully masked rows: [0]" in dead["readout"], dead["readout"]
        assert "11 of 18 allowed (custom)" in dead["readout"], dead["readout"]
        assert "NaN" in dead["readout"] and "NaN-prone" in dead["weights"], dead
        assert dead["forms"] != start["forms"], "the three forms of the mask did not change"
        if ALWAYS_SCREENSHOT:
            editor.screenshot(path=str(ARTIFACTS / "10-mask-editor-dead-row.png"))

        # Allow one of them again: the row is alive, its weight is 1.00 on that one key.
        editor.locator(".mha-cell-0-2").first.click()
        alive = _wait_for(editor, lambda s: "no fully masked row" in s["readout"])
        assert "12 of 18 allowed (custom)" in alive["readout"], alive["readout"]
        assert "1.00" in alive["weights"], alive["weights"]

        # The switch resets the grid to the top-left causal mask.
        editor.locator(".mha-mask-align button", has_text="top_left").first.click()
        reset = _wait_for(editor, lambda s: "causal, top_left" in s["readout"])
        assert "6 of 18 allowed (causal, top_left)" in reset["readout"], reset["readout"]
        assert reset["forms"] != alive["forms"]
        assert not nb.errors(), nb.errors()
    except BaseException:
        ARTIFACTS.mkdir(exist_ok=True)
        try:
            editor.screenshot(path=str(ARTIFACTS / "10-mask-editor-failure.png"), timeout=10_000)
        except Exception:
            pass
        raise
