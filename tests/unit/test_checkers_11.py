"""The exercise checkers of notebook 11 (attention variants): NumPy ints and products for the MLA cache, half-precision
rotations, NumPy and list slopes all pass; every hint is one line (the window and slope hints used to print tensors
over several lines)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from checker_support import assert_hint, assert_passes

import mha_helpers as mh

# ---- Exercise 11.1: rotary positions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fn",
    [mh.rope, lambda x, p: mh.rope(x, p).half(), lambda x, p: mh.rope(x.half(), p),
     lambda x, p: mh.rope(x, p).bfloat16(), lambda x, p: mh.rope(x.double(), p), lambda x, p: mh.rope(x, p).numpy()],
    ids=["reference", "result-float16", "computed-in-float16", "result-bfloat16", "float64", "numpy"],
)
def test_rope_accepts_right_answers(fn, capsys):
    assert_passes(mh.check_rope, fn, capsys)


def test_rope_still_catches_a_change_of_length_in_half_precision(capsys):
    assert_hint(mh.check_rope, lambda x, p: (1.1 * mh.rope(x, p)).half(), "changes the vectors' lengths", capsys)


# ---- Exercise 11.2: ALiBi slopes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fn",
    [mh.alibi_slopes, lambda n: mh.alibi_slopes(n).numpy(), lambda n: [float(s) for s in mh.alibi_slopes(n)],
     lambda n: list(mh.alibi_slopes(n).numpy()), lambda n: mh.alibi_slopes(n).half()],
    ids=["reference", "numpy", "list", "list-of-numpy-floats", "float16"],
)
def test_alibi_slopes_accepts_right_answers(fn, capsys):
    assert_passes(mh.check_alibi_slopes, fn, capsys)


def test_alibi_slopes_prints_its_values_on_one_line(capsys):
    assert_hint(mh.check_alibi_slopes, lambda n: torch.full((n,), 0.5), "expected [0.5, 0.25, 0.125", capsys)


# ---- Exercise 11.3: the sliding-window mask --------------------------------------------------------------------------


def window_ok(seq_len, window):
    offset = torch.arange(seq_len)[:, None] - torch.arange(seq_len)[None, :]  # (L, L): i - j
    return (offset >= 0) & (offset < window)


@pytest.mark.parametrize("fn", [window_ok, lambda L, w: window_ok(L, w).numpy()], ids=["solution", "numpy"])
def test_sliding_window_accepts_right_answers(fn, capsys):
    assert_passes(mh.check_sliding_window_mask, fn, capsys)


def test_sliding_window_names_a_wrong_entry_on_one_line(capsys):
    def one_too_few(seq_len, window):
        return window_ok(seq_len, window) & ~torch.eye(seq_len, dtype=torch.bool).roll(1, dims=0)

    assert_hint(mh.check_sliding_window_mask, one_too_few, "differs from the window in", capsys)


# ---- Exercise 11.4: the MLA cache ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fn",
    [lambda nl, nh, hd, ld, rd, s, b: nl * (ld + rd) * s * b,
     lambda nl, nh, hd, ld, rd, s, b: np.prod([nl, ld + rd, s, b]),
     lambda nl, nh, hd, ld, rd, s, b: np.int64(nl) * (ld + rd) * s * b,
     lambda nl, nh, hd, ld, rd, s, b: torch.tensor(nl * (ld + rd) * s * b),
     lambda nl, nh, hd, ld, rd, s, b: float(nl * (ld + rd) * s * b)],
    ids=["int", "np.prod", "numpy-int", "0-d tensor", "float"],
)
def test_latent_cache_bytes_accepts_right_answers(fn, capsys):
    assert_passes(mh.check_latent_cache_bytes, fn, capsys)


def test_latent_cache_bytes_names_a_numpy_wrong_answer(capsys):
    assert_hint(mh.check_latent_cache_bytes, lambda nl, nh, hd, ld, rd, s, b: np.int64(2) * nl * (ld + rd) * s * b,
                "no factor 2", capsys)
