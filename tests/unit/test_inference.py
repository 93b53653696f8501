"""Notebook 10's machinery: causal_mask's two alignments against PyTorch's CausalBias, prefill + decode and chunked
prefill equal to the full pass, and the mask editor's logic (no browser: its state is driven from Python)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention.bias import causal_lower_right, causal_upper_left

import mha_helpers as mh

SHAPES = [(1, 1), (3, 3), (3, 5), (1, 7), (5, 3), (4, 9), (9, 4), (2, 2), (6, 1)]


@pytest.mark.parametrize("L, S", SHAPES)
def test_bottom_right_equals_causal_lower_right(L, S):
    expected = causal_lower_right(L, S)._materialize("cpu")  # (L, S), True = may attend
    assert torch.equal(mh.causal_mask(L, S, align="bottom_right"), expected)


@pytest.mark.parametrize("L, S", SHAPES)
def test_top_left_equals_causal_upper_left_and_is_the_default(L, S):
    expected = causal_upper_left(L, S)._materialize("cpu")
    assert torch.equal(mh.causal_mask(L, S), expected)
    assert torch.equal(mh.causal_mask(L, S, align="top_left"), expected)


@pytest.mark.parametrize("L, S", [(3, 5), (1, 8), (4, 4), (2, 6)])
def test_bottom_right_mask_gives_sdpas_result_with_causal_lower_right(L, S):
    g = torch.Generator().manual_seed(L * 10 + S)
    q, k, v = (torch.randn(2, 3, n, 8, generator=g) for n in (L, S, S))
    ours = F.scaled_dot_product_attention(q, k, v, attn_mask=mh.causal_mask(L, S, align="bottom_right"))
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_lower_right(L, S))
    torch.testing.assert_close(ours, theirs)


def test_square_masks_agree_for_both_alignments():
    for n in range(1, 8):
        assert torch.equal(mh.causal_mask(n, align="top_left"), mh.causal_mask(n, align="bottom_right"))


def test_device_and_dtype():
    mask = mh.causal_mask(3, 5, device="cpu", align="bottom_right")
    assert mask.dtype == torch.bool and mask.device.type == "cpu" and tuple(mask.shape) == (3, 5)


@pytest.mark.parametrize("align", ["bottom-right", "lower_right", "BOTTOM_RIGHT", "", "causal"])
def test_bad_align_value_is_a_clear_value_error(align):
    with pytest.raises(ValueError, match="align must be 'top_left'.*'bottom_right'.*got align="):
        mh.causal_mask(3, 5, align=align)


@pytest.mark.parametrize("align", [True, 1, None, ["bottom_right"]])
def test_bad_align_type_is_a_clear_type_error(align):
    with pytest.raises(TypeError, match="align must be one of"):
        mh.causal_mask(3, 5, align=align)


def test_align_is_keyword_only():
    with pytest.raises(TypeError):
        mh.causal_mask(3, 5, None, "bottom_right")


# ---- prefill + decode through the cache ---------------------------------------------------------------------------


def _layer(d_model=16, num_heads=4, num_kv_heads=4, seed=0):
    torch.manual_seed(seed)
    return mh.GroupedQuerySelfAttention(d_model, num_heads, num_kv_heads)


@pytest.mark.parametrize("chunks", [[7, 1, 1, 1], [3, 3, 1, 1, 1, 1], [10], [1] * 10, [4, 6], [9, 1]])
def test_run_with_cache_equals_the_full_pass(chunks):
    layer = _layer()
    x = torch.randn(2, 10, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out, steps = mh.run_with_cache(layer, x, chunks)
        torch.testing.assert_close(out, layer(x), atol=1e-6, rtol=1e-5)
    assert [s["new"] for s in steps] == list(chunks)
    assert [s["past"] for s in steps] == [sum(chunks[:i]) for i in range(len(chunks))]
    assert all(s["keys"] == s["past"] + s["new"] for s in steps)


def test_run_with_cache_agrees_with_decode_step_by_step():
    layer = _layer(num_kv_heads=2)
    x = torch.randn(1, 6, 16, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(mh.run_with_cache(layer, x, [1] * 6)[0], mh.decode_step_by_step(layer, x, True))


@pytest.mark.parametrize("chunks", [[7, 1, 1, 1], [3, 3, 4], [1] * 10])
def test_gradients_flow_through_the_cache_as_through_the_full_pass(chunks):
    """The cache is written in place; with autograd recording it is copied first, so the views handed out before
    keep the values their backward pass needs: the gradients equal those of the full pass."""
    layer = _layer(num_kv_heads=2)
    x = torch.randn(2, 10, 16, generator=torch.Generator().manual_seed(5), requires_grad=True)
    out, _ = mh.run_with_cache(layer, x, chunks)
    (grad_x_cached,) = torch.autograd.grad(out.square().sum(), x)
    (grad_x_full,) = torch.autograd.grad(layer(x).square().sum(), x)
    torch.testing.assert_close(grad_x_cached, grad_x_full, atol=1e-5, rtol=1e-4)


def test_a_layer_names_the_cache_it_was_given_not_its_own_keys():
    layer = _layer(num_kv_heads=2)
    with pytest.raises(ValueError, match=r"cache was built for batch=2, .* need batch=1"):
        layer(torch.randn(1, 1, 16), cache=layer.new_cache(2, 4))
    full = layer.new_cache(1, 1)
    layer(torch.randn(1, 1, 16), cache=full)
    with pytest.raises(ValueError, match="cache is full"):
        layer(torch.randn(1, 1, 16), cache=full)


@pytest.mark.parametrize("chunks, error", [([5, 4], ValueError), ([], ValueError), ("73", TypeError),
                                           ([10, 0], ValueError), ([3.0, 7], TypeError), (7, TypeError)])
def test_run_with_cache_rejects_bad_chunks(chunks, error):
    with pytest.raises(error, match="chunk"):
        mh.run_with_cache(_layer(), torch.randn(1, 10, 16), chunks)


def test_run_with_cache_rejects_other_layers():
    with pytest.raises(TypeError, match="GroupedQuerySelfAttention"):
        mh.run_with_cache(mh.MultiHeadAttention(16, 4), torch.randn(1, 4, 16), [4])


def test_query_positions_seen():
    assert mh.query_positions_seen(mh.causal_mask(2, 4, align="bottom_right")) == [[0, 1, 2], [0, 1, 2, 3]]
    with pytest.raises(TypeError, match="2-D boolean"):
        mh.query_positions_seen(torch.ones(2, 2))


# ---- decode cost ------------------------------------------------------------------------------------------------


def test_decode_cost_counts_by_hand():
    c = mh.decode_cost(num_layers=2, d_model=8, num_heads=2, num_kv_heads=1, context_len=5, bytes_per_value=4)
    head_dim = 4
    per_layer = 2 * 8 * 8 + 2 * 8 * 1 * head_dim + 2 * 8 * 32
    assert c["params"] == 2 * per_layer
    assert c["weight bytes"] == 4 * c["params"]
    assert c["kv bytes"] == 5 * 2 * 2 * 1 * head_dim * 4
    assert c["flops"] == 2 * c["params"] + 2 * 4 * 2 * head_dim * 5
    assert c["intensity"] == pytest.approx(c["flops"] / (c["weight bytes"] + c["kv bytes"]))


@pytest.mark.parametrize("kwargs, error", [
    (dict(num_heads=3), ValueError), (dict(num_kv_heads=3), ValueError), (dict(new_tokens=9), ValueError),
    (dict(batch=0), ValueError), (dict(context_len=2.5), TypeError), (dict(d_ff=0), ValueError)])
def test_decode_cost_rejects_bad_arguments(kwargs, error):
    base = dict(num_layers=2, d_model=8, num_heads=4, num_kv_heads=2, context_len=8)
    with pytest.raises(error):
        mh.decode_cost(**{**base, **kwargs})


# ---- the mask editor, without a browser --------------------------------------------------------------------------


def test_mask_editor_starts_causal_and_toggles():
    editor = mh.mask_editor(3, 6, align="bottom_right")
    assert torch.equal(editor.mask, mh.causal_mask(3, 6, align="bottom_right"))
    assert editor.alignment() == "bottom_right"
    assert editor.toggle(0, 5) is True  # was blocked (key 5 is after query 0 at position 3)
    assert editor.alignment() is None and "custom" in editor.summary()
    assert editor.toggle(0, 5) is False
    assert editor.alignment() == "bottom_right"


def test_mask_editor_flags_fully_masked_rows_and_their_nan():
    editor = mh.mask_editor(3, 6)
    for j in range(4):
        editor.toggle(0, j)
    assert editor.dead_rows() == [0]
    assert "fully masked rows: [0]" in repr(editor)
    assert torch.isnan(mh.naive_masked_softmax(editor.scores(), editor.mask)[0]).all()
    w = editor.weights()
    assert torch.equal(w[0], torch.zeros(6)) and torch.allclose(w[1:].sum(-1), torch.ones(2))
    assert not torch.isnan(w).any()


def test_mask_editor_weights_follow_the_mask():
    editor = mh.mask_editor(4, 5, align="top_left", seed=3)
    w = editor.weights()
    assert torch.equal(w > 0, editor.mask)
    assert torch.allclose(w.sum(-1), torch.ones(4))


def test_mask_forms_are_one_mask_three_ways():
    mask = mh.causal_mask(3, 5, align="bottom_right")
    forms = mh.mask_forms(mask)
    assert torch.equal(forms["sdpa bool"], mask)
    assert torch.equal(forms["nn.MultiheadAttention bool"], ~mask)
    assert torch.equal(forms["additive float"] == 0, mask) and torch.isneginf(forms["additive float"][~mask]).all()
    with pytest.raises(TypeError, match="boolean"):
        mh.mask_forms(mask.float())


def test_mask_editor_align_switch_resets_the_grid():
    editor = mh.mask_editor(2, 5, align="bottom_right")
    editor.toggle(1, 0)
    editor.set_align("top_left")
    assert torch.equal(editor.mask, mh.causal_mask(2, 5)) and editor.alignment() == "top_left"
    with pytest.raises(ValueError, match="align"):
        editor.set_align("bottom-right")


def test_square_editor_is_both_alignments():
    assert mh.mask_editor(3, 3).alignment() == "top_left = bottom_right"


@pytest.mark.parametrize("i, j, error", [(3, 0, ValueError), (0, 6, ValueError), (-1, 0, ValueError),
                                         (True, 0, TypeError), (0.0, 1, TypeError)])
def test_mask_editor_toggle_rejects_bad_cells(i, j, error):
    with pytest.raises(error, match="must be an int"):
        mh.mask_editor(3, 6).toggle(i, j)


def test_mask_editor_rejects_big_grids():
    with pytest.raises(ValueError, match="small grids"):
        mh.mask_editor(9, 9)


def test_mask_editor_widget_reacts_like_the_methods():
    """The ipywidgets behind the editor, driven from Python: a cell's toggle changes the mask, the forms and the
    read-out; the alignment buttons reset the grid."""
    editor = mh.mask_editor(3, 6)
    bundle = editor._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"] == repr(editor)
    forms_before, readout_before = editor._forms_html.value, editor._readout.value
    for j in range(4):
        editor._cells[0][j].value = False  # what a click on a green cell does
    assert editor.dead_rows() == [0]
    assert editor._forms_html.value != forms_before
    assert "fully masked rows: [0]" in editor._readout.value and editor._readout.value != readout_before
    assert "NaN-prone" in editor._weights_html.value
    editor._align_buttons.value = "top_left"
    assert editor.alignment() == "top_left"
    assert [b.value for b in editor._cells[0]] == [True] + [False] * 5
    editor.toggle(2, 5)  # the method updates the buttons too
    assert editor._cells[2][5].value is True and editor._cells[2][5].button_style == "success"


def test_plot_mask_editor_draws_four_panels():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = mh.plot_mask_editor(mh.mask_editor(3, 6))
    assert len(fig.axes) == 4
    plt.close(fig)
    fig = mh.plot_causal_alignment(3, 10)
    assert len(fig.axes) == 2
    plt.close(fig)
    with pytest.raises(TypeError, match="MaskEditor"):
        mh.plot_mask_editor(torch.ones(2, 2, dtype=torch.bool))


# ---- the exercise checkers of notebook 10 -------------------------------------------------------------------------


def _run(checker, fn, capsys):
    passed = checker(fn)
    return bool(passed), capsys.readouterr().out


def test_bottom_right_checker(capsys):
    from checker_support import stub

    assert _run(mh.check_bottom_right_mask, stub, capsys)[1].startswith("⏳")
    right = lambda L, S: torch.ones(L, S, dtype=torch.bool).tril(diagonal=S - L)  # noqa: E731
    assert _run(mh.check_bottom_right_mask, right, capsys)[0]
    wrong = {
        "top-left": lambda L, S: torch.ones(L, S, dtype=torch.bool).tril(),
        "inverted": lambda L, S: ~right(L, S),
        "off by one": lambda L, S: torch.ones(L, S, dtype=torch.bool).tril(diagonal=S - L + 1),
        "swapped": lambda L, S: right(L, S).T,
        "boolean": lambda L, S: right(L, S).float(),
    }
    for expected_hint, fn in wrong.items():
        passed, out = _run(mh.check_bottom_right_mask, fn, capsys)
        assert not passed and out.startswith("❌"), expected_hint
        assert {"top-left": "top-left", "inverted": "polarity", "off by one": "off by one", "swapped": "swapped",
                "boolean": "boolean"}[expected_hint] in out, out


def test_cached_attention_checker(capsys):
    import torch.nn.functional as F
    from checker_support import stub

    assert _run(mh.check_cached_attention, stub, capsys)[1].startswith("⏳")

    def right(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mh.causal_mask(q.shape[-2], k.shape[-2],
                                                                               align="bottom_right"))

    assert _run(mh.check_cached_attention, right, capsys)[0]
    wrong = {
        "is_causal": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
        "no mask": lambda q, k, v: F.scaled_dot_product_attention(q, k, v),
        "not scaled": lambda q, k, v: F.scaled_dot_product_attention(
            q, k, v, scale=1.0, attn_mask=mh.causal_mask(q.shape[-2], k.shape[-2], align="bottom_right")),
        "shape": lambda q, k, v: right(q, k, v)[:, 0],
    }
    for name, fn in wrong.items():
        passed, out = _run(mh.check_cached_attention, fn, capsys)
        assert not passed and out.startswith("❌"), name
        assert {"is_causal": "top-left", "no mask": "no mask", "not scaled": "not scaled",
                "shape": "shape"}[name] in out, out


# ---- the editor's states, for a copy without a kernel (site/widget_export.py packs them) --------------------------


def test_mask_editor_describes_one_state_per_preset():
    from _mha_helpers.widgets.mask_editor import MASK_PRESETS

    editor = mh.mask_editor(3, 6)
    before = editor.mask
    states = editor.states()
    assert states.kind == "mask_editor" and [c.name for c in states.controls] == ["mask"]
    assert states.start == {"mask": "causal, bottom-right"}
    try:
        shown = {values["mask"]: states.view(values) for values in states.combinations}
    finally:
        states.restore()
    assert torch.equal(editor.mask, before), "restore() must leave the editor as it was"
    assert list(shown) == list(MASK_PRESETS)
    readouts = [s["readout"] for s in shown.values()]
    assert len(set(readouts)) == len(readouts), "every preset shows its own read-out"
    assert any("fully masked rows: [0]" in r for r in readouts)
    assert any("causal, top_left" in r for r in readouts) and any("causal, bottom_right" in r for r in readouts)
    assert len({s["forms"] for s in shown.values()}) == len(MASK_PRESETS)
    band = shown["each query: itself and the key before"]
    assert "6 of 18 allowed (custom)" in band["readout"]
    assert set(band) == {name for name, _ in states.slots}
