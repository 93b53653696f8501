"""The exercise checkers of notebook 01 (Q/K/V projections): hidden cases, a reference, and a hint for each common mistake."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .core import _call_student, _shape_hint, exercise_checker


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
            got = _call_student(fn, x.clone(), *(w.clone() for w in weights))
        except RuntimeError as exc:
            if d_out == d_model:
                raise
            return (
                f"your function works for square weights but raised for W_q of shape ({d_out}, {d_model}) "
                f"(out_features, in_features), as nn.Linear stores it: use x @ W_q.T. The error was: {exc}"
            )
        if isinstance(got, torch.Tensor) or not isinstance(got, (tuple, list)) or len(got) != 3:
            return f"return three tensors, `return Q, K, V`; got {type(got).__name__}" + (
                f" of length {len(got)}" if isinstance(got, (tuple, list)) else ""
            )
        for name, out, want, w in zip("QKV", got, expected, weights, strict=True):
            hint = _shape_hint(name, out, want.shape)
            if hint:
                return hint + f" for x of shape {tuple(x.shape)}: each projection maps d_model={d_model} -> {d_out}"
            out = out.detach().float()  # compare values whatever the student's dtype or autograd state
            if torch.allclose(out, want, atol=1e-5):
                continue
            if torch.allclose(out, x @ w, atol=1e-5):
                return (
                    f"{name} equals x @ W_{name.lower()} without the transpose: nn.Linear stores its weight as "
                    f"(out_features, in_features), so the projection is x @ W_{name.lower()}.T"
                )
            for other, other_want in zip("QKV", expected, strict=True):
                if other != name and torch.allclose(out, other_want, atol=1e-5):
                    return (
                        f"your {name} equals x @ W_{other.lower()}.T: {name} must use its own matrix W_{name.lower()} "
                        f"(and return them in the order Q, K, V)"
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
        got = _call_student(fn, query.clone(), keys.clone(), values.clone())
        if isinstance(got, torch.Tensor) or not isinstance(got, (tuple, list)) or len(got) != 2:
            return f"return two tensors, `return weights, result`; got {type(got).__name__}" + (
                f" of length {len(got)}" if isinstance(got, (tuple, list)) else ""
            )
        weights, result = got
        hint = _shape_hint("weights", weights, (S,))
        if hint:
            return hint + f" (one weight per key; keys has shape {tuple(keys.shape)})"
        weights = weights.detach().float()  # compare values whatever the student's dtype or autograd state
        scores = keys @ query  # (S,)
        if not torch.allclose(weights, want_w, atol=1e-5):
            if torch.allclose(weights, scores, atol=1e-5):
                return (
                    "your weights are the raw scores keys @ query: pass them through torch.softmax so they sum to 1"
                )
            if torch.allclose(weights, torch.softmax(scores / math.sqrt(d), dim=-1), atol=1e-5):
                return (
                    "your weights are softmax(scores / √d): the √d scaling comes in notebook 02; "
                    "here use softmax(keys @ query)"
                )
            if torch.allclose(weights, F.one_hot(scores.argmax(), S).to(weights.dtype)):
                return (
                    "your weights are one-hot (1 for the best key, 0 elsewhere): that is the hard look-up; "
                    "use torch.softmax for the soft one"
                )
            if torch.allclose(weights, torch.softmax(-scores, dim=-1), atol=1e-5):
                return (
                    "your weights favour the keys LEAST like the query: use softmax(+scores), not softmax(-scores)"
                )
            if not torch.allclose(weights.sum(), torch.tensor(1.0), atol=1e-4):
                return f"your weights sum to {float(weights.sum()):.3g}, not 1: did you apply torch.softmax?"
            return (
                "your weights sum to 1 but differ from softmax(keys @ query): score each key by its dot product "
                "with the query"
            )
        if isinstance(result, torch.Tensor) and tuple(result.shape) == (S, d_v):
            return (
                f"result has shape {(S, d_v)}: you weighted each value but did not add them up; "
                f"the blend is one vector of shape ({d_v},), e.g. weights @ values"
            )
        hint = _shape_hint("result", result, (d_v,))
        if hint:
            return hint + " (one blended value)"
        result = result.detach().float()
        if not torch.allclose(result, want_r, atol=1e-5):
            if d_v == d and torch.allclose(result, weights @ keys, atol=1e-5):
                return "your result blends the keys: keys are only for matching, blend the values (weights @ values)"
            return "your weights are right but result is not weights @ values (the weighted sum of the values)"
    return None
