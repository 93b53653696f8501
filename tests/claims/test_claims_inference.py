"""The general claims of notebook 10 and of notebook 07's new sections, re-derived over several seeds and configurations,
so that a claim true for the notebook's one example only would fail here.

Each test names the claim it backs, in the words of the notebook.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention.bias import causal_lower_right

import mha_helpers as mh

SEEDS = range(6)
# (d_model, num_heads, num_kv_heads, T): MHA, GQA and MQA layers of several sizes
LAYERS = [(16, 4, 4, 10), (16, 4, 2, 7), (24, 6, 1, 9), (32, 8, 8, 12), (12, 3, 3, 5), (32, 4, 2, 16)]


def _random_chunks(T: int, g: torch.Generator) -> list[int]:
    chunks, left = [], T
    while left:
        size = int(torch.randint(1, left + 1, (1,), generator=g))
        chunks.append(size)
        left -= size
    return chunks


# ---- notebook 10, section 1 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", LAYERS)
def test_prefill_then_decode_equals_all_at_once(config):
    """10 §1: prefill P tokens, then decode the rest one at a time, equals the full pass (every prompt length)."""
    d_model, heads, kv_heads, T = config
    torch.manual_seed(T)
    layer = mh.GroupedQuerySelfAttention(d_model, heads, kv_heads)
    x = torch.randn(2, T, d_model)
    with torch.no_grad():
        full = layer(x)
        for prompt in range(1, T + 1):
            out, _ = mh.run_with_cache(layer, x, [prompt] + [1] * (T - prompt))
            assert torch.allclose(out, full, atol=1e-5), (config, prompt)


@pytest.mark.parametrize("seed", SEEDS)
def test_chunked_prefill_equals_all_at_once(seed):
    """10 §1: any chunked prefill (L > 1 new queries over a non-empty cache) gives the full pass's outputs."""
    g = torch.Generator().manual_seed(seed)
    d_model, heads, kv_heads, T = LAYERS[seed % len(LAYERS)]
    torch.manual_seed(seed)
    layer = mh.GroupedQuerySelfAttention(d_model, heads, kv_heads)
    x = torch.randn(1, T, d_model, generator=g)
    with torch.no_grad():
        full = layer(x)
        for _ in range(5):
            chunks = _random_chunks(T, g)
            assert torch.allclose(mh.run_with_cache(layer, x, chunks)[0], full, atol=1e-5), chunks


# ---- notebook 10, section 2 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("L, S", [(3, 10), (2, 5), (4, 7), (1, 6)])
def test_bottom_right_is_right_and_top_left_is_silently_wrong(seed, L, S, qkv):
    """10 §2: for the last L of S queries, the bottom-right mask gives the full pass's rows; is_causal=True (top-left)
    gives different numbers, with no exception and no warning."""
    q, k, v = qkv(S, S, lead=(1, 2), seed=seed)
    reference = F.scaled_dot_product_attention(q, k, v, is_causal=True)[:, :, S - L:]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning would fail the test
        top_left = F.scaled_dot_product_attention(q[:, :, S - L:], k, v, is_causal=True)
        bottom_right = F.scaled_dot_product_attention(q[:, :, S - L:], k, v, attn_mask=causal_lower_right(L, S))
    ours = F.scaled_dot_product_attention(q[:, :, S - L:], k, v, attn_mask=mh.causal_mask(L, S, align="bottom_right"))
    assert torch.allclose(bottom_right, reference, atol=1e-6)
    assert torch.allclose(ours, reference, atol=1e-6)
    assert (top_left - reference).abs().max() > 0.05


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("S", [2, 6, 10])
def test_one_new_token_with_is_causal_sees_only_key_0(seed, S, qkv):
    """10 §2: with L = 1, is_causal=True lets the new token see only key 0 (its output IS value 0); no mask is right."""
    q, k, v = qkv(S, S, lead=(1, 2), seed=seed)
    one = F.scaled_dot_product_attention(q[:, :, -1:], k, v, is_causal=True)
    assert torch.allclose(one, v[:, :, :1], atol=1e-6)
    full_last = F.scaled_dot_product_attention(q, k, v, is_causal=True)[:, :, -1:]
    assert torch.allclose(F.scaled_dot_product_attention(q[:, :, -1:], k, v), full_last, atol=1e-6)


