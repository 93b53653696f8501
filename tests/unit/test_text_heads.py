"""Notebook 14's head studies (``experiments/text_heads.py``) and its layer/head picker (``widgets/text_heads.py``),
on tiny untrained models: the pattern shares mean what they say, the ablation's shortcut (each layer's input reused)
gives what a full masked forward gives, pruning walks from every head to none, sampling is seeded, and the picker
describes each of its states."""

from __future__ import annotations

import string

import pytest
import torch

import mha_helpers as mh
from _mha_helpers.experiments.text_heads import pattern_keys, scored_windows

VOCAB = "".join(sorted("\n ." + string.ascii_letters))
TEXT = "Return a new list. Push item onto heap.\nSplit the text at spaces. " * 3


@pytest.fixture(scope="module")
def tiny() -> mh.TextModel:
    torch.manual_seed(0)
    return mh.TextModel(VOCAB, context=24, d_model=16, num_heads=4, num_layers=2, dropout=0.0).eval()


def test_pattern_keys_mark_the_keys_each_pattern_means(tiny):
    rows = tiny.encode("ab cde\nfgh")[None]  # (1, 10): a b ␣ c d e ⏎ f g h
    keys = {name: k[0] for name, k in pattern_keys(tiny, rows).items()}  # (T, T) each
    assert keys["previous"][3].tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]  # 'c' reads the space
    assert keys["self"].equal(torch.eye(10))
    assert keys["word start"][5].tolist() == [0, 0, 0, 1, 0, 0, 0, 0, 0, 0]  # 'e': its word "cde" starts at 3
    assert keys["word start"][9].tolist() == [0, 0, 0, 0, 0, 0, 0, 1, 0, 0]  # 'h': after the newline
    assert keys["word start"][4].sum() == 0  # 'd': its word starts one back, which is "previous", not counted twice
    assert keys["whitespace"][9].tolist() == [0, 0, 1, 0, 0, 0, 1, 0, 0, 0]  # the space and the newline before it
    assert keys["whitespace"][1].sum() == 0  # nothing after the query (causal)
    assert keys["first"][:, 0].eq(1).all() and keys["first"][:, 1:].eq(0).all()


def test_a_head_that_spreads_evenly_scores_the_even_share(tiny):
    even = mh.TextModel(VOCAB, context=24, d_model=16, num_heads=4, num_layers=2).eval()
    for block in even.blocks:
        torch.nn.init.zeros_(block.attn.W_q.weight)
        torch.nn.init.zeros_(block.attn.W_q.bias)  # every score 0: each row uniform over the earlier characters
    scores = mh.head_pattern_scores(even, TEXT, num_windows=4, skip=4)
    for pattern in mh.PATTERNS:
        assert torch.allclose(scores[pattern], torch.full((2, 4), scores["even"][pattern]), atol=1e-6), pattern
    assert all(name == "unexplained" for row in mh.classify_heads(scores) for name in row)


def test_classify_heads_needs_both_bars():
    zeros = torch.zeros(1, 3)
    scores = {p: zeros.clone() for p in mh.PATTERNS}
    scores["even"] = {p: 0.02 for p in mh.PATTERNS} | {"whitespace": 0.2}
    scores["previous"][0, 0] = 0.35  # passes 0.3 and twice 0.02
    scores["whitespace"][0, 1] = 0.35  # passes 0.3 but not twice 0.2
    scores["whitespace"][0, 2], scores["self"][0, 2] = 0.45, 0.31  # both pass: self beats its even share by more
    assert mh.classify_heads(scores) == [["previous", "unexplained", "self"]]


def test_ablation_shortcut_equals_a_full_masked_forward(tiny):
    full, cost = mh.head_ablation(tiny, TEXT, num_windows=3)
    assert full == pytest.approx(mh.masked_bits(tiny, TEXT, None, num_windows=3), abs=1e-5)
    for layer, head in [(0, 0), (0, 3), (1, 2)]:
        mask = torch.ones(2, 4)
        mask[layer, head] = 0.0
        assert float(cost[layer, head]) == pytest.approx(mh.masked_bits(tiny, TEXT, mask, num_windows=3) - full,
                                                         abs=1e-5)


def test_scored_windows_are_evenly_spaced_and_cover_both_ends(tiny):
    rows = scored_windows(tiny, TEXT, num_windows=4)
    ids = tiny.encode(TEXT)
    assert rows.shape == (4, tiny.context + 1)
    assert rows[0].equal(ids[: tiny.context + 1]) and rows[-1].equal(ids[-tiny.context - 1:])


def test_pruning_runs_from_every_head_to_none(tiny):
    full, cost = mh.head_ablation(tiny, TEXT, num_windows=3)
    curve = mh.pruning_curve(tiny, TEXT, cost, num_windows=3)
    assert [k for k, _ in curve] == [8, 6, 4, 2, 1, 0]
    assert curve[0][1] == pytest.approx(full, abs=1e-5)
    assert curve[-1][1] == pytest.approx(mh.masked_bits(tiny, TEXT, torch.zeros(2, 4), num_windows=3), abs=1e-5)
    with pytest.raises(ValueError, match="kept"):
        mh.pruning_curve(tiny, TEXT, cost, kept=[9])
    with pytest.raises(ValueError, match="cost"):
        mh.pruning_curve(tiny, TEXT, torch.zeros(3, 4))


def test_sampling_is_seeded_and_leaves_the_thread_count_alone(tiny):
    threads = torch.get_num_threads()
    a = mh.sample_text(tiny, "Re", length=30, seed=3)
    assert a == mh.sample_text(tiny, "Re", length=30, seed=3) and a.startswith("Re") and len(a) == 32
    assert a != mh.sample_text(tiny, "Re", length=30, seed=4)
    assert torch.get_num_threads() == threads
    assert len(mh.sample_text(tiny, "x" * 40, length=3)) == 43  # a prompt longer than the context is cut to it


def test_picker_describes_each_head_and_restores_itself(tiny):
    picker = mh.text_head_picker(tiny, "Return a new list.", layer=1, head=2)
    assert repr(picker).startswith("TextHeadPicker(") and "'Return a new list.'" in repr(picker)
    states = picker.states(max_states=8)
    assert len(states.combinations) == 8 and states.start == {"layer": 1, "head": 2}
    shown = states.view({"layer": 0, "head": 3})
    assert "layer 0, head 3" in shown["readout"] and "layer 0, head 3" in shown["figure"].alt
    assert shown["status"].startswith("Layer 0, head 3")
    states.restore()
    assert (picker.layer.value, picker.head.value) == (1, 2)
    with pytest.raises(ValueError, match="max_states"):
        picker.states(max_states=4)


@pytest.mark.parametrize("kwargs, error, name", [
    (dict(text="x" * 65), ValueError, "text"), (dict(layer=2), ValueError, "layer"), (dict(head=-1), ValueError, "head"),
    (dict(text="naïve"), ValueError, "character"),
])
def test_picker_refuses_what_it_cannot_draw(tiny, kwargs, error, name):
    with pytest.raises(error, match=name):
        mh.text_head_picker(tiny, **{"text": "Return a list.", **kwargs})
