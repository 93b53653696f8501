"""What heads learn (notebook 08): the two-look-up task, the tiny model, its training, and the claims the notebook makes.

The notebook's story rests on these facts, each tested here on the same fixed seeds the notebook uses:
the task's answers are right; a trained 2-head model beats a 1-head model of the same size; its heads split the two
look-ups between them (attention shares); switching off the head that carries a pattern drops exactly that pattern to
chance; and a training run is bit-identical whatever the thread count, and leaves the caller's random state alone.
"""

from __future__ import annotations

import matplotlib
import pytest
import torch

import mha_helpers as mh

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def trained():
    """The notebook's two models: 1 head and 2 heads at d_model = 8, seed 0."""
    model_1, losses_1 = mh.train_lookup_model(1, seed=0, progress=False)
    model_2, losses_2 = mh.train_lookup_model(2, seed=0, progress=False)
    return {"model_1": model_1, "losses_1": losses_1, "model_2": model_2, "losses_2": losses_2}


# ---- the task -------------------------------------------------------------------------------------------


def test_targets_are_the_previous_and_the_first_token():
    tokens = torch.randint(0, 8, (5, 7), generator=torch.Generator().manual_seed(0))
    targets = mh.two_lookup_targets(tokens)
    assert targets.shape == (5, 7, 2) and targets.dtype == torch.long
    for b in range(5):
        seq = tokens[b].tolist()
        assert targets[b, 0].tolist() == [mh.IGNORE_INDEX, mh.IGNORE_INDEX]
        for i in range(1, 7):
            assert targets[b, i].tolist() == [seq[i - 1], seq[0]], (b, i)


def test_batches_are_repeatable_and_in_range():
    a = mh.make_two_lookup_batch(4, 8, 8, generator=torch.Generator().manual_seed(1))
    b = mh.make_two_lookup_batch(4, 8, 8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[0].shape == (4, 8) and int(a[0].min()) >= 0 and int(a[0].max()) < 8
    assert torch.equal(a[1], mh.two_lookup_targets(a[0]))
    test_a, test_b = mh.lookup_test_set(), mh.lookup_test_set()
    assert test_a[0].shape == (2000, 8) and torch.equal(test_a[0], test_b[0])


def test_lookup_letters():
    assert mh.lookup_letters(8) == list("ABCDEFGH")


# ---- the model --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_heads", [1, 2, 4, 8])
def test_model_shapes_and_parameter_count_do_not_depend_on_heads(num_heads):
    model = mh.TinyLookupModel(num_heads=num_heads)
    tokens = torch.randint(0, 8, (3, 8), generator=torch.Generator().manual_seed(2))
    logits, weights = model(tokens, return_weights=True)
    assert logits.shape == (3, 8, 2, 8)
    assert weights.shape == (3, num_heads, 8, 8)
    assert sum(p.numel() for p in model.parameters()) == 560
    assert torch.allclose(model(tokens), logits, atol=1e-6)


def test_switching_a_head_off_zeroes_its_slice_before_W_o():
    torch.manual_seed(0)
    attn = mh.MultiHeadAttention(8, 2)
    x = torch.randn(2, 5, 8)
    seen = {}
    handle = attn.W_o.register_forward_pre_hook(lambda module, args: seen.setdefault("merged", args[0].detach()))
    full, _ = attn(x)
    handle.remove()
    merged = seen["merged"]  # (batch, seq, d_model), the concatenated heads
    expected = merged.clone()
    expected[..., 4:8] = 0.0  # head 1's features
    with mh.heads_switched_off(attn, [1]):
        off, _ = attn(x)
    assert torch.allclose(off, attn.W_o(expected), atol=1e-6)
    assert torch.allclose(attn(x)[0], full, atol=1e-6)  # the hook is gone after the block
    assert not attn.W_o._forward_pre_hooks


def test_attention_shares_on_known_maps():
    L = 6
    previous = torch.zeros(1, 1, L, L)
    previous[0, 0, torch.arange(1, L), torch.arange(0, L - 1)] = 1.0
    previous[0, 0, 0, 0] = 1.0
    first = torch.zeros(1, 1, L, L)
    first[..., 0] = 1.0
    uniform = torch.full((1, 1, L, L), 1.0 / L)
    shares = mh.attention_shares(torch.cat([previous, first, uniform], dim=1))
    assert torch.allclose(shares, torch.tensor([[1.0, 0.0], [0.0, 1.0], [1 / L, 1 / L]]))


# ---- training: the notebook's claims ---------------------------------------------------------------------


def test_two_heads_beat_one_head_at_the_same_size(trained):
    acc_1 = mh.lookup_accuracy(trained["model_1"])
    acc_2 = mh.lookup_accuracy(trained["model_2"])
    assert acc_2["both"] >= 0.99
    assert acc_1["both"] <= 0.3
    assert acc_1["previous"] <= 0.3 and acc_1["first"] >= 0.95  # one head picks one look-up
    assert trained["losses_2"][-1] < 0.05 < trained["losses_1"][-1]


def test_the_two_heads_split_the_work(trained):
    tokens, _ = mh.lookup_test_set()
    shares = mh.attention_shares(mh.lookup_attention(trained["model_2"], tokens))  # (heads, 2)
    prev_head = int(shares[:, 0].argmax())
    first_head = 1 - prev_head
    assert shares[prev_head, 0] > 0.9 and shares[prev_head, 1] < 0.1
    assert shares[first_head, 1] > 0.9 and shares[first_head, 0] < 0.1


def test_switching_off_the_head_that_carries_a_pattern_drops_that_pattern(trained):
    model = trained["model_2"]
    tokens, _ = mh.lookup_test_set()
    shares = mh.attention_shares(mh.lookup_attention(model, tokens))
    prev_head = int(shares[:, 0].argmax())
    first_head = 1 - prev_head
    table = mh.ablation_table(model)
    assert set(table) == {"none", "head 0", "head 1"}
    assert table[f"head {prev_head}"]["previous"] < 0.25 and table[f"head {prev_head}"]["first"] > 0.95
    assert table[f"head {first_head}"]["first"] < 0.25 and table[f"head {first_head}"]["previous"] > 0.95
    assert table["none"]["both"] > 0.99


def test_training_is_bit_identical_at_any_thread_count_and_restores_it():
    before = torch.get_num_threads()
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        model, losses = mh.train_lookup_model(2, seed=3, steps=20, progress=False)
        assert torch.get_num_threads() == threads
        results.append((losses, [p.detach().clone() for p in model.parameters()]))
    torch.set_num_threads(before)
    assert results[0][0] == results[1][0]
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1], strict=True))


