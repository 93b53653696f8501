"""The exercise checkers of notebooks 04 (splitting into heads) and 05 (concatenation and output projection).

Each checker accepts the reference solution, rejects the typical wrong answers with the hint that names the mistake,
prints "not yet" (and does not raise) for the stub a student starts from, and leaves torch's global random state alone.
"""

from __future__ import annotations

import math

import pytest
import torch
from checker_support import run, stub

import mha_helpers as mh
from _mha_helpers.checkers.nb05 import _mha_forward_variant

# ---- Exercise 4.1: split_heads -----------------------------------------------------------------------


def split_view_transpose(x, num_heads):
    batch, seq, d_model = x.shape
    x = x.view(batch, seq, num_heads, d_model // num_heads)  # (batch, seq, heads, head_dim)
    return x.transpose(1, 2)  # (batch, heads, seq, head_dim)


def split_reshape_straight(x, num_heads):
    batch, seq, d_model = x.shape
    return x.reshape(batch, num_heads, seq, d_model // num_heads)  # the tempting wrong reshape


def split_no_transpose(x, num_heads):
    batch, seq, d_model = x.shape
    return x.view(batch, seq, num_heads, d_model // num_heads)


def split_axes_swapped(x, num_heads):
    batch, seq, d_model = x.shape
    return x.view(batch, seq, num_heads, d_model // num_heads).permute(0, 2, 3, 1)  # (batch, heads, head_dim, seq)


def split_interleaved(x, num_heads):
    batch, seq, d_model = x.shape
    return x.view(batch, seq, d_model // num_heads, num_heads).permute(0, 3, 1, 2)


def split_wrong_values(x, num_heads):
    return split_view_transpose(x, num_heads) * 2


@pytest.mark.parametrize("fn", [mh.split_heads, split_view_transpose], ids=["reference", "solution"])
def test_split_heads_checker_accepts_the_solution(fn, capsys):
    ok, out = run(mh.check_split_heads, fn, capsys)
    assert ok and "✅" in out and "passed" in out


@pytest.mark.parametrize(
    "fn, hint",
    [
        (split_reshape_straight, "reshaped straight to (batch, heads, seq, head_dim): tokens are scrambled"),
        (split_no_transpose, ".transpose(1, 2)"),
        (split_axes_swapped, "axes swapped"),
        (split_interleaved, "features interleaved"),
        (split_wrong_values, "right shape, wrong values"),
    ],
)
def test_split_heads_checker_names_the_mistake(fn, hint, capsys):
    ok, out = run(mh.check_split_heads, fn, capsys)
    assert not ok and "❌" in out and hint in out, out


# ---- Exercise 4.2: one head's block of W_q ---------------------------------------------------------------


def head_rows(weight, head, num_heads):
    head_dim = weight.shape[0] // num_heads
    return weight[head * head_dim : (head + 1) * head_dim]


def head_columns(weight, head, num_heads):
    head_dim = weight.shape[0] // num_heads
    return weight[:, head * head_dim : (head + 1) * head_dim].T


def head_strided(weight, head, num_heads):
    return weight[head::num_heads]


def head_off_by_one(weight, head, num_heads):
    return head_rows(weight, (head + 1) % num_heads, num_heads)


def test_head_weight_checker_accepts_the_solution(capsys):
    ok, out = run(mh.check_head_weight, head_rows, capsys)
    assert ok and "passed" in out


@pytest.mark.parametrize(
    "fn, hint",
    [(head_columns, "block of columns"), (head_strided, "you took rows head, head + "), (head_off_by_one, "rows for head=")],
)
def test_head_weight_checker_names_the_mistake(fn, hint, capsys):
    ok, out = run(mh.check_head_weight, fn, capsys)
    assert not ok and hint in out, out


def test_a_head_block_is_that_heads_own_projection():
    """What exercise 4.2 teaches: rows of the big weight = the small Linear of one head."""
    torch.manual_seed(0)
    x = torch.randn(2, 5, 12)
    big = torch.nn.Linear(12, 12, bias=False)
    heads = mh.split_heads(big(x), 3)  # (2, 3, 5, 4)
    for h in range(3):
        assert torch.allclose(heads[:, h], x @ head_rows(big.weight, h, 3).T, atol=1e-6)


# ---- Exercise 5.1: merge_heads ------------------------------------------------------------------------------


def merge_transpose_reshape(x):
    batch, num_heads, seq, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, seq, num_heads * head_dim)


def merge_contiguous_view(x):
    batch, num_heads, seq, head_dim = x.shape
    return x.transpose(1, 2).contiguous().view(batch, seq, num_heads * head_dim)


def merge_no_transpose(x):
    batch, num_heads, seq, head_dim = x.shape
    return x.reshape(batch, seq, num_heads * head_dim)


def merge_view_not_contiguous(x):
    batch, num_heads, seq, head_dim = x.shape
    return x.transpose(1, 2).view(batch, seq, num_heads * head_dim)


def merge_not_merged(x):
    return x.transpose(1, 2)


def merge_interleaved(x):
    batch, num_heads, seq, head_dim = x.shape
    return x.permute(0, 2, 3, 1).reshape(batch, seq, num_heads * head_dim)


@pytest.mark.parametrize(
    "fn", [mh.merge_heads, merge_transpose_reshape, merge_contiguous_view], ids=["reference", "reshape", "contiguous"]
)
def test_merge_heads_checker_accepts_the_solution(fn, capsys):
    ok, out = run(mh.check_merge_heads, fn, capsys)
    assert ok and "passed" in out


@pytest.mark.parametrize(
    "fn, hint",
    [
        (merge_no_transpose, "forgot to transpose back"),
        (merge_view_not_contiguous, "view on a non-contiguous tensor"),
        (merge_not_merged, "merge the last two axes"),
        (merge_interleaved, "features interleaved"),
    ],
)
def test_merge_heads_checker_names_the_mistake(fn, hint, capsys):
    ok, out = run(mh.check_merge_heads, fn, capsys)
    assert not ok and hint in out, out


# ---- Exercise 5.2: the whole forward --------------------------------------------------------------------------


def mha_forward(x, W_q, W_k, W_v, W_o, num_heads):
    batch, seq, d_model = x.shape
    head_dim = d_model // num_heads
    q, k, v = (W(x).view(batch, seq, num_heads, head_dim).transpose(1, 2) for W in (W_q, W_k, W_v))
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(head_dim), dim=-1)  # (batch, heads, seq, seq)
    heads = weights @ v  # (batch, heads, seq, head_dim)
    return W_o(heads.transpose(1, 2).reshape(batch, seq, d_model))


def mistake(**kwargs):
    def fn(x, W_q, W_k, W_v, W_o, num_heads):
        return _mha_forward_variant(x, W_q, W_k, W_v, W_o, num_heads, **kwargs)

    return fn


def mha_forward_view_merge(x, W_q, W_k, W_v, W_o, num_heads):
    batch, seq, d_model = x.shape
    head_dim = d_model // num_heads
    q, k, v = (W(x).view(batch, seq, num_heads, head_dim).transpose(1, 2) for W in (W_q, W_k, W_v))
    heads = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(head_dim), dim=-1) @ v
    return W_o(heads.transpose(1, 2).view(batch, seq, d_model))


def mha_forward_tuple(x, W_q, W_k, W_v, W_o, num_heads):
    return mha_forward(x, W_q, W_k, W_v, W_o, num_heads), None


def mha_forward_heads_only(x, W_q, W_k, W_v, W_o, num_heads):
    batch, seq, d_model = x.shape
    head_dim = d_model // num_heads
    q, k, v = (W(x).view(batch, seq, num_heads, head_dim).transpose(1, 2) for W in (W_q, W_k, W_v))
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(head_dim), dim=-1) @ v


def test_mha_forward_checker_accepts_the_solution(capsys):
    ok, out = run(mh.check_mha_forward, mha_forward, capsys)
    assert ok and "passed" in out


def test_the_checkers_reference_is_the_module():
    """The checker's own forward equals mha_helpers.MultiHeadAttention with the same weights."""
    torch.manual_seed(1)
    module = mh.MultiHeadAttention(12, 3)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape) * 0.3)
    x = torch.randn(2, 5, 12)
    expected, _ = module(x)
    got = _mha_forward_variant(x, module.W_q, module.W_k, module.W_v, module.W_o, 3)
    assert torch.allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize(
    "fn, hint",
    [
        (mistake(use_W_o=False), "apply the output projection W_o"),
        (mistake(scale=1.0), "scale is missing"),
        (mistake(softmax_dim=-2), "softmax over the wrong axis"),
        (mistake(scrambled_split=True), "tokens scrambled in the split"),
        (mistake(scrambled_merge=True), "tokens scrambled in the merge"),
        (mha_forward_view_merge, "view on a non-contiguous tensor"),
        (mha_forward_tuple, "not a tuple"),
        (mha_forward_heads_only, "merge the heads"),
    ],
)
def test_mha_forward_checker_names_the_mistake(fn, hint, capsys):
    ok, out = run(mh.check_mha_forward, fn, capsys)
    assert not ok and hint in out, out


