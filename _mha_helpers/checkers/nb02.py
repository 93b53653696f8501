"""The exercise checkers of notebook 02 (scaled dot-product attention): hidden cases, a reference, and a hint for each common mistake."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..maths.attention import scaled_dot_product_attention
from .core import (
    _call_student,
    _close,
    _describe_case,
    _pair_hint,
    _shape_hint,
    _spying_on_softmax,
    _sums_to_one,
    _tensor_answer,
    _values,
    exercise_checker,
)

_FORBIDDEN_SOFTMAX = (
    "your function calls {calls}: this exercise asks you to build the softmax yourself — subtract each row's "
    "maximum, take torch.exp, divide by the row sum (dim=-1, keepdim=True)"
)


@exercise_checker("Exercise 2.1: a softmax that does not overflow")
def check_softmax(fn: Callable[[torch.Tensor], torch.Tensor]) -> str | None:
    """Check ``fn(scores) -> weights``: the softmax over the last dim, ``(..., S) -> (..., S)``, written without
    ``torch.softmax`` (any of torch's softmax functions is detected).

    It must also work for large scores (``exp(1000)`` is ``inf`` in float32) and for rows whose scores lie far
    apart (``[-1000, 0, 1000]``, where subtracting the row's minimum or mean still overflows). Prints a pass, a
    specific hint (wrong dim, overflow, one maximum for the whole tensor, the min or mean instead of the max) or
    "not yet"; returns True on a pass.
    """
    g = torch.Generator().manual_seed(201)
    cases = [
        torch.randn(4, 6, generator=g) * 2,  # 4 rows of 6 scores: rows != columns, so a wrong dim shows
        torch.randn(2, 3, 5, generator=g) * 3,  # (batch, L, S): leading dims must be kept
        torch.tensor([[1000.0, 1001.0, 1002.0], [-3.0, 0.0, 3.0]]),  # exp(1000) = inf in float32
        torch.tensor([[1000.0, 1001.0, 1002.0], [-1000.0, -999.0, -998.0]]),  # rows far apart
        torch.tensor([[-1000.0, 0.0, 1000.0], [5.0, -5.0, 0.0]]),  # a row far apart within itself
    ]
    for scores in cases:
        expected = torch.softmax(scores, dim=-1)
        with _describe_case(f"scores of shape {tuple(scores.shape)}"), _spying_on_softmax() as calls:
            got = _call_student(fn, scores.clone())
        if calls:
            return _FORBIDDEN_SOFTMAX.format(calls=", ".join(dict.fromkeys(calls)))
        got = _tensor_answer(got)
        hint = _shape_hint("your weights", got, expected.shape, context=f"for scores of shape {tuple(scores.shape)}")
        if hint:
            return hint + ": softmax keeps the shape"
        hint = _softmax_overflow_hint(got, scores) or _softmax_values_hint(got, scores, expected)
        if hint:
            return hint
    return None


def _softmax_overflow_hint(got: torch.Tensor, scores: torch.Tensor) -> str | None:
    """Why some rows of the student's softmax hold NaN or inf (which subtraction was missing); None if none do."""
    bad_rows = ~torch.isfinite(got).all(dim=-1)  # (...,): rows with a NaN or inf
    if not bool(bad_rows.any()):
        return None
    row_max = scores.max(dim=-1).values  # (...,)
    row_min = scores.min(dim=-1).values
    if bool((row_min[bad_rows] > 80).any()):
        return (
            "NaN or inf for large scores such as [1000, 1001, 1002]: exp(1000) overflows to inf and "
            "inf / inf = NaN. Subtract each row's maximum before exp: it does not change the result"
        )
    if bool(((row_max - row_min)[bad_rows] > 160).any()):
        return (
            "NaN or inf for a row like [-1000, 0, 1000]: whatever you subtracted (the row's minimum? its "
            "mean?) still leaves exp(1000) or more. Subtract the row's MAXIMUM, "
            "scores.max(dim=-1, keepdim=True).values: then every exponent is <= 0"
        )
    return (
        "NaN or inf in a row of ordinary scores when another row holds large ones: you subtracted a maximum "
        "that is not this row's own (ONE maximum for the whole tensor, or one per column); subtract each "
        "row's own, scores.max(dim=-1, keepdim=True).values"
    )


def _softmax_values_hint(got: torch.Tensor, scores: torch.Tensor, expected: torch.Tensor) -> str | None:
    """None when finite ``got`` is the softmax of ``scores`` over the last dim; else which normalisation went wrong.
    An answer computed in half precision is the softmax of the scores as that dtype holds them (bfloat16 rounds
    1001 to 1000), judged at that dtype's tolerance."""
    if _close(got, expected):
        return None
    if got.dtype in (torch.float16, torch.bfloat16) and _close(got, torch.softmax(scores.to(got.dtype).float(), -1)):
        return None
    if not _sums_to_one(got, -1):
        for dim in range(scores.dim() - 1):
            if _sums_to_one(got, dim):
                return (f"softmax over the wrong dim: rows do not sum to 1 (your sums over dim={dim} do); "
                        "normalise over the last dim, dim=-1")
        first = float(got.double().sum(dim=-1).flatten()[0])
        if _sums_to_one(got.flatten(), -1):
            return ("the whole tensor sums to 1, not each row: take the sum over the last dim only, "
                    ".sum(dim=-1, keepdim=True)")
        return (
            f"rows do not sum to 1 (the first sums to {first:.3g}): divide exp(scores) by its row sum, "
            "taken with dim=-1, keepdim=True"
        )
    return _clamped_hint(got, scores) or (
        "each row sums to 1 but the values differ from softmax: weight_j = exp(s_j) / Σ_k exp(s_k)")


def _clamped_hint(got: torch.Tensor, scores: torch.Tensor) -> str | None:
    """A hint when large scores that differ got equal weights: the scores were clamped (e.g. ``.clamp(max=80)``)
    before exp, which avoids the overflow but changes the result. None when no row shows it."""
    big = scores > 80  # (..., S): scores whose exp overflows float32 (exp(89) = inf)
    for row in (big.sum(dim=-1) >= 2).nonzero():
        row = tuple(row.tolist())
        weights, large = got[row][big[row]].double(), scores[row][big[row]]
        if float(large.max() - large.min()) > 0.5 and float(weights.max() - weights.min()) <= 1e-3 * float(weights.max()):
            return (f"the scores {_values(scores[row])} got the weights {_values(got[row])}: large scores that "
                    "differ come out equal, as when the scores are clamped before exp (e.g. .clamp(max=80)). That "
                    "avoids the overflow but changes the result; subtract each row's maximum instead, which "
                    "changes nothing")
    return None


@exercise_checker("Exercise 2.2: scaled dot-product attention")
def check_attention(fn: Callable) -> str | None:
    """Check ``fn(query, key, value) -> (output, weights)`` against :func:`scaled_dot_product_attention`.

    query ``(..., L, d_k)``, key ``(..., S, d_k)``, value ``(..., S, d_v)`` -> output ``(..., L, d_v)`` and
    weights ``(..., L, S)`` = softmax(Q Kᵀ / √d_k). Prints a pass, a specific hint (missing or wrong scale,
    softmax over the wrong dim, K Qᵀ instead of Q Kᵀ, the pair in the wrong order, ...) or "not yet"; returns True
    on a pass.
    """
    g = torch.Generator().manual_seed(202)
    # L, S, d_k and d_v all differ, so a swapped axis shows in a shape; the second case is (batch, heads, ...).
    for lead, L, S, d_k, d_v in (((2,), 3, 5, 16, 4), ((2, 3), 4, 6, 8, 5)):
        query = torch.randn(*lead, L, d_k, generator=g)
        key = torch.randn(*lead, S, d_k, generator=g)
        value = torch.randn(*lead, S, d_v, generator=g)
        want_out, want_w = scaled_dot_product_attention(query, key, value)
        case = f"query {tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}"
        with _describe_case(case):
            got = _call_student(fn, query.clone(), key.clone(), value.clone())
        hint = _pair_hint(got, "output, weights", (want_out.shape, want_w.shape))
        if hint:
            return hint
        output, weights = _tensor_answer(got)
        if isinstance(weights, torch.Tensor) and tuple(weights.shape) == (*lead, S, L):
            return (
                f"weights have shape {tuple(weights.shape)} = (..., S, L); expected (..., L, S) = "
                f"{tuple(want_w.shape)}, one row per query: compute query @ key.transpose(-2, -1), not key @ queryᵀ"
            )
        hint = _shape_hint("weights", weights, want_w.shape, "(..., L, S)", f"for {case}")
        if hint:
            return hint + ": one row per query, one column per key"
        scores = query @ key.transpose(-2, -1)  # (..., L, d_k) @ (..., d_k, S) -> (..., L, S)
        if not _sums_to_one(weights, -1):
            if _sums_to_one(weights, -2):
                return "softmax over the wrong dim: rows do not sum to 1 (your columns do); use softmax(scores, dim=-1)"
            if _close(weights, torch.softmax(scores, dim=-1) / math.sqrt(d_k)):
                return ("you divided AFTER the softmax, so rows sum to 1/√d_k: scale the scores first, "
                        "softmax(Q Kᵀ / √d_k)")
            first = float(weights.double().sum(dim=-1).flatten()[0])
            return f"rows of weights do not sum to 1 (the first sums to {first:.3g})"
        for factor, wrong in (
            (1.0, "missing the 1/√d_k scale: your weights are softmax(Q Kᵀ); divide the scores by math.sqrt(d_k)"),
            (1.0 / d_k, "you divided the scores by d_k; divide by its square root, math.sqrt(d_k)"),
            (1.0 / math.sqrt(d_v), f"you scaled by √d_v (d_v={d_v}, the value width); d_k={d_k} is query.shape[-1]"),
            (1.0 / math.sqrt(S), f"you scaled by √S (S={S}, the number of keys); d_k={d_k} is query.shape[-1]"),
            (1.0 / math.sqrt(L), f"you scaled by √L (L={L}, the number of queries); d_k={d_k} is query.shape[-1]"),
            (math.sqrt(d_k), "you multiplied the scores by √d_k; divide by it instead"),
        ):
            if _close(weights, torch.softmax(scores * factor, dim=-1)):
                return wrong
        if not _close(weights, want_w):
            return "each row sums to 1 but the weights differ from softmax(Q Kᵀ / √d_k)"
        if isinstance(output, torch.Tensor) and _close(output, want_w @ key):
            return "your output blends the keys: keys are for matching, the output is weights @ value"
        hint = _shape_hint("output", output, want_out.shape, "(..., L, d_v)", f"for {case}")
        if hint:
            return hint + ": one output per query, as wide as a value"
        if not _close(output, want_out):
            return "the weights are right but the output is not weights @ value"
    return None
