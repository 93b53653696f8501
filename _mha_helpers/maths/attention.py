"""The reference attention of notebooks 02-04: scaled dot-product attention with every step in plain sight, the
causal and padding masks, and splitting d_model into heads and merging them back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..validation import (
    check_bool,
    check_divisible,
    check_float_tensor,
    check_mask_dtype,
    check_positive_int,
    materialize_causal_bias,
)


def _check_qkv(query: object, key: object, value: object) -> None:
    """Checks every attention function shares: query ``(..., L, d_k)``, key ``(..., S, d_k)``, value ``(..., S, d_v)``,
    all floating point, of one dtype and on one device."""
    for name, t in (("query", query), ("key", key), ("value", value)):
        check_float_tensor(name, t)
        if t.dim() < 2:
            raise ValueError(f"{name} must have at least 2 dims (..., seq, features), got shape {tuple(t.shape)}")
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(
            f"query and key must have the same last dim d_k to be compared by a dot product, "
            f"got query {tuple(query.shape)} and key {tuple(key.shape)}"
        )
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(
            f"key and value must have the same length S (one value per key), "
            f"got key {tuple(key.shape)} and value {tuple(value.shape)}"
        )
    for name, t in (("key", key), ("value", value)):
        if t.dtype != query.dtype:
            raise TypeError(
                f"{name} has dtype {t.dtype} but query has {query.dtype}; convert it with {name}.to({query.dtype})"
            )
        if t.device != query.device:
            raise ValueError(f"{name} is on {t.device} but query is on {query.device}; move it with {name}.to(query.device)")


def _check_scale(scale: object) -> None:
    """``scale`` is None (meaning 1/√d_k) or a positive, finite number."""
    if scale is None:
        return
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(
            f"scale must be a positive float or None (meaning 1/sqrt(d_k)), got {scale!r} of type {type(scale).__name__}"
        )
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive finite number or None (meaning 1/sqrt(d_k)), got scale={scale!r}")


def scaled_dot_product_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    *,
    dropout_p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(Q Kᵀ / √d_k + mask) V, written out step by step; returns ``(output, weights)``.

    Shapes follow ``torch.nn.functional.scaled_dot_product_attention``:
    query ``(..., L, d_k)``, key ``(..., S, d_k)``, value ``(..., S, d_v)`` (``...`` is e.g. ``(batch, heads)``)
    -> output ``(..., L, d_v)`` and weights ``(..., L, S)``.

    Mask conventions are also F.scaled_dot_product_attention's: a **boolean** ``attn_mask`` is True where a query
    MAY attend (the opposite of ``nn.MultiheadAttention``!); a **float** mask is added to the scores. It broadcasts
    to ``(..., L, S)``. ``is_causal=True`` lets query ``i`` see keys ``0..i`` (top-left aligned when L != S), and may
    not be combined with ``attn_mask``. ``scale`` defaults to ``1/√d_k``. A ``CausalBias`` from
    ``torch.nn.attention.bias.causal_upper_left/causal_lower_right`` is accepted as PyTorch accepts it (as the
    boolean mask it stands for). float16/bfloat16 inputs are computed in float32 and returned in their own dtype,
    as PyTorch's CPU kernels do: ``q @ kᵀ`` in half precision overflows (65504) long before the scale would help.

    A query row whose keys are all masked gets all-zero weights and a zero output, as F.scaled_dot_product_attention
    gives in torch 2.13 (a plain softmax over only ``-inf`` gives NaN). ``dropout_p`` drops weights after the
    softmax (and rescales the rest by ``1/(1-p)``); pass it only in training. Differences from PyTorch's function:
    it also returns the weights, and bad arguments raise a ValueError/TypeError that says what would work.
    """
    _check_qkv(query, key, value)
    try:  # the leading dims (e.g. batch, heads) must match or broadcast, as in a batched matrix multiply
        torch.broadcast_shapes(query.shape[:-2], key.shape[:-2], value.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"query, key and value must have the same leading dims (..., e.g. batch and heads) or dims of size 1, "
            f"got query {tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}"
        ) from None
    check_bool("is_causal", is_causal)
    if is_causal and attn_mask is not None:
        raise ValueError(
            "pass either attn_mask or is_causal=True, not both (as F.scaled_dot_product_attention); for a causal mask "
            "combined with another one, pass attn_mask=causal_mask(L, S) & your_mask"
        )
    _check_scale(scale)
    if isinstance(dropout_p, bool) or not isinstance(dropout_p, (int, float)):
        raise TypeError(f"dropout_p must be a float in [0, 1), got {dropout_p!r} of type {type(dropout_p).__name__}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(
            f"dropout_p must be in [0, 1) (a probability; 1 would drop everything), got dropout_p={dropout_p!r}"
        )

    L, S, d_k = query.shape[-2], key.shape[-2], query.shape[-1]
    scale = 1.0 / math.sqrt(d_k) if scale is None else float(scale)
    attn_mask = materialize_causal_bias("attn_mask", attn_mask, L, S, query.device)  # CausalBias -> (L, S) bool
    dtype = query.dtype  # half precision is computed in float32 (see the docstring), then converted back
    if dtype in (torch.float16, torch.bfloat16):
        query, key, value = query.float(), key.float(), value.float()

    scores = (query @ key.transpose(-2, -1)) * scale  # (..., L, d_k) @ (..., d_k, S) -> (..., L, S)

    if is_causal:
        attn_mask = causal_mask(L, S, device=query.device)  # (L, S), True = may attend
    if attn_mask is not None:
        check_mask_dtype("attn_mask", attn_mask, query.dtype, query.device)
        try:  # the mask must broadcast TO the scores' shape, never grow it
            fits = torch.broadcast_shapes(attn_mask.shape, scores.shape) == scores.shape
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(
                f"attn_mask of shape {tuple(attn_mask.shape)} does not broadcast to the scores' shape "
                f"{tuple(scores.shape)} (..., L, S); a 2-D (L, S) = ({L}, {S}) mask always does"
            )
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))  # True = may attend, so block where False
        else:
            scores = scores + attn_mask.to(scores.dtype)  # additive: 0 keeps a score, -inf removes it

    # A row with every key blocked would be softmax([-inf, ..., -inf]) = 0/0 = NaN. Give it zeros instead:
    # replace its scores by 0 (any finite number would do), take the softmax, then zero the row.
    dead = torch.isneginf(scores).all(dim=-1, keepdim=True)  # (..., L, 1)
    any_dead = bool(dead.any())
    if any_dead:
        scores = scores.masked_fill(dead, 0.0)
    weights = torch.softmax(scores, dim=-1)  # (..., L, S); each live row sums to 1
    if any_dead:
        weights = weights.masked_fill(dead, 0.0)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    output = weights @ value  # (..., L, S) @ (..., S, d_v) -> (..., L, d_v)
    return output.to(dtype), weights.to(dtype)


