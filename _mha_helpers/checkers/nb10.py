"""The exercise checkers of notebook 10 (attention at inference): hidden cases, a reference, and a hint for each
common mistake."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..maths.attention import causal_mask
from .core import _call_student, _describe_case, _matches, _shape_hint, _tensor_answer, exercise_checker


@exercise_checker("Exercise 10.1: the bottom-right causal mask")
def check_bottom_right_mask(fn: Callable[[int, int], torch.Tensor]) -> str | None:
    """Check ``fn(L, S) -> (L, S)`` bool, True where query i (the last L of S positions) may attend to key j,
    i.e. j <= i + (S - L), as ``torch.nn.attention.bias.causal_lower_right``. Hints name the top-left mask, the
    inverted polarity, swapped axes and an off-by-one diagonal."""
    for L, S in ((3, 7), (1, 5), (4, 4), (2, 9), (5, 6)):
        expected = causal_mask(L, S, align="bottom_right")
        with _describe_case(f"L={L}, S={S}"):
            got = _tensor_answer(_call_student(fn, L, S))
        if not isinstance(got, torch.Tensor):
            return f"return a torch.Tensor, got {type(got).__name__}"
        if got.dtype != torch.bool:
            return (f"return a boolean mask (True = may attend, SDPA's convention), got dtype {got.dtype}; "
                    f"comparisons and .tril() of a bool tensor give bools")
        if tuple(got.shape) == (S, L) and L != S:
            return f"rows and columns swapped: the mask is (L, S) = ({L}, {S}), one row per query, got {tuple(got.shape)}"
        hint = _shape_hint("your mask", got, expected.shape)
        if hint:
            return f"{hint} = (L, S) for L={L}, S={S}"
        if torch.equal(got, expected):
            continue
        if torch.equal(got, ~expected):
            return "the polarity is inverted: here True means MAY attend (F.scaled_dot_product_attention's convention)"
        if torch.equal(got, causal_mask(L, S, align="top_left")):
            return (f"that is the top-left mask (is_causal=True), for L={L}, S={S}: query 0 there sees only key 0, but "
                    f"it is the token at position S - L = {S - L}, so it may see every key up to its own position")
        for shift in (-1, 1):
            if torch.equal(got, torch.ones(L, S, dtype=torch.bool).tril(diagonal=S - L + shift)):
                return (f"off by one (L={L}, S={S}): query i is at position i + S - L and sees its own key, so "
                        f"the diagonal is S - L = {S - L}, not {S - L + shift}")
        return (f"wrong entries for L={L}, S={S}: row i should be True for keys 0..i + S - L "
                f"(e.g. expected {expected.int().tolist()}, got {got.int().tolist()})")
    return None


@exercise_checker("Exercise 10.2: cached attention equal to the full pass")
def check_cached_attention(fn: Callable[..., torch.Tensor]) -> str | None:
    """Check ``fn(q_new, k_all, v_all)``: q_new ``(batch, heads, T, head_dim)`` are the queries of the T newest
    tokens, k_all/v_all ``(batch, heads, S, head_dim)`` the keys and values of all S tokens (the cache plus the new
    ones, the new ones last). The result must be the last T rows of the full causal pass. Hints name the top-left
    ``is_causal``, a missing mask and a wrong scale."""
    g = torch.Generator().manual_seed(1002)
    for batch, heads, T, S, hd in ((1, 2, 1, 6, 4), (2, 3, 3, 8, 4), (1, 1, 4, 4, 8), (2, 2, 2, 9, 2)):
        q_all = torch.randn(batch, heads, S, hd, generator=g)
        k_all = torch.randn(batch, heads, S, hd, generator=g)
        v_all = torch.randn(batch, heads, S, hd, generator=g)
        full = F.scaled_dot_product_attention(q_all, k_all, v_all, is_causal=True)  # (batch, heads, S, hd)
        expected = full[:, :, S - T:]  # the last T rows: the new tokens
        q_new = q_all[:, :, S - T:].clone()
        what = f"T={T} new tokens over S={S} keys"
        with _describe_case(what):
            got = _tensor_answer(_call_student(fn, q_new, k_all.clone(), v_all.clone()))
        hint = _shape_hint("your output", got, expected.shape)
        if hint:
            return f"{hint} = (batch, heads, T, head_dim) for {what}"
        if _matches(got, expected):
            continue
        if T != S and _matches(got, F.scaled_dot_product_attention(q_new, k_all, v_all, is_causal=True)):
            return (f"you used is_causal=True, which is aligned top-left: for {what} the first new query sees only "
                    f"key 0. Pass attn_mask=mh.causal_mask(T, S, align='bottom_right') instead")
        if _matches(got, F.scaled_dot_product_attention(q_new, k_all, v_all)):
            return f"no mask: for {what} the earlier new tokens see the later ones (the future); mask it"
        inverted = ~causal_mask(T, S, align="bottom_right")  # nn.MultiheadAttention's polarity: True = blocked
        if _matches(got, F.scaled_dot_product_attention(q_new, k_all, v_all, attn_mask=inverted)):
            return ("your mask is inverted: F.scaled_dot_product_attention's boolean mask is True where a query MAY "
                    "attend (nn.MultiheadAttention's attn_mask is True where it may NOT)")
        if _matches(got, F.scaled_dot_product_attention(q_new, k_all, v_all, scale=1.0,
                                                         attn_mask=causal_mask(T, S, align="bottom_right"))):
            return "the scores are not scaled: divide by √head_dim (F.scaled_dot_product_attention does by default)"
        return f"right shape, wrong values for {what}: expected the full causal pass's last T rows"
    return None
