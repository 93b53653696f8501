"""The exercise checkers of notebook 06 (exploring heads): hidden cases, a reference, and a hint for each common mistake."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..attention import causal_mask
from ..common import valid_head_counts
from ..head_explorer import attention_entropy, previous_token_share
from .core import _call_student, _shape_hint, exercise_checker


@exercise_checker("Exercise 6.1: head_dim for every valid head count")
def check_head_dims(fn: Callable[[int], dict]) -> str | None:
    """Check ``fn(d_model) -> {num_heads: head_dim}`` for every valid head count of ``d_model``."""
    for d_model in (12, 16, 7, 1, 30):
        got = _call_student(fn, d_model)
        want = {h: d_model // h for h in valid_head_counts(d_model)}
        if not isinstance(got, dict):
            return f"fn({d_model}) should return a dict {{num_heads: head_dim}}, got {type(got).__name__}"
        bad = sorted(h for h in got if not isinstance(h, int) or isinstance(h, bool) or h not in want)
        if bad:
            return (f"fn({d_model}) has num_heads={bad[0]!r}, which does not divide d_model={d_model}; "
                    f"only the divisors are valid: {list(want)}")
        missing = [h for h in want if h not in got]
        if missing:
            return (f"fn({d_model}) leaves out num_heads={missing[0]}: every divisor of d_model is a valid head count "
                    f"(1 and d_model itself included), so expected the keys {list(want)}")
        for h, head_dim in want.items():
            value = got[h]
            if isinstance(value, float):
                return (f"fn({d_model})[{h}] is the float {value!r}; head_dim is a whole number of features: "
                        f"use d_model // num_heads")
            if value != head_dim:
                hint = " (that is num_heads * d_model?)" if value == h * d_model else ""
                return f"fn({d_model})[{h}] = {value!r}, expected head_dim = d_model // num_heads = {head_dim}{hint}"
    return None


def _random_maps(generator: torch.Generator, heads: int, L: int, causal: bool) -> torch.Tensor:
    """Random attention maps ``(heads, L, L)`` whose rows sum to 1 (zeros above the diagonal when ``causal``)."""
    scores = torch.randn(heads, L, L, generator=generator) * 2.0  # (heads, L, L)
    if causal:
        scores = scores.masked_fill(~causal_mask(L), float("-inf"))
    return torch.softmax(scores, dim=-1)


@exercise_checker("Exercise 6.2: the entropy of each head")
def check_head_entropy(fn: Callable[[torch.Tensor], torch.Tensor]) -> str | None:
    """Check ``fn(weights (heads, L, S)) -> (heads,)``: each head's entropy in bits, averaged over its queries."""
    g = torch.Generator().manual_seed(6002)
    cases = [_random_maps(g, 4, 6, causal=False), _random_maps(g, 3, 5, causal=True),
             torch.eye(5).expand(2, 5, 5).clone(), torch.full((2, 4, 4), 0.25)]
    for weights in cases:
        heads, L, _ = weights.shape
        want = attention_entropy(weights)  # (heads,)
        got = _call_student(fn, weights.clone())
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (heads, L):
            return (f"your result has shape {tuple(got.shape)}: one entropy per query row; average the rows "
                    f"(over dim -1 of your result) to get one number per head, shape ({heads},)")
        hint = _shape_hint("your result", got, (heads,))
        if hint:
            return hint
        got = got.detach().float()
        if torch.isnan(got).any():
            return ("your result contains NaN: a weight of 0 (a causal mask makes many) gives 0 * log(0) = 0 * -inf "
                    "= NaN; count 0·log 0 as 0, e.g. with torch.special.xlogy(p, p)")
        if torch.allclose(got, want, atol=1e-4):
            continue
        if torch.allclose(got, want * math.log(2), atol=1e-4):
            return "these are nats (natural log); this series measures entropy in bits: use torch.log2, or divide by math.log(2)"
        if torch.allclose(got, -want, atol=1e-4):
            return "the sign is flipped: entropy is -sum(p * log2(p)), which is never negative"
        if torch.allclose(got, want * L, atol=1e-4):
            return "you summed the entropies of the query rows; take their mean instead"
        return f"for maps of shape {tuple(weights.shape)} expected {want} (bits per head), got {got}"
    return None


@exercise_checker("Exercise 6.3: how much each head looks at the previous token")
def check_previous_token_share(fn: Callable[[torch.Tensor], torch.Tensor]) -> str | None:
    """Check ``fn(weights (heads, L, L)) -> (heads,)``: the mean of ``weights[h, i, i-1]`` over ``i = 1 .. L-1``."""
    g = torch.Generator().manual_seed(6003)
    shift = torch.diag(torch.ones(4), diagonal=-1)  # (5, 5): ones just below the diagonal
    shift[0, 0] = 1.0  # the first token has no previous token: it looks at itself
    cases = [_random_maps(g, 4, 6, causal=False), _random_maps(g, 3, 7, causal=True), shift.expand(2, 5, 5).clone()]
    for weights in cases:
        heads, L, _ = weights.shape
        want = previous_token_share(weights)  # (heads,)
        got = _call_student(fn, weights.clone())
        hint = _shape_hint("your result", got, (heads,))
        if hint:
            if isinstance(got, torch.Tensor) and tuple(got.shape) in {(heads, L - 1), (heads, L)}:
                hint += ": that is one number per query; average them to get one number per head"
            return hint
        got = got.detach().float()
        if torch.allclose(got, want, atol=1e-5):
            continue
        diagonal = weights.diagonal(dim1=-2, dim2=-1)  # (heads, L): each token's attention to itself
        above = weights.diagonal(offset=1, dim1=-2, dim2=-1)  # (heads, L-1): attention to the NEXT token
        if torch.allclose(got, diagonal.mean(-1), atol=1e-5):
            return ("you measured how much each token attends to ITSELF (the diagonal); the previous token is one "
                    "column to the left: weights[h, i, i-1], i.e. .diagonal(offset=-1, dim1=-2, dim2=-1)")
        if torch.allclose(got, above.mean(-1), atol=1e-5):
            return ("you measured attention to the NEXT token (above the diagonal, offset=+1); the previous token is "
                    "below it: offset=-1")
        if torch.allclose(got, want * (L - 1) / L, atol=1e-5) or torch.allclose(
            got, (want * (L - 1) + weights[:, 0, -1]) / L, atol=1e-5
        ):
            return (f"you averaged over all {L} queries, but query 0 has no previous token: average over the "
                    f"{L - 1} queries 1..{L - 1} only")
        if torch.allclose(got, want * (L - 1), atol=1e-5):
            return "you summed over the queries; take the mean instead"
        return f"for maps of shape {tuple(weights.shape)} expected {want}, got {got}"
    return None
