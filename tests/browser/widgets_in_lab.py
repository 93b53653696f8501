"""The widgets of notebooks 10, 11, 12 and 14, used in a real JupyterLab as a student would use them.

``test_browser.py`` runs every notebook once in one JupyterLab; after a notebook's "Run All" it calls the check
this module registers for that notebook (``WIDGET_CHECKS["10"]`` and so on) on the same page, so JupyterLab starts
once and notebook 12 trains once. Each check clicks or presses keys, waits for the widget to redraw, and asserts
what changed; on failure it saves a screenshot of the widget to ``test-artifacts/``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from jupyterlab_driver import ROOT, NotebookPage

ARTIFACTS = ROOT / "test-artifacts"


def _wait_for(read: Callable[[], dict], done: Callable[[dict], bool], timeout: float = 20.0) -> dict:
    """Poll ``read()`` until ``done(state)`` holds or ``timeout`` seconds pass; return the last state."""
    deadline = time.monotonic() + timeout
    state = read()
    while not done(state) and time.monotonic() < deadline:
        time.sleep(0.2)
        state = read()
    return state


def _screenshot_on_failure(locator, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        locator.screenshot(path=str(ARTIFACTS / name), timeout=10_000)
    except Exception:  # the page may be gone; a missing screenshot must not hide the real failure
        pass


# ---- 10: the mask editor ------------------------------------------------------------------------------------


def check_mask_editor(nb: NotebookPage) -> None:
    """Clicking cells blocks and allows keys; a fully masked row is flagged; the alignment buttons reset the grid."""
    editor = nb.panel.locator(".jp-OutputArea .mha-mask-editor").first
    try:
        editor.wait_for(timeout=30_000)
        editor.scroll_into_view_if_needed()

        def read() -> dict:
            return {"readout": editor.locator(".mha-mask-readout").first.inner_text(),
                    "weights": editor.locator(".mha-mask-weights").first.inner_text(),
                    "forms": editor.locator(".mha-mask-forms").first.inner_text()}

        start = read()
        assert "15 of 18 allowed (causal, bottom_right)" in start["readout"], start["readout"]
        cell = editor.locator(".mha-cell-0-0").first
        assert cell.inner_text().strip() == "✓" and "may attend" in (cell.get_attribute("title") or ""), (
            "a cell's state must show by more than its colour")
        for j in range(4):  # block query 0's four visible keys: the row becomes fully masked
            editor.locator(f".mha-cell-0-{j}").first.click()
        dead = _wait_for(read, lambda s: "fully masked rows: [0]" in s["readout"])
        blocked = _wait_for(lambda: {"text": cell.inner_text().strip(), "title": cell.get_attribute("title") or ""},
                            lambda s: s["text"] == "✗")
        assert blocked["text"] == "✗" and "blocked" in blocked["title"], blocked
        assert "fully masked rows: [0]" in dead["readout"], dead["readout"]
        assert "11 of 18 allowed (custom)" in dead["readout"], dead["readout"]
        assert "NaN" in dead["readout"] and "NaN-prone" in dead["weights"], dead
        assert dead["forms"] != start["forms"], "the three forms of the mask did not change"
        editor.locator(".mha-cell-0-2").first.click()  # allow one key again: weight 1.00 on it
        alive = _wait_for(read, lambda s: "no fully masked row" in s["readout"])
        assert "12 of 18 allowed (custom)" in alive["readout"], alive["readout"]
        assert "1.00" in alive["weights"], alive["weights"]
        editor.locator(".mha-mask-align button", has_text="top_left").first.click()
        reset = _wait_for(read, lambda s: "causal, top_left" in s["readout"])
        assert "6 of 18 allowed (causal, top_left)" in reset["readout"], reset["readout"]
        assert reset["forms"] != alive["forms"]
    except BaseException:
        _screenshot_on_failure(editor, "10-mask-editor-failure.png")
        raise


# ---- 11: the cost meter -------------------------------------------------------------------------------------

#: slider CSS class -> the read-out's label for its value, and what else must change when it moves (a figure's
#: class, or the table row it changes)
METER_SLIDERS = {"mha-meter-kv": ("num_kv_heads", "img.mha-meter-gqa"),
                 "mha-meter-latent": ("latent_dim", "latent (MLA)"),
                 "mha-meter-window": ("window", "img.mha-meter-band")}


def _value(readout: str, label: str) -> int | None:
    found = re.search(rf"{label} = (\d+)", readout)
    return int(found.group(1)) if found else None


def check_cost_meter(nb: NotebookPage) -> None:
    """Each of the meter's three sliders, moved one step up with →, changes its read-out and what depends on it (the
    GQA map, the MLA row, the window's band); the table's cells are padded (numbers never run together)."""
    meters = nb.panel.locator(".jp-OutputArea .mha-variant-meter")
    assert meters.count() == 1, f"expected one cost meter in the page, found {meters.count()}"
    meter = meters.first
    try:
        meter.scroll_into_view_if_needed()

        def read() -> dict:
            row = meter.locator(".mha-meter-readout tr", has_text="latent (MLA)").first
            return {"img.mha-meter-gqa": meter.locator("img.mha-meter-gqa").first.get_attribute("src") or "",
                    "img.mha-meter-band": meter.locator("img.mha-meter-band").first.get_attribute("src") or "",
                    "latent (MLA)": row.inner_text(), "readout": meter.locator(".mha-meter-readout").first.inner_text()}

        padding = meter.locator(".mha-meter-readout td").first.evaluate("e => parseFloat(getComputedStyle(e).paddingLeft)")
        assert padding >= 6, f"the meter's table cells have {padding} px of padding"
        for css, (label, follows) in METER_SLIDERS.items():
            before = read()
            assert before["img.mha-meter-gqa"] and before["img.mha-meter-band"], "the meter shows no figure"
            handle = meter.locator(f'.{css} .noUi-handle[role="slider"]').first
            handle.focus()
            handle.press("ArrowRight")
            after = _wait_for(read, lambda s, b=before, lab=label, f=follows: s[f] != b[f]
                              and _value(s["readout"], lab) != _value(b["readout"], lab), timeout=30.0)
            old, new = _value(before["readout"], label), _value(after["readout"], label)
            assert old is not None and new is not None and new > old, f"{label}: the read-out did not move up"
            assert after[follows] != before[follows], f"{label}: {follows} did not change"
            assert "could not redraw" not in after["readout"], after["readout"]
    except BaseException:
        _screenshot_on_failure(meter, "11-cost-meter-failure.png")
        raise


# ---- 12: the training replay --------------------------------------------------------------------------------


def check_training_replay(nb: NotebookPage) -> None:
    """Three presses of → on the replay's slider show steps 10, 20, 30: new maps and new losses each time."""
    replay = nb.panel.locator(".jp-OutputArea .mha-training-replay").first
    try:
        replay.wait_for(timeout=30_000)
        replay.scroll_into_view_if_needed()

        def read() -> dict:
            return {"src": replay.locator("img").first.get_attribute("src") or "",
                    "readout": replay.locator(".mha-replay-readout").first.inner_text(),
                    "slider": replay.locator(".mha-replay-slider .widget-readout").first.inner_text()}

        seen = [read()]
        assert seen[0]["src"], "the replay shows no figure"
        assert seen[0]["slider"].strip() == "0" and "step 0:" in seen[0]["readout"], seen[0]
        handle = replay.locator('.mha-replay-slider .noUi-handle[role="slider"]').first
        for _ in range(3):
            handle.focus()
            handle.press("ArrowRight")
            seen.append(_wait_for(read, lambda s, b=seen[-1]: s["src"] != b["src"] and s["readout"] != b["readout"]))
        for before, after in zip(seen, seen[1:], strict=False):
            assert after["slider"] != before["slider"], f"the slider did not move: {before} -> {after}"
            assert after["src"] != before["src"], "the maps did not change"
        step = int(seen[-1]["slider"].strip())
        assert step == 30 and f"step {step}:" in seen[-1]["readout"], seen[-1]
        assert re.search(r"on repeated tokens \d\.\d\d", seen[-1]["readout"]), seen[-1]["readout"]
    except BaseException:
        _screenshot_on_failure(replay, "12-replay-failure.png")
        raise


