"""The readable building blocks of mha_helpers against PyTorch and against their own promises.

* ``scaled_dot_product_attention`` equals ``torch.nn.functional.scaled_dot_product_attention`` (outputs and
  gradients) with no mask, boolean masks (True = MAY attend), float masks, broadcasting masks, ``is_causal`` with
  L == S and L != S, a custom scale, 3-D and 4-D inputs; its weights are the softmax PyTorch computes inside;
  fully masked rows give zeros, as F.scaled_dot_product_attention does.
* ``split_heads`` / ``merge_heads``: shapes, inverse of each other, head h is feature slice h.
* ``causal_mask`` / ``padding_mask``: the conventions their docstrings state.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import mha_helpers as mh

pytestmark = pytest.mark.usefixtures("single_thread")

ATOL = 1e-5
BATCH, HEADS, D_K, D_V = 2, 3, 4, 5


def _lead(rank: int) -> tuple[int, ...]:
    return (BATCH, HEADS) if rank == 4 else (BATCH,)


def _mask(kind: str, rank: int, L: int, S: int, gen: torch.Generator):
    """A mask in F.scaled_dot_product_attention's convention; key 0 always allowed, so no row is fully masked."""

    def allowed(shape):  # bool, True = MAY attend
        m = torch.rand(shape, generator=gen) > 0.4
        m[..., 0] = True
        return m

    per_batch = (BATCH, 1, 1, S) if rank == 4 else (BATCH, 1, S)
    per_head = (HEADS, L, S) if rank == 4 else (1, L, S)
    return {
        "none": lambda: None,
        "bool_LS": lambda: allowed((L, S)),
        "float_LS": lambda: torch.randn(L, S, generator=gen).masked_fill(~allowed((L, S)), float("-inf")),
        "bool_keys_only": lambda: allowed((1, S)),  # broadcasts over batch, heads and queries
        "bool_per_batch": lambda: allowed(per_batch),  # a padding mask, broadcast over heads and queries
        "float_per_head": lambda: torch.randn(per_head, generator=gen),
        "full_shape_bool": lambda: allowed((BATCH, HEADS, L, S) if rank == 4 else (BATCH, L, S)),
    }[kind]()


def _compare(ours_fn, torch_fn, leaves, atol=ATOL):
    """Outputs and gradients (w.r.t. every leaf) of two functions of the same leaves, under one upstream gradient."""
    ours_leaves = [t.clone().requires_grad_() for t in leaves]
    torch_leaves = [t.clone().requires_grad_() for t in leaves]
    out_o, weights = ours_fn(*ours_leaves)
    out_t = torch_fn(*torch_leaves)
    torch.testing.assert_close(out_o, out_t, rtol=0, atol=atol)
    upstream = torch.randn(out_t.shape, generator=torch.Generator().manual_seed(9), dtype=out_t.dtype)
    (out_o * upstream).sum().backward()
    (out_t * upstream).sum().backward()
    for a, b in zip(ours_leaves, torch_leaves, strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=atol)
    return weights


MASK_KINDS = ["none", "bool_LS", "float_LS", "bool_keys_only", "bool_per_batch", "float_per_head", "full_shape_bool"]


@pytest.mark.parametrize(("L", "S"), [(4, 4), (3, 6)])
@pytest.mark.parametrize("rank", [3, 4])
@pytest.mark.parametrize("mask", MASK_KINDS)
def test_equals_torch_sdpa_with_masks(mask, rank, L, S, qkv):
    gen = torch.Generator().manual_seed(0)
    q, k, v = qkv(L, S, lead=_lead(rank), d_k=D_K, d_v=D_V, generator=gen)
    attn_mask = _mask(mask, rank, L, S, gen)
    weights = _compare(
        lambda q, k, v: mh.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask),
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask),
        (q, k, v),
    )
    assert weights.shape == (*q.shape[:-1], S)
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]), rtol=0, atol=1e-6)
    # the weights are the softmax F.scaled_dot_product_attention computes inside
    scores = q @ k.transpose(-2, -1) / D_K**0.5
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else scores + attn_mask
    torch.testing.assert_close(weights.detach(), torch.softmax(scores, -1), rtol=0, atol=1e-6)


@pytest.mark.parametrize(("L", "S"), [(4, 4), (3, 6), (6, 3)], ids=["L=S", "L<S", "L>S"])
@pytest.mark.parametrize("rank", [3, 4])
def test_is_causal_equals_torch_top_left_aligned(rank, L, S, qkv):
    gen = torch.Generator().manual_seed(1)
    weights = _compare(
        lambda q, k, v: mh.scaled_dot_product_attention(q, k, v, is_causal=True),
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
        qkv(L, S, lead=_lead(rank), d_k=D_K, d_v=D_V, generator=gen),
    )
    allowed = torch.ones(L, S, dtype=torch.bool).tril()  # query i sees keys 0..i, whatever L and S are
    assert torch.all(weights.detach()[..., ~allowed] == 0)
    # is_causal=True is the same as passing causal_mask explicitly
    q, k, v = qkv(L, S, lead=_lead(rank), d_k=D_K, d_v=D_V, generator=gen)
    a, _ = mh.scaled_dot_product_attention(q, k, v, is_causal=True)
    b, _ = mh.scaled_dot_product_attention(q, k, v, attn_mask=mh.causal_mask(L, S))
    assert torch.equal(a, b)


@pytest.mark.parametrize("scale", [0.1, 1.0, 3])
def test_custom_scale_equals_torch(scale, qkv):
    gen = torch.Generator().manual_seed(2)
    _compare(
        lambda q, k, v: mh.scaled_dot_product_attention(q, k, v, scale=scale),
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, scale=scale),
        qkv(4, 5, lead=_lead(4), d_k=D_K, d_v=D_V, generator=gen),
    )


