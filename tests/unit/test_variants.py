"""The attention variants of notebook 11 behave as specified: RoPE equal to complex multiplication, ALiBi's slopes as
the paper's authors compute them, the sliding window's band, multi-head latent attention's cache and absorbed form,
clear errors for bad input; and the notebook's checkers accept the folded solutions and name typical mistakes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from checker_support import run, stub

import mha_helpers as mh

# ---- RoPE ---------------------------------------------------------------------------------------------------------


def rope_by_complex(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """An independent RoPE: pair i of row m is the complex number x[2i] + 1j·x[2i+1], multiplied by e^(1j·m·θ_i)."""
    head_dim = x.shape[-1]
    theta = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # (head_dim/2,)
    angles = positions.double()[..., None] * theta  # (..., seq, head_dim/2)
    z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], head_dim // 2, 2).contiguous())
    rotated = z * torch.polar(torch.ones_like(angles), angles)  # |e^(iφ)| = 1
    return torch.view_as_real(rotated).reshape(x.shape).to(x.dtype)


@pytest.mark.parametrize("shape,base", [((5, 4), 10000.0), ((2, 3, 7, 8), 10000.0), ((1, 2, 9, 16), 500.0),
                                        ((3, 1, 2), 10000.0)])
def test_rope_equals_complex_multiplication(shape, base):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(len(shape)), dtype=torch.float64)
    positions = torch.arange(shape[-2]) * 3 + 5
    assert torch.allclose(mh.rope(x, positions, base=base), rope_by_complex(x, positions, base), atol=1e-12)


def test_rope_default_positions_and_lists():
    x = torch.randn(2, 6, 8)
    assert torch.equal(mh.rope(x), mh.rope(x, torch.arange(6)))
    assert torch.equal(mh.rope(x, list(range(6))), mh.rope(x, torch.arange(6)))
    assert torch.equal(mh.rope(x, range(6)), mh.rope(x, torch.arange(6)))
    per_batch = torch.stack([torch.arange(6), torch.arange(6) + 10])  # (batch, seq): one row of positions each
    assert torch.allclose(mh.rope(x, per_batch)[1], mh.rope(x[1], torch.arange(6) + 10), atol=1e-6)


def test_rope_position_zero_is_identity_and_keeps_dtype():
    x = torch.randn(1, 3, 4, dtype=torch.float16)
    out = mh.rope(x, torch.zeros(3))
    assert out.dtype == torch.float16 and torch.equal(out, x)


@pytest.mark.parametrize("seed", range(5))
def test_rope_offset_invariance_and_norms(seed):
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(16, generator=g), torch.randn(16, generator=g)
    shift = int(torch.randint(1, 500, (1,), generator=g))
    m, n = 7, 3
    base = float(mh.rope(q[None], [m]) @ mh.rope(k[None], [n]).T)
    moved = float(mh.rope(q[None], [m + shift]) @ mh.rope(k[None], [n + shift]).T)
    assert math.isclose(base, moved, rel_tol=1e-4, abs_tol=1e-4)
    x = torch.randn(3, 10, 16, generator=g)
    assert torch.allclose(mh.rope(x).norm(dim=-1), x.norm(dim=-1), atol=1e-5)


def test_rope_frequencies_match_sinusoidal_positions():
    theta = mh.rope_frequencies(16)
    assert theta.shape == (8,) and float(theta[0]) == 1.0
    angles = torch.arange(5)[:, None] * theta.float()  # (5, 8)
    assert torch.allclose(torch.sin(angles), mh.sinusoidal_positions(5, 16)[:, 0::2], atol=1e-6)


@pytest.mark.parametrize("kwargs,error,words", [
    ({"x": [1.0, 2.0]}, TypeError, "x must be a torch.Tensor"),
    ({"x": torch.ones(3, 4, dtype=torch.long)}, TypeError, "floating-point"),
    ({"x": torch.ones(4)}, ValueError, "at least 2-D"),
    ({"x": torch.ones(3, 5)}, ValueError, "even"),
    ({"x": torch.ones(3, 4), "positions": torch.arange(4)}, ValueError, "positions"),
    ({"x": torch.ones(3, 4), "positions": "abc"}, TypeError, "positions"),
    ({"x": torch.ones(3, 4), "positions": torch.ones(3, dtype=torch.bool)}, TypeError, "positions"),
    ({"x": torch.ones(3, 4), "positions": [0, float("nan"), 2]}, ValueError, "finite"),
    ({"x": torch.ones(3, 4), "base": "big"}, TypeError, "base"),
    ({"x": torch.ones(3, 4), "base": 0.5}, ValueError, "base"),
])
def test_rope_bad_inputs(kwargs, error, words):
    with pytest.raises(error, match=words):
        mh.rope(**kwargs)


# ---- ALiBi --------------------------------------------------------------------------------------------------------

# Slopes written out from Press et al. (2022), section 3, and the authors' code for other head counts.
PAPER_SLOPES = {
    1: [2 ** -8],
    2: [2 ** -4, 2 ** -8],
    8: [1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32, 1 / 64, 1 / 128, 1 / 256],
    16: [2 ** (-k / 2) for k in range(1, 17)],
    6: [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8, 2 ** -1, 2 ** -3],
    12: [2 ** -k for k in range(1, 9)] + [2 ** -0.5, 2 ** -1.5, 2 ** -2.5, 2 ** -3.5],
}


@pytest.mark.parametrize("num_heads", sorted(PAPER_SLOPES))
def test_alibi_slopes_are_the_papers(num_heads):
    got = mh.alibi_slopes(num_heads)
    assert got.shape == (num_heads,) and got.dtype == torch.float32
    assert torch.allclose(got.double(), torch.tensor(PAPER_SLOPES[num_heads], dtype=torch.float64), rtol=1e-6)


def test_alibi_bias_values():
    bias = mh.alibi_bias(4, 3, 5)
    assert bias.shape == (4, 3, 5)
    slopes = mh.alibi_slopes(4)
    for h in range(4):
        for i in range(3):
            for j in range(5):
                assert math.isclose(float(bias[h, i, j]), -float(slopes[h]) * abs(i - j), rel_tol=1e-6)
    square = mh.alibi_bias(4, 6, 6)
    assert torch.equal(square[:, -2:], mh.alibi_bias(4, 6, 6)[:, 4:])  # decoding: the last rows of the square


@pytest.mark.parametrize("call,error", [
    (lambda: mh.alibi_slopes(0), ValueError), (lambda: mh.alibi_slopes(2.0), TypeError),
    (lambda: mh.alibi_slopes(True), TypeError), (lambda: mh.alibi_bias(4, 0, 3), ValueError),
    (lambda: mh.alibi_bias(4, 3, "5"), TypeError),
])
def test_alibi_bad_inputs(call, error):
    with pytest.raises(error):
        call()


# ---- sliding window -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seq_len,window,key_len", [(6, 3, None), (5, 1, None), (4, 10, None), (3, 2, 7),
                                                    (7, 3, 4)])
def test_sliding_window_band(seq_len, window, key_len):
    mask = mh.sliding_window_mask(seq_len, window, key_len)
    S = seq_len if key_len is None else key_len
    assert mask.dtype == torch.bool and mask.shape == (seq_len, S)
    for i in range(seq_len):
        for j in range(S):
            assert bool(mask[i, j]) == (i - window < j <= i), (i, j)


def test_large_window_is_causal_and_window_one_is_diagonal():
    assert torch.equal(mh.sliding_window_mask(9, 9), mh.causal_mask(9))
    assert torch.equal(mh.sliding_window_mask(9, 1), torch.eye(9, dtype=torch.bool))


@pytest.mark.parametrize("seq,window,block", [(100, 10, 16), (64, 64, 64), (37, 5, 8), (50, 1, 7), (20, 30, 64)])
def test_sliding_window_attention_equals_masked_sdpa(seq, window, block):
    g = torch.Generator().manual_seed(seq)
    q, k, v = torch.randn(3, 2, 3, seq, 8, generator=g).unbind(0)
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=mh.sliding_window_mask(seq, window))
    assert torch.allclose(mh.sliding_window_attention(q, k, v, window, block_size=block), want, atol=1e-5)
    ours, _ = mh.scaled_dot_product_attention(q, k, v, attn_mask=mh.sliding_window_mask(seq, window))
    assert torch.allclose(ours, want, atol=1e-5)


@pytest.mark.parametrize("call,error", [
    (lambda: mh.sliding_window_mask(0, 3), ValueError), (lambda: mh.sliding_window_mask(4, 0), ValueError),
    (lambda: mh.sliding_window_mask(4, 2.5), TypeError), (lambda: mh.sliding_window_mask(4, 2, key_len=-1), ValueError),
    (lambda: mh.sliding_window_attention(torch.ones(4, 2), torch.ones(5, 2), torch.ones(5, 2), 2), ValueError),
    (lambda: mh.sliding_window_attention(torch.ones(4, 2), torch.ones(4, 2), torch.ones(4, 2), 0), ValueError),
    (lambda: mh.sliding_window_attention([1.0], torch.ones(4, 2), torch.ones(4, 2), 2), TypeError),
])
def test_sliding_window_bad_inputs(call, error):
    with pytest.raises(error):
        call()


# ---- multi-head latent attention ----------------------------------------------------------------------------------


def _mla(d_model=32, num_heads=4, latent_dim=12, seed=0):
    torch.manual_seed(seed)
    return mh.MultiHeadLatentAttention(d_model, num_heads, latent_dim)


@pytest.mark.parametrize("seed,prefill", [(0, 7), (1, 1), (2, 4), (3, 9), (4, 0)])
def test_mla_cached_decoding_equals_full_pass(seed, prefill):
    layer = _mla(seed=seed)
    x = torch.randn(2, 10, 32, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        full = layer(x)
        for step in (layer.forward, layer.forward_absorbed):
            cache = layer.new_cache(2, 10)
            outs = [step(x[:, :prefill], cache=cache)] if prefill else []
            outs += [step(x[:, t:t + 1], cache=cache) for t in range(prefill, 10)]
            assert torch.allclose(torch.cat(outs, dim=1), full, atol=1e-5)
            assert len(cache) == 10


def test_mla_chunked_prefill_equals_full_pass():
    layer = _mla()
    x = torch.randn(1, 9, 32)
    with torch.no_grad():
        cache = layer.new_cache(1, 9)
        chunks = [layer(x[:, a:b], cache=cache) for a, b in ((0, 4), (4, 7), (7, 9))]
        assert torch.allclose(torch.cat(chunks, dim=1), layer(x), atol=1e-5)


@pytest.mark.parametrize("d_model,num_heads,latent_dim,seed", [(32, 4, 12, 0), (64, 8, 16, 1), (24, 3, 40, 2),
                                                               (16, 16, 4, 3), (48, 1, 8, 4)])
def test_mla_absorbed_equals_plain(d_model, num_heads, latent_dim, seed):
    layer = _mla(d_model, num_heads, latent_dim, seed)
    x = torch.randn(2, 7, d_model, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        assert torch.allclose(layer.forward_absorbed(x), layer(x), atol=1e-5)


@pytest.mark.parametrize("latent_dim,dtype", [(12, torch.float32), (5, torch.float64), (16, torch.float16)])
def test_mla_cache_bytes_grow_by_latent_dim_per_token(latent_dim, dtype):
    layer = mh.MultiHeadLatentAttention(16, 2, latent_dim).to(dtype)
    cache = layer.new_cache(batch=3, max_len=6)
    assert cache.nbytes == 0 and cache.latents.dtype == dtype
    element = torch.empty(0, dtype=dtype).element_size()
    assert layer.cache_bytes_per_token == latent_dim * element
    with torch.no_grad():
        layer(torch.randn(3, 4, 16).to(dtype), cache=cache)
        assert cache.nbytes == 3 * 4 * latent_dim * element
        layer(torch.randn(3, 1, 16).to(dtype), cache=cache)
    assert cache.nbytes == 3 * 5 * latent_dim * element


def test_mla_parameters_and_latent_cache_formula():
    layer = mh.MultiHeadLatentAttention(64, 8, 16)
    assert sum(p.numel() for p in layer.parameters()) == 2 * 64 ** 2 + 3 * 64 * 16
    assert mh.latent_cache_bytes_per_token(num_layers=60, latent_dim=512, rope_dim=64, bytes_per_value=2) == 69_120
    assert mh.latent_cache_bytes_per_token(2, 8) == 32


@pytest.mark.parametrize("call,error", [
    (lambda: mh.MultiHeadLatentAttention(30, 4, 8), ValueError),
    (lambda: mh.MultiHeadLatentAttention(32, 4, 0), ValueError),
    (lambda: mh.MultiHeadLatentAttention(32, 4.0, 8), TypeError),
    (lambda: _mla()(torch.ones(1, 3, 31)), ValueError),
    (lambda: _mla()(torch.ones(3, 32)), ValueError),
    (lambda: _mla()(torch.ones(1, 3, 32, dtype=torch.long)), TypeError),
    (lambda: _mla()(torch.ones(1, 3, 32), cache=mh.KVCache(1, 4, 8, 3)), TypeError),
    (lambda: _mla()(torch.ones(1, 4, 32), cache=_mla().new_cache(1, 3)), ValueError),
    (lambda: _mla()(torch.ones(2, 1, 32), cache=_mla().new_cache(1, 3)), ValueError),
    (lambda: mh.latent_cache_bytes_per_token(1, 8, rope_dim=-1), ValueError),
    (lambda: mh.LatentCache(1, 0, 4), ValueError),
])
def test_mla_bad_inputs(call, error):
    with pytest.raises(error):
        call()


# ---- the cost meter -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_kv_heads,latent_dim,window", [(2, 16, 8), (8, 4, 32), (1, 128, 1), (4, 40, 20)])
def test_variant_costs_formula_equals_measured(num_kv_heads, latent_dim, window):
    rows = {r["variant"]: r for r in mh.variant_costs(64, 8, num_kv_heads, latent_dim, window, 32)}
    for row in rows.values():
        assert row["bytes/token"] == row["measured bytes/token"]
    assert rows["multi-head"]["bytes/token"] == 2 * 64 * 4
    assert rows["grouped-query"]["bytes/token"] == 2 * num_kv_heads * 8 * 4
    assert rows["latent (MLA)"]["bytes/token"] == latent_dim * 4
    assert rows["sliding window"]["cache bytes"] == 2 * num_kv_heads * 8 * 4 * min(window, 32)
    assert rows["latent (MLA)"]["parameters"] == 2 * 64 ** 2 + 3 * 64 * latent_dim


def test_cost_meter_moves_and_refuses_bad_settings():
    pytest.importorskip("ipywidgets")
    meter = mh.variant_cost_meter()
    gqa, band = meter.gqa_image.value, meter.window_image.value
    meter.kv_slider.value = 4
    assert meter.gqa_image.value != gqa and "num_kv_heads = 4" in meter.readout.value
    assert meter.window_image.value == band, "the band does not depend on num_kv_heads: not drawn again"
    meter.latent_slider.value = 32
    assert "latent_dim = 32" in meter.readout.value and "<td style='padding:3px 10px" in meter.readout.value
    meter.window_slider.value = 3
    assert "window = 3" in meter.readout.value and "could not redraw" not in meter.readout.value
    assert meter.window_image.value != band
    assert "num_kv_heads=4" in repr(meter)
    for kwargs in ({"num_kv_heads": 3}, {"window": 40}, {"latent_dim": 6}, {"d_model": 60}):
        with pytest.raises(ValueError):
            mh.variant_cost_meter(**kwargs)


# ---- checkers of notebook 11 --------------------------------------------------------------------------------------


def rope_ok(x, positions):
    head_dim = x.shape[-1]
    theta = 10000.0 ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = positions.float()[:, None] * theta
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack([a * angles.cos() - b * angles.sin(), a * angles.sin() + b * angles.cos()], dim=-1).flatten(-2)


def slopes_ok(num_heads):
    def geometric(n):
        return [2.0 ** (-8.0 * k / n) for k in range(1, n + 1)]

    p = 2 ** int(math.log2(num_heads))
    return torch.tensor(geometric(p) + geometric(2 * p)[0::2][: num_heads - p])


def window_ok(seq_len, window):
    offset = torch.arange(seq_len)[:, None] - torch.arange(seq_len)[None, :]
    return (offset >= 0) & (offset < window)


def cache_bytes_ok(num_layers, num_heads, head_dim, latent_dim, rope_dim, seq_len, bytes_per_value):
    return num_layers * (latent_dim + rope_dim) * seq_len * bytes_per_value


CHECKERS = [(mh.check_rope, rope_ok), (mh.check_alibi_slopes, slopes_ok),
            (mh.check_sliding_window_mask, window_ok), (mh.check_latent_cache_bytes, cache_bytes_ok)]


@pytest.mark.parametrize("checker,solution", CHECKERS)
def test_reference_solutions_pass(checker, solution, capsys):
    passed, out = run(checker, solution, capsys)
    assert passed and "✅" in out, out


@pytest.mark.parametrize("checker", [c for c, _ in CHECKERS])
def test_stub_is_not_yet(checker, capsys):
    passed, out = run(checker, stub, capsys)
    assert not passed and "⏳" in out and "Traceback" not in out


def _halves(x, positions):
    half = x.shape[-1] // 2
    theta = 10000.0 ** (-torch.arange(0, 2 * half, 2, dtype=torch.float32) / (2 * half))
    angles = positions.float()[:, None] * theta
    a, b = x[..., :half], x[..., half:]
    return torch.cat([a * angles.cos() - b * angles.sin(), a * angles.sin() + b * angles.cos()], dim=-1)


@pytest.mark.parametrize("checker,wrong,words", [
    (mh.check_rope, lambda x, p: x, "equals x"),
    (mh.check_rope, lambda x, p: rope_ok(x, -p), "wrong way"),
    (mh.check_rope, _halves, "halves"),
    (mh.check_rope, lambda x, p: 2 * rope_ok(x, p), "lengths"),
    (mh.check_rope, lambda x, p: x[..., :2], "shape"),
    (mh.check_alibi_slopes, lambda n: slopes_ok(n).flip(0), "reverse"),
    (mh.check_alibi_slopes, lambda n: torch.tensor([2.0 ** (-8.0 * k / n) for k in range(1, n + 1)]),
     "power of two only"),
    (mh.check_alibi_slopes, lambda n: torch.tensor([2.0 ** (-8.0 * k / n) for k in range(n)]), "first slope is 1"),
    (mh.check_sliding_window_mask, lambda L, w: ~window_ok(L, w), "inverted"),
    (mh.check_sliding_window_mask, lambda L, w: window_ok(L, w + 1), "window + 1"),
    (mh.check_sliding_window_mask, lambda L, w: window_ok(L, w).int(), "dtype"),
    (mh.check_sliding_window_mask,
     lambda L, w: (torch.arange(L)[:, None] - torch.arange(L)[None, :]).abs() < w, "later keys"),
    (mh.check_latent_cache_bytes, lambda nl, h, hd, c, r, s, b: 2 * nl * h * hd * s * b, "up-projected"),
    (mh.check_latent_cache_bytes, lambda nl, h, hd, c, r, s, b: 2 * nl * (c + r) * s * b, "no factor 2"),
    (mh.check_latent_cache_bytes, lambda nl, h, hd, c, r, s, b: nl * c * s * b, "RoPE"),
    (mh.check_latent_cache_bytes, lambda nl, h, hd, c, r, s, b: nl * (c + r) * s, "bytes_per_value"),
    (mh.check_latent_cache_bytes, lambda *a: "many", "number of bytes"),
])
def test_wrong_answers_get_their_hint(checker, wrong, words, capsys):
    passed, out = run(checker, wrong, capsys)
    assert not passed and "❌" in out and words in out, out
