"""What the widgets share (``_mha_helpers/widgets/base.py``) and how a widget describes its states
(``_mha_helpers/widgets/states.py``), tested without a browser."""

from __future__ import annotations

import pytest

import mha_helpers as mh
from _mha_helpers.widgets.states import Control, States, every_combination

VIEW = "application/vnd.jupyter.widget-view+json"


def _states(**changes) -> States:
    controls = [Control("n", "n", "slider", [1, 2], 1), Control("on", "on", "checkbox", [False, True], False)]
    kwargs = {"kind": "toy", "controls": controls, "slots": [("text", "html"), ("figure", "image")],
              "rows": [["n", "on"], ["text"], ["figure"]], "combinations": every_combination(controls),
              "view": lambda values: {"text": str(values), "figure": b""}, "restore": lambda: None}
    return States(**{**kwargs, **changes})


def test_every_combination_walks_the_first_control_slowest():
    states = _states()
    assert states.combinations == [{"n": 1, "on": False}, {"n": 1, "on": True}, {"n": 2, "on": False},
                                   {"n": 2, "on": True}]
    assert states.start == {"n": 1, "on": False}


def test_a_description_that_does_not_add_up_is_refused():
    with pytest.raises(ValueError, match="slot's kind"):
        _states(slots=[("text", "html"), ("figure", "video")])
    with pytest.raises(ValueError, match="rows must place each control and slot once"):
        _states(rows=[["n", "on"], ["text"]])
    with pytest.raises(ValueError, match="a combination must give each control one of its options"):
        _states(combinations=[{"n": 3, "on": False}])
    with pytest.raises(ValueError, match="kind must be"):
        Control("x", "x", "knob", [1], 1)


def test_widgets_show_their_live_view_with_their_short_repr_as_text():
    editor = mh.mask_editor(2, 3)
    assert editor._widget is None  # the editor's box is built when it is first displayed
    for widget in (editor, mh.variant_cost_meter(d_model=16, num_heads=4, num_kv_heads=2, latent_dim=8,
                                                 window=4, context=8)):
        bundle = widget._repr_mimebundle_()
        assert bundle["text/plain"] == repr(widget) and VIEW in bundle
    assert editor._widget is not None


def test_a_failed_redraw_is_shown_in_the_readout():
    meter = mh.variant_cost_meter(d_model=16, num_heads=4, num_kv_heads=2, latent_dim=8, window=4, context=8)

    def broken():
        raise RuntimeError("out of ink")

    meter.redraw = broken
    meter.window_slider.value = 2
    assert meter.readout.value == "<b style='color:#b00'>could not redraw: RuntimeError: out of ink</b>"


def test_widgets_that_cannot_be_copied_yet_say_so():
    meter = mh.variant_cost_meter(d_model=16, num_heads=4, num_kv_heads=2, latent_dim=8, window=4, context=8)
    with pytest.raises(NotImplementedError, match="VariantCostMeter cannot be copied without a kernel yet"):
        meter.states()
