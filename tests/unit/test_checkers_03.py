"""The exercise checkers of notebook 03 (masking): right masks in any reasonable form pass, each typical wrong one gets
the hint that names its mistake; masked attention is also checked on the (batch, 1, S) mask the exercise promises and
for NaN gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from checker_support import assert_hint, assert_passes

import mha_helpers as mh

# ---- Exercise 3.1: causal_mask --------------------------------------------------------------------------------


def causal_ok(seq_len):
    return torch.ones(seq_len, seq_len, dtype=torch.bool).tril()


@pytest.mark.parametrize(
    "fn",
    [causal_ok, mh.causal_mask, lambda n: torch.arange(n)[None, :] <= torch.arange(n)[:, None],
     lambda n: ~torch.ones(n, n, dtype=torch.bool).triu(1), lambda n: torch.tril(torch.ones(n, n)).bool(),
     lambda n: causal_ok(n).numpy(), lambda n: np.tril(np.ones((n, n), dtype=bool))],
    ids=["tril", "reference", "arange", "not-triu", "float-then-bool", "numpy", "numpy-tril"],
)
def test_causal_mask_accepts_right_answers(fn, capsys):
    assert_passes(mh.check_causal_mask, fn, capsys)


@pytest.mark.parametrize(
    "wrong,hint",
    [
        (lambda n: ~causal_ok(n), "wrong way round"),
        (lambda n: causal_ok(n).T, "upper vs lower triangle"),
        (lambda n: torch.ones(n, n, dtype=torch.bool).tril(-1), "diagonal is missing"),
        (lambda n: torch.ones(n, n).tril(), "float tensor of 1s and 0s"),
        (lambda n: torch.zeros(n, n).masked_fill(~causal_ok(n), float("-inf")), "additive float mask"),
        (lambda n: torch.ones(n, n, dtype=torch.long).tril(), "right 1s and 0s but as torch.int64"),
        (lambda n: torch.ones(n, n + 1, dtype=torch.bool), "expected (5, 5) = (seq_len, seq_len) for seq_len=5"),
        (lambda n: torch.ones(n, n, dtype=torch.bool).tril(1), "one diagonal too many"),
        (lambda n: torch.ones(n, n, dtype=torch.bool).tril(2), "differs from the causal mask"),
        (lambda n: causal_ok(n)[None], "drop the extra leading dim"),
        (lambda n: causal_ok(n).tolist(), "should be a torch.Tensor of shape (5, 5)"),
        (lambda n: torch.ones(n / 1, n), "a size or an index is a float"),
    ],
)
def test_causal_mask_checker_names_the_mistake(wrong, hint, capsys):
    assert_hint(mh.check_causal_mask, wrong, hint, capsys)


# ---- Exercise 3.2: key_padding_mask -> attn_mask ----------------------------------------------------------------


def padding_to_attn_ok(key_padding_mask):
    return ~key_padding_mask[:, None, :]  # (batch, S) -> (batch, 1, S), True = may attend


@pytest.mark.parametrize(
    "fn",
    [padding_to_attn_ok, lambda m: (~m).unsqueeze(1), lambda m: m.logical_not().unsqueeze(-2),
     lambda m: (m == 0)[:, None], lambda m: (~m[:, None, :]).numpy()],
    ids=["solution", "unsqueeze", "logical_not", "compare", "numpy"],
)
def test_padding_accepts_right_answers(fn, capsys):
    assert_passes(mh.check_padding_to_attn_mask, fn, capsys)


@pytest.mark.parametrize(
    "wrong,hint",
    [
        (lambda kpm: kpm[:, None, :], "wrong way round"),
        (lambda kpm: ~kpm, "sentence b's mask would land on query b"),
        (lambda kpm: ~kpm[:, :, None], "that blocks QUERIES"),
        (lambda kpm: (~kpm[:, None, :]).float(), "boolean"),
        (lambda kpm: ~kpm[:, None, None, :], "for 4-D (batch, heads, L, S) scores"),
        (lambda kpm: (~kpm[:, None, :]).expand(-1, kpm.shape[1], -1), "assumes as many queries as keys"),
        (lambda kpm: ~kpm[None], "expected (3, 1, 5) = (batch, 1, S)"),
    ],
)
def test_padding_checker_names_the_mistake(wrong, hint, capsys):
    assert_hint(mh.check_padding_to_attn_mask, wrong, hint, capsys)


# ---- Exercise 3.3: masked attention without NaN ------------------------------------------------------------------


def masked_attention_ok(query, key, value, mask):
    scores = query @ key.transpose(-2, -1) / query.shape[-1] ** 0.5
    scores = scores.masked_fill(~mask, float("-inf"))
    dead = ~mask.any(dim=-1, keepdim=True)  # rows with no key at all
    weights = torch.softmax(scores.masked_fill(dead, 0.0), dim=-1).masked_fill(dead, 0.0)
    return weights @ value, weights


def masked_renormalised(query, key, value, mask):
    weights = torch.softmax(query @ key.mT / query.shape[-1] ** 0.5, dim=-1) * mask
    weights = weights / weights.sum(dim=-1, keepdim=True).clamp_min(1e-30)
    return weights @ value, weights


@pytest.mark.parametrize(
    "fn",
    [masked_attention_ok, masked_renormalised,
     lambda q, k, v, m: mh.scaled_dot_product_attention(q, k, v, attn_mask=m)],
    ids=["solution", "renormalised", "reference"],
)
def test_masked_attention_accepts_right_answers(fn, capsys):
    assert_passes(mh.check_masked_attention, fn, capsys)


def masked_fill_with(fill):
    def fn(query, key, value, mask):
        scores = query @ key.transpose(-2, -1) / query.shape[-1] ** 0.5
        weights = torch.softmax(scores.masked_fill(~mask, fill), dim=-1)
        return weights @ value, weights

    return fn


def masked_flipped(query, key, value, mask):
    return masked_attention_ok(query, key, value, ~mask)


def masked_unscaled(query, key, value, mask):
    return masked_attention_ok(query * query.shape[-1] ** 0.5, key, value, mask)


def _additive(mask):
    return torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))  # 0 = may attend, -inf = blocked


def masked_nan_to_num(query, key, value, mask):  # right forward, NaN gradients
    scores = query @ key.transpose(-2, -1) / query.shape[-1] ** 0.5 + _additive(mask)
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    return weights @ value, weights


def masked_where_after(query, key, value, mask):  # right forward, NaN gradients
    scores = query @ key.transpose(-2, -1) / query.shape[-1] ** 0.5 + _additive(mask)
    weights = torch.softmax(scores, dim=-1)
    weights = torch.where(torch.isnan(weights), torch.zeros_like(weights), weights)
    return weights @ value, weights


def test_a_nan_free_forward_with_masked_fill_has_finite_gradients(capsys):
    """masked_fill's backward zeroes the gradient of the filled scores, so nan_to_num after it is (by luck) safe."""
    def masked_fill_then_nan_to_num(query, key, value, mask):
        scores = (query @ key.transpose(-2, -1) / query.shape[-1] ** 0.5).masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
        return weights @ value, weights

    assert_passes(mh.check_masked_attention, masked_fill_then_nan_to_num, capsys)


