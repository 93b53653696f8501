"""The exercise checkers of notebook 12 (heads that compose): NumPy head numbers pass 12.3 as they do 9.2; 12.2
accepts both readings of "averaged over those queries and the batch" (pooled, or per sequence then over the batch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from checker_support import assert_hint, assert_passes

import mha_helpers as mh


def _target(tokens):
    """(batch, L, L): key j's previous token equals query i's token, j <= i."""
    L = tokens.shape[1]
    prev = torch.full_like(tokens, -1)
    prev[:, 1:] = tokens[:, :-1]
    return (prev[:, None, :] == tokens[:, :, None]) & torch.ones(L, L, dtype=torch.bool).tril()


def induction_pooled(weights, tokens):
    target = _target(tokens)
    has = target.any(dim=-1)  # (batch, L)
    share = (weights * target[:, None]).sum(dim=-1)  # (batch, heads, L)
    return (share * has[:, None]).sum(dim=(0, 2)) / has.sum()


def induction_per_sequence(weights, tokens):  # the review's reading: each sequence's mean, then the batch's
    target = _target(tokens)
    has = target.any(dim=-1)
    share = (weights * target[:, None]).sum(dim=-1)
    per_seq = (share * has[:, None]).sum(-1) / has.sum(-1)[:, None]  # (batch, heads)
    return per_seq.mean(0)


@pytest.mark.parametrize(
    "fn",
    [induction_pooled, induction_per_sequence, lambda w, t: induction_pooled(w, t).numpy(),
     lambda w, t: induction_pooled(w, t).half()],
    ids=["pooled", "per-sequence", "numpy", "float16"],
)
def test_induction_score_accepts_both_averages(fn, capsys):
    assert_passes(mh.check_induction_score, fn, capsys)


def test_induction_score_still_rejects_every_query(capsys):
    def every_query(weights, tokens):
        return (weights * _target(tokens)[:, None]).sum(-1).mean(dim=(0, 2))

    assert_hint(mh.check_induction_score, every_query, "only over the queries", capsys)


def previous_ok(weights):
    i = torch.arange(1, weights.shape[-1])
    return weights[:, :, i, i - 1].mean(dim=(0, 2))


@pytest.mark.parametrize("fn", [previous_ok, lambda w: previous_ok(w).numpy(), lambda w: previous_ok(w).half()],
                         ids=["solution", "numpy", "float16"])
def test_previous_token_score_accepts_right_answers(fn, capsys):
    assert_passes(mh.check_previous_token_score, fn, capsys)


@pytest.mark.parametrize(
    "fn",
    [lambda s: int(s[0].argmax()), lambda s: s[0].argmax(), lambda s: np.argmax(s[0].numpy()),
     lambda s: np.int64(s[0].argmax()), lambda s: s[0].argmax().numpy(), lambda s: s[0].argmax().item()],
    ids=["int", "0-d tensor", "np.argmax", "numpy-int", "0-d array", "item"],
)
def test_head_to_switch_off_accepts_any_integer(fn, capsys):
    assert_passes(mh.check_head_to_switch_off, fn, capsys)


def test_head_to_switch_off_asks_for_a_whole_number(capsys):
    assert_hint(mh.check_head_to_switch_off, lambda s: float(s[0].argmax()), "got float", capsys)