def test_default_scale_is_one_over_sqrt_d_k(qkv):
    gen = torch.Generator().manual_seed(3)
    q, k, v = qkv(4, 5, lead=_lead(4), d_k=D_K, d_v=D_V, generator=gen)
    a, _ = mh.scaled_dot_product_attention(q, k, v)
    b, _ = mh.scaled_dot_product_attention(q, k, v, scale=1 / D_K**0.5)
    assert torch.equal(a, b)


def test_float64_is_tight(qkv):
    gen = torch.Generator().manual_seed(4)
    q, k, v = qkv(4, 5, lead=_lead(4), d_k=D_K, d_v=D_V, generator=gen, dtype=torch.float64)
    mask = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    _compare(
        lambda q, k, v: mh.scaled_dot_product_attention(q, k, v, attn_mask=mask),
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
        (q, k, v),
        atol=1e-12,
    )


@pytest.mark.parametrize("kind", ["bool", "float"])
def test_fully_masked_rows_give_zeros_like_torch(kind, qkv):
    # F.scaled_dot_product_attention in torch 2.13 (CPU) returns a zero output row, with finite gradients, for a query
    # whose keys are all masked (a plain softmax would give 0/0 = NaN). Ours returns zeros too, and zero weights.
    gen = torch.Generator().manual_seed(5)
    q, k, v = qkv(4, 5, lead=_lead(4), d_k=D_K, d_v=D_V, generator=gen)
    allowed = torch.ones(4, 5, dtype=torch.bool)
    allowed[1] = False  # query 1 may look at nothing
    mask = allowed if kind == "bool" else torch.zeros(4, 5).masked_fill(~allowed, float("-inf"))
    weights = _compare(
        lambda q, k, v: mh.scaled_dot_product_attention(q, k, v, attn_mask=mask),
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
        (q, k, v),
    )
    assert torch.all(weights[..., 1, :] == 0)
    torch.testing.assert_close(weights[..., [0, 2, 3], :].sum(-1), torch.ones(BATCH, HEADS, 3), rtol=0, atol=1e-6)
    assert torch.all(F.scaled_dot_product_attention(q, k, v, attn_mask=mask)[..., 1, :] == 0)  # PyTorch's zeros
    naive = torch.softmax((q @ k.transpose(-2, -1)).masked_fill(~allowed, float("-inf")), -1)
    assert naive[..., 1, :].isnan().all()  # what a plain softmax gives there


def test_dropout_zeroes_and_rescales_weights(qkv):
    gen = torch.Generator().manual_seed(6)
    q, k, v = qkv(4, 5, lead=_lead(4), d_k=D_K, d_v=D_V, generator=gen)
    _, clean = mh.scaled_dot_product_attention(q, k, v)
    torch.manual_seed(0)
    out, dropped = mh.scaled_dot_product_attention(q, k, v, dropout_p=0.25)
    kept = dropped != 0
    assert 0 < int(kept.sum()) < kept.numel()
    torch.testing.assert_close(dropped[kept], clean[kept] / 0.75, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(out, dropped @ v, rtol=0, atol=0)


# ---- split_heads / merge_heads --------------------------------------------------------------------------


@pytest.mark.parametrize(("d_model", "num_heads"), [(8, 1), (8, 2), (12, 3), (12, 12)])
def test_split_heads_shape_and_slices(d_model, num_heads):
    x = torch.randn(2, 5, d_model)
    heads = mh.split_heads(x, num_heads)
    head_dim = d_model // num_heads
    assert heads.shape == (2, num_heads, 5, head_dim)
    for h in range(num_heads):
        assert torch.equal(heads[:, h], x[..., h * head_dim : (h + 1) * head_dim])
    assert heads.data_ptr() == x.data_ptr()  # a view: no copy
    merged = mh.merge_heads(heads)
    assert merged.shape == x.shape and merged.is_contiguous()
    assert torch.equal(merged, x)


def test_split_heads_of_a_non_contiguous_tensor():
    qkv = torch.randn(2, 5, 3 * 8)
    _, k, _ = qkv.chunk(3, dim=-1)  # a view with strides of the packed tensor, as in the fused projection
    assert not k.is_contiguous()
    assert torch.equal(mh.merge_heads(mh.split_heads(k, 2)), k)
    seq_first = torch.randn(5, 2, 8).transpose(0, 1)  # (batch, seq, d_model) view of a (seq, batch, ...) tensor
    assert torch.equal(mh.split_heads(seq_first, 4)[:, 1], seq_first[..., 2:4])


def test_merge_heads_then_split_heads_is_the_identity():
    x = torch.randn(2, 4, 5, 3)
    assert torch.equal(mh.split_heads(mh.merge_heads(x), 4), x)


# ---- causal_mask / padding_mask -------------------------------------------------------------------------


def test_causal_mask_is_true_where_a_query_may_attend():
    m = mh.causal_mask(3)
    assert m.dtype == torch.bool
    assert m.tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    assert mh.causal_mask(2, 4).tolist() == [[True, False, False, False], [True, True, False, False]]
    assert mh.causal_mask(3, 2).tolist() == [[True, False], [True, True], [True, True]]


def test_padding_mask_is_true_at_padding():
    expected = [[False, False, False], [False, True, True], [True, True, True]]
    assert mh.padding_mask([3, 1, 0]).tolist() == expected
    assert mh.padding_mask(torch.tensor([3, 1, 0])).tolist() == expected
    assert mh.padding_mask([2], max_len=4).tolist() == [[False, False, True, True]]
