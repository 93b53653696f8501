"""The exercise checkers of notebook 12 (heads that compose): hidden cases, a reference, a hint for each common
mistake."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..experiments.induction import repeated_sequences, scores_from_maps
from .core import _as_int, _call_student, _describe_case, _matches, _shape_hint, _tensor_answer, exercise_checker


def _cases(seed: int):
    """Random attention maps ``(batch, heads, L, L)`` (causal, rows sum to 1) and repeated sequences ``(batch, L)``."""
    g = torch.Generator().manual_seed(seed)
    for batch, heads, L in ((3, 2, 16), (2, 4, 20)):
        scores = torch.randn(batch, heads, L, L, generator=g) * 2
        scores = scores.masked_fill(~torch.ones(L, L, dtype=torch.bool).tril(), float("-inf"))  # causal
        yield torch.softmax(scores, dim=-1), repeated_sequences(batch, L, 20, generator=g)


@exercise_checker("Exercise 12.1: the previous-token score")
def check_previous_token_score(fn: Callable[[torch.Tensor], torch.Tensor]) -> str | None:
    """Check ``fn(weights (batch, heads, L, L)) -> (heads,)``: the mean weight query ``i`` puts on key ``i - 1``,
    over the batch and the queries ``i = 1 .. L-1``."""
    for weights, tokens in _cases(1201):
        expected = scores_from_maps(weights[:, None], tokens, "previous")[0]  # (1, heads) -> (heads,)
        with _describe_case(f"weights of shape {tuple(weights.shape)}"):
            got = _tensor_answer(_call_student(fn, weights.clone()))
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (weights.shape[0],) != tuple(expected.shape):
            return "your result has one number per sequence (batch,): average over the batch too, keep the heads"
        hint = _shape_hint("your result", got, expected.shape)
        if hint:
            return f"{hint} = (heads,): one score per head"
        if _matches(got, expected):
            continue
        i = torch.arange(weights.shape[-1])
        if _matches(got, weights[:, :, i, i].mean(dim=(0, 2))):
            return "you averaged the diagonal (key i, the token itself); the previous token is key i - 1"
        if _matches(got, weights[:, :, i[1:], i[1:] - 1].sum(dim=2).mean(dim=0)):
            return "you summed over the queries: take the MEAN over i = 1 .. L-1 (and over the batch)"
        return "right shape, wrong values: average weights[b, h, i, i - 1] over b and i = 1 .. L-1, for each head h"
    return None


def _induction_per_sequence(weights: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """The induction score averaged per sequence first (over its queries that have a target), then over the
    sequences that have any: ``(batch, heads, L, L), (batch, L) -> (heads,)``."""
    L = tokens.shape[1]
    prev = torch.cat([torch.full_like(tokens[:, :1], -1), tokens[:, :-1]], dim=1)  # (batch, L): token before key j
    target = (prev[:, None, :] == tokens[:, :, None]) & torch.ones(L, L, dtype=torch.bool).tril()  # (batch, L, L)
    has = target.any(-1)  # (batch, L): queries with something to find
    share = (weights * target[:, None]).sum(-1)  # (batch, heads, L)
    count = has.sum(-1)  # (batch,)
    per_sequence = (share * has[:, None]).sum(-1) / count.clamp_min(1)[:, None]  # (batch, heads)
    return per_sequence[count > 0].mean(dim=0)  # (heads,)


@exercise_checker("Exercise 12.2: the induction score")
def check_induction_score(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> str | None:
    """Check ``fn(weights (batch, heads, L, L), tokens (batch, L)) -> (heads,)`` against :func:`induction_scores`'
    definition: for each query whose token appeared before, the total weight on the keys ``j <= i`` with
    ``tokens[j - 1] == tokens[i]``, averaged over those queries and the batch. Both readings of that average pass:
    pooled over all such queries of the batch (:func:`induction_scores`), or per sequence, then over the batch."""
    for weights, tokens in _cases(1202):
        expected = scores_from_maps(weights[:, None], tokens, "induction")[0]  # (heads,)
        with _describe_case(f"weights of shape {tuple(weights.shape)} and tokens of shape {tuple(tokens.shape)}"):
            got = _tensor_answer(_call_student(fn, weights.clone(), tokens.clone()))
        hint = _shape_hint("your result", got, expected.shape)
        if hint:
            return f"{hint} = (heads,): one score per head"
        if _matches(got, expected) or _matches(got, _induction_per_sequence(weights, tokens)):
            continue
        L = tokens.shape[1]
        same = (tokens[:, :, None] == tokens[:, None, :]) & torch.ones(L, L, dtype=torch.bool).tril(-1)  # j < i
        has = same.any(-1)  # (batch, L)
        duplicate = (weights * same[:, None]).sum(-1)  # weight on the EARLIER COPY of the token itself
        if _matches(got, (duplicate * has[:, None]).sum(dim=(0, 2)) / has.sum()):
            return ("you measured the weight on keys whose OWN token equals the query's (the earlier copy); an "
                    "induction head looks one further, where the PREVIOUS token equals it: tokens[j - 1] == tokens[i]")
        prev = torch.cat([torch.full_like(tokens[:, :1], -1), tokens[:, :-1]], dim=1)  # (batch, L)
        target = (prev[:, None, :] == tokens[:, :, None]) & torch.ones(L, L, dtype=torch.bool).tril()
        share = (weights * target[:, None]).sum(-1)  # (batch, heads, L)
        if _matches(got, share.mean(dim=(0, 2))):
            return ("you averaged over every query; queries whose token is new have nothing to find: average only "
                    "over the queries that have at least one such key")
        return ("right shape, wrong values: for each query i sum weights[b, h, i, j] over the keys j <= i with "
                "tokens[b, j - 1] == tokens[b, i]; average over the queries that have such a key, and the batch")
    return None


@exercise_checker("Exercise 12.3: which layer-0 head breaks copying?")
def check_head_to_switch_off(fn: Callable[[torch.Tensor], int]) -> str | None:
    """Check ``fn(previous_scores (layers, heads)) -> int``: the layer-0 head whose switching off should break
    copying, i.e. the layer-0 head with the highest previous-token score (hidden tables of scores)."""
    g = torch.Generator().manual_seed(1203)
    for layers, heads in ((2, 4), (2, 8), (3, 2)):
        scores = torch.rand(layers, heads, generator=g) * 0.3  # (layers, heads): mostly low
        best = int(torch.randint(0, heads, (1,), generator=g))
        scores[0, best] = 0.9  # one clear previous-token head in layer 0
        scores[1, (best + 1) % heads] = 0.95  # a decoy: a higher score in layer 1
        with _describe_case(f"scores of shape {tuple(scores.shape)}"):
            raw = _call_student(fn, scores.clone())
        got = _as_int(raw)
        if got is None:
            return f"return one head number (an int, e.g. int(scores[0].argmax())), got {type(raw).__name__}"
        if got == best:
            continue
        if got == int(scores.argmax()) % heads and got != best:
            return ("you took the highest score in the whole table, which is in layer 1; the previous-token head "
                    "the induction heads depend on is in layer 0: look at scores[0] only")
        if got == int(scores[0].argmin()):
            return "you picked the LOWEST layer-0 score: the head to switch off is the one that looks back most"
        return "the head to switch off is the layer-0 head with the highest previous-token score, scores[0].argmax()"
    return None