# ---- 14: the layer/head picker --------------------------------------------------------------------------------


def check_text_head_picker(nb: NotebookPage) -> None:
    """Two presses of → on the head slider, then one on the layer slider: a new map and read-out each time."""
    picker = nb.panel.locator(".jp-OutputArea .mha-text-heads").first
    try:
        picker.wait_for(timeout=30_000)
        picker.scroll_into_view_if_needed()

        def read() -> dict:
            return {"src": picker.locator("img").first.get_attribute("src") or "",
                    "readout": picker.locator(".mha-text-heads-readout").first.inner_text()}

        seen = [read()]
        assert seen[0]["src"] and "layer 0, head 0" in seen[0]["readout"], seen[0]["readout"]
        handles = picker.locator('.noUi-handle[role="slider"]')
        for slider, expected in ((1, "layer 0, head 1"), (1, "layer 0, head 2"), (0, "layer 1, head 2")):
            handles.nth(slider).focus()
            handles.nth(slider).press("ArrowRight")
            seen.append(_wait_for(read, lambda s, b=seen[-1]: s["src"] != b["src"] and s["readout"] != b["readout"]))
            assert expected in seen[-1]["readout"], seen[-1]["readout"]
        assert re.search(r"previous \d\.\d\d", seen[-1]["readout"]), seen[-1]["readout"]
    except BaseException:
        _screenshot_on_failure(picker, "14-picker-failure.png")
        raise


#: notebook number -> the check of its widgets, run after the notebook's "Run All"
WIDGET_CHECKS: dict[str, Callable[[NotebookPage], None]] = {
    "10": check_mask_editor,
    "11": check_cost_meter,
    "12": check_training_replay,
    "14": check_text_head_picker,
}


def widget_check_for(notebook: Path) -> Callable[[NotebookPage], None] | None:
    """The check registered for ``notebook`` (by its two-digit number), or None."""
    return WIDGET_CHECKS.get(notebook.name[:2])
