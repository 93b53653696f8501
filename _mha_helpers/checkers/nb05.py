"""The exercise checkers of notebook 05 (concatenation and the output projection): hidden cases, a reference, and a hint for each common mistake."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..maths.attention import causal_mask, merge_heads, split_heads
from .core import _call_student, _close, _describe_case, _random_linear, _shape_hint, _tensor_answer, exercise_checker

_VIEW_HINT = (
    "view on a non-contiguous tensor: after transpose(1, 2) a token's features are no longer next to each other in "
    "memory, so .view cannot merge them — use .reshape(...) (it copies when it must) or .contiguous().view(...)"
)


def _merge_heads_cases() -> list[torch.Tensor]:
    """Hidden inputs ``(batch, heads, seq, head_dim)``: fresh (contiguous) tensors, as attention returns them."""
    g = torch.Generator().manual_seed(505)
    sizes = ((2, 3, 5, 4), (1, 2, 7, 3), (3, 4, 6, 5))  # (batch, heads, seq, head_dim), all different
    return [torch.randn(*size, generator=g) for size in sizes]


@exercise_checker("Exercise 5.1: merge_heads")
def check_merge_heads(fn: Callable[[torch.Tensor], torch.Tensor]) -> str | None:
    """Check ``fn(x)``: ``(batch, heads, seq, head_dim) -> (batch, seq, heads * head_dim)``, as :func:`merge_heads`.

    Prints a pass, a specific hint (transpose forgotten, view on a non-contiguous tensor, heads not merged, features
    interleaved) or "not yet" for the stub; returns True on success.
    """
    for x in _merge_heads_cases():
        batch, num_heads, seq, head_dim = x.shape
        d_model = num_heads * head_dim
        expected = merge_heads(x)  # (batch, seq, d_model)
        case = f"x of shape {tuple(x.shape)}"
        try:
            with _describe_case(case):
                got = _tensor_answer(_call_student(fn, x.clone()))
        except RuntimeError as exc:
            if "view size is not compatible" in str(exc):
                return _VIEW_HINT
            raise
        if not isinstance(got, torch.Tensor):
            return f"return a torch.Tensor, got {type(got).__name__}"
        got = got.detach().cpu()
        if tuple(got.shape) == (batch, seq, head_dim) and (_close(got, x.sum(1)) or _close(got, x.mean(1))):
            return ("you added (or averaged) the heads: merging CONCATENATES them, each head keeps its own head_dim "
                    "features side by side -> (batch, seq, heads * head_dim)")
        if tuple(got.shape) == (batch, num_heads * seq, head_dim):
            return (f"your output has shape {tuple(got.shape)} = (batch, heads * seq, head_dim): you stacked the heads "
                    "along the sequence; concatenate them along the FEATURES (the last dim)")
        if tuple(got.shape) == (batch, seq, num_heads, head_dim):
            return (
                f"your output has shape {tuple(got.shape)} = (batch, seq, heads, head_dim): you transposed back, now "
                f"merge the last two axes with .reshape(batch, seq, heads * head_dim) to get {tuple(expected.shape)}"
            )
        hint = _shape_hint("your output", got, expected.shape, "(batch, seq, heads * head_dim)", f"for {case}")
        if hint:
            return hint
        if _close(got, x.reshape(batch, seq, d_model)):
            return (
                "forgot to transpose back: reshaping (batch, heads, seq, head_dim) straight to (batch, seq, d_model) "
                "scrambles the tokens — .transpose(1, 2) to (batch, seq, heads, head_dim) first, then reshape"
            )
        if _close(got, x.permute(0, 2, 3, 1).reshape(batch, seq, d_model)):
            return (
                "features interleaved: you put head_dim before heads (e.g. permute(0, 2, 3, 1)), so the heads' "
                "features alternate; transpose(1, 2) keeps each head's head_dim features together"
            )
        if not _close(got, expected):
            return "right shape, wrong values: output[:, t, h*head_dim:(h+1)*head_dim] should be x[:, h, t, :]"
    return None


#: the keywords of :func:`_mha_forward_variant` that reproduce a common mistake, and the hint that names its step
_MHA_MISTAKES = (
    ({"use_W_o": False}, "you returned the merged heads: apply the output projection W_o last"),
    ({"values": "W_k"}, "your values come from W_k: V has its own projection, v = W_v(x) (K is only for matching)"),
    ({"values": "x"}, "you used x itself as the values: project them first, v = W_v(x)"),
    ({"scale_by": "none"}, "the 1/√head_dim scale is missing: divide the scores Q Kᵀ by head_dim ** 0.5"),
    ({"scale_by": "d_model"}, "you scaled by 1/√d_model; each head's dot products have head_dim terms: divide by "
                              "head_dim ** 0.5"),
    ({"scale_by": "head_dim"}, "you divided the scores by head_dim; divide by its square root, head_dim ** 0.5"),
    ({"bias": False}, "the Linear layers' biases are missing: call the modules, W_q(x), instead of multiplying by "
                      "W_q.weight.T alone"),
    ({"softmax_dim": -2}, "softmax over the wrong axis (the queries): each query's row, the last axis (over the "
                          "keys), must sum to 1: softmax(scores, dim=-1)"),
    ({"softmax_dim": 1}, "softmax over the heads (dim=1): each head normalises its own scores; take the softmax over "
                         "the last axis (the keys), softmax(scores, dim=-1)"),
    ({"swap_qk": True}, "your scores are K Qᵀ (one row per KEY): each row is one query, q @ k.transpose(-2, -1)"),
    ({"causal": True}, "you applied a causal mask: this exercise is self-attention without a mask, every token sees "
                       "every token"),
    ({"scrambled_split": True}, "tokens scrambled in the split: view to (batch, seq, heads, head_dim), then "
                                "transpose(1, 2) — not a reshape straight to (batch, heads, seq, head_dim)"),
    ({"scrambled_merge": True}, "tokens scrambled in the merge: transpose(1, 2) back to (batch, seq, heads, "
                                "head_dim) before reshaping to (batch, seq, d_model)"),
)


def _mha_forward_variant(x: torch.Tensor, W_q: nn.Module, W_k: nn.Module, W_v: nn.Module, W_o: nn.Module,
                         num_heads: int, **mistake) -> torch.Tensor:
    """The MHA forward ``(batch, seq, d_model) -> (batch, seq, d_model)``, or one of its typical mistakes: the
    keywords of :data:`_MHA_MISTAKES` (``values``, ``scale_by``, ``softmax_dim``, ``bias``, ``swap_qk``, ``causal``,
    ``scrambled_split``, ``scrambled_merge``, ``use_W_o``)."""
    batch, seq, d_model = x.shape
    head_dim = d_model // num_heads
    if mistake.get("bias", True):
        values = {"W_v": W_v, "W_k": W_k, "x": nn.Identity()}[mistake.get("values", "W_v")]
        q, k, v = W_q(x), W_k(x), values(x)  # (batch, seq, d_model) each
    else:  # wrong: x @ W.weight.T alone drops the Linear's bias
        q, k, v = (x @ W.weight.T for W in (W_q, W_k, W_v))
    if mistake.get("scrambled_split"):
        q, k, v = (t.reshape(batch, num_heads, seq, head_dim) for t in (q, k, v))  # wrong: tokens mixed
    else:
        q, k, v = (split_heads(t, num_heads) for t in (q, k, v))  # (batch, heads, seq, head_dim)
    scale = {"sqrt_head_dim": head_dim**-0.5, "none": 1.0, "d_model": d_model**-0.5,
             "head_dim": 1.0 / head_dim}[mistake.get("scale_by", "sqrt_head_dim")]
    first, second = (k, q) if mistake.get("swap_qk") else (q, k)
    scores = (first @ second.transpose(-2, -1)) * scale  # (batch, heads, seq, seq)
    if mistake.get("causal"):
        scores = scores.masked_fill(~causal_mask(seq), float("-inf"))
    heads = torch.softmax(scores, dim=mistake.get("softmax_dim", -1)) @ v  # (batch, heads, seq, head_dim)
    if mistake.get("scrambled_merge"):
        merged = heads.reshape(batch, seq, d_model)  # wrong: no transpose back
    else:
        merged = merge_heads(heads)  # (batch, seq, d_model)
    if not mistake.get("use_W_o", True):
        return merged
    return W_o(merged) if mistake.get("bias", True) else merged @ W_o.weight.T


@exercise_checker("Exercise 5.2: the whole multi-head attention forward")
def check_mha_forward(fn: Callable[..., torch.Tensor]) -> str | None:
    """Check ``fn(x, W_q, W_k, W_v, W_o, num_heads) -> (batch, seq, d_model)``: project, split, attend, merge, W_o.

    ``W_q`` ... ``W_o`` are ``nn.Linear(d_model, d_model)`` modules; no mask, no dropout. The reference is
    :class:`MultiHeadAttention` with the same weights. Prints a pass, a hint naming the step that went wrong, or
    "not yet" for the stub.
    """
    g = torch.Generator().manual_seed(506)
    for batch, seq, d_model, num_heads in ((2, 5, 12, 3), (1, 7, 8, 2)):
        x = torch.randn(batch, seq, d_model, generator=g)
        W_q, W_k, W_v, W_o = (_random_linear(d_model, d_model, g) for _ in range(4))
        with torch.no_grad():
            expected = _mha_forward_variant(x, W_q, W_k, W_v, W_o, num_heads)
            try:
                with _describe_case(f"x of shape {tuple(x.shape)} and num_heads={num_heads}"):
                    got = _tensor_answer(_call_student(fn, x.clone(), W_q, W_k, W_v, W_o, num_heads))
            except RuntimeError as exc:
                if "view size is not compatible" in str(exc):
                    return _VIEW_HINT
                raise
        hint = _mha_shape_hint(got, expected, num_heads)
        if hint:
            return hint
        if _close(got, expected):
            continue
        with torch.no_grad():
            for mistake, why in _MHA_MISTAKES:
                if _close(got, _mha_forward_variant(x, W_q, W_k, W_v, W_o, num_heads, **mistake)):
                    return why
        diff = float((got.double() - expected.double()).abs().max())
        return (f"right shape, wrong values (largest difference {diff:.3g}): go through the steps against the "
                "notebook: Q, K, V = W_q(x), W_k(x), W_v(x); split; scores Q Kᵀ / √head_dim; softmax over the last "
                "dim; weights @ V; merge (transpose(1, 2), then reshape); W_o")
    return None


def _mha_shape_hint(got: object, expected: torch.Tensor, num_heads: int) -> str | None:
    """A hint unless ``got`` is a tensor of the output's shape ``(batch, seq, d_model)``."""
    if isinstance(got, tuple):
        return "return only the output tensor (batch, seq, d_model), not a tuple"
    if not isinstance(got, torch.Tensor):
        return f"return a torch.Tensor, got {type(got).__name__}"
    batch, seq, d_model = expected.shape
    if tuple(got.shape) == (batch, num_heads, seq, d_model // num_heads):
        return (f"your output has shape {tuple(got.shape)} = (batch, heads, seq, head_dim): merge the heads "
                "(transpose(1, 2), reshape to (batch, seq, d_model)) and apply W_o")
    return _shape_hint("your output", got, expected.shape, "(batch, seq, d_model)")
