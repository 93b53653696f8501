"""Notebook 11's variant cost meter works in a real JupyterLab: each of its three sliders moves and redraws.

One JupyterLab (see ``jupyterlab_driver.py``) serves a cleared copy of notebook 11; headless Chromium runs all its
cells, then presses → on the ``num_kv_heads``, ``latent_dim`` and ``window`` sliders of the meter in turn. After
each press the read-out must name the new value and the figure (the ``<img>``'s ``src``) must change; no error
output, no "Error displaying widget" before or after. Skips without chromium unless CI is "true" (as
``test_browser.py``); screenshots of a failure go to ``test-artifacts/``.
"""

from __future__ import annotations

import re
import time

import pytest
from jupyterlab_driver import ROOT, notebook_in_lab

NOTEBOOK = ROOT / "notebooks" / "11_attention_variants.ipynb"
ARTIFACTS = ROOT / "test-artifacts"

#: slider CSS class -> the read-out's label for its value
SLIDERS = {"mha-meter-kv": "num_kv_heads", "mha-meter-latent": "latent_dim", "mha-meter-window": "window"}


@pytest.fixture(scope="module")
def page():
    with notebook_in_lab(NOTEBOOK, prefix="mha-browser-variants-") as nb:
        yield nb


def _meter_state(meter) -> dict:
    return {
        "src": meter.locator("img.mha-meter-figure").first.get_attribute("src") or "",
        "readout": meter.locator(".mha-meter-readout").first.inner_text(),
    }


def _value(readout: str, label: str) -> str | None:
    found = re.search(rf"{label} = (\d+)", readout)
    return found.group(1) if found else None


def test_cost_meter_sliders_move_and_redraw(page):
    nb = page
    try:
        nb.open()
        nb.run_all()
        nb.wait_all_executed(180.0)
        assert nb.wait_widgets_settled() == 0, "a widget still says 'Loading widget...'"
        assert not nb.errors(), "errors in the outputs:\n" + "\n---\n".join(nb.errors())
        meters = nb.panel.locator(".jp-OutputArea .mha-variant-meter")
        assert meters.count() == 1, f"expected one cost meter in the page, found {meters.count()}"
        meter = meters.first
        meter.scroll_into_view_if_needed()
        for css, label in SLIDERS.items():
            before = _meter_state(meter)
            assert before["src"], "the meter shows no figure"
            handle = meter.locator(f'.{css} .noUi-handle[role="slider"]').first
            handle.focus()
            handle.press("ArrowRight")
            deadline, after = time.monotonic() + 30.0, before
            while time.monotonic() < deadline:
                after = _meter_state(meter)
                if after["src"] != before["src"] and _value(after["readout"], label) != _value(before["readout"], label):
                    break
                time.sleep(0.2)
            old, new = _value(before["readout"], label), _value(after["readout"], label)
            assert old is not None and new is not None and int(new) > int(old), (
                f"{label}: the read-out did not move up: {old} -> {new}")
            assert after["src"] != before["src"], f"{label}: the figure did not change"
            assert "could not redraw" not in after["readout"], after["readout"]
        assert not nb.errors(), "errors after moving the sliders:\n" + "\n---\n".join(nb.errors())
    except BaseException:
        ARTIFACTS.mkdir(exist_ok=True)
        try:
            nb.panel.screenshot(path=str(ARTIFACTS / "11-cost-meter-failure.png"), timeout=10_000)
        except Exception:  # the page may be gone; a missing screenshot must not hide the real failure
            pass
        print("JupyterLab log (tail):\n" + nb.server.log()[-1500:])
        raise
