"""Every general claim in the prose of notebook 11 (attention variants), re-derived over at least five seeds or
configurations, so that the notebook's sentences stay true when its examples change."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import mha_helpers as mh

SEEDS = range(5)


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- 1. RoPE ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_rope_never_changes_a_vectors_length(seed):
    head_dim = 2 * (seed + 1)
    x = torch.randn(2, 3, 20, head_dim, generator=_g(seed)) * (seed + 1)
    positions = torch.randint(0, 10_000, (20,), generator=_g(seed))
    assert torch.allclose(mh.rope(x, positions).norm(dim=-1), x.norm(dim=-1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
def test_rope_score_depends_only_on_the_offset(seed):
    g = _g(seed)
    head_dim = 8 + 4 * seed
    q, k = torch.randn(head_dim, generator=g), torch.randn(head_dim, generator=g)
    offset = int(torch.randint(-20, 20, (1,), generator=g))
    scores = []
    for start in (0, 5, 37, 300, 2000):
        m, n = start + max(offset, 0), start + max(-offset, 0)
        scores.append(float(mh.rope(q[None], [m]) @ mh.rope(k[None], [n]).T))
    assert max(scores) - min(scores) < 1e-3 * (1 + abs(scores[0]))
    L = 16
    rotated = mh.rope(q.expand(L, head_dim)) @ mh.rope(k.expand(L, head_dim)).T  # (L, L)
    for d in range(-L + 1, L):
        diagonal = torch.diagonal(rotated, offset=d)
        assert torch.allclose(diagonal, diagonal[0].expand_as(diagonal), atol=1e-4)


@pytest.mark.parametrize("seed", SEEDS)
def test_added_positions_make_the_score_depend_on_where_the_pair_sits(seed):
    g = _g(seed)
    head_dim = 8
    q, k = torch.randn(head_dim, generator=g), torch.randn(head_dim, generator=g)
    pe = mh.sinusoidal_positions(64, head_dim)
    scores = [float((q + pe[m]) @ (k + pe[m - 3])) for m in (3, 10, 25, 63)]
    assert max(scores) - min(scores) > 0.1


@pytest.mark.parametrize("d", [2, 4, 8, 16, 64])
def test_rotated_unit_pairs_swapped_are_the_sinusoidal_positions(d):
    ones = torch.tensor([1.0, 0.0] * (d // 2)).expand(30, d)
    swapped = mh.rope(ones).view(30, d // 2, 2).flip(-1).reshape(30, d)
    assert torch.allclose(swapped, mh.sinusoidal_positions(30, d), atol=1e-5)


def _halves(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    angles = positions.float()[:, None] * mh.rope_frequencies(x.shape[-1]).float()
    a, b = x[..., :half], x[..., half:]
    return torch.cat([a * angles.cos() - b * angles.sin(), a * angles.sin() + b * angles.cos()], dim=-1)


@pytest.mark.parametrize("seed", SEEDS)
def test_halves_pairing_is_interleaved_pairing_of_permuted_features(seed):
    head_dim = 4 + 4 * seed
    x = torch.randn(2, 9, head_dim, generator=_g(seed))
    positions = torch.arange(9) + seed
    perm = torch.cat([torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)])
    halves = _halves(x, positions)
    assert torch.allclose(halves, mh.rope(x[..., torch.argsort(perm)], positions)[..., perm], atol=1e-5)
    assert not torch.allclose(halves, mh.rope(x, positions), atol=1e-3)


@pytest.mark.parametrize("seed", SEEDS)
def test_rotating_new_tokens_with_their_positions_equals_rotating_the_whole_sequence(seed):
    past = 1 + 3 * seed
    keys = torch.randn(2, past + 4, 8, generator=_g(seed))
    tail = mh.rope(keys[:, past:], positions=torch.arange(past, past + 4))
    assert torch.allclose(tail, mh.rope(keys)[:, past:], atol=1e-5)


# ---- 2. ALiBi -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_heads", [3, 5, 6, 12, 20, 24, 40])
def test_other_head_counts_take_the_smaller_power_then_every_other_slope_of_twice_as_many(num_heads):
    p = 2 ** int(math.log2(num_heads))
    slopes = mh.alibi_slopes(num_heads)
    assert torch.equal(slopes[:p], mh.alibi_slopes(p))
    assert torch.equal(slopes[p:], mh.alibi_slopes(2 * p)[0::2][: num_heads - p])


@pytest.mark.parametrize("num_heads", [1, 2, 4, 8, 16, 32])
def test_power_of_two_slopes_are_geometric_from_two_to_the_minus_eight_over_n(num_heads):
    slopes = mh.alibi_slopes(num_heads).double()
    start = 2.0 ** (-8.0 / num_heads)
    assert math.isclose(float(slopes[0]), start, rel_tol=1e-6)
    assert torch.allclose(slopes[1:] / slopes[:-1], torch.full((num_heads - 1,), start, dtype=torch.float64),
                          rtol=1e-5)
    assert math.isclose(float(slopes[-1]), 2.0 ** -8, rel_tol=1e-6)


@pytest.mark.parametrize("num_heads,context", [(8, 64), (4, 32), (12, 100), (16, 64), (6, 200)])
def test_with_equal_contents_a_head_halves_its_weight_every_ln2_over_m_tokens(num_heads, context):
    slopes = mh.alibi_slopes(num_heads)
    weights = torch.softmax(mh.alibi_bias(num_heads, context, context)[:, -1], dim=-1)  # (heads, context)
    ratio = weights[:, -2] / weights[:, -1]  # one token further back
    assert torch.allclose(ratio, torch.exp(-slopes), rtol=1e-4)  # so halved after ln 2 / m tokens
    distance = torch.arange(context - 1, -1, -1).float()
    mean = weights @ distance  # (heads,)
    order = torch.argsort(slopes, descending=True)
    assert bool((mean[order][1:] >= mean[order][:-1] - 1e-4).all()), "a smaller slope looks further back"


# ---- 3. sliding windows -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seq,window,seed", [(300, 50, 0), (64, 1, 1), (100, 100, 2), (77, 13, 3), (129, 64, 4)])
def test_band_attention_equals_masked_sdpa_and_notebook_02(seq, window, seed):
    q, k, v = torch.randn(3, 1, 2, seq, 16, generator=_g(seed)).unbind(0)
    band = mh.sliding_window_mask(seq, window)
    sdpa = F.scaled_dot_product_attention(q, k, v, attn_mask=band)
    ours, _ = mh.scaled_dot_product_attention(q, k, v, attn_mask=band)
    assert torch.allclose(ours, sdpa, atol=1e-5)
    assert torch.allclose(mh.sliding_window_attention(q, k, v, window), sdpa, atol=1e-5)


@pytest.mark.parametrize("window,layers", [(2, 5), (3, 4), (4, 4), (6, 3), (9, 2)])
def test_each_layer_reaches_window_minus_one_tokens_further(window, layers):
    n = 60
    one = mh.sliding_window_mask(n, window).float()
    reach = one.clone()
    for depth in range(1, layers + 1):
        farthest = int((n - 1 - torch.nonzero(reach[n - 1]).min()).item())
        assert farthest == depth * (window - 1)
        reach = ((reach @ one) > 0).float()


@pytest.mark.parametrize("seq,heads", [(256, 1), (512, 2), (384, 1), (128, 4), (320, 2)])
def test_masked_sdpa_work_ignores_the_window_band_work_grows_with_it(seq, heads):
    q, k, v = torch.randn(3, 1, heads, seq, 32, generator=_g(seq)).unbind(0)
    masked, band = [], []
    with sdpa_kernel(SDPBackend.MATH):
        for window in (8, seq // 4, seq // 2, seq):
            mask = mh.sliding_window_mask(seq, window)
            masked.append(mh.count_matmul_flops(partial(F.scaled_dot_product_attention, q, k, v, attn_mask=mask)))
            band.append(mh.count_matmul_flops(partial(mh.sliding_window_attention, q, k, v, window)))
    assert len(set(masked)) == 1
    assert band == sorted(band) and band[0] < band[-1] and band[-1] < masked[-1]
    assert torch.zeros(seq, seq, dtype=torch.bool).nbytes == mh.sliding_window_mask(seq, 8).nbytes


@pytest.mark.parametrize("seq,window,seed", [(20, 4, 0), (33, 8, 1), (16, 1, 2), (40, 39, 3), (25, 10, 4)])
def test_keys_older_than_the_window_are_never_read(seq, window, seed):
    q, k, v = torch.randn(3, 1, 2, seq, 8, generator=_g(seed)).unbind(0)
    mask = mh.sliding_window_mask(seq, window)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)[..., -1, :]
    old = seq - window  # positions 0 .. old - 1 are outside the last token's window
    k2, v2 = k.clone(), v.clone()
    k2[..., :old, :] = torch.randn_like(k2[..., :old, :]) * 10
    v2[..., :old, :] = torch.randn_like(v2[..., :old, :]) * 10
    assert torch.allclose(F.scaled_dot_product_attention(q, k2, v2, attn_mask=mask)[..., -1, :], out, atol=1e-6)


# ---- 4. multi-head latent attention -------------------------------------------------------------------------------

MLA_CONFIGS = [(64, 8, 16, 0), (32, 4, 12, 1), (48, 6, 8, 2), (16, 2, 40, 3), (96, 12, 24, 4)]


@pytest.mark.parametrize("d_model,num_heads,latent_dim,seed", MLA_CONFIGS)
def test_mla_prefill_then_decode_equals_the_full_pass_and_caches_latent_dim_per_token(d_model, num_heads,
                                                                                     latent_dim, seed):
    torch.manual_seed(seed)
    layer = mh.MultiHeadLatentAttention(d_model, num_heads, latent_dim)
    x = torch.randn(1, 10, d_model, generator=_g(seed))
    with torch.no_grad():
        cache = layer.new_cache(1, 10)
        steps = [layer(x[:, :7], cache=cache)]
        before = cache.nbytes
        steps += [layer(x[:, t:t + 1], cache=cache) for t in range(7, 10)]
        assert torch.allclose(torch.cat(steps, dim=1), layer(x), atol=1e-5)
    assert cache.nbytes - before == 3 * latent_dim * 4 == 3 * layer.cache_bytes_per_token


@pytest.mark.parametrize("d_model,num_heads,latent_dim,seed", MLA_CONFIGS)
def test_caching_rebuilt_keys_and_values_is_as_large_as_multi_head_attention(d_model, num_heads, latent_dim, seed):
    torch.manual_seed(seed)
    layer = mh.MultiHeadLatentAttention(d_model, num_heads, latent_dim)
    x = torch.randn(1, 5, d_model, generator=_g(seed))
    with torch.no_grad():
        k, v = layer.up_project(layer.W_dkv(x))
    trap = mh.KVCache(1, num_heads, d_model // num_heads, 5)
    trap.append(k, v)
    mha = mh.kv_cache_bytes_per_token(1, num_heads, d_model // num_heads, bytes_per_value=4)
    assert trap.nbytes // 5 == mha == 2 * d_model * 4


@pytest.mark.parametrize("d_model,num_heads,latent_dim,seed", MLA_CONFIGS)
def test_absorbed_form_equals_plain_form_with_and_without_cache(d_model, num_heads, latent_dim, seed):
    torch.manual_seed(seed)
    layer = mh.MultiHeadLatentAttention(d_model, num_heads, latent_dim)
    x = torch.randn(2, 9, d_model, generator=_g(seed))
    with torch.no_grad():
        full = layer(x)
        assert torch.allclose(layer.forward_absorbed(x), full, atol=1e-5)
        cache = layer.new_cache(2, 9)
        steps = [layer.forward_absorbed(x[:, :5], cache=cache)]
        steps += [layer.forward_absorbed(x[:, t:t + 1], cache=cache) for t in range(5, 9)]
        assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)


@pytest.mark.parametrize("d_model,num_heads,latent_dim,cached", [(256, 8, 32, 512), (64, 8, 16, 64),
                                                                 (128, 4, 64, 100), (96, 12, 24, 32),
                                                                 (256, 2, 8, 256)])
def test_absorbed_decoding_step_skips_the_rebuild(d_model, num_heads, latent_dim, cached):
    torch.manual_seed(0)
    layer = mh.MultiHeadLatentAttention(d_model, num_heads, latent_dim)
    flops = {}
    with torch.no_grad():
        for step in (layer.forward, layer.forward_absorbed):
            cache = layer.new_cache(1, cached + 1)
            step(torch.randn(1, cached, d_model), cache=cache)
            flops[step.__name__] = mh.count_matmul_flops(partial(step, torch.randn(1, 1, d_model), cache=cache))
    assert flops["forward_absorbed"] < flops["forward"]
    rebuild = 2 * 2 * cached * latent_dim * d_model  # W_uk and W_uv over every cached latent
    assert flops["forward"] >= rebuild


@pytest.mark.parametrize("d_model,latent_dim", [(64, 16), (64, 42), (64, 43), (30, 20), (30, 19), (512, 300)])
def test_mla_parameters_are_below_mha_exactly_when_latent_below_two_thirds_d_model(d_model, latent_dim):
    params = sum(p.numel() for p in mh.MultiHeadLatentAttention(d_model, 1, latent_dim).parameters())
    assert params == 2 * d_model ** 2 + 3 * d_model * latent_dim
    assert (params < 4 * d_model ** 2) == (latent_dim < 2 * d_model / 3)


@pytest.mark.parametrize("d_model,num_heads,latent_dim,seed", MLA_CONFIGS)
def test_all_heads_keys_and_values_live_in_latent_dim_dimensions(d_model, num_heads, latent_dim, seed):
    torch.manual_seed(seed)
    layer = mh.MultiHeadLatentAttention(d_model, num_heads, latent_dim).double()  # float64: a clean rank
    with torch.no_grad():
        x = torch.randn(1, 200, d_model, generator=_g(seed), dtype=torch.float64)
        k, v = layer.up_project(layer.W_dkv(x))  # (1, heads, 200, head_dim) each
    for features in (k, v):
        stacked = features[0].transpose(0, 1).reshape(200, d_model)  # (200 tokens, every head's features)
        assert int(torch.linalg.matrix_rank(stacked)) == min(latent_dim, d_model)


# ---- 5. the cost meter's "things to try" --------------------------------------------------------------------------


@pytest.mark.parametrize("num_kv_heads", [1, 2, 4, 8])
def test_mla_cache_equals_gqa_cache_at_latent_dim_two_kv_heads_head_dim(num_kv_heads):
    rows = {r["variant"]: r for r in mh.variant_costs(64, 8, num_kv_heads, 2 * num_kv_heads * 8, 8, 32)}
    assert rows["latent (MLA)"]["cache bytes"] == rows["grouped-query"]["cache bytes"]


@pytest.mark.parametrize("context,window", [(32, 32), (16, 16), (40, 40), (10, 10), (24, 24)])
def test_a_window_as_long_as_the_context_saves_nothing(context, window):
    rows = {r["variant"]: r for r in mh.variant_costs(64, 8, 2, 16, window, context)}
    assert rows["sliding window"]["cache bytes"] == rows["grouped-query"]["cache bytes"]
    smaller = {r["variant"]: r for r in mh.variant_costs(64, 8, 2, 16, window - 1, context)}
    assert smaller["sliding window"]["cache bytes"] < smaller["grouped-query"]["cache bytes"]


@pytest.mark.parametrize("d_model,num_heads", [(64, 8), (32, 4), (48, 6), (16, 16), (24, 2)])
def test_gqa_with_all_kv_heads_is_multi_head(d_model, num_heads):
    rows = {r["variant"]: r for r in mh.variant_costs(d_model, num_heads, num_heads, 8, 4, 16)}
    for key in ("parameters", "bytes/token", "cache bytes"):
        assert rows["grouped-query"][key] == rows["multi-head"][key]