def causal_mask(
    seq_len: int,
    key_len: int | None = None,
    device: torch.device | str | None = None,
    *,
    align: str = "top_left",
) -> torch.Tensor:
    """The causal ("look only at the past") mask in F.scaled_dot_product_attention's convention.

    Returns a boolean ``(seq_len, key_len)`` = ``(L, S)`` tensor (``key_len`` defaults to ``seq_len``) that is
    **True where query i MAY attend to key j**. For ``nn.MultiheadAttention`` (True = blocked) pass ``~causal_mask(n)``.

    ``align`` only matters when L != S:

    * ``"top_left"`` (the default, torch's ``is_causal=True`` and ``causal_upper_left``): query i sees keys j <= i,
      as if the queries were the FIRST L of the S positions;
    * ``"bottom_right"`` (``torch.nn.attention.bias.causal_lower_right``): query i sees keys j <= i + (S - L), as
      if the queries were the LAST L of the S positions, which is what decoding with a KV cache and chunked prefill
      need (the cache holds S - L earlier tokens). With L > S the first L - S queries see no key at all.
    """
    check_positive_int("seq_len", seq_len)
    key_len = seq_len if key_len is None else key_len
    check_positive_int("key_len", key_len)
    alignments = ("top_left", "bottom_right")
    if not isinstance(align, str):
        raise TypeError(f"align must be one of {alignments} (a str), got {align!r} of type {type(align).__name__}")
    if align not in alignments:
        raise ValueError(
            f"align must be 'top_left' (torch's is_causal: query i sees keys j <= i) or 'bottom_right' "
            f"(causal_lower_right: query i sees keys j <= i + key_len - seq_len), got align={align!r}"
        )
    offset = key_len - seq_len if align == "bottom_right" else 0  # how many keys come before query 0
    return torch.ones(seq_len, key_len, dtype=torch.bool, device=device).tril(diagonal=offset)  # (L, S)


