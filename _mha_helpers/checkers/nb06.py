"""The exercise checkers of notebook 06 (exploring heads): hidden cases, a reference, and a hint for each common mistake."""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Integral

import torch

from ..common import valid_head_counts
from ..maths.attention import causal_mask
from ..widgets.head_explorer import attention_entropy, previous_token_share
from .core import (
    _call_student,
    _close,
    _describe_case,
    _shape_hint,
    _tensor_answer,
    _values,
    _watching_calls,
    exercise_checker,
)


def _is_whole(value: object) -> bool:
    """An int in any reasonable form (Python or NumPy), not a bool."""
    return isinstance(value, Integral) and not isinstance(value, bool)


@exercise_checker("Exercise 6.1: head_dim for every valid head count")
def check_head_dims(fn: Callable[[int], dict]) -> str | None:
    """Check ``fn(d_model) -> {num_heads: head_dim}`` for every valid head count of ``d_model`` (keys and values
    may be Python or NumPy ints), found without calling ``mh.valid_head_counts``."""
    for d_model in (12, 16, 7, 1, 30):
        with _describe_case(f"d_model={d_model}"), _watching_calls(valid_head_counts) as called:
            got = _call_student(fn, d_model)
        if called:
            return ("your function calls mh.valid_head_counts: the exercise asks you to find the divisors yourself, "
                    "e.g. with range(1, d_model + 1) and d_model % h == 0")
        want = {h: d_model // h for h in valid_head_counts(d_model)}
        if isinstance(got, (list, tuple)) and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in got):
            return f"fn({d_model}) returned a {type(got).__name__} of pairs: wrap it in dict(...) to get {{num_heads: head_dim}}"
        if not isinstance(got, dict):
            return f"fn({d_model}) should return a dict {{num_heads: head_dim}}, got {type(got).__name__}"
        not_ints = [h for h in got if not _is_whole(h)]
        if not_ints:
            h = not_ints[0]
            if isinstance(h, float) and h.is_integer():
                return (f"fn({d_model}) has the float key {h!r}: head counts are whole numbers; build the keys from "
                        f"range(...) (ints), not from a division")
            return f"fn({d_model}) has the key {h!r} ({type(h).__name__}): the keys are head counts, ints such as 1, 2, 3"
        bad = sorted(int(h) for h in got if int(h) not in want)
        if bad:
            return (f"fn({d_model}) has num_heads={bad[0]}, which does not divide d_model={d_model}; "
                    f"only the divisors are valid: {list(want)}")
        keys = {int(h) for h in got}
        missing = [h for h in want if h not in keys]
        if missing:
            return (f"fn({d_model}) leaves out num_heads={missing[0]}: every divisor of d_model is a valid head count "
                    f"(1 and d_model itself included), so expected the keys {list(want)}")
        for h, value in got.items():
            h = int(h)
            if not _is_whole(value):
                if isinstance(value, float) or type(value).__name__.startswith("float"):
                    return (f"fn({d_model})[{h}] is the float {float(value)!r}; head_dim is a whole number of "
                            f"features: use d_model // num_heads")
                return f"fn({d_model})[{h}] is a {type(value).__name__}; head_dim is an int, d_model // num_heads"
            if int(value) != want[h]:
                hint = " (that is num_heads * d_model?)" if int(value) == h * d_model else ""
                return f"fn({d_model})[{h}] = {int(value)}, expected head_dim = d_model // num_heads = {want[h]}{hint}"
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
             torch.eye(5).expand(2, 5, 5).clone(), torch.full((2, 4, 4), 0.25),
             torch.softmax(torch.randn(3, 4, 7, generator=g) * 2.0, dim=-1)]  # L != S: the axes are told apart
    for weights in cases:
        heads, L, S = weights.shape
        want = attention_entropy(weights)  # (heads,)
        with _describe_case(f"weights of shape {tuple(weights.shape)}"):
            got = _tensor_answer(_call_student(fn, weights.clone()))
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (heads, L):
            return (f"your result has shape {tuple(got.shape)}: one entropy per query row; average the rows "
                    f"(over dim -1 of your result) to get one number per head, shape ({heads},)")
        hint = _shape_hint("your result", got, (heads,), "(heads,)", f"for weights of shape {tuple(weights.shape)}")
        if hint:
            return hint
        if bool(torch.isnan(got.double()).any()):
            return ("your result contains NaN: a weight of 0 (a causal mask makes many) gives 0 * log(0) = 0 * -inf "
                    "= NaN; count 0·log 0 as 0, e.g. with torch.special.xlogy(p, p)")
        if _close(got, want):
            continue
        plogp = torch.special.xlogy(weights, weights) / math.log(2)  # (heads, L, S), in bits
        wrong = [
            (want * math.log(2), "these are nats (natural log); this series measures entropy in bits: use torch.log2, "
                                 "or divide by math.log(2)"),
            (want * math.log(2) / math.log(10), "these are log10 units; entropy in bits uses log2 (torch.log2)"),
            (-want, "the sign is flipped: entropy is -sum(p * log2(p)), which is never negative"),
            (want * L, "you summed the entropies of the query rows; take their mean instead"),
            (-plogp.sum(dim=-2).mean(dim=-1), "you summed over the wrong axis: each ROW (one query, dim=-1) is a "
                                              "distribution over the keys; sum p·log2 p over dim=-1, then average"),
            (attention_entropy(weights.mean(dim=1, keepdim=True)), "you averaged the rows first and took the entropy "
                                                                  "of the mean row: take each row's entropy, then "
                                                                  "average the entropies"),
        ]
        for value, why in wrong:
            if _close(got, value):
                return why
        return f"for maps of shape {tuple(weights.shape)} expected {_values(want)} (bits per head), got {_values(got)}"
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
        with _describe_case(f"weights of shape {tuple(weights.shape)}"):
            got = _tensor_answer(_call_student(fn, weights.clone()))
        hint = _shape_hint("your result", got, (heads,), "(heads,)", f"for weights of shape {tuple(weights.shape)}")
        if hint:
            if isinstance(got, torch.Tensor) and tuple(got.shape) in {(heads, L - 1), (heads, L)}:
                hint += ": that is one number per query; average them to get one number per head"
            elif isinstance(got, torch.Tensor) and got.numel() == 1:
                hint += ": you averaged over the heads too; keep one number per head"
            return hint
        if _close(got, want):
            continue
        diagonal = weights.diagonal(dim1=-2, dim2=-1)  # (heads, L): each token's attention to itself
        above = weights.diagonal(offset=1, dim1=-2, dim2=-1)  # (heads, L-1): attention to the NEXT token
        if _close(got, diagonal.mean(-1)):
            return ("you measured how much each token attends to ITSELF (the diagonal); the previous token is one "
                    "column to the left: weights[h, i, i-1], i.e. .diagonal(offset=-1, dim1=-2, dim2=-1)")
        if _close(got, above.mean(-1)):
            return ("you measured attention to the NEXT token (above the diagonal, offset=+1); the previous token is "
                    "below it: offset=-1")
        if _close(got, want * (L - 1) / L) or _close(got, (want * (L - 1) + weights[:, 0, -1]) / L):
            return (f"you averaged over all {L} queries, but query 0 has no previous token: average over the "
                    f"{L - 1} queries 1..{L - 1} only")
        if _close(got, want * (L - 1)):
            return "you summed over the queries; take the mean instead"
        return f"for maps of shape {tuple(weights.shape)} expected {_values(want)}, got {_values(got)}"
    return None
