"""The head explorer of notebook 06 (_mha_helpers/head_explorer.py), tested without a browser.

What it promises: the head-count slider offers only valid head counts; moving it re-splits the SAME weights (the
very same Parameter objects, the same parameter count) and redraws the figure and the head_dim read-out; the maps are
the ones the reference module computes; the per-head numbers (entropy, previous-token share) are right; bad input
gets a clear error or a message in the widget, never a traceback. (06's exercise checkers: tests/unit/test_checkers_06.py;
tests/browser/test_browser.py checks the same widgets in a real JupyterLab.)
"""

from __future__ import annotations

import math

import matplotlib
import pytest
import torch

import mha_helpers as mh
from _mha_helpers.widgets.states import Picture

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def explorer():
    return mh.head_explorer(d_model=16, num_heads=4)


def _manual_maps(module: mh.MultiHeadAttention, x: torch.Tensor, num_heads: int, causal: bool) -> torch.Tensor:
    """Per-head maps computed by hand from slices of Q and K: (num_heads, seq, seq)."""
    q, k = module.W_q(x)[0], module.W_k(x)[0]  # (seq, d_model) each
    head_dim = module.embed_dim // num_heads
    maps = []
    for h in range(num_heads):
        cols = slice(h * head_dim, (h + 1) * head_dim)  # head h's block of features
        scores = q[:, cols] @ k[:, cols].T / math.sqrt(head_dim)  # (seq, seq)
        if causal:
            scores = scores.masked_fill(~mh.causal_mask(x.shape[1]), float("-inf"))
        maps.append(torch.softmax(scores, dim=-1))
    return torch.stack(maps)


# ---- re-splitting the same weights ------------------------------------------------------------------------------


def test_explorer_module_is_seeded_and_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a, b = mh.explorer_module(16, seed=0), mh.explorer_module(16, seed=0)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    c = mh.explorer_module(16, seed=1)
    assert not torch.equal(a.W_q.weight, c.W_q.weight)
    assert not a.training


def test_gain_scales_only_the_query_and_key_weights():
    plain, sharp = mh.explorer_module(16, gain=1.0), mh.explorer_module(16, gain=2.5)
    assert torch.allclose(sharp.W_q.weight, 2.5 * plain.W_q.weight)
    assert torch.allclose(sharp.W_k.weight, 2.5 * plain.W_k.weight)
    assert torch.equal(sharp.W_v.weight, plain.W_v.weight)
    assert torch.equal(sharp.W_o.weight, plain.W_o.weight)


