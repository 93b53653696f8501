"""Grouped-query / multi-query attention and the KV cache (notebook 09): equivalences and clear errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import mha_helpers as mh


def _repeated_kv(q, k, v, **kwargs):
    """The explicit version: copy each K/V head to the query heads of its group, then ordinary attention."""
    group = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(group, dim=1)  # (batch, H_kv, S, hd) -> (batch, H, S, hd)
    v = v.repeat_interleave(group, dim=1)
    return mh.scaled_dot_product_attention(q, k, v, **kwargs)[0]


@pytest.mark.parametrize(("num_heads", "num_kv_heads"), [(8, 8), (8, 2), (8, 1), (6, 3), (1, 1)])
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize(("L", "S"), [(7, 7), (5, 9), (9, 4)])
def test_gqa_equals_repeated_kv_and_torch(num_heads, num_kv_heads, is_causal, L, S, qkv):
    q, k, v = qkv(L, S, lead=(2, num_heads), kv_lead=(2, num_kv_heads), dtype=torch.float64)
    got = mh.grouped_query_attention(q, k, v, is_causal=is_causal)
    assert got.shape == q.shape
    torch.testing.assert_close(got, _repeated_kv(q, k, v, is_causal=is_causal), atol=1e-12, rtol=0)
    theirs = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal, enable_gqa=True)
    torch.testing.assert_close(got, theirs, atol=1e-12, rtol=0)


def test_gqa_mask_scale_and_gradients(qkv):
    q, k, v = qkv(6, 6, lead=(1, 4), kv_lead=(1, 2), dtype=torch.float32)
    mask = torch.rand(6, 6, generator=torch.Generator().manual_seed(3)) > 0.3
    mask[:, 0] = True  # every query keeps one key
    for t in (q, k, v):
        t.requires_grad_()
    got = mh.grouped_query_attention(q, k, v, attn_mask=mask, scale=0.3)
    ref = _repeated_kv(q, k, v, attn_mask=mask, scale=0.3)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
    g_got = torch.autograd.grad(got.sum(), (q, k, v))
    g_ref = torch.autograd.grad(ref.sum(), (q, k, v))
    for a, b in zip(g_got, g_ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_gqa_bad_head_counts(qkv):
    q, k, v = qkv(4, 4, lead=(1, 8), kv_lead=(1, 3), dtype=torch.float64)
    with pytest.raises(ValueError, match=r"num_heads=8 is not divisible by num_kv_heads=3.*1, 2, 4, 8"):
        mh.grouped_query_attention(q, k, v)
    with pytest.raises(ValueError, match="valid kv-head counts: 1, 2, 3, 6"):
        mh.GroupedQuerySelfAttention(d_model=24, num_heads=6, num_kv_heads=4)


def test_gqa_bad_shapes(qkv):
    q, k, v = qkv(4, 5, lead=(2, 4), kv_lead=(2, 2), dtype=torch.float64)
    with pytest.raises(ValueError, match="4-D"):
        mh.grouped_query_attention(q[0], k, v)
    with pytest.raises(ValueError, match="same shape"):
        mh.grouped_query_attention(q, k, v[:, :, :3])
    with pytest.raises(ValueError, match="head_dim"):
        mh.grouped_query_attention(q, k[..., :4], v[..., :4])
    with pytest.raises(ValueError, match="not both"):
        mh.grouped_query_attention(q, k, v, attn_mask=torch.ones(4, 5, dtype=torch.bool), is_causal=True)
    with pytest.raises(ValueError, match=r"\(L, S\) = \(4, 5\)"):
        mh.grouped_query_attention(q, k, v, attn_mask=torch.ones(5, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match="floating-point"):
        mh.grouped_query_attention(q.long(), k, v)


@pytest.mark.parametrize(("num_heads", "num_kv_heads"), [(4, 4), (4, 2), (4, 1)])
def test_decoding_with_cache_equals_recomputing(num_heads, num_kv_heads):
    torch.manual_seed(0)
    layer = mh.GroupedQuerySelfAttention(d_model=32, num_heads=num_heads, num_kv_heads=num_kv_heads).double()
    x = torch.randn(2, 9, 32, dtype=torch.float64)
    with torch.no_grad():
        full = layer(x)  # causal attention over the whole sequence at once
        cached = mh.decode_step_by_step(layer, x, use_cache=True)
        recomputed = mh.decode_step_by_step(layer, x, use_cache=False)
    torch.testing.assert_close(cached, full, atol=1e-12, rtol=0)
    torch.testing.assert_close(recomputed, full, atol=1e-12, rtol=0)


def test_cache_prefill_then_steps():
    """A prompt of several tokens at once (causal mask aligned to the end of the cache), then one token at a time."""
    torch.manual_seed(1)
    layer = mh.GroupedQuerySelfAttention(d_model=24, num_heads=6, num_kv_heads=2).double()
    x = torch.randn(1, 10, 24, dtype=torch.float64)
    cache = layer.new_cache(batch=1, max_len=10)
    with torch.no_grad():
        parts = [layer(x[:, :4], cache=cache), layer(x[:, 4:7], cache=cache)]
        parts += [layer(x[:, t:t + 1], cache=cache) for t in range(7, 10)]
        torch.testing.assert_close(torch.cat(parts, dim=1), layer(x), atol=1e-12, rtol=0)
    assert len(cache) == 10


def test_kv_cache_bookkeeping_and_bytes():
    cache = mh.KVCache(batch=2, num_kv_heads=3, head_dim=4, max_len=5)
    assert len(cache) == 0 and cache.nbytes == 0
    k = torch.randn(2, 3, 2, 4)
    keys, values = cache.append(k, k + 1)
    assert keys.shape == (2, 3, 2, 4) and torch.equal(keys, k) and torch.equal(values, k + 1)
    assert cache.nbytes == 2 * 2 * 3 * 2 * 4 * 4  # K and V, batch, heads, positions, head_dim, float32
    assert "filled 2/5" in repr(cache)
    with pytest.raises(ValueError, match="max_len=5"):
        cache.append(torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match="num_kv_heads"):
        cache.append(torch.randn(2, 2, 1, 4), torch.randn(2, 2, 1, 4))
    with pytest.raises(ValueError, match="same number of positions"):
        cache.append(torch.randn(2, 3, 1, 4), torch.randn(2, 3, 2, 4))


def test_kv_cache_bytes_per_token():
    # 32 layers, 128-dim heads in float16: 32 K/V heads (MHA), 8 (GQA), 1 (MQA).
    assert mh.kv_cache_bytes_per_token(32, 32, 128) == 524_288
    assert mh.kv_cache_bytes_per_token(32, 8, 128) == 131_072
    assert mh.kv_cache_bytes_per_token(32, 1, 128, bytes_per_value=4) == 32_768
    with pytest.raises(ValueError, match="num_kv_heads"):
        mh.kv_cache_bytes_per_token(32, 0, 128)


def test_attention_flops_match_the_flop_counter():
    """The counted formula equals what FlopCounterMode counts for the explicit (need_weights=True) MHA forward."""
    torch.manual_seed(0)
    for num_heads in (1, 4, 16):
        layer = mh.MultiHeadAttention(64, num_heads)
        x = torch.randn(2, 10, 64)
        counted = mh.count_matmul_flops(lambda layer=layer, x=x: layer(x, x, x, need_weights=True))
        formula = mh.attention_flops(batch=2, seq_len=10, d_model=64, num_heads=num_heads)
        assert counted == formula["total matmul FLOPs"]
        assert formula["attention-map entries"] == 2 * num_heads * 10 * 10
    assert mh.attention_map_bytes(8, 8, 1024) == 8 * 8 * 1024 * 1024 * 4


def test_measure_peak_memory_sees_the_square_matrix():
    naive, online = mh.measure_peak_memory(
        [dict(method="naive", batch=1, heads=1, seq=1024, head_dim=16),
         dict(method="online", batch=1, heads=1, seq=1024, head_dim=16, block_size=128)]
    )
    square = 1024 * 1024 * 4 / 2**20  # one float32 (n, n) matrix: 4 MiB
    assert naive >= 1.5 * square  # scores and weights
    assert online < 0.5 * square
    with pytest.raises(ValueError, match="method"):
        mh.measure_peak_memory([dict(method="fast", batch=1, heads=1, seq=8, head_dim=4)])