def padding_mask(lengths: Sequence[int] | torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """The key padding mask for sentences of the given lengths, in ``nn.MultiheadAttention``'s convention.

    Returns a boolean ``(batch, max_len)`` tensor that is **True at padding positions** (the keys no query may
    look at), as ``key_padding_mask`` expects. ``max_len`` defaults to the longest length.
    """
    given = lengths
    try:
        lengths = torch.as_tensor(lengths)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"lengths must be a non-empty 1-D list of ints, e.g. [3, 1, 2], got {given!r}") from None
    if lengths.dim() != 1 or lengths.numel() == 0 or lengths.dtype.is_floating_point or lengths.dtype.is_complex or (
        lengths.dtype == torch.bool
    ):
        raise TypeError(f"lengths must be a non-empty 1-D list of ints, e.g. [3, 1, 2], got {lengths.tolist()!r}")
    if bool((lengths < 0).any()):
        raise ValueError(f"lengths must be >= 0 (a number of real tokens), got {lengths.tolist()}")
    longest = int(lengths.max())
    if max_len is None:
        if longest == 0:
            raise ValueError(f"every length is 0 (lengths={lengths.tolist()}); pass max_len, the padded length")
        max_len = longest
    check_positive_int("max_len", max_len)
    if max_len < longest:
        raise ValueError(
            f"max_len={max_len} is shorter than the longest sentence ({longest}); use max_len >= {longest} or None"
        )
    return torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]  # (batch, max_len)


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Cut the feature dimension into ``num_heads`` heads: ``(batch, seq, d_model) -> (batch, heads, seq, head_dim)``.

    ``view`` first splits d_model into (heads, head_dim) *in place of* the last dim, so each token keeps its own
    features; only then does ``transpose`` bring the heads forward. Reshaping straight to the target shape would
    mix features of different tokens (notebook 04 shows it).
    """
    check_float_tensor("x", x, ranks=(3,), layout="(batch, seq, d_model)")
    check_positive_int("num_heads", num_heads)
    batch, seq, d_model = x.shape
    check_divisible(d_model, num_heads, d_name="d_model")
    head_dim = d_model // num_heads
    x = x.view(batch, seq, num_heads, head_dim)  # (batch, seq, d_model) -> (batch, seq, heads, head_dim)
    return x.transpose(1, 2)  # -> (batch, heads, seq, head_dim)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`split_heads`: ``(batch, heads, seq, head_dim) -> (batch, seq, heads * head_dim)``."""
    check_float_tensor("x", x, ranks=(4,), layout="(batch, heads, seq, head_dim)")
    batch, num_heads, seq, head_dim = x.shape
    x = x.transpose(1, 2)  # (batch, heads, seq, head_dim) -> (batch, seq, heads, head_dim), not contiguous
    return x.reshape(batch, seq, num_heads * head_dim)  # copies into (batch, seq, d_model)