@pytest.mark.parametrize("L, S", [(5, 3), (4, 1), (7, 2), (3, 2), (9, 4)])
def test_bottom_right_with_more_queries_than_keys_has_empty_rows(L, S):
    """10 §2: with L > S, bottom-right leaves the first L - S queries with no key: fully masked rows."""
    assert mh.fully_masked_rows(mh.causal_mask(L, S, align="bottom_right")) == list(range(L - S))


@pytest.mark.parametrize("n", range(1, 7))
def test_the_two_alignments_agree_when_L_equals_S(n):
    """10 §2: for L = S the two alignments are the same (which is why training never notices)."""
    assert torch.equal(mh.causal_mask(n, align="top_left"), mh.causal_mask(n, align="bottom_right"))


# ---- notebook 10, section 3 ---------------------------------------------------------------------------------------

MODELS = [dict(num_layers=32, d_model=4096, num_heads=32), dict(num_layers=12, d_model=768, num_heads=12),
          dict(num_layers=2, d_model=64, num_heads=4), dict(num_layers=80, d_model=8192, num_heads=64),
          dict(num_layers=24, d_model=2048, num_heads=16), dict(num_layers=6, d_model=512, num_heads=8)]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("context", [1, 512, 4096, 100_000])
def test_mha_decode_is_one_flop_per_byte_in_fp16(model, context):
    """10 §3: a decode step with MHA does 1 FLOP per byte in fp16 (2 / bytes_per_value in general), at any context
    length and any model size."""
    for bpv in (2, 4):
        c = mh.decode_cost(**model, num_kv_heads=model["num_heads"], context_len=context, bytes_per_value=bpv)
        assert c["intensity"] == pytest.approx(2 / bpv)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("prompt", [16, 512, 2048])
def test_prefill_reuses_each_weight_for_every_prompt_token(model, prompt):
    """10 §3: prefilling T tokens with MHA in fp16 does T FLOPs per byte: each weight is reused T times."""
    c = mh.decode_cost(**model, num_kv_heads=model["num_heads"], context_len=prompt, new_tokens=prompt)
    assert c["intensity"] == pytest.approx(prompt)


@pytest.mark.parametrize("model", MODELS)
def test_batching_shares_weights_but_not_caches(model):
    """10 §3: batching B sequences shares one read of the weights, but each reads its own KV cache: the intensity
    rises with the batch yet stays below B, and the KV bytes grow B-fold."""
    one = mh.decode_cost(**model, num_kv_heads=model["num_heads"], context_len=4096)
    previous = one["intensity"]
    for batch in (2, 4, 16, 64):
        c = mh.decode_cost(**model, num_kv_heads=model["num_heads"], context_len=4096, batch=batch)
        assert c["weight bytes"] == one["weight bytes"] and c["kv bytes"] == batch * one["kv bytes"]
        assert previous < c["intensity"] < batch * one["intensity"]
        previous = c["intensity"]


