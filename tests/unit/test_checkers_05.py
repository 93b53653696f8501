"""The exercise checkers of notebook 05 (concatenation and the output projection): the solution passes, each typical
wrong answer gets the hint that names its mistake; also notebook 05's measurement of how W_o mixes the heads."""

from __future__ import annotations

import math

import pytest
import torch
from checker_support import assert_hint, assert_passes, run

import mha_helpers as mh
from _mha_helpers.checkers.nb05 import _mha_forward_variant

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
        (mistake(scale_by="none"), "scale is missing"),
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
        return _mha_forward_variant(x, W_q, W_k, W_v, W_o, num_heads, scale_by="d_model")

    ok, out = run(mh.check_mha_forward, scaled_by_d_model, capsys)
    assert not ok and "√d_model" in out, out


@pytest.mark.parametrize(
    "fn, hint",
    [
        (lambda x: x.sum(dim=1), "you added (or averaged) the heads"),
        (lambda x: x.mean(dim=1), "you added (or averaged) the heads"),
        (lambda x: torch.cat(x.unbind(1), dim=1), "along the sequence"),
    ],
)
def test_merge_heads_checker_explains_more_mistakes(fn, hint, capsys):
    assert_hint(mh.check_merge_heads, fn, hint, capsys)


def test_merge_heads_accepts_other_right_forms(capsys):
    for fn in (lambda x: torch.cat(x.unbind(1), dim=-1), lambda x: x.transpose(1, 2).flatten(2),
               lambda x: x.permute(0, 2, 1, 3).reshape(x.shape[0], x.shape[2], -1)):
        ok, out = run(mh.check_merge_heads, fn, capsys)
        assert ok, out


def mha_forward_no_bias(x, W_q, W_k, W_v, W_o, num_heads):
    return _mha_forward_variant(x, W_q, W_k, W_v, W_o, num_heads, bias=False)


def mha_forward_sdpa(x, W_q, W_k, W_v, W_o, num_heads):
    batch, seq, d_model = x.shape
    q, k, v = (mh.split_heads(W(x), num_heads) for W in (W_q, W_k, W_v))
    return W_o(mh.merge_heads(torch.nn.functional.scaled_dot_product_attention(q, k, v)))


def mha_forward_float_head_dim(x, W_q, W_k, W_v, W_o, num_heads):
    batch, seq, d_model = x.shape
    head_dim = d_model / num_heads
    q = W_q(x).view(batch, seq, num_heads, head_dim)
    return q


def test_mha_forward_accepts_sdpa(capsys):
    ok, out = run(mh.check_mha_forward, mha_forward_sdpa, capsys)
    assert ok, out


@pytest.mark.parametrize(
    "fn, hint",
    [(mha_forward_no_bias, "biases are missing"), (mha_forward_float_head_dim, "d_model // num_heads")],
)
def test_mha_forward_checker_explains_more_mistakes(fn, hint, capsys):
    assert_hint(mh.check_mha_forward, fn, hint, capsys)


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


# ---- the review's slips in 5.2, written as a student would: each gets the hint that names its step ---------------


def student_mha(*, values="W_v", divide_by=lambda head_dim: math.sqrt(head_dim), softmax_dim=-1, causal=False,
                keys_first=False):
    """A hand-written forward with one slip (independent of the checker's own variants)."""

    def forward(x, W_q, W_k, W_v, W_o, num_heads):
        batch, seq, d_model = x.shape
        head_dim = d_model // num_heads
        value_of = {"W_v": W_v, "W_k": W_k, "x": lambda t: t}[values]
        q, k, v = (t.view(batch, seq, num_heads, head_dim).transpose(1, 2) for t in (W_q(x), W_k(x), value_of(x)))
        scores = (k @ q.transpose(-2, -1) if keys_first else q @ k.transpose(-2, -1)) / divide_by(head_dim)
        if causal:
            scores = scores.masked_fill(~torch.ones(seq, seq, dtype=torch.bool).tril(), float("-inf"))
        heads = torch.softmax(scores, dim=softmax_dim) @ v  # (batch, heads, seq, head_dim)
        return W_o(heads.transpose(1, 2).reshape(batch, seq, d_model))

    return forward


@pytest.mark.parametrize(
    "fn, hint",
    [
        (student_mha(values="W_k"), "your values come from W_k"),
        (student_mha(values="x"), "you used x itself as the values"),
        (student_mha(softmax_dim=1), "softmax over the heads (dim=1)"),
        (student_mha(divide_by=lambda head_dim: head_dim), "you divided the scores by head_dim"),
        (student_mha(causal=True), "you applied a causal mask"),
        (student_mha(keys_first=True), "your scores are K Qᵀ"),
        (student_mha(divide_by=lambda head_dim: 1.0), "the 1/√head_dim scale is missing"),
    ],
    ids=["V-from-W_k", "V-is-x", "softmax-over-heads", "divided-by-head_dim", "causal-mask", "K-Q", "no-scale"],
)
def test_mha_forward_names_the_step_of_each_slip(fn, hint, capsys):
    assert_hint(mh.check_mha_forward, fn, hint, capsys)


def test_mha_forward_accepts_half_precision_and_numpy(capsys):
    assert_passes(mh.check_mha_forward, lambda *args: student_mha()(*args).half(), capsys)
    assert_passes(mh.check_mha_forward, lambda *args: student_mha()(*args).detach().numpy(), capsys)


def test_mha_forward_fallback_no_longer_points_at_shapes(capsys):
    def off_by_a_little(*args):
        return student_mha()(*args) + 0.01

    passed, out = run(mh.check_mha_forward, off_by_a_little, capsys)
    assert not passed and "right shape, wrong values" in out and "shape against" not in out, out
    assert "softmax over the last dim" in out, out
