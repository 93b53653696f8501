"""Notebook 10's machinery: causal_mask's two alignments against PyTorch's CausalBias, prefill + decode and chunked
prefill equal to the full pass, and the mask editor's logic (no browser: its state is driven from Python)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention.bias import causal_lower_right, causal_upper_left

import mha_helpers as mh

SHAPES = [(1, 1), (3, 3), (3, 5), (1, 7), (5, 3), (4, 9), (9, 4), (2, 2), (6, 1)]


@pytest.mark.parametrize("L, S", SHAPES)
def test_bottom_right_equals_causal_lower_right(L, S):
    expected = causal_lower_right(L, S)._materialize("cpu")  # (L, S), True = may attend
    assert torch.equal(mh.causal_mask(L, S, align="bottom_right"), expected)


@pytest.mark.parametrize("L, S", SHAPES)
def test_top_left_equals_causal_upper_left_and_is_the_default(L, S):
    expected = causal_upper_left(L, S)._materialize("cpu")
    assert torch.equal(mh.causal_mask(L, S), expected)
    assert torch.equal(mh.causal_mask(L, S, align="top_left"), expected)


@pytest.mark.parametrize("L, S", [(3, 5), (1, 8), (4, 4), (2, 6)])
def test_bottom_right_mask_gives_sdpas_result_with_causal_lower_right(L, S):
    g = torch.Generator().manual_seed(L * 10 + S)
    q, k, v = (torch.randn(2, 3, n, 8, generator=g) for n in (L, S, S))
    ours = F.scaled_dot_product_attention(q, k, v, attn_mask=mh.causal_mask(L, S, align="bottom_right"))
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_lower_right(L, S))
    torch.testing.assert_close(ours, theirs)


def test_square_masks_agree_for_both_alignments():
    for n in range(1, 8):
        assert torch.equal(mh.causal_mask(n, align="top_left"), mh.causal_mask(n, align="bottom_right"))


def test_device_and_dtype():
    mask = mh.causal_mask(3, 5, device="cpu", align="bottom_right")
    assert mask.dtype == torch.bool and mask.device.type == "cpu" and tuple(mask.shape) == (3, 5)


@pytest.mark.parametrize("align", ["bottom-right", "lower_right", "BOTTOM_RIGHT", "", "causal"])
def test_bad_align_value_is_a_clear_value_error(align):
    with pytest.raises(ValueError, match="align must be 'top_left'.*'bottom_right'.*got align="):
        mh.causal_mask(3, 5, align=align)


@pytest.mark.parametrize("align", [True, 1, None, ["bottom_right"]])
def test_bad_align_type_is_a_clear_type_error(align):
    with pytest.raises(TypeError, match="align must be one of"):
        mh.causal_mask(3, 5, align=align)


def test_align_is_keyword_only():
    with pytest.raises(TypeError):
        mh.causal_mask(3, 5, None, "bottom_right")