@pytest.mark.parametrize("model", MODELS)
def test_fewer_kv_heads_mean_fewer_bytes_for_the_same_attention_flops(model):
    """10 §3: GQA/MQA divide the KV cache by num_heads / num_kv_heads, keep the attention FLOPs, and so raise the
    intensity; the total FLOPs shrink only by the smaller W_k, W_v."""
    heads = model["num_heads"]
    mha = mh.decode_cost(**model, num_kv_heads=heads, context_len=4096, batch=16)
    for kv in [k for k in (heads // 2, heads // 4, 1) if k >= 1 and heads % k == 0]:
        c = mh.decode_cost(**model, num_kv_heads=kv, context_len=4096, batch=16)
        assert c["kv bytes"] * heads == mha["kv bytes"] * kv
        head_dim = model["d_model"] // heads
        saved_params = model["num_layers"] * 2 * model["d_model"] * (heads - kv) * head_dim
        assert mha["flops"] - c["flops"] == 2 * 16 * saved_params  # only the projections' FLOPs differ
        assert c["intensity"] > mha["intensity"]


@pytest.mark.parametrize("config", LAYERS)
def test_the_cache_takes_what_the_formula_says(config):
    """10 §3: KVCache.nbytes after T tokens equals T x kv_cache_bytes_per_token (notebook 09's formula)."""
    d_model, heads, kv_heads, T = config
    layer = mh.GroupedQuerySelfAttention(d_model, heads, kv_heads)
    cache = layer.new_cache(batch=1, max_len=T)
    with torch.no_grad():
        layer(torch.randn(1, T, d_model), cache=cache)
    assert cache.nbytes == T * mh.kv_cache_bytes_per_token(1, kv_heads, d_model // heads, 4)


# ---- notebook 10, section 4 ---------------------------------------------------------------------------------------


def _random_mask(seed: int, L: int, S: int, dead_row: int | None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(L, S, generator=g) < 0.6
    mask[:, 0] = True  # every row keeps a key ...
    if dead_row is not None:
        mask[dead_row] = False  # ... except this one
    return mask


@pytest.mark.parametrize("seed", SEEDS)
def test_fully_masked_row_is_nan_in_a_plain_softmax_zero_in_sdpa_nan_in_torch_mha(seed):
    """10 §4: a row with no allowed key is NaN in a plain softmax, zeros from F.scaled_dot_product_attention on the CPU
    (and from our modules), NaN from nn.MultiheadAttention with need_weights=True."""
    L, S, d = 3, 6, 4
    mask = _random_mask(seed, L, S, dead_row=seed % L)
    g = torch.Generator().manual_seed(100 + seed)
    q, k = torch.randn(1, L, d, generator=g), torch.randn(1, S, d, generator=g)
    dead = seed % L
    assert torch.isnan(mh.naive_masked_softmax(q[0] @ k[0].T, mask)[dead]).all()
    assert torch.equal(F.scaled_dot_product_attention(q, k, k, attn_mask=mask)[0, dead], torch.zeros(d))
    assert torch.equal(mh.scaled_dot_product_attention(q, k, k, attn_mask=mask)[1][0, dead], torch.zeros(S))
    torch.manual_seed(seed)
    torch_mha = nn.MultiheadAttention(d, 1, batch_first=True)
    _, w = torch_mha(q, k, k, attn_mask=mh.mask_forms(mask)["nn.MultiheadAttention bool"], need_weights=True)
    assert torch.isnan(w[0, dead]).all()


@pytest.mark.parametrize("seed", SEEDS)
def test_the_three_forms_are_one_mask(seed):
    """10 §4: SDPA's boolean form, nn.MultiheadAttention's boolean form and the additive form give the same attention
    in the functions that take them."""
    L, S, E = 4, 6, 8
    mask = _random_mask(seed, L, S, dead_row=None)
    forms = mh.mask_forms(mask)
    g = torch.Generator().manual_seed(seed)
    q, k, v = torch.randn(1, 2, L, 4, generator=g), torch.randn(1, 2, S, 4, generator=g), torch.randn(1, 2, S, 4, generator=g)
    by_bool = F.scaled_dot_product_attention(q, k, v, attn_mask=forms["sdpa bool"])
    by_float = F.scaled_dot_product_attention(q, k, v, attn_mask=forms["additive float"])
    assert torch.allclose(by_bool, by_float, atol=1e-6)
    torch.manual_seed(seed)
    torch_mha = nn.MultiheadAttention(E, 2, batch_first=True)
    x, m = torch.randn(1, L, E, generator=g), torch.randn(1, S, E, generator=g)
    a = torch_mha(x, m, m, attn_mask=forms["nn.MultiheadAttention bool"])[0]
    b = torch_mha(x, m, m, attn_mask=forms["additive float"])[0]
    wrong = torch_mha(x, m, m, attn_mask=forms["sdpa bool"])[0]  # the other convention: silently different
    assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(a, wrong, atol=1e-3)


# ---- notebook 07, the is_causal hint ------------------------------------------------------------------------------

TORCH_CONFIGS = [(8, 2, 6), (16, 4, 5), (12, 2, 7), (32, 8, 4), (24, 6, 9), (16, 2, 3)]


@pytest.mark.parametrize("E, heads, L", TORCH_CONFIGS)
def test_torch_is_causal_alone_raises_in_training_and_is_ignored_on_the_fast_path(E, heads, L):
    """07 §6: nn.MultiheadAttention with is_causal=True and no attn_mask raises in training mode; in eval mode under
    no_grad with an even head count (its fast path) it raises nothing and attends to everything."""
    torch.manual_seed(E + heads + L)
    torch_mha = nn.MultiheadAttention(E, heads, batch_first=True)
    x = torch.randn(2, L, E)
    with pytest.raises(RuntimeError, match="Need attn_mask"):
        torch_mha(x, x, x, is_causal=True)
    torch_mha.eval()
    with torch.no_grad():
        hint_only = torch_mha(x, x, x, is_causal=True)[0]
        no_mask = torch_mha(x, x, x)[0]
        causal = torch_mha(x, x, x, attn_mask=~mh.causal_mask(L), is_causal=True)[0]
    assert torch.allclose(hint_only, no_mask, atol=1e-6)
    assert not torch.allclose(hint_only, causal, atol=1e-4)


@pytest.mark.parametrize("E, heads, L", TORCH_CONFIGS)
def test_ours_builds_the_causal_mask_from_is_causal_alone(E, heads, L):
    """07 §6: our module with is_causal=True alone equals PyTorch's with the causal attn_mask, in training and eval."""
    torch.manual_seed(E * heads + L)
    ours = mh.MultiHeadAttention(E, heads)
    theirs = ours.to_torch()
    x = torch.randn(2, L, E)
    for train in (True, False):
        ours.train(train)
        theirs.train(train)
        with torch.no_grad():
            a = ours(x, is_causal=True)[0]
            b = theirs(x, x, x, attn_mask=~mh.causal_mask(L), is_causal=True)[0]
        assert torch.allclose(a, b, atol=1e-5)


# ---- notebook 07, ViT and positions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_without_positions_shuffling_tokens_only_shuffles_outputs(seed):
    """07 §7: attention without positions is permutation-equivariant: shuffled tokens give shuffled outputs, and the
    class token's output does not change at all; with 2-D positions added, both change."""
    torch.manual_seed(seed)
    image = mh.toy_image(24)
    embed = mh.PatchEmbedding(24, 6, 16)
    attn = mh.MultiHeadAttention(16, 4)
    patches = mh.patchify(image, 6)[None]  # (1, 16, 108)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(seed))
    if torch.equal(perm, torch.arange(16)):
        perm = perm.flip(0)
    with torch.no_grad():
        for positions in (False, True):
            plain = attn(embed.embed_patches(patches, with_positions=positions))[0]
            shuffled = attn(embed.embed_patches(patches[:, perm], with_positions=positions))[0]
            equivariant = torch.allclose(shuffled[0, 1:], plain[0, 1:][perm], atol=1e-5)
            cls_same = torch.allclose(shuffled[0, 0], plain[0, 0], atol=1e-5)
            assert equivariant == (not positions) and cls_same == (not positions)


@pytest.mark.parametrize("seed", SEEDS)
def test_words_without_positions_are_a_bag(seed):
    """07 §7: the same for words: without positions, a shuffled sentence gives the shuffled outputs."""
    torch.manual_seed(seed)
    attn = mh.MultiHeadAttention(8, 2)
    words = ["the", "cat", "sat", "on", "the", "mat"]
    order = torch.randperm(6, generator=torch.Generator().manual_seed(seed)).tolist()
    bag = mh.toy_embeddings(words, d_model=8, positions=False, seed=seed)
    with torch.no_grad():
        assert torch.allclose(attn(bag[:, order])[0], attn(bag)[0][:, order], atol=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
def test_vit_attention_equals_torch_and_has_no_causal_mask(seed):
    """07 §7: the same MultiHeadAttention over patch tokens equals nn.MultiheadAttention (outputs and per-head weights),
    and with no mask every weight, also on a 'later' patch, is > 0."""
    torch.manual_seed(seed)
    image = mh.toy_image(24 if seed % 2 else 32)
    patch = 6 if seed % 2 else 8
    embed = mh.PatchEmbedding(image.shape[-1], patch, 16)
    tokens = embed(image[None])
    attn = mh.MultiHeadAttention(16, 4)
    out, w = attn(tokens, average_attn_weights=False)
    t_out, t_w = attn.to_torch()(tokens, tokens, tokens, average_attn_weights=False)
    assert torch.allclose(out, t_out, atol=1e-5) and torch.allclose(w, t_w, atol=1e-5)
    assert bool((w > 0).all())


@pytest.mark.parametrize("grid_h, grid_w, d_model", [(4, 4, 16), (3, 5, 8), (2, 2, 4), (6, 3, 12), (1, 7, 10)])
def test_2d_positions_share_the_row_half_and_the_column_half(grid_h, grid_w, d_model):
    """07 §7: the first half of a patch's position code is its row's, the second half its column's."""
    pos = mh.positions_2d(grid_h, grid_w, d_model).reshape(grid_h, grid_w, d_model)
    half = d_model // 2
    assert torch.equal(pos[:, :, :half], pos[:, :1, :half].expand(grid_h, grid_w, half))
    assert torch.equal(pos[:, :, half:], pos[:1, :, half:].expand(grid_h, grid_w, half))
    assert torch.equal(pos[:, 0, :half], mh.sinusoidal_positions(grid_h, half))


@pytest.mark.parametrize("E, heads", [(6, 3), (15, 5), (21, 7), (9, 1), (10, 5)])
def test_torch_is_causal_alone_raises_off_the_fast_path(E, heads):
    """07 §6: the hint is ignored only on the fast path; an odd head count skips it, and the same call raises."""
    torch.manual_seed(E)
    torch_mha = nn.MultiheadAttention(E, heads, batch_first=True).eval()
    x = torch.randn(2, 5, E)
    with torch.no_grad(), pytest.raises(RuntimeError, match="Need attn_mask"):
        torch_mha(x, x, x, is_causal=True)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_stack_without_positions_gives_a_scrambled_image_the_same_class_output(seed):
    """07 §7: "a ViT without positions would classify a scrambled image exactly like the original": through a stack of
    Transformer blocks (attention and per-token MLPs), the class token's output ignores the patches' order."""
    torch.manual_seed(seed)
    embed = mh.PatchEmbedding(24, 6, 16)
    blocks = nn.Sequential(*(mh.TransformerBlock(16, 4) for _ in range(3)))
    patches = mh.patchify(mh.toy_image(24), 6)[None]
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(seed)).flip(0)
    with torch.no_grad():
        for positions in (False, True):
            plain = blocks(embed.embed_patches(patches, with_positions=positions))
            scrambled = blocks(embed.embed_patches(patches[:, perm], with_positions=positions))
            assert torch.allclose(plain[:, 0], scrambled[:, 0], atol=1e-5) == (not positions)


@pytest.mark.parametrize("E, heads, L", TORCH_CONFIGS)
def test_torch_is_causal_alone_raises_with_batch_first_false_even_in_eval(E, heads, L):
    """07 §6: the fast path also needs batch_first=True: with batch_first=False, eval mode under no_grad and an even
    head count, is_causal=True alone raises like the ordinary path."""
    torch.manual_seed(E + L)
    torch_mha = nn.MultiheadAttention(E, heads, batch_first=False).eval()
    x = torch.randn(L, 2, E)  # (L, batch, E)
    with torch.no_grad(), pytest.raises(RuntimeError, match="Need attn_mask"):
        torch_mha(x, x, x, is_causal=True)


# ---- notebook 07, post-norm ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("gamma, beta", [(1.0, 0.0), (2.0, 0.5), (0.3, -1.0)])
def test_07_post_norm_output_has_mean_beta_and_std_gamma(seed, gamma, beta):
    """07 §5: a post-norm block's output has, per token, mean β and standard deviation γ of its last LayerNorm: mean 0
    and std 1 only at initialisation (γ = 1, β = 0); a pre-norm block's output is not normalised."""
    torch.manual_seed(seed)
    post = mh.TransformerBlock(8, 2, norm_first=False)
    pre = mh.TransformerBlock(8, 2)
    x = torch.randn(3, 6, 8) * 3 + 1
    with torch.no_grad():
        post.norm2.weight.fill_(gamma)
        post.norm2.bias.fill_(beta)
        out = post(x)
        assert torch.allclose(out.mean(-1), torch.full((3, 6), beta), atol=1e-4)
        assert torch.allclose(out.std(-1, unbiased=False), torch.full((3, 6), gamma), atol=1e-3 * max(gamma, 1))
        assert not torch.allclose(pre(x).std(-1, unbiased=False), torch.ones(3, 6), atol=0.05)
