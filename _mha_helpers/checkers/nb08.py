"""The exercise checkers of notebook 08 (what heads learn): hidden cases, a reference, and a hint for each common mistake."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..experiments.lookup import IGNORE_INDEX, attention_shares, two_lookup_targets
from .core import _call_student, _close, _describe_case, _shape_hint, _tensor_answer, exercise_checker


@exercise_checker("Exercise 8.1: the answers of the two-look-up task")
def check_lookup_targets(fn: Callable[[torch.Tensor], torch.Tensor]) -> str | None:
    """Check ``fn(tokens (batch, seq)) -> targets (batch, seq, 2)`` against :func:`two_lookup_targets`."""
    g = torch.Generator().manual_seed(801)
    for batch, seq in ((3, 6), (2, 9)):
        tokens = torch.randint(0, 8, (batch, seq), generator=g)
        expected = two_lookup_targets(tokens)
        passed = tokens.clone()
        with _describe_case(f"tokens of shape {tuple(tokens.shape)}"):
            got = _tensor_answer(_call_student(fn, passed))
        if not torch.equal(passed, tokens):
            return ("your function changed its input `tokens` in place: build the targets in new tensors "
                    "(torch.full_like, .clone()) and leave tokens alone")
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (2, batch, seq):
            return (f"your targets have shape {tuple(got.shape)} = (2, batch, seq): stack the two answers on the "
                    f"LAST axis, torch.stack([previous, first], dim=-1) -> {tuple(expected.shape)}")
        hint = _shape_hint("your targets", got, expected.shape, "(batch, seq, 2)")
        if hint:
            return hint
        got = got.detach().cpu()
        if got.dtype != torch.long:
            return f"targets are token ids: return a torch.long tensor, got {got.dtype}"
        if torch.equal(got, expected):
            continue
        if torch.equal(got[:, 1:], expected[:, 1:]):
            return (f"positions 1.. are right, but position 0 has no previous token: set both its targets to "
                    f"IGNORE_INDEX = {IGNORE_INDEX} (got {got[0, 0].tolist()})")
        if torch.equal(got[:, 1:], expected[:, 1:].flip(-1)):
            return "the two answers are swapped: [..., 0] is the previous token, [..., 1] the first token"
        if torch.equal(got[:, 1:, 0], tokens[:, 1:]):
            return "[..., 0] holds each position's own token: it should be the token one position earlier, i-1"
        if seq > 1 and torch.equal(got[:, :-1, 0], tokens[:, 1:]):
            return "[..., 0] holds the NEXT token (i+1); the task asks for the previous one, tokens[:, i-1]"
        if torch.equal(got[:, 1:, 1], tokens[:, -1:].expand(batch, seq - 1)):
            return "[..., 1] holds the LAST token of the sequence; the task asks for the FIRST one, tokens[:, 0]"
        if torch.equal(got[:, 1:, 1], tokens[:, 1:]):
            return "[..., 1] holds each position's own token; it should be the first token of the sequence, tokens[:, 0]"
        return "right shape, wrong values: targets[b, i] should be (tokens[b, i-1], tokens[b, 0]) for i >= 1"
    return None


@exercise_checker("Exercise 8.2: each head's share of attention on the previous token")
def check_previous_share(fn: Callable[[torch.Tensor], torch.Tensor]) -> str | None:
    """Check ``fn(weights (batch, heads, L, L)) -> (heads,)``: the mean weight query i gives key i-1, over the batch
    and the queries i = 2 .. L-1 (column 0 of :func:`attention_shares`)."""
    g = torch.Generator().manual_seed(802)
    for batch, heads, L in ((3, 2, 6), (2, 4, 8)):
        weights = torch.softmax(torch.randn(batch, heads, L, L, generator=g) * 2, dim=-1)  # rows sum to 1
        expected = attention_shares(weights)[:, 0]  # (heads,)
        with _describe_case(f"weights of shape {tuple(weights.shape)}"):
            got = _tensor_answer(_call_student(fn, weights.clone()))
        if isinstance(got, torch.Tensor) and got.numel() == 1 and heads != 1:
            return "you averaged over the heads too: keep one share per head, shape (heads,)"
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (batch, heads):
            return f"your result has shape {tuple(got.shape)} = (batch, heads): average over the batch as well"
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (batch,):
            return f"your result has shape {tuple(got.shape)} = (batch,): average over the batch and the queries, keep one number per head"
        hint = _shape_hint("your result", got, expected.shape, "(heads,)")
        if hint:
            return hint + ": one share per head"
        if _close(got, expected):
            continue
        i = torch.arange(L)
        wrong = {
            "the diagonal (each token's weight on itself, key i); the previous token is key i-1":
                weights[:, :, i, i].mean(dim=(0, 2)),
            "the next token (key i+1); the previous token is key i-1, one column LEFT of the diagonal":
                weights[:, :, i[:-1], i[:-1] + 1].mean(dim=(0, 2)),
            "the queries from i = 1: start at i = 2 (at i = 1 the previous token is also the first token)":
                weights[:, :, i[1:], i[1:] - 1].mean(dim=(0, 2)),
            "all L queries (with a zero for the queries 0 and 1): average over the queries i = 2 .. L-1 only":
                weights[:, :, i[2:], i[2:] - 1].sum(dim=2).mean(dim=0) / L,
        }
        if _close(got, expected * (L - 2)) or _close(got, expected * (L - 2) * batch):
            return "you summed over the queries (or the batch): take the mean instead"
        for why, value in wrong.items():
            if _close(got, value):
                return f"you averaged {why}"
        return "right shape, wrong values: average weights[b, h, i, i-1] over b and i = 2 .. L-1, for each head h"
    return None


def _switch_off_reference(merged: torch.Tensor, num_heads: int, head: int) -> torch.Tensor:
    """Exercise 8.3's answer: zero head ``head``'s slice of ``(batch, seq, d_model)`` (a copy)."""
    head_dim = merged.shape[-1] // num_heads
    out = merged.clone()
    out[..., head * head_dim : (head + 1) * head_dim] = 0.0
    return out


@exercise_checker("Exercise 8.3: switch one head off")
def check_switch_off_head(fn: Callable[[torch.Tensor, int, int], torch.Tensor]) -> str | None:
    """Check ``fn(merged (batch, seq, d_model), num_heads, head) -> (batch, seq, d_model)``: a copy of the
    concatenated head outputs with head ``head``'s ``head_dim`` features set to zero (what :func:`heads_switched_off`
    does just before W_o). The input must not change."""
    g = torch.Generator().manual_seed(803)
    for batch, seq, num_heads, head_dim, head in ((1, 3, 4, 3, 2), (2, 5, 2, 4, 1), (2, 4, 4, 2, 0)):
        merged = torch.randn(batch, seq, num_heads * head_dim, generator=g)
        original = merged.clone()
        expected = _switch_off_reference(merged, num_heads, head)
        with _describe_case(f"merged of shape {tuple(merged.shape)}, num_heads={num_heads}, head={head}"):
            got = _tensor_answer(_call_student(fn, merged, num_heads, head))
        if not torch.equal(merged, original):
            return "your function changed its input in place: clone it first (merged.clone()), then zero the slice"
        hint = _shape_hint("your result", got, expected.shape, "(batch, seq, d_model)")
        if hint:
            return f"{hint}: switching a head off keeps the shape"
        if _close(got, expected):
            continue
        interleaved = merged.clone().view(batch, seq, head_dim, num_heads)
        interleaved[..., head] = 0.0  # wrong: treats the features as (head_dim, heads)
        if _close(got, interleaved.view(batch, seq, -1)):
            return ("you zeroed every num_heads-th feature: a head's features are contiguous, "
                    "merged[..., head * head_dim : (head + 1) * head_dim]")
        for other in range(num_heads):
            if other != head and _close(got, _switch_off_reference(merged, num_heads, other)):
                return (f"you switched off head {other} instead of head {head}: head h owns the features "
                        f"h*head_dim .. (h+1)*head_dim - 1")
        only = torch.zeros_like(merged)
        only[..., head * head_dim : (head + 1) * head_dim] = merged[..., head * head_dim : (head + 1) * head_dim]
        if _close(got, only):
            return "you kept ONLY that head and zeroed the others; switch off just head `head`"
        return "right shape, wrong values: zero merged[..., head * head_dim : (head + 1) * head_dim] in a copy"
    return None
