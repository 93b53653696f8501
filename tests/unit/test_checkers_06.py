"""The exercise checkers of notebook 06 (exploring heads): right answers in any reasonable form pass (NumPy ints as
dict keys, NumPy arrays), each typical wrong answer gets the hint that names its mistake."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from checker_support import assert_hint, assert_passes

import mha_helpers as mh

# ---- Exercise 6.1: head_dim for every valid head count ------------------------------------------------------------


def head_dims_ok(d_model):
    return {h: d_model // h for h in range(1, d_model + 1) if d_model % h == 0}


@pytest.mark.parametrize(
    "fn",
    [
        head_dims_ok,
        lambda d: {np.int64(h): np.int64(d // h) for h in range(1, d + 1) if d % h == 0},
        lambda d: {int(h): int(d // h) for h in np.arange(1, d + 1) if d % h == 0},
        lambda d: dict(sorted(head_dims_ok(d).items(), reverse=True)),
        lambda d: {d // h: h for h in range(1, d + 1) if d % h == 0},  # the same mapping, built the other way
    ],
    ids=["solution", "numpy-ints", "numpy-arange", "reversed", "built-from-head_dim"],
)
def test_head_dims_accepts_right_answers(fn, capsys):
    assert_passes(mh.check_head_dims, fn, capsys)


@pytest.mark.parametrize(
    "fn, hint",
    [
        (lambda d: {h: d / h for h in range(1, d + 1) if d % h == 0}, "use d_model // num_heads"),
        (lambda d: {h: d // h for h in range(1, d + 1)}, "does not divide"),
        (lambda d: {h: d // h for h in range(2, d) if d % h == 0}, "leaves out"),
        (lambda d: {h: d * h for h in range(1, d + 1) if d % h == 0}, "expected head_dim"),
        (lambda d: {float(h): d // h for h in range(1, d + 1) if d % h == 0}, "the float key 1.0"),
        (lambda d: {str(h): d // h for h in range(1, d + 1) if d % h == 0}, "the keys are head counts"),
        (lambda d: [(h, d // h) for h in range(1, d + 1) if d % h == 0], "wrap it in dict(...)"),
        (lambda d: [h for h in range(1, d + 1) if d % h == 0], "should return a dict"),
        (lambda d: {h: d // h for h in mh.valid_head_counts(d)}, "calls mh.valid_head_counts"),
        (lambda d: {h: d // h for h in range(0, d + 1) if d % h == 0}, "ZeroDivisionError"),
    ],
)
def test_head_dims_names_the_mistake(fn, hint, capsys):
    assert_hint(mh.check_head_dims, fn, hint, capsys)


def test_the_valid_head_counts_spy_puts_it_back(capsys):
    original = mh.valid_head_counts
    mh.check_head_dims(lambda d: {h: d // h for h in mh.valid_head_counts(d)})
    capsys.readouterr()
    assert mh.valid_head_counts is original


# ---- Exercise 6.2: the entropy of each head -----------------------------------------------------------------------


def entropy_ok(w):
    return -torch.special.xlogy(w, w).sum(-1).mean(-1) / math.log(2)


@pytest.mark.parametrize(
    "fn",
    [entropy_ok, lambda w: -(w * torch.log2(w.clamp_min(1e-12))).sum(-1).mean(-1),
     lambda w: entropy_ok(w).numpy(), lambda w: entropy_ok(w.double()), mh.attention_entropy],
    ids=["xlogy", "clamp", "numpy", "float64", "reference"],
)
def test_head_entropy_accepts_right_answers(fn, capsys):
    assert_passes(mh.check_head_entropy, fn, capsys)


@pytest.mark.parametrize(
    "fn, hint",
    [
        (lambda w: -(w * torch.log2(w)).sum(-1).mean(-1), "NaN"),
        (lambda w: -(w * torch.log(w)).nan_to_num().sum(-1).mean(-1), "nats"),
        (lambda w: -(w * torch.log10(w)).nan_to_num().sum(-1).mean(-1), "log10"),
        (lambda w: -torch.special.xlogy(w, w).sum(-1) / math.log(2), "one entropy per query row"),
        (lambda w: -entropy_ok(w), "sign"),
        (lambda w: entropy_ok(w) * w.shape[1], "summed the entropies"),
        (lambda w: -torch.special.xlogy(w, w).sum(-2).mean(-1) / math.log(2), "wrong axis"),
        (lambda w: mh.attention_entropy(w.mean(dim=1, keepdim=True)), "averaged the rows first"),
        (lambda w: entropy_ok(w).mean(), "= (heads,)"),
    ],
)
def test_head_entropy_names_the_mistake(fn, hint, capsys):
    assert_hint(mh.check_head_entropy, fn, hint, capsys)


# ---- Exercise 6.3: the previous-token share -----------------------------------------------------------------------


def share_ok(w):
    return w.diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1)


@pytest.mark.parametrize(
    "fn",
    [share_ok, lambda w: torch.stack([w[:, i, i - 1] for i in range(1, w.shape[-1])], -1).mean(-1),
     lambda w: share_ok(w).numpy(), mh.previous_token_share],
    ids=["diagonal", "loop", "numpy", "reference"],
)
def test_previous_token_share_accepts_right_answers(fn, capsys):
    assert_passes(mh.check_previous_token_share, fn, capsys)


@pytest.mark.parametrize(
    "fn, hint",
    [
        (lambda w: w.diagonal(dim1=-2, dim2=-1).mean(-1), "ITSELF"),
        (lambda w: w.diagonal(offset=1, dim1=-2, dim2=-1).mean(-1), "NEXT"),
        (lambda w: w.diagonal(offset=-1, dim1=-2, dim2=-1).sum(-1) / w.shape[-2], "query 0 has no previous token"),
        (lambda w: w.diagonal(offset=-1, dim1=-2, dim2=-1), "one number per query"),
        (lambda w: w.diagonal(offset=-1, dim1=-2, dim2=-1).sum(-1), "summed over the queries"),
        (lambda w: share_ok(w).mean(), "averaged over the heads too"),
    ],
)
def test_previous_token_share_names_the_mistake(fn, hint, capsys):
    assert_hint(mh.check_previous_token_share, fn, hint, capsys)
