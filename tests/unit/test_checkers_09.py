"""The exercise checkers of notebook 09 (what heads cost): the solutions pass in any reasonable form (np.prod,
NumPy ints, a one-element tensor), each typical wrong answer gets the hint that names its mistake; torch's softmax and
a max over the whole vector are detected in the online softmax."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from checker_support import assert_hint, assert_passes

import mha_helpers as mh

# ---- Exercise 9.1: the online softmax ------------------------------------------------------------------------------


def _online_softmax_reference(x, block_size):
    m, total = torch.tensor(float("-inf"), dtype=x.dtype), torch.tensor(0.0, dtype=x.dtype)
    for start in range(0, len(x), block_size):
        block = x[start:start + block_size]
        new_m = torch.maximum(m, block.max())
        total = total * torch.exp(m - new_m) + torch.exp(block - new_m).sum()
        m = new_m
    return torch.exp(x - m) / total


def _online_softmax_no_max(x, block_size):  # exp overflows for large scores
    total = sum(torch.exp(x[s:s + block_size]).sum() for s in range(0, len(x), block_size))
    return torch.exp(x) / total


def _online_softmax_no_rescale(x, block_size):  # forgets to re-base the old sum when the max grows
    m, total = float("-inf"), 0.0
    for start in range(0, len(x), block_size):
        block = x[start:start + block_size]
        m = max(m, float(block.max()))
        total = total + torch.exp(block - m).sum()
    return torch.exp(x - m) / total


def _online_softmax_python_floats(x, block_size):
    m, total = float("-inf"), 0.0
    for start in range(0, len(x), block_size):
        block = x[start:start + block_size]
        new_m = max(m, float(block.max()))
        total = total * math.exp(m - new_m) + float(torch.exp(block - new_m).sum())
        m = new_m
    return torch.exp(x - m) / total


def _online_softmax_global_max(x, block_size):  # reads the whole vector first: not online
    m = x.max()
    total = sum(torch.exp(x[s:s + block_size] - m).sum() for s in range(0, len(x), block_size))
    return torch.exp(x - m) / total


def _online_softmax_starts_at_zero(x, block_size):
    m, total = torch.tensor(0.0), torch.tensor(0.0)
    for start in range(0, len(x), block_size):
        block = x[start:start + block_size]
        new_m = torch.maximum(m, block.max())
        total = total * torch.exp(m - new_m) + torch.exp(block - new_m).sum()
        m = new_m
    return torch.exp(x - m) / total


def _online_softmax_per_block(x, block_size):
    return torch.cat([torch.softmax(x[s:s + block_size], 0) for s in range(0, len(x), block_size)]) if False else \
        torch.cat([(lambda b: torch.exp(b - b.max()) / torch.exp(b - b.max()).sum())(x[s:s + block_size])
                   for s in range(0, len(x), block_size)])


@pytest.mark.parametrize(
    "fn", [_online_softmax_reference, _online_softmax_python_floats,
           lambda x, b: _online_softmax_reference(x.double(), b)],
    ids=["reference", "python-floats", "float64"],
)
def test_online_softmax_accepts_right_answers(fn, capsys):
    assert_passes(mh.check_online_softmax, fn, capsys)


@pytest.mark.parametrize(
    "fn, hint",
    [
        (_online_softmax_no_max, "running max"),
        (_online_softmax_no_rescale, "exp(old_max - new_max)"),
        (_online_softmax_global_max, "reads the whole vector at once: it takes the max of"),
        (_online_softmax_starts_at_zero, "does your running max start at 0?"),
        (_online_softmax_per_block, "one per block"),
        (lambda x, b: torch.softmax(x, dim=0), "calls torch.softmax"),
        (lambda x, b: x.softmax(0), "calls .softmax"),
        (lambda x, b: torch.exp(x - torch.logsumexp(x, 0)), "takes the logsumexp of"),
    ],
)
def test_online_softmax_names_the_mistake(fn, hint, capsys):
    assert_hint(mh.check_online_softmax, fn, hint, capsys)


# ---- Exercise 9.2: KV-cache bytes ------------------------------------------------------------------------------------


def _kv_bytes(num_layers, num_heads, num_kv_heads, head_dim, seq_len, batch, bytes_per_value):
    return 2 * num_layers * num_kv_heads * head_dim * seq_len * batch * bytes_per_value


@pytest.mark.parametrize(
    "fn",
    [
        _kv_bytes,
        lambda L, h, kv, d, s, b, bpv: np.prod([2, L, kv, d, s, b, bpv]),
        lambda L, h, kv, d, s, b, bpv: math.prod([2, L, kv, d, s, b, bpv]),
        lambda L, h, kv, d, s, b, bpv: torch.tensor([2, L, kv, d, s, b, bpv]).prod(),
        lambda L, h, kv, d, s, b, bpv: float(_kv_bytes(L, h, kv, d, s, b, bpv)),
        lambda L, h, kv, d, s, b, bpv: np.int64(_kv_bytes(L, h, kv, d, s, b, bpv)),
    ],
    ids=["int", "np.prod", "math.prod", "tensor", "float", "numpy-int"],
)
def test_kv_cache_bytes_accepts_right_answers(fn, capsys):
    assert_passes(mh.check_kv_cache_bytes, fn, capsys)


@pytest.mark.parametrize(
    "fn, hint",
    [
        (lambda L, h, kv, d, s, b, bpv: _kv_bytes(L, h, kv, d, s, b, bpv) // 2, "keys AND the values"),
        (lambda L, h, kv, d, s, b, bpv: _kv_bytes(L, h, h, d, s, b, bpv), "only the num_kv_heads"),
        (lambda L, h, kv, d, s, b, bpv: _kv_bytes(L, h, kv, d, s, b, bpv) // bpv, "not bytes"),
        (lambda L, h, kv, d, s, b, bpv: _kv_bytes(L, h, kv, d, s, b, bpv) // b, "multiply by batch"),
        (lambda L, h, kv, d, s, b, bpv: _kv_bytes(L, h, kv, d, s, b, bpv) // L, "multiply by num_layers"),
        (lambda L, h, kv, d, s, b, bpv: _kv_bytes(L, h, kv, d, s, b, bpv) * 8, "bits"),
        (lambda L, h, kv, d, s, b, bpv: _kv_bytes(L, h, kv, d, s, b, bpv) / 2**30, "that is GiB"),
        (lambda L, h, kv, d, s, b, bpv: _kv_bytes(L, h, kv, d, s, b, bpv) / 2**20, "that is MiB"),
        (lambda L, h, kv, d, s, b, bpv: f"{_kv_bytes(L, h, kv, d, s, b, bpv)} bytes", "got str"),
        (lambda L, h, kv, d, s, b, bpv: True, "got bool"),
    ],
)
def test_kv_cache_bytes_names_the_mistake(fn, hint, capsys):
    assert_hint(mh.check_kv_cache_bytes, fn, hint, capsys)


# ---- 9.1: a maximum read in advance is caught however it is spelled (the review's three, and more) ---------------


def _whole(m_of):
    """The review's answers: the whole vector's max, taken some way, then a plain softmax."""

    def fn(x, block_size):
        m = m_of(x)
        e = torch.exp(x - m)
        return e / e.sum()

    return fn


def _blocks_with_max_read_in_advance(x, block_size):  # blockwise, but m comes from Python before any block is read
    m = max(x.tolist())
    total = sum(torch.exp(x[s:s + block_size] - m).sum() for s in range(0, len(x), block_size))
    return torch.exp(x - m) / total


def _per_block_statistics(x, block_size):  # one (max, sum) per block, combined at the end: never the whole vector
    maxima, sums = [], []
    for block in x.split(block_size):
        maxima.append(block.max())
        sums.append(torch.exp(block - maxima[-1]).sum())
    maxima, sums = torch.stack(maxima), torch.stack(sums)
    m = maxima.max()
    return torch.exp(x - m) / (sums * torch.exp(maxima - m)).sum()


def _second_pass_over_the_blocks(x, block_size):  # the output block by block, after a first pass has read them all
    m, total = torch.tensor(float("-inf")), torch.tensor(0.0)
    for block in x.split(block_size):
        new_m = torch.maximum(m, block.max())
        total = total * torch.exp(m - new_m) + torch.exp(block - new_m).sum()
        m = new_m
    return torch.cat([torch.exp(block - m) for block in x.split(block_size)]) / total


def _python_loop(x, block_size):  # value by value in Python floats (iterating a tensor gives its 0-d slices)
    m, total = float("-inf"), 0.0
    for value in x:
        new_m = max(m, float(value))
        total = total * math.exp(m - new_m) + math.exp(float(value - new_m))
        m = new_m
    return torch.exp(x - m) / total


@pytest.mark.parametrize(
    "fn, hint",
    [
        (_whole(lambda x: max(x.tolist())), "takes the sum of 6 values at once"),
        (_whole(lambda x: float(np.max(x.numpy()))), "takes the sum of 6 values at once"),
        (_whole(lambda x: sorted(x.tolist())[-1]), "takes the sum of 6 values at once"),
        (_blocks_with_max_read_in_advance, "a maximum taken before the blocks were read"),
        (_whole(lambda x: torch.tensor(x.tolist()).max()), "takes the max of 6 values at once"),
    ],
    ids=["python-max", "numpy-max", "sorted", "blocks-after-python-max", "copy-then-max"],
)
def test_online_softmax_catches_a_maximum_read_in_advance(fn, hint, capsys):
    assert_hint(mh.check_online_softmax, fn, hint, capsys)


@pytest.mark.parametrize(
    "fn",
    [_per_block_statistics, _python_loop, _second_pass_over_the_blocks,
     lambda x, b: _online_softmax_reference(x, b).half(), lambda x, b: _online_softmax_reference(x, b).numpy()],
    ids=["per-block-statistics", "python-loop", "second-pass", "float16", "numpy"],
)
def test_online_softmax_accepts_other_block_by_block_answers(fn, capsys):
    assert_passes(mh.check_online_softmax, fn, capsys)


def test_online_softmax_patches_nothing(capsys):
    import torch.nn.functional as F

    seen = []

    def looks(x, block_size):
        seen.append(torch.softmax is ORIGINAL_SOFTMAX[0] and F.softmax is ORIGINAL_SOFTMAX[1])
        return _online_softmax_reference(x, block_size)

    assert_passes(mh.check_online_softmax, looks, capsys)
    assert seen and all(seen)


def _original_softmaxes():
    import torch.nn.functional as F

    return torch.softmax, F.softmax


ORIGINAL_SOFTMAX = _original_softmaxes()


# ---- 9.2: NumPy and 0-d answers (the same policy as 11.4 and 12.3) --------------------------------------------------


def test_kv_cache_bytes_accepts_a_numpy_product_of_numpy_ints(capsys):
    assert_passes(mh.check_kv_cache_bytes, lambda L, h, kv, d, s, b, bpv: np.int64(2) * L * kv * d * s * b * bpv,
                  capsys)
