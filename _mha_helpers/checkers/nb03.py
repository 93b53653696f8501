"""The exercise checkers of notebook 03 (masking): hidden cases, a reference, and a hint for each common mistake."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..attention import causal_mask, padding_mask, scaled_dot_product_attention
from .core import _call_student, _matches, _shape_hint, exercise_checker
from .nb02 import _pair_hint


@exercise_checker("Exercise 3.1: causal_mask")
def check_causal_mask(fn: Callable[[int], torch.Tensor]) -> str | None:
    """Check ``fn(seq_len) -> mask``: a boolean ``(seq_len, seq_len)`` tensor, True where query i MAY attend to
    key j (j <= i), as :func:`causal_mask` and ``F.scaled_dot_product_attention`` want it.

    Prints a pass, a specific hint (wrong way round, upper vs lower triangle, diagonal missing, a float mask) or
    "not yet"; returns True on a pass.
    """
    for n in (5, 8, 1):
        want = causal_mask(n)  # (n, n), True = may attend
        got = _call_student(fn, n)
        hint = _shape_hint("your mask", got, (n, n))
        if hint:
            return hint + f" = (seq_len, seq_len) for seq_len={n}"
        if got.dtype != torch.bool:
            if got.is_floating_point() and torch.equal(got.detach(), want.to(got.dtype)):
                return (
                    "your mask is a float tensor of 1s and 0s: F.scaled_dot_product_attention ADDS a float mask to "
                    "the scores, so it would block nothing; return a boolean tensor (dtype=torch.bool)"
                )
            if got.is_floating_point() and torch.equal(torch.isneginf(got.detach()), ~want):
                return (
                    "you returned an additive float mask (0 = allowed, -inf = blocked): that works when added to "
                    "the scores, but this exercise asks for the boolean one, True where a query may attend"
                )
            return f"return a boolean tensor (dtype=torch.bool), got dtype {got.dtype}"
        if torch.equal(got, want):
            continue
        if torch.equal(got, ~want):
            return (
                "your mask is the wrong way round: True should mean MAY attend for F.scaled_dot_product_attention "
                "(nn.MultiheadAttention reads True as blocked, the opposite); negate it with ~"
            )
        if torch.equal(got, want.T):
            return (
                "upper vs lower triangle: your mask lets each token see the FUTURE; row i (the query) may see the "
                "columns j <= i, which is the lower triangle (torch.tril)"
            )
        if torch.equal(got, want.tril(-1)):
            return (
                "the diagonal is missing: each token may attend to itself (j <= i, not j < i); without it the first "
                "token has nothing at all to look at"
            )
        i, j = (int(t) for t in (got != want).nonzero()[0])
        return (
            f"your mask differs from the causal mask in {int((got != want).sum())} places, e.g. query {i}, key {j} "
            f"is {bool(got[i, j])} but should be {bool(want[i, j])} (True where j <= i)"
        )
    return None


@exercise_checker("Exercise 3.2: key_padding_mask -> attn_mask")
def check_padding_to_attn_mask(fn: Callable[[torch.Tensor], torch.Tensor]) -> str | None:
    """Check ``fn(key_padding_mask) -> attn_mask``: turn nn.MultiheadAttention's ``key_padding_mask``
    ``(batch, S)`` (True = padding, blocked) into a boolean mask for ``F.scaled_dot_product_attention`` that
    broadcasts against scores ``(batch, L, S)``: shape ``(batch, 1, S)``, True where a query MAY attend.

    Prints a pass, a specific hint (wrong way round, masking queries instead of keys, a shape that does not
    broadcast per sentence) or "not yet"; returns True on a pass.
    """
    for lengths, S in (([5, 2, 3], 5), ([4, 6, 1, 2], 6)):
        kpm = padding_mask(lengths, S)  # (batch, S), True = padding
        batch = len(lengths)
        want = ~kpm[:, None, :]  # (batch, S) -> (batch, 1, S), True = may attend
        got = _call_student(fn, kpm.clone())
        if not isinstance(got, torch.Tensor):
            return f"return a torch.Tensor, got {type(got).__name__}"
        if got.dtype != torch.bool:
            return f"return a boolean tensor (a float mask would be ADDED to the scores), got dtype {got.dtype}"
        shape = tuple(got.shape)
        if shape == (batch, S):
            return (
                f"your mask has shape {shape} = (batch, S): it lines up with the LAST two dims of the scores "
                "(L, S), so sentence b's mask would land on query b. Add a query dim, mask[:, None, :] -> "
                f"(batch, 1, S) = {tuple(want.shape)}, which broadcasts over every query"
            )
        if shape == (batch, S, 1):
            return (
                f"your mask has shape {shape} = (batch, S, 1): that blocks QUERIES (rows); padding must block KEYS "
                f"(columns): use mask[:, None, :] -> (batch, 1, S) = {tuple(want.shape)}"
            )
        hint = _shape_hint("your mask", got, want.shape)
        if hint:
            return hint + " = (batch, 1, S), so that it broadcasts against the scores (batch, L, S)"
        if torch.equal(got, want):
            continue
        if torch.equal(got, ~want):
            return (
                "your mask is the wrong way round: key_padding_mask is True at padding (blocked), but "
                "F.scaled_dot_product_attention's boolean mask is True where a query MAY attend; negate it with ~"
            )
        return f"right shape, wrong values: for lengths {lengths} key j of sentence b is allowed iff j < lengths[b]"
    return None


@exercise_checker("Exercise 3.3: masked attention without NaN")
def check_masked_attention(fn: Callable) -> str | None:
    """Check ``fn(query, key, value, mask) -> (output, weights)``: softmax(Q Kᵀ/√d_k) V with a boolean ``mask``
    (broadcastable to ``(..., L, S)``, True = MAY attend); a query whose keys are all masked gets zero weights and a
    zero output, never NaN (as :func:`scaled_dot_product_attention`).

    Prints a pass, a specific hint (NaN in fully masked rows, uniform weights from -1e9, mask the wrong way round,
    missing scale) or "not yet"; returns True on a pass.
    """
    g = torch.Generator().manual_seed(303)
    # Case 1: a left-padded batch under a causal mask; sentence 1 has 2 pads at the start, so its queries 0 and 1
    # (both padding) see no key at all. Case 2: (batch, heads) dims and a random mask with one dead row.
    L = 5
    real = torch.arange(L)[None, :] >= torch.tensor([0, 2])[:, None]  # (batch=2, S=L), True = a real token
    mask1 = causal_mask(L)[None] & real[:, None, :]  # (2, L, L), True = may attend
    mask2 = torch.rand(2, 3, 4, 6, generator=g) > 0.4  # (batch, heads, L, S)
    mask2[:, :, :, 0] = True
    mask2[1, 2, 3] = False  # one query with no key at all
    for mask, d_k, d_v in ((mask1, 8, 3), (mask2, 4, 2)):
        L, S = mask.shape[-2], mask.shape[-1]
        query = torch.randn(*mask.shape[:-2], L, d_k, generator=g) * 1.5
        key = torch.randn(*mask.shape[:-2], S, d_k, generator=g) * 1.5
        value = torch.randn(*mask.shape[:-2], S, d_v, generator=g)
        want_out, want_w = scaled_dot_product_attention(query, key, value, attn_mask=mask)
        got = _call_student(fn, query.clone(), key.clone(), value.clone(), mask.clone())
        hint = _pair_hint(got, "output, weights")
        if hint:
            return hint
        output, weights = got
        hint = _shape_hint("weights", weights, want_w.shape) or _shape_hint("output", output, want_out.shape)
        if hint:
            return hint
        w = weights.detach().double()
        dead = ~mask.any(dim=-1)  # (..., L): queries with no key to look at
        full = mask.all(dim=-1)  # (..., L): queries that may look at every key
        nan_rows = torch.isnan(w).any(dim=-1) | torch.isnan(output.detach()).any(dim=-1)  # (..., L)
        if bool(nan_rows.any()):
            if bool((nan_rows & dead).any()):
                idx = tuple(int(t) for t in (nan_rows & dead).nonzero()[0])
                return (
                    f"NaN in a row where every key is masked (query {idx[-1]} at batch index {idx[:-1]}): softmax over "
                    "only -inf is 0/0 = NaN. "
                    "Find such rows (e.g. ~mask.any(dim=-1, keepdim=True)) and give them zero weights and a zero output"
                )
            if bool((nan_rows <= full).all()):
                return (
                    "NaN in a row where every key is ALLOWED: is your mask the wrong way round? True means MAY "
                    "attend here (F.scaled_dot_product_attention's convention), so block where the mask is False"
                )
            return "NaN in your weights or output for rows that do have keys to attend to"
        blocked = w.masked_fill(mask, 0.0).sum(dim=-1)  # (..., L): weight put on masked keys
        some = ~dead & ~full  # rows with both allowed and blocked keys
        if bool(some.any()) and bool((blocked[some] > 0.99).all()):
            return (
                "your mask is the wrong way round: your weights go to the MASKED keys. True means MAY attend here "
                "(F.scaled_dot_product_attention's convention; nn.MultiheadAttention's is the opposite)"
            )
        if bool(dead.any()) and bool(torch.allclose(w[dead], torch.full_like(w[dead], 1.0 / S), atol=1e-4)):
            return (
                f"a fully masked row got uniform weights 1/S = {1 / S:.3g} instead of zeros: with -1e9 (or "
                "finfo.min) every score of that row is the same number, so softmax spreads evenly over keys it must "
                "not see. Give those rows zero weights"
            )
        if bool((w[dead].abs() > 1e-6).any()):
            return "a row whose keys are all masked must get zero weights (and a zero output)"
        if bool((blocked > 1e-6).any()):
            return "some weight goes to masked keys: set their scores to -inf before the softmax"
        if _matches(weights, scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=1.0)[1]):
            return "missing the 1/√d_k scale: divide the scores by math.sqrt(d_k) before masking and softmax"
        if not _matches(weights, want_w):
            return "masked keys get 0, but the other weights differ from softmax(Q Kᵀ / √d_k) over the allowed keys"
        if not _matches(output, want_out):
            if bool((output.detach()[dead].abs() > 1e-6).any()):
                return "the weights are right, but a fully masked row's output should be zeros"
            return "the weights are right but the output is not weights @ value"
    return None