def masked_after_softmax(query, key, value, mask):
    weights = torch.softmax(query @ key.transpose(-2, -1) / query.shape[-1] ** 0.5, dim=-1) * mask
    return weights @ value, weights


def masked_full_mask_only(query, key, value, mask):  # assumes the mask is (..., L, S): fails on (batch, 1, S)
    dead = ~mask.any(dim=-1)
    out, weights = masked_attention_ok(query, key, value, mask)
    weights[dead] = 0.0
    return out, weights


def masked_math_sqrt(query, key, value, mask):
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])  # noqa: F821 - notebook 03 has no math
    return scores, scores


@pytest.mark.parametrize(
    "wrong,hint",
    [
        (masked_fill_with(float("-inf")), "NaN in a row where every key is masked"),
        (masked_fill_with(-1e9), "uniform weights"),
        (masked_fill_with(torch.finfo(torch.float32).min), "uniform weights"),
        (masked_flipped, "wrong way round"),
        (masked_unscaled, "query.shape[-1] ** 0.5"),
        (masked_nan_to_num, "GRADIENTS are NaN"),
        (masked_where_after, "GRADIENTS are NaN"),
        (masked_after_softmax, "AFTER the softmax"),
        (masked_full_mask_only, "(for a padding mask of shape (batch, 1, S))"),
        (masked_math_sqrt, "this notebook does not import math: write x ** 0.5"),
        (lambda q, k, v, m: tuple(reversed(masked_attention_ok(q, k, v, m))), "wrong order"),
    ],
)
def test_masked_attention_checker_names_the_mistake(wrong, hint, capsys):
    assert_hint(mh.check_masked_attention, wrong, hint, capsys)


def test_no_hint_suggests_math_sqrt(capsys):
    """Notebook 03 never imports math: its hints must not tell students to call math.sqrt."""
    mh.check_masked_attention(masked_unscaled)
    assert "math.sqrt" not in capsys.readouterr().out


# ---- the review's answers (3.2's additive mask, 3.3's two NaN repairs, half precision) -----------------------------


def test_padding_tells_an_additive_mask_from_a_zero_one_mask(capsys):
    additive = lambda m: torch.zeros(m.shape).masked_fill(m, float("-inf"))[:, None, :]  # noqa: E731
    assert_hint(mh.check_padding_to_attn_mask, additive, "additive float mask (0 = allowed, -inf = blocked): that "
                "works when added to the scores, but this exercise asks for the boolean one", capsys)
    zero_one = lambda m: (~m[:, None, :]).float()  # noqa: E731
    assert_hint(mh.check_padding_to_attn_mask, zero_one, "so it would block nothing", capsys)


def _scores(query, key):
    return query @ key.transpose(-2, -1) / query.shape[-1] ** 0.5


def masked_where_then_repaired(query, key, value, mask):  # -inf by torch.where: the backward zeroes those scores
    weights = torch.softmax(torch.where(mask, _scores(query, key), float("-inf")), dim=-1)
    weights = torch.where(weights.isnan(), 0.0, weights)
    return weights @ value, weights


def masked_fill_then_repaired(query, key, value, mask):
    weights = torch.nan_to_num(torch.softmax(_scores(query, key).masked_fill(~mask, float("-inf")), -1), nan=0.0)
    return weights @ value, weights


def added_then_repaired(query, key, value, mask):  # -inf by addition: the NaN gradient flows into query and key
    additive = torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))
    weights = torch.nan_to_num(torch.softmax(_scores(query, key) + additive, -1), nan=0.0)
    return weights @ value, weights


def masked_attention_half(query, key, value, mask):
    output, weights = masked_attention_ok(query.half(), key.half(), value.half(), mask)
    return output, weights


@pytest.mark.parametrize("fn", [masked_where_then_repaired, masked_fill_then_repaired, masked_attention_half],
                         ids=["where-then-repaired", "masked_fill-then-nan_to_num", "float16"])
def test_masked_attention_accepts_repairs_whose_gradients_are_finite(fn, capsys):
    assert_passes(mh.check_masked_attention, fn, capsys)


def test_masked_attention_says_why_addition_lets_the_nan_gradient_through(capsys):
    assert_hint(mh.check_masked_attention, added_then_repaired, "When the -inf entered by addition", capsys)
