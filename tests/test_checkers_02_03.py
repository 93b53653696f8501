"""The exercise checkers of notebooks 02 (attention) and 03 (masking) accept the reference solution, reject typical
wrong answers with the hint that names the mistake, and say "not yet" (without raising) for the untouched stub."""

from __future__ import annotations

import math

import pytest
import torch
from checker_support import run, stub

import mha_helpers as mh

# ---- reference solutions (the ones folded into the notebooks) ----------------------------------------------------


def softmax_ok(scores):
    shifted = scores - scores.max(dim=-1, keepdim=True).values  # the largest score in each row becomes 0
    e = torch.exp(shifted)
    return e / e.sum(dim=-1, keepdim=True)


def attention_ok(query, key, value):
    d_k = query.shape[-1]
    scores = query @ key.transpose(-2, -1) / math.sqrt(d_k)  # (..., L, S)
    weights = torch.softmax(scores, dim=-1)
    return weights @ value, weights


def causal_ok(seq_len):
    return torch.ones(seq_len, seq_len, dtype=torch.bool).tril()


def padding_to_attn_ok(key_padding_mask):
    return ~key_padding_mask[:, None, :]  # (batch, S) -> (batch, 1, S), True = may attend


def masked_attention_ok(query, key, value, mask):
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    scores = scores.masked_fill(~mask, float("-inf"))
    dead = ~mask.any(dim=-1, keepdim=True)  # rows with no key at all
    weights = torch.softmax(scores.masked_fill(dead, 0.0), dim=-1).masked_fill(dead, 0.0)
    return weights @ value, weights


@pytest.mark.parametrize(
    "checker,solution",
    [
        (mh.check_softmax, softmax_ok),
        (mh.check_attention, attention_ok),
        (mh.check_causal_mask, causal_ok),
        (mh.check_padding_to_attn_mask, padding_to_attn_ok),
        (mh.check_masked_attention, masked_attention_ok),
    ],
)
def test_reference_solution_passes(checker, solution, capsys):
    passed, out = run(checker, solution, capsys)
    assert passed, out
    assert "✅" in out and "passed" in out


@pytest.mark.parametrize(
    "checker",
    [mh.check_softmax, mh.check_attention, mh.check_causal_mask, mh.check_padding_to_attn_mask,
     mh.check_masked_attention],
)
def test_stub_says_not_yet(checker, capsys):
    passed, out = run(checker, stub, capsys)
    assert not passed
    assert "not yet" in out


def test_the_library_functions_pass_their_own_checkers(capsys):
    assert mh.check_causal_mask(mh.causal_mask)
    assert mh.check_attention(lambda q, k, v: mh.scaled_dot_product_attention(q, k, v))
    assert mh.check_masked_attention(lambda q, k, v, m: mh.scaled_dot_product_attention(q, k, v, attn_mask=m))
    assert mh.check_softmax(lambda s: torch.softmax(s, dim=-1))
    capsys.readouterr()


# ---- typical wrong answers: each gets the hint that names its mistake --------------------------------------------


def softmax_naive(scores):
    e = torch.exp(scores)
    return e / e.sum(dim=-1, keepdim=True)


def softmax_global_max(scores):
    e = torch.exp(scores - scores.max())
    return e / e.sum(dim=-1, keepdim=True)


def softmax_wrong_dim(scores):
    return torch.softmax(scores, dim=-2)


def softmax_no_norm(scores):
    return torch.exp(scores - scores.max(dim=-1, keepdim=True).values)


@pytest.mark.parametrize(
    "wrong,hint",
    [
        (softmax_naive, "overflows"),
        (softmax_global_max, "ONE maximum for the whole tensor"),
        (softmax_wrong_dim, "wrong dim"),
        (softmax_no_norm, "rows do not sum to 1"),
        (lambda s: s[..., :-1], "softmax keeps the shape"),
    ],
)
def test_softmax_checker_names_the_mistake(wrong, hint, capsys):
    passed, out = run(mh.check_softmax, wrong, capsys)
    assert not passed
    assert hint in out, out


def attention_scaled(factor_of_d_k):
    def fn(query, key, value):
        scores = query @ key.transpose(-2, -1) * factor_of_d_k(query.shape[-1])
        weights = torch.softmax(scores, dim=-1)
        return weights @ value, weights

    return fn


