"""Notebook 11, sliding-window attention: each query sees only the last ``window`` keys, so time and memory grow with
the window instead of the sequence.

Position convention: query i and key j are positions i and j, as in :func:`causal_mask`'s default (top-left). For
queries that are the LAST L of S positions (decoding with a cache), take the last L rows of the square version, e.g.
``sliding_window_mask(S, window)[-L:]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..validation import check_finite, check_fits, check_float_tensor, check_positive_int, check_qkv

# ---- sliding-window attention -----------------------------------------------------------------------------------


def sliding_window_mask(seq_len: int, window: int, key_len: int | None = None) -> torch.Tensor:
    """The band mask of sliding-window attention, ``(seq_len, key_len)`` bool, **True = may attend** (SDPA's
    convention; pass ``~mask`` to ``nn.MultiheadAttention``).

    Query i sees the ``window`` keys ending at i: keys j with ``i - window < j <= i`` (fewer near the start).
    ``window >= seq_len`` gives the plain causal mask; ``window = 1`` lets each token see only itself. ``key_len``
    defaults to ``seq_len``; positions are as in :func:`causal_mask`'s default (query i is position i).
    """
    check_positive_int("seq_len", seq_len)
    check_positive_int("window", window)
    key_len = seq_len if key_len is None else key_len
    check_positive_int("key_len", key_len)
    check_fits({"seq_len": seq_len, "key_len": key_len}, 9 * seq_len * key_len, "the mask",
               "notebook 11 uses up to a few thousand positions")
    window = min(window, seq_len)  # a longer window sees no more keys (and 2**70 would not fit in a tensor)
    offset = torch.arange(seq_len)[:, None] - torch.arange(key_len)[None, :]  # (L, S): i - j
    return (offset >= 0) & (offset < window)  # (L, S): the past `window` keys, this one included


def sliding_window_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, window: int,
                             block_size: int = 64) -> torch.Tensor:
    """Causal sliding-window self-attention that computes only the band: time and memory grow with ``window``.

    ``query``, ``key``, ``value`` ``(..., seq, head_dim)`` (the same ``seq``) -> ``(..., seq, head_dim)``, equal to
    ``F.scaled_dot_product_attention(query, key, value, attn_mask=sliding_window_mask(seq, window))``. Queries are
    taken ``block_size`` at a time; a block starting at i0 needs only keys ``i0 - window + 1 .. i0 + block_size - 1``,
    so each block multiplies ``block_size × (window + block_size - 1)`` scores instead of ``block_size × seq``.
    """
    for name, t in (("query", query), ("key", key), ("value", value)):
        check_float_tensor(name, t, layout="(..., seq, head_dim)")
        if t.dim() < 2:
            raise ValueError(f"{name} must be (..., seq, head_dim), got shape {tuple(t.shape)}")
    if key.shape != query.shape or value.shape[:-1] != query.shape[:-1]:
        raise ValueError(f"query, key and value must share (..., seq): self-attention; got {tuple(query.shape)}, "
                         f"{tuple(key.shape)}, {tuple(value.shape)}")
    check_qkv(query, key, value)  # one dtype, one device
    for name, t in (("query", query), ("key", key), ("value", value)):
        if 0 in t.shape[-2:]:
            raise ValueError(f"{name} has an empty dim (shape {tuple(t.shape)}): seq and head_dim must be at least 1")
        check_finite(name, t)
    check_positive_int("window", window)
    check_positive_int("block_size", block_size)
    seq = query.shape[-2]
    window = min(window, seq)  # a longer window sees no more keys
    outputs = []
    for i0 in range(0, seq, block_size):
        i1 = min(i0 + block_size, seq)
        j0 = max(0, i0 - window + 1)  # the first key any query of this block may see
        offset = torch.arange(i0, i1, device=query.device)[:, None] - torch.arange(j0, i1, device=query.device)
        band = (offset >= 0) & (offset < window)  # (bq, i1 - j0): this block's rows of sliding_window_mask
        outputs.append(F.scaled_dot_product_attention(query[..., i0:i1, :], key[..., j0:i1, :], value[..., j0:i1, :],
                                                      attn_mask=band))  # (..., bq, head_dim)
    return torch.cat(outputs, dim=-2)  # (..., seq, head_dim)