@pytest.mark.parametrize("num_heads", [1, 2, 4, 8, 16])
def test_resplit_shares_the_very_same_parameters(num_heads):
    module = mh.explorer_module(16)
    before = torch.random.get_rng_state()
    view = mh.resplit_heads(module, num_heads)
    assert torch.equal(torch.random.get_rng_state(), before), "re-splitting must not draw random numbers"
    for name in ("W_q", "W_k", "W_v", "W_o"):
        assert getattr(view, name).weight is getattr(module, name).weight
        assert getattr(view, name).bias is getattr(module, name).bias
    assert (view.num_heads, view.head_dim) == (num_heads, 16 // num_heads)
    assert sum(p.numel() for p in view.parameters()) == sum(p.numel() for p in module.parameters()) == 1088


@pytest.mark.parametrize("num_heads", [1, 2, 4, 8, 16])
@pytest.mark.parametrize("causal", [False, True])
def test_maps_are_softmaxes_of_slices_of_the_same_q_and_k(num_heads, causal):
    module = mh.explorer_module(16)
    x = mh.toy_embeddings(mh.SENTENCE, 16)  # (1, 6, 16)
    maps = mh.head_attention_maps(module, x, num_heads, causal=causal)
    assert maps.shape == (1, num_heads, 6, 6)
    with torch.no_grad():
        assert torch.allclose(maps[0], _manual_maps(module, x, num_heads, causal), atol=1e-6)
    assert torch.allclose(maps.sum(-1), torch.ones(1, num_heads, 6))
    if causal:
        assert bool((maps[0].triu(diagonal=1) == 0).all())


def test_resplit_refuses_bad_head_counts_and_modules():
    module = mh.explorer_module(12)
    with pytest.raises(ValueError, match="valid head counts: 1, 2, 3, 4, 6, 12"):
        mh.resplit_heads(module, 5)
    with pytest.raises(TypeError, match="module must be"):
        mh.resplit_heads(torch.nn.MultiheadAttention(12, 3), 3)
    with pytest.raises(TypeError, match="num_heads"):
        mh.resplit_heads(module, 2.0)


# ---- the per-head numbers ------------------------------------------------------------------------------------


def test_entropy_in_bits():
    uniform = torch.full((3, 4, 8), 1 / 8)
    assert torch.allclose(mh.attention_entropy(uniform), torch.full((3,), 3.0))  # log2(8)
    one_hot = torch.eye(5).expand(2, 5, 5)
    assert torch.equal(mh.attention_entropy(one_hot), torch.zeros(2))
    assert str(mh.attention_entropy(one_hot)[0].item()) == "0.0"  # not -0.0
    causal = torch.softmax(torch.zeros(6, 6).masked_fill(~mh.causal_mask(6), float("-inf")), dim=-1)
    want = sum(math.log2(i + 1) for i in range(6)) / 6  # row i spreads evenly over i + 1 keys
    assert torch.isfinite(mh.attention_entropy(causal)).all()
    assert mh.attention_entropy(causal).item() == pytest.approx(want, abs=1e-5)


def test_previous_token_share():
    shift = torch.diag(torch.ones(5), diagonal=-1)  # (6, 6): every token looks at the one before it
    shift[0, 0] = 1.0
    assert mh.previous_token_share(shift).item() == pytest.approx(1.0)
    assert mh.previous_token_share(torch.full((2, 6, 6), 1 / 6)).tolist() == pytest.approx([1 / 6, 1 / 6])
    assert mh.previous_token_share(torch.eye(6)).item() == 0.0
    with pytest.raises(ValueError, match="L >= 2"):
        mh.previous_token_share(torch.ones(1, 1))
    with pytest.raises(TypeError, match="floating-point"):
        mh.previous_token_share(torch.ones(3, 3, dtype=torch.long))


# ---- the widget -------------------------------------------------------------------------------------------


def test_slider_offers_only_valid_head_counts(explorer):
    assert list(explorer.head_slider.options) == mh.valid_head_counts(16) == [1, 2, 4, 8, 16]
    assert "SelectionSlider" in type(explorer.head_slider).__name__
    wide = mh.head_explorer(d_model=12, num_heads=3, compact=True)
    assert list(wide.head_slider.options) == [1, 2, 3, 4, 6, 12]


def test_moving_the_slider_redraws_figure_and_readout(explorer):
    explorer.head_slider.value = 4
    png_4, readout_4, table_4 = bytes(explorer.image.value), explorer.readout.value, explorer.table.value
    assert png_4.startswith(b"\x89PNG")
    assert "head_dim = 4" in readout_4 and "1,088" in readout_4
    explorer.head_slider.value = 8
    assert bytes(explorer.image.value) != png_4
    assert "head_dim = 2" in explorer.readout.value and "1,088" in explorer.readout.value
    assert explorer.table.value != table_4
    assert list(explorer.enlarge.options) == list(range(8))
    assert explorer.weights.shape == (8, 6, 6)
    assert torch.allclose(explorer.weights, _manual_maps(explorer.module, explorer._x, 8, causal=False), atol=1e-6)
    explorer.head_slider.value = 4
    assert bytes(explorer.image.value) == png_4, "going back to 4 heads shows the same figure again"


def test_the_same_module_is_resplit_for_every_head_count(explorer):
    before = [p.clone() for p in explorer.module.parameters()]
    for h in explorer.head_slider.options:
        explorer.head_slider.value = h
        assert f"head_dim = {16 // h}" in explorer.readout.value
    assert all(torch.equal(p, q) for p, q in zip(before, explorer.module.parameters(), strict=True))
    explorer.head_slider.value = 4


def test_enlarge_and_causal_controls(explorer):
    explorer.head_slider.value = 8
    explorer.enlarge.value = 5
    assert "head 5 of 8" in explorer.table.value
    explorer.head_slider.value = 4  # head 5 does not exist with 4 heads: back to head 0
    assert explorer.enlarge.value == 0 and list(explorer.enlarge.options) == [0, 1, 2, 3]
    assert "head 0 of 4" in explorer.table.value
    png = bytes(explorer.image.value)
    explorer.causal.value = True
    assert bytes(explorer.image.value) != png
    assert bool((explorer.weights.triu(diagonal=1) == 0).all())
    explorer.causal.value = False
    assert bytes(explorer.image.value) == png


def test_sentence_box(explorer):
    explorer.sentence.value = "a dog chased a ball"
    assert explorer.tokens == ["a", "dog", "chased", "a", "ball"]
    assert explorer.weights.shape[-1] == 5
    assert "chased" in explorer.table.value
    explorer.sentence.value = "   "
    assert "empty" in explorer.readout.value
    assert explorer.tokens == ["a", "dog", "chased", "a", "ball"], "an empty box keeps the last sentence"
    explorer.sentence.value = " ".join(f"w{i}" for i in range(30))
    assert len(explorer.tokens) == mh.EXPLORER_MAX_TOKENS
    explorer.sentence.value = "<b>bold</b> &"
    assert "<b>bold</b>" not in explorer.table.value, "typed words are escaped in the HTML table"
    explorer.sentence.value = " ".join(mh.SENTENCE)
    assert explorer.tokens == list(mh.SENTENCE)


def test_one_word_sentence_does_not_break(explorer):
    explorer.sentence.value = "hello"
    assert "could not redraw" not in explorer.readout.value
    assert explorer.weights.shape == (explorer.head_slider.value, 1, 1)
    explorer.sentence.value = " ".join(mh.SENTENCE)


def test_text_repr_is_short_and_stable(explorer):
    explorer.head_slider.value = 4
    bundle = explorer._repr_mimebundle_()
    assert bundle["text/plain"] == (
        "HeadExplorer(d_model=16, num_heads=4, head_dim=4, params=1088, tokens=6, causal=False)"
    )
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_states_are_what_the_live_explorer_itself_shows(explorer):
    """states() (for a copy without a kernel) sets the live widget's own controls and reads what it displays."""
    explorer.head_slider.value, explorer.enlarge.value, explorer.causal.value = 4, 1, False
    states = explorer.states()
    assert [c.name for c in states.controls] == ["heads", "enlarge", "causal"]
    assert states.start == {"heads": 4, "enlarge": 1, "causal": False}
    assert len(states.combinations) == (1 + 2 + 4 + 8 + 16) * 2, "each head count x each head x mask off/on"
    assert {"heads": 2, "enlarge": 3, "causal": False} not in states.combinations, "head 3 of 2 is unreachable"
    shown = states.view({"heads": 8, "enlarge": 5, "causal": True})
    assert (explorer.head_slider.value, explorer.enlarge.value, explorer.causal.value) == (8, 5, True)
    assert shown == {"readout": explorer.readout.value, "figure": Picture(bytes(explorer.image.value),
                                                                          explorer.describe()),
                     "table": explorer.table.value, "status": explorer.status_line()}
    assert "8 attention maps, one per head, of d_model 16 cut into 8 heads of head_dim 2" in shown["figure"].alt
    assert "head 5 enlarged" in shown["figure"].alt and "Causal mask on" in shown["figure"].alt
    assert shown["status"].startswith("8 heads of head_dim 2; most focused: head ")
    assert "head_dim = 2" in shown["readout"] and "head 5 of 8" in shown["table"]
    states.restore()
    assert (explorer.head_slider.value, explorer.enlarge.value, explorer.causal.value) == (4, 1, False)
    assert "The sentence is fixed here" in states.note and states.css_class == "mha-head-explorer"


def test_compact_variant_has_only_the_slider():
    compact = mh.head_explorer(d_model=8, num_heads=2, compact=True)
    assert repr(compact).startswith("HeadExplorer(compact, d_model=8")
    assert compact.widget.children == (compact.head_slider, compact.readout, compact.image)
    png = bytes(compact.image.value)
    compact.head_slider.value = 4
    assert bytes(compact.image.value) != png and "head_dim = 2" in compact.readout.value


def test_your_own_module_can_be_explored():
    module = mh.MultiHeadAttention(12, 3)
    explorer = mh.head_explorer(module=module, num_heads=6, compact=True)
    assert explorer.d_model == 12 and explorer.module is module
    assert list(explorer.head_slider.options) == [1, 2, 3, 4, 6, 12]
    with pytest.raises(ValueError, match="self-attention"):
        mh.head_explorer(module=mh.MultiHeadAttention(12, 3, kdim=5))


def test_bad_arguments_get_clear_errors():
    with pytest.raises(ValueError, match="d_model=10 is not divisible by num_heads=3; valid head counts: 1, 2, 5, 10"):
        mh.head_explorer(d_model=10, num_heads=3)
    with pytest.raises(TypeError, match="module must be"):
        mh.head_explorer(module=torch.nn.MultiheadAttention(8, 2))
    with pytest.raises(ValueError, match="sentence is empty"):
        mh.head_explorer(sentence="")
    with pytest.raises(TypeError, match="sentence must be"):
        mh.head_explorer(sentence=42)
    with pytest.raises(TypeError, match="causal"):
        mh.head_explorer(causal="yes")
    with pytest.raises(ValueError, match="enlarge must be a head index 0..3"):
        mh.plot_head_explorer(num_heads=4, enlarge=4)
    with pytest.raises(ValueError, match="gain"):
        mh.explorer_module(16, gain=0)


def test_static_figure_matches_the_widgets_default_state():
    import matplotlib.pyplot as plt

    fig = mh.plot_head_explorer(num_heads=4)
    try:
        assert len(fig.axes) == 4 + 2 + 1  # four heads, the enlarged head, the average, the colour bar
        texts = [t.get_text() for ax in fig.axes for t in ax.texts]
        weights = mh.head_attention_maps(mh.explorer_module(16), mh.toy_embeddings(mh.SENTENCE, 16), 4)[0]
        entropy = mh.attention_entropy(weights)
        assert any(t.startswith(f"{entropy[0]:.2f} bits") for t in texts)
        assert "head_dim = 4" in fig._suptitle.get_text()
    finally:
        plt.close(fig)
    fig = mh.plot_head_explorer(num_heads=16, compact=True)
    try:
        assert len(fig.axes) == 16 + 1  # and the colour bar
    finally:
        plt.close(fig)


def test_redraw_does_not_change_torchs_thread_count(explorer):
    threads = torch.get_num_threads()
    explorer.redraw()
    assert torch.get_num_threads() == threads

