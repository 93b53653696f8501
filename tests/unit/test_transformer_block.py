"""mha_helpers.TransformerBlock (notebook 07): shapes, masks, PyTorch parity, and clear errors.

The block wraps the series' MultiHeadAttention in residual connections, LayerNorms and an MLP; these tests protect
what notebook 07 shows: every sub-layer keeps (batch, L, d_model), no query looks at padding or at the future,
cross-attention takes a memory of another width, and the block computes exactly what nn.TransformerEncoderLayer does.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import mha_helpers as mh
from _mha_helpers.checkers.nb07 import _causal_padding_mask

SENTENCES = [["the", "cat", "sat", "on", "the", "mat"], ["a", "dog", "ran"], ["birds", "sing"]]


def randomised_block(seed: int = 0, **kwargs) -> mh.TransformerBlock:
    """A block whose every parameter (biases and LayerNorm scales included) is random, so no bug hides behind a 0/1."""
    torch.manual_seed(seed)
    block = mh.TransformerBlock(8, 2, **kwargs)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.4 + (1.0 if p.dim() == 1 and p.shape[0] == 8 else 0.0))
    return block


@pytest.fixture
def batch():
    return mh.toy_batch(SENTENCES, d_model=8)


# ---- shapes ------------------------------------------------------------------------------------------


def test_toy_batch_pads_with_zeros_and_marks_the_padding(batch):
    x, pad, tokens = batch
    assert x.shape == (3, 6, 8)
    assert pad.tolist() == [[False] * 6, [False] * 3 + [True] * 3, [False] * 2 + [True] * 4]
    assert bool((x[pad] == 0).all()) and bool((x[~pad] != 0).any(dim=-1).all())
    assert tokens[2] == ["birds", "sing", "<pad>", "<pad>", "<pad>", "<pad>"]
    assert torch.equal(x[0:1], mh.toy_embeddings(SENTENCES[0], d_model=8))


def test_encoder_block_keeps_the_shape_and_returns_per_head_maps(batch):
    x, pad, _ = batch
    block = randomised_block()
    out = block(x, key_padding_mask=pad)
    assert out.shape == x.shape
    out2, weights = block(x, key_padding_mask=pad, return_weights=True)
    assert set(weights) == {"self"} and weights["self"].shape == (3, 2, 6, 6)
    assert torch.allclose(out, out2, atol=1e-6)
    assert torch.allclose(weights["self"].sum(-1), torch.ones(3, 2, 6), atol=1e-6)


def test_decoder_block_takes_a_memory_of_another_width():
    torch.manual_seed(0)
    block = mh.TransformerBlock(8, 2, memory_dim=12)
    assert block.cross_attn.W_k.weight.shape == (8, 12) and block.cross_attn.W_v.weight.shape == (8, 12)
    y = torch.randn(2, 3, 8)
    memory = torch.randn(2, 5, 12)
    memory_pad = mh.padding_mask([5, 2])
    out, weights = block(y, memory, memory_key_padding_mask=memory_pad, is_causal=True, return_weights=True)
    assert out.shape == (2, 3, 8)
    assert weights["self"].shape == (2, 2, 3, 3) and weights["cross"].shape == (2, 2, 3, 5)
    assert bool((weights["self"].triu(1) == 0).all())
    assert bool((weights["cross"][1, :, :, 2:] == 0).all())


def test_default_mlp_width_is_four_times_d_model():
    block = mh.TransformerBlock(8, 2)
    assert block.d_ff == 32 and block.mlp[0].weight.shape == (32, 8) and block.mlp[3].weight.shape == (8, 32)
    assert "pre-norm" in repr(block)


# ---- masks ---------------------------------------------------------------------------------------------


def test_no_query_looks_at_padding_and_padding_content_does_not_matter(batch):
    x, pad, _ = batch
    block = randomised_block()
    out, weights = block(x, key_padding_mask=pad, return_weights=True)
    assert float(weights["self"].detach().masked_select(pad[:, None, None, :]).abs().max()) == 0.0
    x_other = x.clone()
    x_other[pad] = 7.0  # different padding content
    out_other = block(x_other, key_padding_mask=pad)
    assert torch.allclose(out[~pad], out_other[~pad], atol=1e-6)


def test_causal_block_ignores_the_future(batch):
    x, _, _ = batch
    block = randomised_block()
    sentence = x[:1]
    changed = sentence.clone()
    changed[0, -1] = torch.randn(8, generator=torch.Generator().manual_seed(1)) * 2  # another last token
    before, weights = block(sentence, is_causal=True, return_weights=True)
    after = block(changed, is_causal=True)
    assert bool((weights["self"].triu(1) == 0).all())
    assert torch.allclose(before[0, :-1], after[0, :-1], atol=1e-6)
    assert not torch.allclose(before[0, -1], after[0, -1], atol=1e-3)
    open_before, open_after = block(sentence), block(changed)
    assert not torch.allclose(open_before[0, :-1], open_after[0, :-1], atol=1e-3)


def test_causal_and_padding_together_equal_the_combined_mask(batch):
    x, pad, _ = batch
    block = randomised_block()
    both = block(x, key_padding_mask=pad, is_causal=True)
    combined = _causal_padding_mask([6, 3, 2], 6).repeat_interleave(2, dim=0)  # (batch * heads, L, L)
    h = block.norm1(x)
    a, _ = block.self_attn(h, attn_mask=combined)
    b, _ = block.self_attn(h, key_padding_mask=pad, is_causal=True)
    assert torch.allclose(a, b, atol=1e-6)
    assert both.shape == x.shape


# ---- the same as PyTorch ------------------------------------------------------------------------------


@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-norm", "post-norm"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_block_equals_torch_transformer_encoder_layer(batch, norm_first, mode):
    x, pad, _ = batch
    block = randomised_block(norm_first=norm_first)
    layer = block.to_torch()
    assert isinstance(layer, nn.TransformerEncoderLayer) and layer.norm_first is norm_first
    getattr(block, mode)()
    getattr(layer, mode)()
    assert torch.allclose(block(x, key_padding_mask=pad), layer(x, src_key_padding_mask=pad), atol=1e-5)
    L = x.shape[1]
    causal = nn.Transformer.generate_square_subsequent_mask(L)
    assert torch.allclose(block(x[:1], is_causal=True), layer(x[:1], src_mask=causal, is_causal=True), atol=1e-5)


def test_gradients_match_torch_encoder_layer(batch):
    x, pad, _ = batch
    block = randomised_block()
    layer = block.to_torch()
    block(x, key_padding_mask=pad).square().sum().backward()
    layer(x, src_key_padding_mask=pad).square().sum().backward()
    assert torch.allclose(block.mlp[0].weight.grad, layer.linear1.weight.grad, atol=1e-4)
    assert torch.allclose(block.norm1.weight.grad, layer.norm1.weight.grad, atol=1e-4)
    ours = torch.cat([block.self_attn.W_q.weight.grad, block.self_attn.W_k.weight.grad, block.self_attn.W_v.weight.grad])
    assert torch.allclose(ours, layer.self_attn.in_proj_weight.grad, atol=1e-4)


def test_post_norm_output_is_normalised_pre_norm_output_is_not(batch):
    x, _, _ = batch
    pre, post = randomised_block(norm_first=True), randomised_block(norm_first=False)
    with torch.no_grad():
        post.norm2.weight.fill_(1.0)
        post.norm2.bias.zero_()
    out_post = post(x[:1])
    assert torch.allclose(out_post.mean(-1), torch.zeros(1, 6), atol=1e-5)
    assert torch.allclose(out_post.std(-1, unbiased=False), torch.ones(1, 6), atol=1e-3)
    assert not torch.allclose(pre(x[:1]).mean(-1), torch.zeros(1, 6), atol=1e-2)


# ---- clear errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"num_heads": 3}, ValueError, "valid head counts: 1, 2, 4, 8"),
        ({"d_ff": 0}, ValueError, "d_ff"),
        ({"memory_dim": -1}, ValueError, "memory_dim"),
        ({"norm_first": "yes"}, TypeError, "norm_first"),
        ({"dropout": 1.0}, ValueError, "dropout"),
    ],
)
def test_bad_construction_raises_clear_errors(kwargs, error, words):
    args = {"d_model": 8, "num_heads": 2, **kwargs}
    with pytest.raises(error, match=words):
        mh.TransformerBlock(**args)


def test_bad_forward_inputs_raise_clear_errors(batch):
    x, pad, _ = batch
    encoder = mh.TransformerBlock(8, 2)
    decoder = mh.TransformerBlock(8, 2, memory_dim=12)
    with pytest.raises(ValueError, match="d_model=8"):
        encoder(torch.randn(2, 5, 6))
    with pytest.raises(ValueError, match="3-D"):
        encoder(torch.randn(5, 8))
    with pytest.raises(TypeError, match="floating-point"):
        encoder(torch.ones(2, 5, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="no cross-attention"):
        encoder(x, torch.randn(3, 4, 8))
    with pytest.raises(ValueError, match="pass memory"):
        decoder(x)
    with pytest.raises(ValueError, match="kdim=12"):
        decoder(x, torch.randn(3, 4, 10))
    with pytest.raises(ValueError, match="key_padding_mask"):
        encoder(x, key_padding_mask=pad[:, :4])
    with pytest.raises(TypeError, match="is_causal"):
        encoder(x, is_causal=1)
    with pytest.raises(ValueError, match="encoder blocks only"):
        decoder.to_torch()
    with pytest.raises(TypeError, match="sentences"):
        mh.toy_batch("the cat sat")

