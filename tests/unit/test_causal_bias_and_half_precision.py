"""Regression tests for the two silent parity bugs of issue 12.

1. ``torch.nn.attention.bias.causal_upper_left/causal_lower_right`` return a ``CausalBias``: a torch.Tensor whose
   own storage is uninitialised memory of a meaningless shape (PyTorch's SDPA only reads its variant and sizes).
   Read as an additive float mask it gave a different wrong answer every run. Every attention helper now reads it
   as the boolean mask it stands for (``bias._materialize(device)``, True = may attend), as PyTorch's SDPA does;
   ``MultiHeadAttention`` reads it by that meaning too, not by its own True = blocked rule for plain booleans.
2. float16 ``q @ kᵀ`` overflowed (65504) before the scale was applied: NaN where PyTorch's SDPA is finite, and
   the module's ``need_weights=True`` path disagreed with its ``need_weights=False`` path. Half-precision scores
   are now computed in float32 and the results returned in the input's dtype.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention.bias import causal_lower_right, causal_upper_left

import mha_helpers as mh

pytestmark = pytest.mark.usefixtures("single_thread")

SIZES = [(4, 4), (3, 6), (6, 3)]  # (L, S): square, fewer queries than keys, more queries than keys
VARIANTS = {"upper_left": causal_upper_left, "lower_right": causal_lower_right}


def _bias(variant: str, L: int, S: int):
    with warnings.catch_warnings():  # lower_right with L > S warns that PyTorch gives NaN rows there
        warnings.simplefilter("ignore")
        return VARIANTS[variant](L, S)


# ---- 1. CausalBias ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("L,S", SIZES)
def test_sdpa_reads_a_causal_bias_as_pytorch_does(variant, L, S, qkv):
    q, k, v = qkv(L, S)
    bias = _bias(variant, L, S)
    out, weights = mh.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=bias._materialize())  # what PyTorch's SDPA reads
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    if not (variant == "lower_right" and L > S):  # there PyTorch's own CausalBias dispatch gives NaN rows
        torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=bias), atol=1e-5, rtol=1e-5)
    allowed = bias._materialize()  # (L, S), True = may attend
    assert bool((weights[..., ~allowed] == 0).all())  # nothing outside the causal pattern gets weight


@pytest.mark.parametrize("L,S", SIZES)
def test_upper_left_bias_equals_is_causal(L, S, qkv):
    q, k, v = qkv(L, S, seed=1)
    with_bias, _ = mh.scaled_dot_product_attention(q, k, v, attn_mask=causal_upper_left(L, S))
    with_flag, _ = mh.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(with_bias, with_flag)


def test_the_same_bias_gives_the_same_answer_every_time(qkv):
    q, k, v = qkv(4, 4, seed=2)
    outs = [mh.scaled_dot_product_attention(q, k, v, attn_mask=causal_lower_right(4, 4))[0] for _ in range(5)]
    assert all(torch.equal(outs[0], o) for o in outs)  # uninitialised memory gave a new answer each run


@pytest.mark.parametrize("fn", [mh.scaled_dot_product_attention, mh.grouped_query_attention])
def test_causal_bias_with_is_causal_is_refused(fn, qkv):
    q, k, v = qkv(4, 4, lead=(1, 2))
    with pytest.raises(ValueError, match="is_causal"):
        fn(q, k, v, attn_mask=causal_upper_left(4, 4), is_causal=True)


def test_causal_bias_of_the_wrong_size_names_the_sizes(qkv):
    q, k, v = qkv(4, 5)
    with pytest.raises(ValueError, match=r"causal_upper_left\(4, 5\)"):
        mh.scaled_dot_product_attention(q, k, v, attn_mask=causal_upper_left(5, 4))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("L,S", [(4, 4), (3, 6)])
@pytest.mark.parametrize("need_weights", [True, False])
def test_module_reads_a_causal_bias_by_its_meaning(mha_pair, variant, L, S, need_weights):
    ours, theirs = mha_pair(8, 2, seed=3)
    g = torch.Generator().manual_seed(4)
    x, mem = torch.randn(2, L, 8, generator=g), torch.randn(2, S, 8, generator=g)
    bias = _bias(variant, L, S)
    out, _ = ours(x, mem, mem, attn_mask=bias, need_weights=need_weights)
    # nn.MultiheadAttention cannot read a CausalBias; given the same pattern as its own True = blocked mask:
    ref, _ = theirs(x, mem, mem, attn_mask=~bias._materialize(), need_weights=need_weights)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_module_causal_bias_with_padding_mask(mha_pair):
    ours, theirs = mha_pair(8, 2, seed=5)
    x = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(6))
    pad = mh.padding_mask([5, 3])
    for need_weights in (True, False):
        out, _ = ours(x, attn_mask=causal_lower_right(5, 5), key_padding_mask=pad, need_weights=need_weights)
        ref, _ = theirs(x, x, x, attn_mask=~mh.causal_mask(5), key_padding_mask=pad, need_weights=need_weights)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_module_refuses_causal_bias_with_is_causal():
    with pytest.raises(ValueError, match="is_causal"):
        mh.MultiHeadAttention(8, 2)(torch.randn(1, 4, 8), attn_mask=causal_upper_left(4, 4), is_causal=True)


def test_module_causal_bias_of_the_wrong_size():
    with pytest.raises(ValueError, match=r"L=4 queries and S=4 keys"):
        mh.MultiHeadAttention(8, 2)(torch.randn(1, 4, 8), attn_mask=causal_upper_left(3, 4))


@pytest.mark.parametrize("variant", VARIANTS)
def test_grouped_query_attention_reads_a_causal_bias(variant):
    g = torch.Generator().manual_seed(7)
    q, k, v = torch.randn(2, 4, 3, 8, generator=g), torch.randn(2, 2, 6, 8, generator=g), torch.randn(2, 2, 6, 8,
                                                                                                     generator=g)
    bias = _bias(variant, 3, 6)
    out = mh.grouped_query_attention(q, k, v, attn_mask=bias)
    ref = F.scaled_dot_product_attention(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1),
                                         attn_mask=bias._materialize())
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


# ---- 2. half precision -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_all_256_input_is_finite_as_in_pytorch(dtype):
    # PyTorch's test_scaled_dot_product_attention_fp16_overflow: every entry 256, head_dim 80.
    x = torch.full((1, 4, 23, 80), 256.0, dtype=dtype)
    out, weights = mh.scaled_dot_product_attention(x, x, x)
    assert out.dtype == dtype and weights.dtype == dtype
    assert bool(torch.isfinite(out).all()) and bool(torch.isfinite(weights).all())
    torch.testing.assert_close(out, F.scaled_dot_product_attention(x, x, x))


@pytest.mark.parametrize("seed", range(3))
def test_large_half_inputs_match_pytorch(seed, qkv):
    q, k, v = qkv(16, 16, seed=seed, d_k=64)
    q, k, v = (100 * q).half(), (100 * k).half(), v.half()  # |x| ~ 100, d_k = 64: q·k ~ 10^5 > 65504
    out, _ = mh.scaled_dot_product_attention(q, k, v)
    assert bool(torch.isfinite(out).all())
    ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float()).half()
    torch.testing.assert_close(out, ref, atol=2e-3, rtol=2e-3)


def test_module_weights_path_agrees_with_fast_path_in_half():
    torch.manual_seed(0)
    module = mh.MultiHeadAttention(128, 2).half()  # head_dim 64
    with torch.no_grad():
        module.W_q.weight.mul_(40)
        module.W_k.weight.mul_(40)  # q·k far beyond 65504 before scaling
    x = torch.randn(2, 6, 128).half()
    slow, weights = module(x, need_weights=True)
    fast, _ = module(x, need_weights=False)
    assert bool(torch.isfinite(slow).all()) and bool(torch.isfinite(weights).all())
    torch.testing.assert_close(slow, fast, atol=2e-2, rtol=2e-2)


def test_float32_results_are_unchanged_by_the_half_precision_path(qkv):
    q, k, v = qkv(5, 7, seed=8)
    out, weights = mh.scaled_dot_product_attention(q, k, v)
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(8))
    assert torch.equal(weights, torch.softmax(scores, dim=-1))  # bit for bit the notebook 02 steps
    assert torch.equal(out, weights @ v)
