"""The exercise checkers of notebook 10 (attention at inference): right masks and cached attention in any reasonable
form pass (NumPy, half precision); the top-left mask gets a hint that explains without handing over the answer; an
inverted (nn.MultiheadAttention) polarity gets its own hint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from checker_support import assert_hint, assert_passes, run

import mha_helpers as mh

# ---- Exercise 10.1: the bottom-right causal mask ------------------------------------------------------------------


def bottom_right_ok(L, S):
    return torch.arange(S)[None, :] <= torch.arange(L)[:, None] + (S - L)  # key j <= i + (S - L)


@pytest.mark.parametrize(
    "fn",
    [bottom_right_ok, lambda L, S: torch.ones(L, S, dtype=torch.bool).tril(diagonal=S - L),
     lambda L, S: np.tril(np.ones((L, S), dtype=bool), k=S - L), lambda L, S: bottom_right_ok(L, S).numpy()],
    ids=["arange", "tril", "numpy-tril", "numpy"],
)
def test_bottom_right_mask_accepts_right_answers(fn, capsys):
    assert_passes(mh.check_bottom_right_mask, fn, capsys)


@pytest.mark.parametrize(
    "fn, hint",
    [
        (lambda L, S: torch.ones(L, S, dtype=torch.bool).tril(), "that is the top-left mask"),
        (lambda L, S: ~bottom_right_ok(L, S), "polarity is inverted"),
        (lambda L, S: torch.ones(L, S, dtype=torch.bool).tril(diagonal=S - L + 1), "off by one"),
        (lambda L, S: bottom_right_ok(L, S).T, "rows and columns swapped"),
        (lambda L, S: bottom_right_ok(L, S).float(), "return a boolean mask"),
    ],
    ids=["top-left", "inverted", "off-by-one", "swapped", "float"],
)
def test_bottom_right_mask_names_the_mistake(fn, hint, capsys):
    assert_hint(mh.check_bottom_right_mask, fn, hint, capsys)


def test_the_top_left_hint_does_not_hand_over_the_answer(capsys):
    """J6 of the classroom review: the first wrong-answer hint used to print the solution, .tril(diagonal=S - L)."""
    passed, out = run(mh.check_bottom_right_mask, lambda L, S: torch.ones(L, S, dtype=torch.bool).tril(), capsys)
    assert not passed and "tril(" not in out and "diagonal=" not in out, out


# ---- Exercise 10.2: cached attention equal to the full pass --------------------------------------------------------


def cached_ok(q_new, k_all, v_all):
    mask = mh.causal_mask(q_new.shape[-2], k_all.shape[-2], align="bottom_right")
    return F.scaled_dot_product_attention(q_new, k_all, v_all, attn_mask=mask)


@pytest.mark.parametrize(
    "fn",
    [cached_ok, lambda q, k, v: cached_ok(q.half(), k.half(), v.half()), lambda q, k, v: cached_ok(q, k, v).numpy(),
     lambda q, k, v: cached_ok(q.double(), k.double(), v.double())],
    ids=["solution", "float16", "numpy", "float64"],
)
def test_cached_attention_accepts_right_answers(fn, capsys):
    assert_passes(mh.check_cached_attention, fn, capsys)


def test_cached_attention_names_the_inverted_polarity(capsys):
    def mha_polarity(q_new, k_all, v_all):  # nn.MultiheadAttention's True = blocked, handed to SDPA
        blocked = ~mh.causal_mask(q_new.shape[-2], k_all.shape[-2], align="bottom_right")
        return F.scaled_dot_product_attention(q_new, k_all, v_all, attn_mask=blocked)

    assert_hint(mh.check_cached_attention, mha_polarity, "your mask is inverted", capsys)
