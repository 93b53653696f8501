"""The exercise checkers of notebook 02 (scaled dot-product attention): hidden cases, a reference, and a hint for each common mistake."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..attention import scaled_dot_product_attention
from .core import _call_student, _matches, _shape_hint, exercise_checker


def _pair_hint(got: object, names: str) -> str | None:
    """A hint unless ``got`` is a tuple/list of two results (e.g. ``output, weights``)."""
    if isinstance(got, torch.Tensor) or not isinstance(got, (tuple, list)) or len(got) != 2:
        length = f" of length {len(got)}" if isinstance(got, (tuple, list)) else ""
        return f"return two tensors, `return {names}`; got {type(got).__name__}{length}"
    return None


@exercise_checker("Exercise 2.1: a softmax that does not overflow")
def check_softmax(fn: Callable[[torch.Tensor], torch.Tensor]) -> str | None:
    """Check ``fn(scores) -> weights``: the softmax over the last dim, ``(..., S) -> (..., S)``.

    It must also work for large scores (``exp(1000)`` is ``inf`` in float32). Prints a pass, a specific hint
    (wrong dim, overflow, one maximum for the whole tensor instead of one per row) or "not yet"; returns True on a pass.
    """
    g = torch.Generator().manual_seed(201)
    cases = [
        torch.randn(4, 6, generator=g) * 2,  # 4 rows of 6 scores: rows != columns, so a wrong dim shows
        torch.randn(2, 3, 5, generator=g) * 3,  # (batch, L, S): leading dims must be kept
        torch.tensor([[1000.0, 1001.0, 1002.0], [-3.0, 0.0, 3.0]]),  # exp(1000) = inf in float32
        torch.tensor([[1000.0, 1001.0, 1002.0], [-1000.0, -999.0, -998.0]]),  # rows far apart
    ]
    for scores in cases:
        expected = torch.softmax(scores, dim=-1)
        got = _call_student(fn, scores.clone())
        hint = _shape_hint("your weights", got, expected.shape)
        if hint:
            return hint + f" for scores of shape {tuple(scores.shape)}: softmax keeps the shape"
        bad_rows = ~torch.isfinite(got.detach()).all(dim=-1)  # (...,): rows with a NaN or inf
        if bool(bad_rows.any()):
            row_max = scores.max(dim=-1).values  # (...,)
            if bool((row_max[bad_rows] > 80).any()):
                return (
                    "NaN or inf for large scores such as [1000, 1001, 1002]: exp(1000) overflows to inf and "
                    "inf / inf = NaN. Subtract each row's maximum before exp: it does not change the result"
                )
            return (
                "NaN or inf in a row of ordinary scores when another row holds large ones: you subtracted ONE "
                "maximum for the whole tensor; subtract each row's own, scores.max(dim=-1, keepdim=True).values"
            )
        if _matches(got, expected):
            continue
        ones = torch.ones(expected.shape[:-1], dtype=torch.float64)
        if not torch.allclose(got.detach().double().sum(dim=-1), ones, atol=1e-4):
            if scores.dim() >= 2 and torch.allclose(got.detach().double().sum(dim=-2), torch.ones_like(
                    got.detach().double().sum(dim=-2)), atol=1e-4):
                return "softmax over the wrong dim: rows do not sum to 1 (your columns do); normalise over dim=-1"
            first = float(got.detach().double().sum(dim=-1).flatten()[0])
            return (
                f"rows do not sum to 1 (the first sums to {first:.3g}): divide exp(scores) by its row sum, "
                "taken with dim=-1, keepdim=True"
            )
        return "each row sums to 1 but the values differ from softmax: weight_j = exp(s_j) / Σ_k exp(s_k)"
    return None


@exercise_checker("Exercise 2.2: scaled dot-product attention")
def check_attention(fn: Callable) -> str | None:
    """Check ``fn(query, key, value) -> (output, weights)`` against :func:`scaled_dot_product_attention`.

    query ``(..., L, d_k)``, key ``(..., S, d_k)``, value ``(..., S, d_v)`` -> output ``(..., L, d_v)`` and
    weights ``(..., L, S)`` = softmax(Q Kᵀ / √d_k). Prints a pass, a specific hint (missing or wrong scale,
    softmax over the wrong dim, K Qᵀ instead of Q Kᵀ, ...) or "not yet"; returns True on a pass.
    """
    g = torch.Generator().manual_seed(202)
    # L, S, d_k and d_v all differ, so a swapped axis shows in a shape; the second case is (batch, heads, ...).
    for lead, L, S, d_k, d_v in (((2,), 3, 5, 16, 4), ((2, 3), 4, 6, 8, 5)):
        query = torch.randn(*lead, L, d_k, generator=g)
        key = torch.randn(*lead, S, d_k, generator=g)
        value = torch.randn(*lead, S, d_v, generator=g)
        want_out, want_w = scaled_dot_product_attention(query, key, value)
        got = _call_student(fn, query.clone(), key.clone(), value.clone())
        hint = _pair_hint(got, "output, weights")
        if hint:
            return hint
        output, weights = got
        if isinstance(weights, torch.Tensor) and tuple(weights.shape) == (*lead, S, L):
            return (
                f"weights have shape {tuple(weights.shape)} = (..., S, L); expected (..., L, S) = "
                f"{tuple(want_w.shape)}, one row per query: compute query @ key.transpose(-2, -1), not key @ queryᵀ"
            )
        hint = _shape_hint("weights", weights, want_w.shape)
        if hint:
            return hint + " = (..., L, S): one row per query, one column per key"
        w = weights.detach().double()
        if not torch.allclose(w.sum(dim=-1), torch.ones(w.shape[:-1], dtype=torch.float64), atol=1e-4):
            if torch.allclose(w.sum(dim=-2), torch.ones_like(w.sum(dim=-2)), atol=1e-4):
                return "softmax over the wrong dim: rows do not sum to 1 (your columns do); use softmax(scores, dim=-1)"
            return f"rows of weights do not sum to 1 (the first sums to {float(w.sum(dim=-1).flatten()[0]):.3g})"
        scores = query @ key.transpose(-2, -1)  # (..., L, d_k) @ (..., d_k, S) -> (..., L, S)
        for factor, wrong in (
            (1.0, "missing the 1/√d_k scale: your weights are softmax(Q Kᵀ); divide the scores by math.sqrt(d_k)"),
            (1.0 / d_k, "you divided the scores by d_k; divide by its square root, math.sqrt(d_k)"),
            (1.0 / math.sqrt(d_v), f"you scaled by √d_v (d_v={d_v}, the value width); d_k={d_k} is query.shape[-1]"),
            (math.sqrt(d_k), "you multiplied the scores by √d_k; divide by it instead"),
        ):
            if _matches(weights, torch.softmax(scores * factor, dim=-1)):
                return wrong
        if not _matches(weights, want_w):
            return "each row sums to 1 but the weights differ from softmax(Q Kᵀ / √d_k)"
        hint = _shape_hint("output", output, want_out.shape)
        if hint:
            return hint + " = (..., L, d_v): one output per query, as wide as a value"
        if not _matches(output, want_out):
            return "the weights are right but the output is not weights @ value"
    return None