def test_training_leaves_the_callers_random_state_alone_and_repeats_exactly():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    first, losses_a = mh.train_lookup_model(1, seed=5, steps=10, progress=False)
    again, losses_b = mh.train_lookup_model(1, seed=5, steps=10, progress=False)  # trained again, the same
    mh.lookup_accuracy(first)
    assert torch.equal(torch.rand(3), expected)
    assert losses_a == losses_b and again is not first
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), again.parameters(), strict=True))


def test_sweep_summary_and_figures(trained):
    results = mh.head_count_sweep(d_model=2, seeds=(0, 1), progress=False, steps=3)
    assert list(results) == [1, 2] and all(len(runs) == 2 for runs in results.values())
    rows = mh.sweep_summary(results)
    assert [r["num_heads"] for r in rows] == [1, 2]
    assert all(r["min"] <= r["mean"] <= r["max"] for r in rows)
    ax = mh.plot_head_sweep(results, d_model=2)
    assert len(ax.figure.axes) == 1
    tokens, _ = mh.make_two_lookup_batch(1, generator=torch.Generator().manual_seed(3))
    fig = mh.plot_lookup_heads(mh.lookup_attention(trained["model_2"], tokens), [str(i) for i in range(8)])
    assert len(fig.axes) == 2
    import matplotlib.pyplot as plt

    plt.close("all")


# ---- clear errors ----------------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="valid head counts: 1, 2, 4, 8"):
        mh.train_lookup_model(3, d_model=8, progress=False)
    with pytest.raises(ValueError, match="lr"):
        mh.train_lookup_model(2, lr=-1.0, progress=False)
    with pytest.raises(ValueError, match="seq_len must be at least 3"):
        mh.train_lookup_model(2, seq_len=2, progress=False)
    with pytest.raises(ValueError, match="seed"):
        mh.train_lookup_model(2, seed=-1, progress=False)
    with pytest.raises(ValueError, match="at most 26"):
        mh.lookup_letters(27)
    with pytest.raises(TypeError, match="torch.long"):
        mh.two_lookup_targets(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="at least 2 positions"):
        mh.two_lookup_targets(torch.zeros(2, 1, dtype=torch.long))
    model = mh.TinyLookupModel()
    with pytest.raises(ValueError, match="token ids must be in 0..7"):
        model(torch.full((1, 8), 8))
    with pytest.raises(ValueError, match="seq_len=8"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(TypeError, match="torch.long"):
        model(torch.zeros(1, 8))
    with pytest.raises(ValueError, match="heads must be head numbers in 0..1"):
        mh.heads_switched_off(model.attn, [2])
    with pytest.raises(TypeError, match="MultiHeadAttention"):
        mh.heads_switched_off(torch.nn.Linear(2, 2), [0])
    with pytest.raises(ValueError, match="start"):
        mh.attention_shares(torch.rand(1, 1, 4, 4), start=4)
    with pytest.raises(TypeError, match="TinyLookupModel"):
        mh.lookup_accuracy(torch.nn.Linear(2, 2))

