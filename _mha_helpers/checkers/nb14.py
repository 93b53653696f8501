"""The exercise checkers of notebook 14 (heads in a real language model): hidden cases, a reference, a hint for
each common mistake."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .core import _as_int, _as_number, _call_student, _describe_case, _shape_hint, exercise_checker


def _close_number(got: float, expected: float) -> bool:
    """Bits per character and shares: equal to float32 rounding (half precision passes too)."""
    return math.isclose(got, expected, rel_tol=2e-3, abs_tol=2e-3)


def _not_a_number_hint(raw: object) -> str:
    """The hint for an answer that is not one number: its shape if it is a tensor or array, else its type."""
    hint = _shape_hint("your result", raw, ())
    return hint or f"return one number (a float or a one-element tensor), got {type(raw).__name__}"


@exercise_checker("Exercise 14.1: bits per character")
def check_bits_per_char(fn: Callable[[torch.Tensor, torch.Tensor], float]) -> str | None:
    """Check ``fn(logits (batch, T, vocab), targets (batch, T)) -> float``: the mean cross-entropy of the targets
    in bits (natural-log cross-entropy divided by ``ln 2``), over every position of every row."""
    g = torch.Generator().manual_seed(1401)
    for batch, T, vocab in ((2, 7, 11), (3, 5, 111)):
        logits = torch.randn(batch, T, vocab, generator=g) * 2  # (batch, T, vocab)
        targets = torch.randint(0, vocab, (batch, T), generator=g)  # (batch, T)
        nats = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")  # (batch, T)
        expected = float(nats.mean()) / math.log(2)
        with _describe_case(f"logits of shape {tuple(logits.shape)} and targets of shape {tuple(targets.shape)}"):
            raw = _call_student(fn, logits.clone(), targets.clone())
        got = _as_number(raw)
        if got is None:
            return _not_a_number_hint(raw)
        if _close_number(got, expected):
            continue
        if _close_number(got, float(nats.mean())):
            return "that is in nats (natural log): divide by math.log(2) to get bits"
        if _close_number(got, float(nats.mean()) / math.log(10)):
            return "that is log base 10; bits are log base 2: divide the natural-log loss by math.log(2)"
        if _close_number(got, float(nats.sum()) / math.log(2)):
            return "you summed over the positions: take the MEAN, the bits per character"
        return ("right kind of answer, wrong value: F.cross_entropy(logits.transpose(1, 2), targets) is the mean in "
                "nats; divide it by math.log(2)")
    return None


@exercise_checker("Exercise 14.2: a head's previous-character share")
def check_previous_char_share(fn: Callable[[torch.Tensor], float]) -> str | None:
    """Check ``fn(weights (T, T)) -> float``: the mean weight that query ``i`` puts on key ``i - 1``, over the
    queries ``i = 1 .. T-1`` (query 0 has no previous character)."""
    g = torch.Generator().manual_seed(1402)
    for T in (6, 13):
        scores = torch.randn(T, T, generator=g) * 2
        weights = torch.softmax(scores.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf")), -1)
        i = torch.arange(1, T)
        expected = float(weights[i, i - 1].mean())
        with _describe_case(f"weights of shape {tuple(weights.shape)}"):
            raw = _call_student(fn, weights.clone())
        got = _as_number(raw)
        if got is None:
            return _not_a_number_hint(raw)
        if _close_number(got, expected):
            continue
        every = torch.arange(T)
        if _close_number(got, float(weights[every, every].mean())):
            return "you averaged the diagonal (each character itself); the previous character is key i - 1"
        if _close_number(got, float(weights[every, every - 1].mean())):
            return "query 0 has no previous character (weights[0, -1] wraps to the last key): use i = 1 .. T-1"
        if _close_number(got, float(weights[i, i - 1].sum())):
            return "you summed over the queries: take the MEAN over i = 1 .. T-1"
        return "right kind of answer, wrong value: average weights[i, i - 1] over i = 1 .. T-1"
    return None


def _pair(raw: object) -> tuple[int, int] | None:
    """``(layer, head)`` from a tuple, list or two-element tensor of whole numbers; None otherwise."""
    if isinstance(raw, torch.Tensor) and raw.numel() == 2 and not raw.is_floating_point():
        raw = raw.flatten().tolist()
    if isinstance(raw, (tuple, list)) and len(raw) == 2:
        pair = [_as_int(x) for x in raw]
        if None not in pair:
            return pair[0], pair[1]
    return None


@exercise_checker("Exercise 14.3: which head to prune first?")
def check_head_to_prune(fn: Callable[[torch.Tensor], tuple[int, int]]) -> str | None:
    """Check ``fn(cost (layers, heads)) -> (layer, head)``: the head whose switching off costs the least held-out
    loss, the one pruning removes first (hidden tables of costs, some slightly negative)."""
    g = torch.Generator().manual_seed(1403)
    for layers, heads in ((4, 8), (2, 3), (3, 4)):
        cost = torch.rand(layers, heads, generator=g) * 0.1 + 0.01  # (layers, heads): bits per character lost
        flat = int(torch.randint(0, layers * heads, (1,), generator=g))
        cost.view(-1)[flat] = -0.02  # a head whose removal even helps a little (noise): still the cheapest
        cost.view(-1)[(flat + 1) % (layers * heads)] = 0.001  # the cost nearest zero is another head
        best = divmod(flat, heads)
        with _describe_case(f"cost of shape {tuple(cost.shape)}"):
            raw = _call_student(fn, cost.clone())
        got = _pair(raw)
        if got is None:
            if _as_int(raw) is not None:
                return ("that is one number (a flat index?); return the pair (layer, head), e.g. "
                        "divmod(int(cost.argmin()), cost.shape[1])")
            return f"return the pair (layer, head) of ints, got {type(raw).__name__}"
        if got == best:
            continue
        if got == divmod(int(cost.argmax()), heads):
            return "that is the MOST important head (the largest cost); prune the one whose removal costs least"
        if got == best[::-1]:
            return "layer and head are swapped: return (layer, head), the row first"
        if got == divmod(int(cost.abs().argmin()), heads):
            return "you took the cost closest to zero; a negative cost (removal helps) is cheaper still: use argmin"
        return "the head to prune first is the one with the smallest cost: divmod(int(cost.argmin()), cost.shape[1])"
    return None