def test_mha_forward_checker_spots_the_d_model_scale(capsys):
    def scaled_by_d_model(x, W_q, W_k, W_v, W_o, num_heads):
        scale = 1.0 / math.sqrt(x.shape[-1])
        return _mha_forward_variant(x, W_q, W_k, W_v, W_o, num_heads, scale=scale)

    ok, out = run(mh.check_mha_forward, scaled_by_d_model, capsys)
    assert not ok and "sqrt(d_model)" in out, out


# ---- every checker: the stub, and no side effects ---------------------------------------------------------------

CHECKERS = [mh.check_split_heads, mh.check_head_weight, mh.check_merge_heads, mh.check_mha_forward]


@pytest.mark.parametrize("checker", CHECKERS, ids=lambda c: c.__name__)
def test_stub_prints_not_yet(checker, capsys):
    ok, out = run(checker, stub, capsys)
    assert not ok and "⏳" in out and "not yet" in out, out


@pytest.mark.parametrize("checker", CHECKERS, ids=lambda c: c.__name__)
def test_checker_leaves_the_global_random_state_alone(checker, capsys):
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    checker(stub)
    checker(lambda *args: torch.zeros(1))
    assert torch.equal(torch.random.get_rng_state(), before)


# ---- notebook 05's measurement: W_o mixes the heads -----------------------------------------------------------


def test_head_influence_without_and_with_W_o():
    torch.manual_seed(0)
    heads = torch.randn(1, 4, 6, 2)  # (batch, heads, seq, head_dim)
    alone = mh.head_influence(heads)  # (d_model, heads)
    assert alone.shape == (8, 4)
    owner = torch.arange(8) // 2  # output feature i comes from head i // head_dim
    assert torch.equal(alone > 0, torch.nn.functional.one_hot(owner, 4).bool())
    mixed = mh.head_influence(heads, torch.nn.Linear(8, 8))
    assert bool((mixed > 0).all())
