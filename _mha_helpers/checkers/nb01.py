"""The exercise checkers of notebook 01 (Q/K/V projections): hidden cases, a reference, and a hint for each common mistake."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .core import (
    _call_student,
    _close,
    _describe_case,
    _pair_hint,
    _shape_hint,
    _sums_to_one,
    _tensor_answer,
    exercise_checker,
)


def _reference_project_qkv(
    x: torch.Tensor, W_q: torch.Tensor, W_k: torch.Tensor, W_v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Q, K, V = x W_qᵀ, x W_kᵀ, x W_vᵀ: ``(batch, seq, d_model) -> (batch, seq, d_out)`` each (no bias)."""
    return x @ W_q.T, x @ W_k.T, x @ W_v.T  # (batch, seq, d_model) @ (d_model, d_out) -> (batch, seq, d_out)


@exercise_checker("Exercise 1.1: project_qkv")
def check_project_qkv(fn: Callable) -> str | None:
    """Check ``fn(x, W_q, W_k, W_v) -> (Q, K, V)`` on hidden cases.

    ``x`` is ``(batch, seq, d_model)``; each weight is ``(d_out, d_model)``, stored the way ``nn.Linear`` stores
    its ``.weight`` (out_features, in_features); each of Q, K, V is ``(batch, seq, d_out)`` = ``x @ W.T``.
    Prints a pass, a specific hint, or "not yet" for the stub; returns True on a pass.
    """
    g = torch.Generator().manual_seed(101)
    # (batch, seq, d_model, d_out): square weights first (a missing transpose still runs there), then a
    # rectangular one (d_out != d_model), which only the right orientation can multiply.
    for batch, seq, d_model, d_out in ((2, 5, 6, 6), (1, 4, 8, 8), (3, 4, 8, 4)):
        x = torch.randn(batch, seq, d_model, generator=g)
        weights = [torch.randn(d_out, d_model, generator=g) for _ in range(3)]
        expected = _reference_project_qkv(x, *weights)
        try:
            with _describe_case(f"x of shape {tuple(x.shape)} and weights of shape ({d_out}, {d_model})"):
                got = _tensor_answer(_call_student(fn, x.clone(), *(w.clone() for w in weights)))
        except RuntimeError as exc:
            if d_out == d_model and "batch2" in str(exc):  # (d_out, d_model) @ (batch, seq, d_model) fails this way
                return ("your function raised for x of shape (batch, seq, d_model): is the weight on the left? A token "
                        "is a row of x, so the projection is x @ W_q.T (nn.Linear stores W as (out_features, "
                        f"in_features)). The error was: {exc}")
            if d_out == d_model:
                raise
            return (
                f"your function works for square weights but raised for W_q of shape ({d_out}, {d_model}) "
                f"(out_features, in_features), as nn.Linear stores it: use x @ W_q.T. The error was: {exc}"
            )
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (3, *expected[0].shape):
            return "you returned one stacked tensor: return the three projections separately, `return Q, K, V`"
        if isinstance(got, torch.Tensor) or not isinstance(got, (tuple, list)) or len(got) != 3:
            return f"return three tensors, `return Q, K, V`; got {type(got).__name__}" + (
                f" of length {len(got)}" if isinstance(got, (tuple, list)) else ""
            )
        for name, out, want, w in zip("QKV", got, expected, weights, strict=True):
            hint = _shape_hint(name, out, want.shape, "(batch, seq, d_out)", f"for x of shape {tuple(x.shape)}")
            if hint:
                return f"{hint}: each projection maps d_model={d_model} -> d_out={d_out}"
            if _close(out, want):
                continue
            if d_out == d_model and _close(out, x @ w):
                return (
                    f"{name} equals x @ W_{name.lower()} without the transpose: nn.Linear stores its weight as "
                    f"(out_features, in_features), so the projection is x @ W_{name.lower()}.T"
                )
            for other, other_want in zip("QKV", expected, strict=True):
                if other != name and _close(out, other_want):
                    return (
                        f"your {name} equals x @ W_{other.lower()}.T: {name} must use its own matrix W_{name.lower()} "
                        f"(and return them in the order Q, K, V)"
                    )
            if _close(out, want / math.sqrt(d_out)) or _close(out, want / math.sqrt(d_model)):
                return (
                    f"{name} is scaled by 1/√d: the projection is only x @ W_{name.lower()}.T; the 1/√d_k scale "
                    "comes in notebook 02 and applies to the scores Q Kᵀ, not to Q"
                )
            return f"{name} has the right shape but wrong values; expected x @ W_{name.lower()}.T"
    return None


