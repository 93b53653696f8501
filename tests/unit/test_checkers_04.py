"""The exercise checkers of notebook 04 (splitting into heads): the solution passes, each typical wrong answer gets
the hint that names its mistake."""

from __future__ import annotations

import pytest
import torch
from checker_support import assert_hint, run

import mha_helpers as mh

# ---- Exercise 4.1: split_heads -----------------------------------------------------------------------


def split_view_transpose(x, num_heads):
    batch, seq, d_model = x.shape
    x = x.view(batch, seq, num_heads, d_model // num_heads)  # (batch, seq, heads, head_dim)
    return x.transpose(1, 2)  # (batch, heads, seq, head_dim)


def split_reshape_straight(x, num_heads):
    batch, seq, d_model = x.shape
    return x.reshape(batch, num_heads, seq, d_model // num_heads)  # the tempting wrong reshape


def split_no_transpose(x, num_heads):
    batch, seq, d_model = x.shape
    return x.view(batch, seq, num_heads, d_model // num_heads)


def split_axes_swapped(x, num_heads):
    batch, seq, d_model = x.shape
    return x.view(batch, seq, num_heads, d_model // num_heads).permute(0, 2, 3, 1)  # (batch, heads, head_dim, seq)


def split_interleaved(x, num_heads):
    batch, seq, d_model = x.shape
    return x.view(batch, seq, d_model // num_heads, num_heads).permute(0, 3, 1, 2)


def split_wrong_values(x, num_heads):
    return split_view_transpose(x, num_heads) * 2


@pytest.mark.parametrize(
    "fn",
    [mh.split_heads, split_view_transpose, lambda x, h: split_view_transpose(x, h).numpy(),
     lambda x, h: split_view_transpose(x, h).half()],
    ids=["reference", "solution", "numpy", "float16"],
)
def test_split_heads_checker_accepts_the_solution(fn, capsys):
    ok, out = run(mh.check_split_heads, fn, capsys)
    assert ok and "✅" in out and "passed" in out


@pytest.mark.parametrize(
    "fn, hint",
    [
        (split_reshape_straight, "reshaped straight to (batch, heads, seq, head_dim): tokens are scrambled"),
        (split_no_transpose, ".transpose(1, 2)"),
        (split_axes_swapped, "axes swapped"),
        (split_interleaved, "features interleaved"),
        (split_wrong_values, "right shape, wrong values"),
    ],
)
def test_split_heads_checker_names_the_mistake(fn, hint, capsys):
    ok, out = run(mh.check_split_heads, fn, capsys)
    assert not ok and "❌" in out and hint in out, out


# ---- Exercise 4.2: one head's block of W_q ---------------------------------------------------------------


def head_rows(weight, head, num_heads):
    head_dim = weight.shape[0] // num_heads
    return weight[head * head_dim : (head + 1) * head_dim]


def head_columns(weight, head, num_heads):
    head_dim = weight.shape[0] // num_heads
    return weight[:, head * head_dim : (head + 1) * head_dim].T


def head_strided(weight, head, num_heads):
    return weight[head::num_heads]


def head_off_by_one(weight, head, num_heads):
    return head_rows(weight, (head + 1) % num_heads, num_heads)


def test_head_weight_checker_accepts_the_solution(capsys):
    ok, out = run(mh.check_head_weight, head_rows, capsys)
    assert ok and "passed" in out


@pytest.mark.parametrize(
    "fn, hint",
    [(head_columns, "block of columns"), (head_strided, "you took rows head, head + "), (head_off_by_one, "rows for head=")],
)
def test_head_weight_checker_names_the_mistake(fn, hint, capsys):
    ok, out = run(mh.check_head_weight, fn, capsys)
    assert not ok and hint in out, out


def test_a_head_block_is_that_heads_own_projection():
    """What exercise 4.2 teaches: rows of the big weight = the small Linear of one head."""
    torch.manual_seed(0)
    x = torch.randn(2, 5, 12)
    big = torch.nn.Linear(12, 12, bias=False)
    heads = mh.split_heads(big(x), 3)  # (2, 3, 5, 4)
    for h in range(3):
        assert torch.allclose(heads[:, h], x @ head_rows(big.weight, h, 3).T, atol=1e-6)


def split_float_head_dim(x, num_heads):
    batch, seq, d_model = x.shape
    return x.view(batch, seq, num_heads, d_model / num_heads).transpose(1, 2)


def split_fold_batch(x, num_heads):
    batch, seq, d_model = x.shape
    return split_view_transpose(x, num_heads).reshape(batch * num_heads, seq, d_model // num_heads)


def split_hard_coded(x, num_heads):
    return x.view(2, 5, num_heads, -1).transpose(1, 2)


@pytest.mark.parametrize(
    "fn, hint",
    [
        (split_float_head_dim, "use integer division, d_model // num_heads"),
        (split_fold_batch, "folded the batch and the heads"),
        (split_hard_coded, "(for x of shape (1, 7, 8) and num_heads=2)"),
    ],
)
def test_split_heads_checker_explains_more_mistakes(fn, hint, capsys):
    assert_hint(mh.check_split_heads, fn, hint, capsys)


def test_split_heads_accepts_other_right_forms(capsys):
    for fn in (lambda x, h: x.reshape(x.shape[0], x.shape[1], h, -1).permute(0, 2, 1, 3),
               lambda x, h: torch.stack(x.chunk(h, dim=-1), dim=1),
               lambda x, h: split_view_transpose(x.double(), h).contiguous()):
        ok, out = run(mh.check_split_heads, fn, capsys)
        assert ok, out


def head_rows_transposed(weight, head, num_heads):
    return head_rows(weight, head, num_heads).T


def head_float_dim(weight, head, num_heads):
    head_dim = weight.shape[0] / num_heads
    return weight[head * head_dim : (head + 1) * head_dim]


@pytest.mark.parametrize(
    "fn, hint",
    [(head_rows_transposed, "your block is transposed"), (head_float_dim, "integer division")],
)
def test_head_weight_checker_explains_more_mistakes(fn, hint, capsys):
    assert_hint(mh.check_head_weight, fn, hint, capsys)
