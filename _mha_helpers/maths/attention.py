"""The reference attention of notebooks 02-04: scaled dot-product attention with every step in plain sight, the
causal and padding masks, and splitting d_model into heads and merging them back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..validation import (
    broadcast_shape,
    check_bool,
    check_broadcasts_to,
    check_choice,
    check_device,
    check_divisible,
    check_fits,
    check_float_tensor,
    check_leading_dims_broadcast,
    check_mask_dtype,
    check_positive_int,
    check_probability,
    check_qkv,
    check_scale,
    materialize_causal_bias,
)


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
    _check_sdpa_inputs(query, key, value, attn_mask, is_causal, scale, dropout_p)
    d_k = query.shape[-1]
    scale = 1.0 / math.sqrt(d_k) if scale is None else float(scale)
    dtype = query.dtype  # half precision is computed in float32 (see the docstring), then converted back
    if dtype in (torch.float16, torch.bfloat16):
        query, key, value = query.float(), key.float(), value.float()
    attn_mask = _prepare_mask(attn_mask, is_causal, query, key)  # bool or additive, broadcasts to (..., L, S); or None

    scores = (query @ key.transpose(-2, -1)) * scale  # (..., L, d_k) @ (..., d_k, S) -> (..., L, S)
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        scores = scores.masked_fill(~attn_mask, float("-inf"))  # True = may attend, so block where False
    elif attn_mask is not None:
        scores = scores + attn_mask.to(scores.dtype)  # additive: 0 keeps a score, -inf removes it
    weights = _softmax_keeping_dead_rows_zero(scores)  # (..., L, S); each row with a visible key sums to 1
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    output = weights @ value  # (..., L, S) @ (..., S, d_v) -> (..., L, d_v)
    return output.to(dtype), weights.to(dtype)


def _check_sdpa_inputs(query, key, value, attn_mask, is_causal, scale, dropout_p) -> None:
    """Every argument of :func:`scaled_dot_product_attention` that a caller can get wrong, with a message that says
    what would work (the mask's dtype and shape are checked by :func:`_prepare_mask`)."""
    check_qkv(query, key, value)
    check_leading_dims_broadcast(query, key, value)
    check_bool("is_causal", is_causal)
    if is_causal and attn_mask is not None:
        raise ValueError(
            "pass either attn_mask or is_causal=True, not both (as F.scaled_dot_product_attention); for a causal mask "
            "combined with another one, pass attn_mask=causal_mask(L, S) & your_mask"
        )
    check_scale("scale", scale)
    check_probability("dropout_p", dropout_p)


def _prepare_mask(attn_mask, is_causal: bool, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor | None:
    """The mask to apply to the scores ``(..., L, S)``: the causal mask when ``is_causal``, a CausalBias as its boolean
    ``(L, S)`` tensor, any other mask checked (bool or float, on the inputs' device, broadcasting to the scores)."""
    L, S = query.shape[-2], key.shape[-2]
    if is_causal:
        return causal_mask(L, S, device=query.device)  # (L, S), True = may attend
    attn_mask = materialize_causal_bias("attn_mask", attn_mask, L, S, query.device)  # CausalBias -> (L, S) bool
    if attn_mask is None:
        return None
    check_mask_dtype("attn_mask", attn_mask, query.dtype, query.device)
    scores_shape = broadcast_shape(query.shape[:-2], key.shape[:-2]) + (L, S)  # (..., L, S)
    check_broadcasts_to("attn_mask", attn_mask, scores_shape, "the scores' shape",
                        f" (..., L, S); a 2-D (L, S) = ({L}, {S}) mask always does")  # never growing the scores
    return attn_mask


def _softmax_keeping_dead_rows_zero(scores: torch.Tensor) -> torch.Tensor:
    """softmax over the last dim ``(..., L, S)``, except that a row whose every score is -inf gets zeros, not NaN.

    softmax([-inf, ..., -inf]) = 0/0 = NaN: such a row's scores are replaced by 0 (any finite number would do)
    before the softmax, and its weights zeroed after it.
    """
    dead = torch.isneginf(scores).all(dim=-1, keepdim=True)  # (..., L, 1)
    if not bool(dead.any()):
        return torch.softmax(scores, dim=-1)
    weights = torch.softmax(scores.masked_fill(dead, 0.0), dim=-1)  # (..., L, S)
    return weights.masked_fill(dead, 0.0)


#: The two ways a causal mask can sit in an (L, S) grid when L != S, and what each means.
_ALIGNMENTS = {
    "top_left": "torch's is_causal: query i sees keys j <= i",
    "bottom_right": "causal_lower_right: query i sees keys j <= i + key_len - seq_len",
}


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
    check_choice("align", align, _ALIGNMENTS)
    check_device("device", device)
    check_fits({"seq_len": seq_len, "key_len": key_len}, 2 * seq_len * key_len, "the mask",
               "the notebooks use up to a few thousand positions")
    offset = key_len - seq_len if align == "bottom_right" else 0  # how many keys come before query 0
    return torch.ones(seq_len, key_len, dtype=torch.bool, device=device).tril(diagonal=offset)  # (L, S)


def padding_mask(lengths: Sequence[int] | torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """The key padding mask for sentences of the given lengths, in ``nn.MultiheadAttention``'s convention.

    Returns a boolean ``(batch, max_len)`` tensor that is **True at padding positions** (the keys no query may
    look at), as ``key_padding_mask`` expects. ``max_len`` defaults to the longest length.
    """
    lengths = _lengths_tensor(lengths)  # (batch,) ints >= 0
    longest = int(lengths.max())
    if max_len is None:
        if longest == 0:
            raise ValueError(f"every length is 0 (lengths={lengths.tolist()}); pass max_len, the padded length")
        max_len = longest
    check_positive_int("max_len", max_len)
    check_fits({"max_len": max_len}, 9 * len(lengths) * max_len, "the mask", "the notebooks pad to a few hundred")
    if max_len < longest:
        raise ValueError(
            f"max_len={max_len} is shorter than the longest sentence ({longest}); use max_len >= {longest} or None"
        )
    return torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]  # (batch, max_len)


def _lengths_tensor(lengths: object) -> torch.Tensor:
    """:func:`padding_mask`'s ``lengths`` (a list or a tensor of ints) as a 1-D integer tensor, checked."""
    what = "a non-empty 1-D list of ints, e.g. [3, 1, 2]"
    if isinstance(lengths, (str, bytes)) or not isinstance(lengths, (Sequence, torch.Tensor)):
        raise TypeError(f"lengths must be {what}, got {lengths!r}")
    try:
        tensor = torch.as_tensor(lengths)
    except (TypeError, ValueError, RuntimeError):  # e.g. ['a']
        raise TypeError(f"lengths must be {what}, got {lengths!r}") from None
    if tensor.dim() != 1 or tensor.numel() == 0:  # a wrong shape, not a wrong type (torch.as_tensor([]) is float)
        raise ValueError(f"lengths must be {what}, got {tensor.tolist()!r}")
    if tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool:
        raise TypeError(f"lengths must be {what}, got {tensor.tolist()!r}")
    if bool((tensor < 0).any()):
        raise ValueError(f"lengths must be >= 0 (a number of real tokens), got {tensor.tolist()}")
    return tensor


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
