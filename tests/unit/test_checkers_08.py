"""The exercise checkers of notebook 08 (what heads learn): the solutions pass, each typical wrong answer gets the
hint that names its mistake."""

from __future__ import annotations

import pytest
import torch
from checker_support import assert_hint, run

import mha_helpers as mh


def targets_solution(tokens):
    previous = torch.full_like(tokens, mh.IGNORE_INDEX)
    previous[:, 1:] = tokens[:, :-1]
    first = tokens[:, :1].expand_as(tokens).clone()
    first[:, 0] = mh.IGNORE_INDEX
    return torch.stack([previous, first], dim=-1)


def targets_rolled(tokens):  # the wrap-around at position 0 is not fixed
    return torch.stack([torch.roll(tokens, 1, dims=1), tokens[:, :1].expand_as(tokens)], dim=-1)


def targets_own_token(tokens):
    t = targets_solution(tokens)
    t[:, 1:, 0] = tokens[:, 1:]
    return t


def share_solution(weights):
    i = torch.arange(2, weights.shape[-1])
    return weights[:, :, i, i - 1].mean(dim=(0, 2))


def share_diagonal(weights):
    i = torch.arange(weights.shape[-1])
    return weights[:, :, i, i].mean(dim=(0, 2))


def share_from_query_1(weights):
    i = torch.arange(1, weights.shape[-1])
    return weights[:, :, i, i - 1].mean(dim=(0, 2))


def switch_solution(merged, num_heads, head):
    head_dim = merged.shape[-1] // num_heads
    out = merged.clone()
    out[..., head * head_dim : (head + 1) * head_dim] = 0
    return out


def switch_in_place(merged, num_heads, head):
    head_dim = merged.shape[-1] // num_heads
    merged[..., head * head_dim : (head + 1) * head_dim] = 0
    return merged


def switch_interleaved(merged, num_heads, head):
    out = merged.clone().view(*merged.shape[:-1], -1, num_heads)
    out[..., head] = 0
    return out.view(merged.shape)


def switch_off_by_one(merged, num_heads, head):
    return switch_solution(merged, num_heads, (head + 1) % num_heads)


@pytest.mark.parametrize(
    "checker, fn",
    [
        (mh.check_lookup_targets, targets_solution),
        (mh.check_lookup_targets, mh.two_lookup_targets),
        (mh.check_previous_share, share_solution),
        (mh.check_switch_off_head, switch_solution),
    ],
)
def test_checkers_accept_the_solutions(checker, fn, capsys):
    ok, out = run(checker, fn, capsys)
    assert ok and "✅" in out, out


@pytest.mark.parametrize(
    "checker, fn, hint",
    [
        (mh.check_lookup_targets, targets_rolled, "position 0 has no previous token"),
        (mh.check_lookup_targets, lambda t: targets_solution(t).flip(-1), "swapped"),
        (mh.check_lookup_targets, targets_own_token, "own token"),
        (mh.check_lookup_targets, lambda t: targets_solution(t).permute(2, 0, 1), "LAST axis"),
        (mh.check_previous_share, share_diagonal, "the diagonal"),
        (mh.check_previous_share, share_from_query_1, "start at i = 2"),
        (mh.check_previous_share, lambda w: share_solution(w.transpose(0, 1)), "(batch,)"),
        (mh.check_switch_off_head, switch_in_place, "in place"),
        (mh.check_switch_off_head, switch_interleaved, "every num_heads-th feature"),
        (mh.check_switch_off_head, switch_off_by_one, "instead of head"),
        (mh.check_switch_off_head, lambda m, n, h: m - switch_solution(m, n, h), "kept ONLY that head"),
        (mh.check_switch_off_head, lambda m, n, h: switch_solution(m, n, h)[..., :-1], "keeps the shape"),
    ],
)
def test_checkers_name_the_mistake(checker, fn, hint, capsys):
    ok, out = run(checker, fn, capsys)
    assert not ok and "❌" in out and hint in out, out


def targets_in_place(tokens):
    t = targets_solution(tokens)
    tokens[:, 0] = mh.IGNORE_INDEX
    return t


def targets_last_token(tokens):
    t = targets_solution(tokens)
    t[:, 1:, 1] = tokens[:, -1:]
    return t


@pytest.mark.parametrize(
    "checker, fn, hint",
    [
        (mh.check_lookup_targets, targets_in_place, "changed its input `tokens` in place"),
        (mh.check_lookup_targets, targets_last_token, "LAST token"),
        (mh.check_lookup_targets, lambda t: targets_solution(t).int(), "torch.long"),
        (mh.check_previous_share, lambda w: share_solution(w).mean(), "averaged over the heads too"),
        (mh.check_previous_share, lambda w: w[:, :, torch.arange(2, w.shape[-1]), torch.arange(1, w.shape[-1] - 1)]
         .mean(dim=2), "(batch, heads): average over the batch as well"),
        (mh.check_previous_share, lambda w: share_solution(w) * (w.shape[-1] - 2), "summed over the queries"),
        (mh.check_switch_off_head, lambda m, n, h: switch_solution(m, n / 1, h), "integer division"),
    ],
)
def test_checkers_explain_more_mistakes(checker, fn, hint, capsys):
    assert_hint(checker, fn, hint, capsys)


def test_previous_share_accepts_numpy(capsys):
    ok, out = run(mh.check_previous_share, lambda w: share_solution(w).numpy(), capsys)
    assert ok, out
