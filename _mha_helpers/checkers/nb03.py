"""The exercise checkers of notebook 03 (masking): hidden cases, a reference, and a hint for each common mistake."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..maths.attention import causal_mask, padding_mask, scaled_dot_product_attention
from .core import _call_student, _close, _describe_case, _pair_hint, _shape_hint, _tensor_answer, exercise_checker


def _mask_hint(got: object, shape: tuple[int, ...], meaning: str, context: str) -> str | None:
    """A hint unless ``got`` is a boolean tensor of ``shape`` (masks are compared exactly, so they must be torch)."""
    hint = _shape_hint("your mask", got, shape, meaning, context)
    if hint and isinstance(got, torch.Tensor) and got.dim() == len(shape) + 1 and got.shape[0] == 1:
        return f"{hint}: drop the extra leading dim of size 1"
    return hint


@exercise_checker("Exercise 3.1: causal_mask")
def check_causal_mask(fn: Callable[[int], torch.Tensor]) -> str | None:
    """Check ``fn(seq_len) -> mask``: a boolean ``(seq_len, seq_len)`` tensor, True where query i MAY attend to
    key j (j <= i), as :func:`causal_mask` and ``F.scaled_dot_product_attention`` want it.

    Prints a pass, a specific hint (wrong way round, upper vs lower triangle, diagonal missing or one too many, a
    float or integer mask) or "not yet"; returns True on a pass.
    """
    for n in (5, 8, 1):
        want = causal_mask(n)  # (n, n), True = may attend
        with _describe_case(f"seq_len={n}"):
            got = _tensor_answer(_call_student(fn, n))
        hint = _mask_hint(got, (n, n), "(seq_len, seq_len)", f"for seq_len={n}")
        if hint:
            return hint
        if got.dtype != torch.bool:
            return _not_boolean_hint(got, want)
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
        if torch.equal(got, torch.ones(n, n, dtype=torch.bool).tril(1)):
            return "one diagonal too many: query i may see keys j <= i, not j <= i + 1 (use .tril(), diagonal=0)"
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
        passed = kpm.clone()
        with _describe_case(f"a key_padding_mask of shape {tuple(kpm.shape)}"):
            got = _tensor_answer(_call_student(fn, passed))
        if not isinstance(got, torch.Tensor):
            return f"return a torch.Tensor of shape (batch, 1, S) = {tuple(want.shape)}, got {type(got).__name__}"
        if got.dtype != torch.bool:
            return _not_boolean_hint(got, want)
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
        if shape == (batch, 1, 1, S):
            return (f"your mask has shape {shape} = (batch, 1, 1, S), the shape for 4-D (batch, heads, L, S) scores; "
                    f"here the scores are (batch, L, S): one new dim, (batch, 1, S) = {tuple(want.shape)}")
        if shape == (batch, S, S):
            return (f"your mask has shape {shape} = (batch, S, S): that assumes as many queries as keys; keep the "
                    f"query dim of size 1, (batch, 1, S) = {tuple(want.shape)}, so it broadcasts over any L")
        hint = _shape_hint("your mask", got, want.shape, "(batch, 1, S)", "so that it broadcasts against the "
                           "scores (batch, L, S)")
        if hint:
            return hint
        if torch.equal(got, want):
            continue
        if torch.equal(got, ~want):
            return (
                "your mask is the wrong way round: key_padding_mask is True at padding (blocked), but "
                "F.scaled_dot_product_attention's boolean mask is True where a query MAY attend; negate it with ~"
            )
        return f"right shape, wrong values: for lengths {lengths} key j of sentence b is allowed iff j < lengths[b]"
    return None


def _not_boolean_hint(got: torch.Tensor, want: torch.Tensor) -> str:
    """Why a mask that is not boolean is not the answer, for the boolean mask ``want`` (True = may attend): a 0/1
    float mask would be added to the scores and block nothing; a 0/-inf one would work when added, but the
    exercise asks for the boolean one."""
    same_shape = tuple(got.shape) == tuple(want.shape)
    if got.is_floating_point() and same_shape and torch.equal(got, want.to(got.dtype)):
        return ("your mask is a float tensor of 1s and 0s: F.scaled_dot_product_attention ADDS a float mask to the "
                "scores, so it would block nothing; return a boolean tensor (dtype=torch.bool), True = may attend")
    if got.is_floating_point() and same_shape and torch.equal(torch.isneginf(got), ~want) and \
            bool((got[want] == 0).all()):
        return ("you returned an additive float mask (0 = allowed, -inf = blocked): that works when added to the "
                "scores, but this exercise asks for the boolean one, True where a query may attend")
    if same_shape and not got.is_floating_point() and not got.is_complex() and torch.equal(got.long(), want.long()):
        return (f"your mask holds the right 1s and 0s but as {got.dtype}: return a boolean tensor, e.g. with "
                "dtype=torch.bool or .bool()")
    return f"return a boolean tensor (dtype=torch.bool), True where a query may attend; got dtype {got.dtype}"


def _masked_attention_cases(g: torch.Generator) -> list[tuple[torch.Tensor, int, int, str]]:
    """``(mask, d_k, d_v, description)``: a padded causal batch, a (batch, 1, S) padding mask as the exercise
    promises (it broadcasts over the queries), and (batch, heads) dims with a random mask."""
    L = 5
    real = torch.arange(L)[None, :] >= torch.tensor([0, 2])[:, None]  # (batch=2, S=L), True = a real token
    causal_padded = causal_mask(L)[None] & real[:, None, :]  # (2, L, L): sentence 1's queries 0, 1 see nothing
    keys_only = ~padding_mask([6, 3, 1], 6)[:, None, :]  # (batch=3, 1, S=6), True = may attend
    keys_only[2] = False  # a sentence that is all padding: every query of it sees no key
    random_mask = torch.rand(2, 3, 4, 6, generator=g) > 0.4  # (batch, heads, L, S)
    random_mask[:, :, :, 0] = True
    random_mask[1, 2, 3] = False  # one query with no key at all
    return [
        (causal_padded, 8, 3, "a causal mask over a left-padded batch, (batch, L, S)"),
        (keys_only, 4, 3, "a padding mask of shape (batch, 1, S)"),
        (random_mask, 4, 2, "a (batch, heads, L, S) mask"),
    ]


def _masked_softmax_variant(scores: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """Typical wrong ways to mask, ``(..., L, S) -> (..., L, S)`` weights."""
    if how == "after softmax":
        return torch.softmax(scores, dim=-1) * mask
    raise ValueError(how)  # pragma: no cover - a typo in this file


def _gradients_are_finite(fn: Callable, query, key, value, mask) -> bool | None:
    """Run ``fn`` once more with inputs that need gradients and backpropagate a fixed gradient through both results.
    True / False: the input gradients are all finite or not; None when that cannot be judged (no graph, or the
    function refuses inputs that require grad, e.g. because it changes them in place)."""
    g = torch.Generator().manual_seed(3033)
    leaves = [t.clone().requires_grad_(True) for t in (query, key, value)]
    try:
        with torch.enable_grad():
            output, weights = _call_student(fn, *leaves, mask.clone())
            if not (isinstance(output, torch.Tensor) and isinstance(weights, torch.Tensor)):
                return None
            loss = sum((t * torch.randn(t.shape, generator=g, dtype=t.dtype)).sum()
                       for t in (output, weights) if t.requires_grad and t.is_floating_point())
            if not isinstance(loss, torch.Tensor):
                return None
            grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    except Exception:  # noqa: BLE001 - the first, gradient-free call already judged the answer; this one only adds
        return None
    return all(gr is None or bool(torch.isfinite(gr).all()) for gr in grads)


@exercise_checker("Exercise 3.3: masked attention without NaN")
def check_masked_attention(fn: Callable) -> str | None:
    """Check ``fn(query, key, value, mask) -> (output, weights)``: softmax(Q Kᵀ/√d_k) V with a boolean ``mask``
    (broadcastable to ``(..., L, S)``, e.g. ``(batch, 1, S)``; True = MAY attend); a query whose keys are all masked
    gets zero weights and a zero output, never NaN (as :func:`scaled_dot_product_attention`), and its gradients are
    finite too.

    Prints a pass, a specific hint (NaN in fully masked rows, NaN gradients, uniform weights from -1e9, mask the
    wrong way round, masking after the softmax, missing scale) or "not yet"; returns True on a pass.
    """
    g = torch.Generator().manual_seed(303)
    for mask, d_k, d_v, what in _masked_attention_cases(g):
        lead, S = mask.shape[:-2], mask.shape[-1]
        L = 5 if mask.shape[-2] == 1 else mask.shape[-2]
        query = torch.randn(*lead, L, d_k, generator=g) * 1.5
        key = torch.randn(*lead, S, d_k, generator=g) * 1.5
        value = torch.randn(*lead, S, d_v, generator=g)
        want_out, want_w = scaled_dot_product_attention(query, key, value, attn_mask=mask)
        with _describe_case(what):
            got = _call_student(fn, query.clone(), key.clone(), value.clone(), mask.clone())
        hint = _pair_hint(got, "output, weights", (want_out.shape, want_w.shape))
        if hint:
            return hint
        output, weights = _tensor_answer(got)
        full = mask.expand(want_w.shape)  # (..., L, S): the mask every score sees
        hint = (_shape_hint("weights", weights, want_w.shape, "(..., L, S)", f"for {what}")
                or _shape_hint("output", output, want_out.shape, "(..., L, d_v)", f"for {what}")
                or _masked_nan_hint(weights, output, full, what)
                or _masked_values_hint(weights, output, (query, key, value, mask), (want_w, want_out)))
        if hint:
            return hint
        if bool((~full.any(dim=-1)).any()) and _gradients_are_finite(fn, query, key, value, mask) is False:
            return _NAN_GRADIENTS
    return None


_NAN_GRADIENTS = (
    "the outputs are right, but the GRADIENTS are NaN: a row of only -inf has a NaN softmax, whose backward pass is "
    "NaN even if you replace the weights afterwards (nan_to_num, torch.where). When the -inf entered by addition "
    "(scores + a 0/-inf mask), the backward of + passes that NaN on to query and key; masked_fill(~mask, "
    "float('-inf')) or torch.where on the scores gives the masked scores a zero gradient and stops it. Fill the "
    "scores that way, or give fully masked rows finite scores before the softmax (scores.masked_fill(dead, 0.0)), "
    "then zero their weights"
)


def _masked_nan_hint(weights: torch.Tensor, output: torch.Tensor, full: torch.Tensor, what: str) -> str | None:
    """Where the student's weights or output hold NaN, why; None when they hold none. ``full`` ``(..., L, S)``."""
    dead = ~full.any(dim=-1)  # (..., L): queries with no key to look at
    everything = full.all(dim=-1)  # (..., L): queries that may look at every key
    nan_rows = torch.isnan(weights.double()).any(dim=-1) | torch.isnan(output.double()).any(dim=-1)  # (..., L)
    if not bool(nan_rows.any()):
        return None
    if bool((nan_rows & dead).any()):
        idx = tuple(int(t) for t in (nan_rows & dead).nonzero()[0])
        return (
            f"NaN in a row where every key is masked (query {idx[-1]} at batch index {idx[:-1]}, for "
            f"{what}): softmax over only -inf is 0/0 = NaN. Find such rows (e.g. "
            "~mask.any(dim=-1, keepdim=True)) and give them zero weights and a zero output"
        )
    if bool((nan_rows <= everything).all()):
        return (
            "NaN in a row where every key is ALLOWED: is your mask the wrong way round? True means MAY "
            "attend here (F.scaled_dot_product_attention's convention), so block where the mask is False"
        )
    return f"NaN in your weights or output for rows that do have keys to attend to (for {what})"


