"""The exercise checkers of notebook 14 (heads in a real language model): each common wrong answer gets its own
one-line hint; right answers pass as floats, tensors, NumPy numbers and half precision, and as an index pair in any
integer form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from checker_support import assert_hint, assert_passes

import mha_helpers as mh


def bits(logits, targets):
    return float(F.cross_entropy(logits.transpose(1, 2), targets)) / math.log(2)


def bits_by_hand(logits, targets):  # log-softmax and gather, in base 2, no F.cross_entropy
    logp = torch.log2(torch.softmax(logits.double(), dim=-1))
    return -logp.gather(-1, targets[..., None]).mean()


@pytest.mark.parametrize("fn", [bits, bits_by_hand, lambda logits, t: np.float32(bits(logits, t)),
                                lambda logits, t: torch.tensor(bits(logits, t)).half()],
                         ids=["float", "by hand in float64", "numpy", "float16"])
def test_bits_per_char_passes_in_any_form(fn, capsys):
    assert_passes(mh.check_bits_per_char, fn, capsys)


@pytest.mark.parametrize("fn, hint", [
    (lambda logits, t: F.cross_entropy(logits.transpose(1, 2), t), "nats"),
    (lambda logits, t: F.cross_entropy(logits.transpose(1, 2), t) / math.log(10), "base 10"),
    (lambda logits, t: F.cross_entropy(logits.transpose(1, 2), t, reduction="sum") / math.log(2), "MEAN"),
    (lambda logits, t: F.cross_entropy(logits.transpose(1, 2), t, reduction="none") / math.log(2), "shape"),
], ids=["nats", "log10", "sum", "per position"])
def test_bits_per_char_names_the_common_mistakes(fn, hint, capsys):
    assert_hint(mh.check_bits_per_char, fn, hint, capsys)


def share(weights):
    i = torch.arange(1, weights.shape[0])
    return weights[i, i - 1].mean()


@pytest.mark.parametrize("fn", [share, lambda w: float(share(w)), lambda w: share(w).numpy(),
                                lambda w: share(w).half(), lambda w: torch.diagonal(w, offset=-1).mean()],
                         ids=["tensor", "float", "numpy", "float16", "diagonal(-1)"])
def test_previous_char_share_passes_in_any_form(fn, capsys):
    assert_passes(mh.check_previous_char_share, fn, capsys)


@pytest.mark.parametrize("fn, hint", [
    (lambda w: torch.diagonal(w).mean(), "diagonal"),
    (lambda w: w[torch.arange(len(w)), torch.arange(len(w)) - 1].mean(), "wraps"),
    (lambda w: torch.diagonal(w, offset=-1).sum(), "MEAN"),
], ids=["diagonal", "query 0 wraps", "sum"])
def test_previous_char_share_names_the_common_mistakes(fn, hint, capsys):
    assert_hint(mh.check_previous_char_share, fn, hint, capsys)


def prune(cost):
    return divmod(int(cost.argmin()), cost.shape[1])


@pytest.mark.parametrize("fn", [prune, lambda c: list(prune(c)), lambda c: np.unravel_index(c.numpy().argmin(), c.shape),
                                lambda c: (c == c.min()).nonzero()[0], lambda c: tuple(torch.tensor(prune(c)))],
                         ids=["divmod", "list", "numpy unravel", "nonzero row", "tensor ints"])
def test_head_to_prune_passes_in_any_form(fn, capsys):
    assert_passes(mh.check_head_to_prune, fn, capsys)


@pytest.mark.parametrize("fn, hint", [
    (lambda c: divmod(int(c.argmax()), c.shape[1]), "MOST important"),
    (lambda c: int(c.argmin()), "flat index"),
    (lambda c: prune(c)[::-1], "swapped"),
    (lambda c: divmod(int(c.abs().argmin()), c.shape[1]), "closest to zero"),
], ids=["argmax", "flat index", "swapped", "abs"])
def test_head_to_prune_names_the_common_mistakes(fn, hint, capsys):
    assert_hint(mh.check_head_to_prune, fn, hint, capsys)