def attention_wrong_dim(query, key, value):
    weights = torch.softmax(query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1]), dim=-2)
    return weights @ value, weights


def attention_k_qt(query, key, value):
    weights = torch.softmax(key @ query.transpose(-2, -1) / math.sqrt(query.shape[-1]), dim=-1)
    return value, weights


def attention_output_wrong(query, key, value):
    weights = torch.softmax(query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1]), dim=-1)
    return weights @ value * 2, weights


@pytest.mark.parametrize(
    "wrong,hint",
    [
        (attention_scaled(lambda d: 1.0), "missing the 1/√d_k scale"),
        (attention_scaled(lambda d: 1.0 / d), "divided the scores by d_k"),
        (attention_scaled(lambda d: math.sqrt(d)), "multiplied"),
        (attention_wrong_dim, "wrong dim: rows do not sum to 1"),
        (attention_k_qt, "not key @ queryᵀ"),
        (attention_output_wrong, "not weights @ value"),
        (lambda q, k, v: q, "return two tensors"),
    ],
)
def test_attention_checker_names_the_mistake(wrong, hint, capsys):
    passed, out = run(mh.check_attention, wrong, capsys)
    assert not passed
    assert hint in out, out


@pytest.mark.parametrize(
    "wrong,hint",
    [
        (lambda n: ~causal_ok(n), "wrong way round"),
        (lambda n: causal_ok(n).T, "upper vs lower triangle"),
        (lambda n: torch.ones(n, n, dtype=torch.bool).tril(-1), "diagonal is missing"),
        (lambda n: torch.ones(n, n).tril(), "float tensor of 1s and 0s"),
        (lambda n: torch.zeros(n, n).masked_fill(~causal_ok(n), float("-inf")), "additive float mask"),
        (lambda n: torch.ones(n, n + 1, dtype=torch.bool), "expected (5, 5)"),
        (lambda n: torch.ones(n, n, dtype=torch.bool).tril(1), "differs from the causal mask"),
    ],
)
def test_causal_mask_checker_names_the_mistake(wrong, hint, capsys):
    passed, out = run(mh.check_causal_mask, wrong, capsys)
    assert not passed
    assert hint in out, out


@pytest.mark.parametrize(
    "wrong,hint",
    [
        (lambda kpm: kpm[:, None, :], "wrong way round"),
        (lambda kpm: ~kpm, "sentence b's mask would land on query b"),
        (lambda kpm: ~kpm[:, :, None], "that blocks QUERIES"),
        (lambda kpm: (~kpm[:, None, :]).float(), "boolean"),
    ],
)
def test_padding_checker_names_the_mistake(wrong, hint, capsys):
    passed, out = run(mh.check_padding_to_attn_mask, wrong, capsys)
    assert not passed
    assert hint in out, out


def masked_fill_with(value):
    def fn(query, key, value_, mask):
        scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
        weights = torch.softmax(scores.masked_fill(~mask, value), dim=-1)
        return weights @ value_, weights

    return fn


def masked_flipped(query, key, value, mask):
    return masked_attention_ok(query, key, value, ~mask)


def masked_unscaled(query, key, value, mask):
    return masked_attention_ok(query * math.sqrt(query.shape[-1]), key, value, mask)


@pytest.mark.parametrize(
    "wrong,hint",
    [
        (masked_fill_with(float("-inf")), "NaN in a row where every key is masked"),
        (masked_fill_with(-1e9), "uniform weights"),
        (masked_fill_with(torch.finfo(torch.float32).min), "uniform weights"),
        (masked_flipped, "wrong way round"),
        (masked_unscaled, "missing the 1/√d_k scale"),
    ],
)
def test_masked_attention_checker_names_the_mistake(wrong, hint, capsys):
    passed, out = run(mh.check_masked_attention, wrong, capsys)
    assert not passed
    assert hint in out, out


def test_checkers_do_not_touch_the_global_random_state():
    torch.manual_seed(0)
    before = torch.rand(3)
    torch.manual_seed(0)
    for checker, fn in ((mh.check_softmax, softmax_ok), (mh.check_attention, attention_ok),
                        (mh.check_masked_attention, masked_attention_ok)):
        checker(fn)
    assert torch.equal(torch.rand(3), before)
