"""What the widgets share (``_mha_helpers/widgets/base.py``) and how a widget describes its states
(``_mha_helpers/widgets/states.py``), tested without a browser."""

from __future__ import annotations

import pytest

import mha_helpers as mh
from _mha_helpers.widgets.base import LiveWidget, text_colour_on
from _mha_helpers.widgets.states import Control, Picture, States, every_combination

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
    with pytest.raises(ValueError, match="rows must place each control and slot"):
        _states(rows=[["n", "on"], ["text"]])
    with pytest.raises(ValueError, match="rows must place each control and slot"):  # a status is heard, not placed
        _states(slots=[("text", "html"), ("figure", "image"), ("said", "status")],
                rows=[["n", "on"], ["text"], ["figure"], ["said"]])
    with pytest.raises(ValueError, match="parts must name a slot"):
        _states(parts={"text": [["n"], ["volume"]]})
    with pytest.raises(ValueError, match="an image slot has one part"):
        _states(parts={"figure": [["n"], ["on"]]})
    with pytest.raises(ValueError, match="png must be the bytes of a PNG"):
        Picture(b"GIF89a", "a figure")
    with pytest.raises(ValueError, match="alt must say what the figure shows"):
        Picture(b"\x89PNG\r\n\x1a\n", " ")
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


def test_a_slot_in_parts_lists_the_controls_of_each_part_in_the_controls_order():
    states = _states(parts={"text": [["on", "n"], []]})
    assert states.parts_of("text") == [["n", "on"], []]
    assert states.parts_of("figure") == [["n", "on"]]  # no parts given: one part, every control


def test_widgets_that_cannot_be_copied_yet_say_so():
    class Plain(LiveWidget):  # a widget without states()
        pass

    with pytest.raises(NotImplementedError, match="Plain cannot be copied without a kernel yet"):
        Plain().states()


def test_the_cost_meter_describes_each_piece_with_the_sliders_it_depends_on():
    """Each piece of the meter's state is what the live meter shows, and depends on the sliders it names only."""
    meter = mh.variant_cost_meter(d_model=16, num_heads=4, num_kv_heads=2, latent_dim=8, window=4, context=8)
    states = meter.states()
    assert [c.name for c in states.controls] == ["num_kv_heads", "latent_dim", "window"]
    assert len(states.combinations) == 3 * 8 * 8 and states.start == {"num_kv_heads": 2, "latent_dim": 8, "window": 4}
    assert states.parts_of("window_map") == [["window"]] and states.parts_of("gqa") == [["num_kv_heads"]]
    a = states.view({"num_kv_heads": 4, "latent_dim": 16, "window": 2})
    assert "".join(a["readout"]) == meter.readout.value and "num_kv_heads = 4" in meter.readout.value
    assert isinstance(a["gqa"], Picture) and a["gqa"].png == bytes(meter.gqa_image.value)
    assert "each query head reads its own K/V head" in a["gqa"].alt and "window 2" in a["window_map"].alt
    b = states.view({"num_kv_heads": 4, "latent_dim": 32, "window": 2})  # latent_dim moves the MLA row only
    changed = [i for i, (x, y) in enumerate(zip(a["readout"], b["readout"], strict=True)) if x != y]
    assert [states.parts_of("readout")[i] for i in changed] == [["latent_dim"], ["latent_dim"]]
    assert a["gqa"] == b["gqa"] and a["window_map"] == b["window_map"]
    states.restore()
    assert repr(meter) == ("VariantCostMeter(d_model=16, num_heads=4, num_kv_heads=2, latent_dim=8, window=4, "
                           "context=8)")


def test_text_on_a_coloured_cell_is_black_or_white_whichever_reads_better():
    assert text_colour_on("#440154") == "#fff" and text_colour_on("#fde725") == "#000"
    assert text_colour_on("#22a884") == "#000"  # white on this teal is 2.9:1, black 7.2:1
