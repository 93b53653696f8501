"""The exercise checkers of notebook 07 (MHA in Transformers): the solutions pass, each typical wrong answer gets the
hint that names its mistake (post-norm, missing residual or norm, the two mask conventions mixed up, ...)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from checker_support import assert_hint, run

import mha_helpers as mh


def test_pre_norm_checker_accepts_the_solution(capsys):
    ok, out = run(mh.check_pre_norm_sublayer, lambda x, norm, sublayer: x + sublayer(norm(x)), capsys)
    assert ok and "✅" in out


@pytest.mark.parametrize(
    "fn, hint",
    [
        (lambda x, norm, sublayer: norm(x + sublayer(x)), "that is post-norm"),
        (lambda x, norm, sublayer: sublayer(norm(x)), "residual connection is missing"),
        (lambda x, norm, sublayer: x + norm(sublayer(x)), "norm is in the wrong place"),
        (lambda x, norm, sublayer: x + sublayer(x), "LayerNorm is missing"),
        (lambda x, norm, sublayer: x[:, 0], "keeps the shape"),
    ],
)
def test_pre_norm_checker_names_the_mistake(fn, hint, capsys):
    ok, out = run(mh.check_pre_norm_sublayer, fn, capsys)
    assert not ok and "❌" in out and hint in out, out


def solution_mask(lengths, seq_len):
    future = ~mh.causal_mask(seq_len)
    padding = mh.padding_mask(lengths, seq_len)
    return future[None, :, :] | padding[:, None, :]


def test_causal_padding_checker_accepts_the_solution(capsys):
    ok, out = run(mh.check_causal_padding_mask, solution_mask, capsys)
    assert ok and "✅" in out


@pytest.mark.parametrize(
    "fn, hint",
    [
        (lambda lengths, L: ~solution_mask(lengths, L), "wrong way round"),
        (lambda lengths, L: solution_mask(lengths, L).transpose(1, 2), "rows and columns swapped"),
        (lambda lengths, L: (~mh.causal_mask(L)).expand(len(lengths), L, L).clone(), "only the causal part"),
        (lambda lengths, L: mh.padding_mask(lengths, L)[:, None, :].expand(len(lengths), L, L).clone(),
         "only the padding part"),
        (lambda lengths, L: ~mh.causal_mask(L), "needs a batch axis"),
        (lambda lengths, L: solution_mask(lengths, L).float(), "boolean mask"),
    ],
)
def test_causal_padding_checker_names_the_mistake(fn, hint, capsys):
    ok, out = run(mh.check_causal_padding_mask, fn, capsys)
    assert not ok and "❌" in out and hint in out, out


@pytest.mark.parametrize(
    "fn, hint",
    [
        (lambda x, norm, sublayer: norm(x) + sublayer(norm(x)), "the residual adds norm(x)"),
        (lambda x, norm, sublayer: norm(x + sublayer(norm(x))), "one norm too many"),
        (lambda x, norm, sublayer: x + sublayer(F.layer_norm(x, x.shape[-1:])), "use the `norm` passed in"),
        (lambda x, norm, sublayer: x + sublayer(torch.nn.LayerNorm(x.shape[-1])(x)), "use the `norm` passed in"),
    ],
)
def test_pre_norm_checker_explains_more_mistakes(fn, hint, capsys):
    assert_hint(mh.check_pre_norm_sublayer, fn, hint, capsys)


@pytest.mark.parametrize(
    "fn, hint",
    [
        (lambda lengths, L: mh.causal_mask(L)[None] | mh.padding_mask(lengths, L)[:, None, :], "negate it"),
        (lambda lengths, L: (~mh.causal_mask(L))[None] & mh.padding_mask(lengths, L)[:, None, :], "use |"),
        (lambda lengths, L: solution_mask(lengths, L)[:, None], "no head axis here"),
    ],
)
def test_causal_padding_checker_explains_more_mistakes(fn, hint, capsys):
    assert_hint(mh.check_causal_padding_mask, fn, hint, capsys)


def test_causal_padding_checker_accepts_a_loop(capsys):
    def loop(lengths, seq_len):
        i = torch.arange(seq_len)
        return torch.stack([(i[None, :] > i[:, None]) | (i[None, :] >= n) for n in lengths])

    ok, out = run(mh.check_causal_padding_mask, loop, capsys)
    assert ok, out


def test_lengths_used_as_a_tensor_gets_a_hint(capsys):
    def as_tensor(lengths, seq_len):
        return lengths.unsqueeze(1) <= torch.arange(seq_len)

    assert_hint(mh.check_causal_padding_mask, as_tensor, "not a tensor", capsys)