def _reference_soft_lookup(
    query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """weights = softmax(keys · query) ``(S,)`` and result = weights @ values ``(d_v,)``."""
    scores = keys @ query  # (S, d) @ (d,) -> (S,)
    weights = torch.softmax(scores, dim=-1)  # (S,), sums to 1
    return weights, weights @ values  # (S,) @ (S, d_v) -> (d_v,)


@exercise_checker("Exercise 1.2: soft_lookup")
def check_soft_lookup(fn: Callable) -> str | None:
    """Check ``fn(query, keys, values) -> (weights, result)`` on hidden cases.

    ``query`` is ``(d,)``, ``keys`` is ``(S, d)``, ``values`` is ``(S, d_v)``; ``weights`` must be
    ``softmax(keys @ query)`` of shape ``(S,)`` (plain dot products, no scaling yet) and ``result`` the blend
    ``weights @ values`` of shape ``(d_v,)``. Prints a pass, a specific hint, or "not yet"; returns True on a pass.
    """
    g = torch.Generator().manual_seed(202)
    for d, S, d_v in ((2, 3, 2), (4, 5, 3), (3, 6, 1)):
        query = torch.randn(d, generator=g) * 1.5
        keys = torch.randn(S, d, generator=g) * 1.5
        values = torch.randn(S, d_v, generator=g)
        want_w, want_r = _reference_soft_lookup(query, keys, values)
        case = f"query ({d},), keys ({S}, {d}), values ({S}, {d_v})"
        with _describe_case(case):
            got = _tensor_answer(_call_student(fn, query.clone(), keys.clone(), values.clone()))
        hint = _pair_hint(got, "weights, result", (want_w.shape, want_r.shape))
        if hint:
            return hint
        weights, result = got
        hint = _shape_hint("weights", weights, (S,), "(S,)", f"for {case}")
        if hint:
            return hint + ": one weight per key"
        hint = (_soft_lookup_weights_hint(weights, want_w, keys @ query, d)  # scores (S,)
                or _soft_lookup_result_hint(result, (want_w, want_r), keys, values, case))
        if hint:
            return hint
    return None


def _soft_lookup_weights_hint(weights: torch.Tensor, want_w: torch.Tensor, scores: torch.Tensor, d: int) -> str | None:
    """None when ``weights`` ``(S,)`` are softmax(scores); else the hint for the mistake they show."""
    if _close(weights, want_w):
        return None
    if _close(weights, scores):
        return "your weights are the raw scores keys @ query: pass them through torch.softmax so they sum to 1"
    if _close(weights, torch.softmax(scores / math.sqrt(d), dim=-1)):
        return ("your weights are softmax(scores / √d): the √d scaling comes in notebook 02; "
                "here use softmax(keys @ query)")
    if _close(weights, F.one_hot(scores.argmax(), scores.shape[0]).to(torch.float32)):
        return ("your weights are one-hot (1 for the best key, 0 elsewhere): that is the hard look-up; "
                "use torch.softmax for the soft one")
    if _close(weights, torch.softmax(-scores, dim=-1)):
        return "your weights favour the keys LEAST like the query: use softmax(+scores), not softmax(-scores)"
    if _close(weights, scores / scores.sum()) or _close(weights, scores.abs() / scores.abs().sum()):
        return ("you divided the scores by their sum: that is not a softmax (scores can be negative); "
                "use torch.softmax(scores, dim=-1), which takes exp first")
    if not _sums_to_one(weights, -1):
        return f"your weights sum to {float(weights.double().sum()):.3g}, not 1: did you apply torch.softmax?"
    return ("your weights sum to 1 but differ from softmax(keys @ query): score each key by its dot product "
            "with the query")


def _soft_lookup_result_hint(result: object, expected: tuple, keys: torch.Tensor, values: torch.Tensor,
                             case: str) -> str | None:
    """None when ``result`` is ``weights @ values`` ``(d_v,)`` (``expected`` = (weights, result)); else a hint."""
    want_w, want_r = expected
    (S, d), d_v = keys.shape, values.shape[1]
    if isinstance(result, torch.Tensor) and tuple(result.shape) == (S, d_v):
        return (
            f"result has shape {(S, d_v)}: you weighted each value but did not add them up; "
            f"the blend is one vector of shape ({d_v},), e.g. weights @ values"
        )
    if d_v != d and isinstance(result, torch.Tensor) and _close(result, want_w @ keys):
        return "your result blends the keys: keys are only for matching, blend the values (weights @ values)"
    hint = _shape_hint("result", result, (d_v,), "(d_v,)", f"for {case}")
    if hint:
        return hint + ": one blended value"
    if not _close(result, want_r):
        if d_v == d and _close(result, want_w @ keys):
            return "your result blends the keys: keys are only for matching, blend the values (weights @ values)"
        if _close(result, values.mean(dim=0)):
            return "your result is the plain mean of the values: weight each value by its softmax weight"
        return "your weights are right but result is not weights @ values (the weighted sum of the values)"
    return None
