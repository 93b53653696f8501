"""Notebook 12's training replay works in a real JupyterLab: moving its training-time slider redraws every head's
map and updates the read-out of losses and scores.

One JupyterLab (127.0.0.1, random token, throw-away configuration; see tests/jupyterlab_driver.py) serves a cleared
copy of notebook 12; headless Chromium runs all its cells (the notebook trains two small models, so this takes a
while on a busy machine), then presses → on the replay's slider as a student would, several times. Without chromium
the test skips, unless CI is "true": then a missing browser fails. On failure a screenshot of the replay goes to
``test-artifacts/`` (with ``MHA_BROWSER_SCREENSHOTS=1`` also before and after the moves when it passes).
"""

from __future__ import annotations

import os
import re
import time

import pytest
from jupyterlab_driver import ROOT, notebook_in_lab

NOTEBOOK = ROOT / "notebooks" / "12_heads_that_compose.ipynb"
ARTIFACTS = ROOT / "test-artifacts"
ALWAYS_SCREENSHOT = os.environ.get("MHA_BROWSER_SCREENSHOTS", "") == "1"


@pytest.fixture(scope="module")
def page_of_notebook_12():
    with notebook_in_lab(NOTEBOOK, prefix="mha-browser-12-") as nb:
        nb.open()
        nb.run_all()
        nb.wait_all_executed(420.0)  # two trainings: generous, the two cores are shared
        assert nb.wait_widgets_settled() == 0, "a widget still says 'Loading widget...'"
        yield nb


def _state(replay) -> dict:
    return {
        "src": replay.locator("img").first.get_attribute("src") or "",
        "readout": replay.locator(".mha-replay-readout").first.inner_text(),
        "slider": replay.locator(".mha-replay-slider .widget-readout").first.inner_text(),
    }


def _wait_for_change(replay, before: dict, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    state = _state(replay)
    while time.monotonic() < deadline:
        state = _state(replay)
        if state["src"] != before["src"] and state["readout"] != before["readout"]:
            return state
        time.sleep(0.2)
    return state


def test_training_replay_slider_redraws_the_maps(page_of_notebook_12):
    nb = page_of_notebook_12
    replay = nb.panel.locator(".jp-OutputArea .mha-training-replay").first
    try:
        replay.wait_for(timeout=30_000)
        replay.scroll_into_view_if_needed()
        start = _state(replay)
        assert start["src"], "the replay shows no figure"
        assert start["slider"].strip() == "0" and "step 0:" in start["readout"], start
        if ALWAYS_SCREENSHOT:
            ARTIFACTS.mkdir(exist_ok=True)
            replay.screenshot(path=str(ARTIFACTS / "12-replay-start.png"))
        handle = replay.locator('.mha-replay-slider .noUi-handle[role="slider"]').first
        seen = [start]
        for _ in range(3):  # three presses of →: steps 10, 20, 30
            handle.focus()
            handle.press("ArrowRight")
            seen.append(_wait_for_change(replay, seen[-1]))
        for before, after in zip(seen, seen[1:], strict=False):
            assert after["slider"] != before["slider"], f"the slider did not move: {before} -> {after}"
            assert after["src"] != before["src"], "the maps did not change"
        last = seen[-1]
        step = int(last["slider"].strip())
        assert step == 30 and f"step {step}:" in last["readout"], last
        assert re.search(r"on repeated tokens \d\.\d\d", last["readout"]), last["readout"]
        if ALWAYS_SCREENSHOT:
            replay.screenshot(path=str(ARTIFACTS / "12-replay-step30.png"))
        assert not nb.errors(), nb.errors()
    except BaseException:
        ARTIFACTS.mkdir(exist_ok=True)
        try:
            replay.screenshot(path=str(ARTIFACTS / "12-replay-failure.png"), timeout=10_000)
        except Exception:
            pass
        raise