def _masked_values_hint(weights: torch.Tensor, output: torch.Tensor, inputs: tuple, expected: tuple) -> str | None:
    """A hint for finite weights/output that differ from the reference (each common mistake by its own hint)."""
    query, key, value, mask = inputs
    want_w, want_out = expected
    full = mask.expand(want_w.shape)  # (..., L, S)
    w, S, d_k = weights.double(), full.shape[-1], query.shape[-1]
    dead, everything = ~full.any(dim=-1), full.all(dim=-1)  # (..., L) each
    blocked = w.masked_fill(full, 0.0).sum(dim=-1)  # (..., L): weight put on masked keys
    some = ~dead & ~everything  # rows with both allowed and blocked keys
    if bool(some.any()) and bool((blocked[some] > 0.99).all()):
        return (
            "your mask is the wrong way round: your weights go to the MASKED keys. True means MAY attend here "
            "(F.scaled_dot_product_attention's convention; nn.MultiheadAttention's is the opposite)"
        )
    if bool(dead.any()) and _close(weights[dead], torch.full_like(w[dead], 1.0 / S)):
        return (
            f"a fully masked row got uniform weights 1/S = {1 / S:.3g} instead of zeros: with -1e9 (or "
            "finfo.min) every score of that row is the same number, so softmax spreads evenly over keys it must "
            "not see. Give those rows zero weights"
        )
    scores = query @ key.transpose(-2, -1) / d_k**0.5  # (..., L, S)
    if _close(weights, _masked_softmax_variant(scores, full, "after softmax")):
        return ("you zeroed the masked weights AFTER the softmax, so the others no longer sum to 1: mask the "
                "scores before the softmax (masked_fill(~mask, float('-inf')))")
    if bool((w[dead].abs() > 1e-6).any()):
        return "a row whose keys are all masked must get zero weights (and a zero output)"
    if bool((blocked > 1e-6).any()):
        return "some weight goes to masked keys: set their scores to -inf before the softmax"
    if _close(weights, scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=1.0)[1]):
        return "missing the 1/√d_k scale: divide the scores by query.shape[-1] ** 0.5 before masking and softmax"
    if not _close(weights, want_w):
        return "masked keys get 0, but the other weights differ from softmax(Q Kᵀ / √d_k) over the allowed keys"
    if not _close(output, want_out):
        if bool((output.double()[dead].abs() > 1e-6).any()):
            return "the weights are right, but a fully masked row's output should be zeros"
        return "the weights are right but the output is not weights @ value"
    return None
