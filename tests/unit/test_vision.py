"""Notebook 07's ViT helpers: the toy image, patchify's layout, the 2-D positions, the patch embedding, the figures,
and clear errors for bad inputs."""

from __future__ import annotations

import matplotlib
import pytest
import torch

import mha_helpers as mh

matplotlib.use("Agg")


def test_toy_image_is_fixed_and_in_range():
    image = mh.toy_image(24)
    assert tuple(image.shape) == (3, 24, 24) and image.min() >= 0 and image.max() <= 1
    assert torch.equal(image, mh.toy_image(24))
    assert tuple(mh.toy_image(48).shape) == (3, 48, 48)


def test_patchify_is_reading_order():
    image = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(2, 4, 6)  # (C, H, W)
    patches = mh.patchify(image, 2)  # grid 2 x 3
    assert tuple(patches.shape) == (6, 2 * 2 * 2)
    for n in range(6):
        r, c = divmod(n, 3)
        block = image[:, 2 * r:2 * r + 2, 2 * c:2 * c + 2]  # (C, p, p)
        assert torch.equal(patches[n], block.reshape(-1))
    batched = mh.patchify(torch.stack([image, image + 1]), 2)
    assert tuple(batched.shape) == (2, 6, 8) and torch.equal(batched[1], patches + 1)


@pytest.mark.parametrize("images, patch, error", [
    (torch.zeros(3, 24, 24), 5, ValueError), (torch.zeros(24, 24), 6, ValueError),
    (torch.zeros(3, 24, 24, dtype=torch.int64), 6, TypeError), ([[0.0]], 6, TypeError),
    (torch.zeros(3, 24, 24), 0, ValueError)])
def test_patchify_rejects_bad_inputs(images, patch, error):
    with pytest.raises(error):
        mh.patchify(images, patch)


def test_positions_2d_rejects_odd_width():
    with pytest.raises(ValueError, match="even"):
        mh.positions_2d(4, 4, 15)


def test_patch_embedding_shapes_and_positions():
    torch.manual_seed(0)
    embed = mh.PatchEmbedding(24, 6, 16)
    tokens = embed(mh.toy_image(24)[None])
    assert tuple(tokens.shape) == (1, 17, 16) and embed.num_patches == 16
    assert torch.equal(tokens[0, 0], embed.class_token[0, 0])
    patches = mh.patchify(mh.toy_image(24), 6)[None]
    without = embed.embed_patches(patches, with_positions=False)
    assert torch.allclose(tokens[0, 1:] - without[0, 1:], mh.positions_2d(4, 4, 16), atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 3, 20, 20), (1, 1, 24, 24), (3, 24, 24)])
def test_patch_embedding_rejects_other_images(shape):
    with pytest.raises(ValueError):
        mh.PatchEmbedding(24, 6, 16)(torch.zeros(shape))


def test_patch_embedding_rejects_a_patch_size_that_does_not_divide():
    with pytest.raises(ValueError, match="multiple"):
        mh.PatchEmbedding(24, 5, 16)


def test_figures_and_their_checks():
    import matplotlib.pyplot as plt

    torch.manual_seed(0)
    image = mh.toy_image(24)
    tokens = mh.PatchEmbedding(24, 6, 16)(image[None])
    _, w = mh.MultiHeadAttention(16, 4)(tokens, average_attn_weights=False)
    fig = mh.plot_patch_tokens(image, 6, tokens[0])
    assert len(fig.axes) == 3
    fig = mh.plot_patch_attention(w[0], image, 6, query=3)
    assert len(fig.axes) == 4
    plt.close("all")
    with pytest.raises(ValueError, match="query must be"):
        mh.plot_patch_attention(w[0], image, 6, query=17)
    with pytest.raises(ValueError, match="tokens"):
        mh.plot_patch_attention(w[0, :, :5, :5], image, 6)
