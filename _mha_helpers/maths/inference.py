"""Notebook 10, attention at inference: prefill and decode through a KV cache, causal alignment when the queries are
the last L of S keys, what one generated token costs in bytes and FLOPs, and one mask in the three forms PyTorch takes
(the mask editor widget that shows them is ``widgets/mask_editor.py``).

Builds on notebook 09's :class:`~_mha_helpers.maths.kv_cache.GroupedQuerySelfAttention` and
:class:`~_mha_helpers.maths.kv_cache.KVCache`, which this file only uses.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..validation import (
    check_axes,
    check_bool_tensor,
    check_broadcasts_to,
    check_finite,
    check_float_tensor,
    check_has_values,
    check_instance,
    check_int_list,
    check_layer_input,
    check_positive_int,
)
from .attention import causal_mask
from .kv_cache import GroupedQuerySelfAttention, kv_cache_bytes_per_token

# ---- prefill and decode -------------------------------------------------------------------------------------------


def run_with_cache(
    layer: GroupedQuerySelfAttention, x: torch.Tensor, chunks: Sequence[int]
) -> tuple[torch.Tensor, list[dict[str, int]]]:
    """Feed ``x`` ``(batch, T, d_model)`` to ``layer`` in pieces of ``chunks`` tokens, through one KV cache.

    ``chunks`` are positive ints that add up to T: ``[7, 1, 1, 1]`` is "prefill 7 prompt tokens, then decode 3 one
    at a time"; ``[3, 3, 1, 1, 1, 1]`` is a chunked prefill of 3 + 3 + 1 tokens then 3 decode steps. Each call gives
    the layer only the NEW tokens; their keys and values join the cache, their queries attend to everything cached.

    Returns ``(outputs, steps)``: ``outputs`` ``(batch, T, d_model)`` (equal to ``layer(x)``), and one dict per call
    with ``"new"`` (L, the queries), ``"past"`` (tokens already cached) and ``"keys"`` (S = past + L).
    """
    check_instance("layer", layer, GroupedQuerySelfAttention, "a GroupedQuerySelfAttention (notebook 09)")
    check_layer_input("x", x, layer.d_model, layer.W_q.weight)
    batch, T, _ = x.shape
    check_int_list("chunks", chunks, minimum=1, allow_empty=False,
                   what=f"a non-empty list of positive ints adding up to T={T}")
    if sum(chunks) != T:
        raise ValueError(f"chunks {list(chunks)} add up to {sum(chunks)}, but x has T={T} tokens; make them add up")
    cache = layer.new_cache(batch, T)
    outputs, steps, start = [], [], 0
    for size in chunks:
        steps.append({"new": size, "past": start, "keys": start + size})
        outputs.append(layer(x[:, start:start + size], cache=cache))  # (batch, size, d_model)
        start += size
    return torch.cat(outputs, dim=1), steps  # (batch, T, d_model)


def query_positions_seen(mask: torch.Tensor) -> list[list[int]]:
    """For a boolean ``(L, S)`` mask (True = may attend), the key positions each query row may see."""
    check_bool_tensor("mask", mask, ranks=(2,), layout="(L, S)")
    check_has_values("mask", mask)
    return [torch.nonzero(row).flatten().tolist() for row in mask]


#: The largest L and S :func:`plot_causal_alignment` draws (it writes a mark in every cell).
PLOT_MAX_LEN = 32


def plot_causal_alignment(seq_len: int, key_len: int, ax: Axes | None = None) -> Figure:
    """Both causal alignments of an ``(L, S)`` = ``(seq_len, key_len)`` mask side by side; returns the Figure.

    Left: top-left (``is_causal=True``), query i sees keys 0..i. Right: bottom-right (``causal_lower_right``),
    query i sees keys 0..i + S - L. Rows are labelled with the position each query has in the sequence when the
    queries are the last L tokens (the decoding case).
    """
    for name, value in (("seq_len", seq_len), ("key_len", key_len)):
        check_positive_int(name, value)
        if value > PLOT_MAX_LEN:
            raise ValueError(f"{name} must be at most {PLOT_MAX_LEN}: the figure marks every (query, key) cell, "
                             f"got {name}={value}")
    check_axes("ax", ax)
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    L, S = seq_len, key_len
    fig, axes = plt.subplots(1, 2, figsize=(2.2 + 0.9 * S, 0.9 + 0.55 * L))
    cmap = ListedColormap(["#e9ecef", "#2a9d8f"])
    past = S - L
    for ax, align, title in ((axes[0], "top_left", "top-left: is_causal=True"),
                             (axes[1], "bottom_right", "bottom-right: causal_lower_right")):
        mask = causal_mask(L, S, align=align)  # (L, S), True = may attend
        ax.imshow(mask.numpy(), cmap=cmap, vmin=0, vmax=1, aspect="equal")
        for i in range(L):
            for j in range(S):
                ax.text(j, i, "✓" if mask[i, j] else "", ha="center", va="center", color="white", fontsize=9)
        ax.set_xticks(range(S), [str(j) for j in range(S)])
        ax.set_yticks(range(L), [f"q{i} (pos {past + i})" if past >= 0 else f"q{i}" for i in range(L)])
        ax.set_xlabel("key position j")
        ax.set_title(f"{title}\n{int(mask.sum())} of {L * S} allowed", fontsize=10)
    axes[0].set_ylabel("query (its position in the sequence)")
    fig.suptitle(f"L = {L} queries over S = {S} keys", fontsize=11)
    fig.tight_layout()
    return fig


# ---- what one generated token costs ------------------------------------------------------------------------------


def decode_cost(
    num_layers: int,
    d_model: int,
    num_heads: int,
    num_kv_heads: int,
    context_len: int,
    *,
    new_tokens: int = 1,
    batch: int = 1,
    d_ff: int | None = None,
    bytes_per_value: int = 2,
) -> dict[str, float]:
    """Bytes read and FLOPs done by one forward step of a stack of notebook-07 blocks with GQA attention.

    The step processes ``new_tokens`` tokens per sequence (1 = decoding one token; the prompt length = prefill) for
    ``batch`` sequences, whose queries attend to ``context_len`` cached + new positions. Per layer the weights are
    ``W_q, W_o: d_model x d_model``, ``W_k, W_v: d_model x num_kv_heads·head_dim`` and an MLP of two
    ``d_model x d_ff`` matrices (``d_ff = 4 · d_model`` by default); biases, norms and embeddings are left out.

    Counted (one multiply-add = 2 FLOPs): every weight is read once per step (shared by all tokens of the batch);
    each sequence's KV cache (``context_len`` positions) is read once; FLOPs are ``2 · params`` per token plus the
    attention's ``2 · 2 · num_heads · head_dim · context_len`` per token and layer (QKᵀ and weights·V).

    Returns a dict: ``"params"``, ``"weight bytes"``, ``"kv bytes"``, ``"bytes"`` (their sum), ``"flops"`` and
    ``"intensity"`` = FLOPs per byte read (the roofline model's arithmetic intensity).
    """
    for name, value in (("num_layers", num_layers), ("d_model", d_model), ("num_heads", num_heads),
                        ("num_kv_heads", num_kv_heads), ("context_len", context_len), ("new_tokens", new_tokens),
                        ("batch", batch), ("bytes_per_value", bytes_per_value)):
        check_positive_int(name, value)
    d_ff = 4 * d_model if d_ff is None else d_ff
    check_positive_int("d_ff", d_ff)
    if d_model % num_heads or num_heads % num_kv_heads:
        raise ValueError(f"need d_model % num_heads == 0 and num_heads % num_kv_heads == 0, got d_model={d_model}, "
                         f"num_heads={num_heads}, num_kv_heads={num_kv_heads}")
    if new_tokens > context_len:
        raise ValueError(f"new_tokens={new_tokens} cannot exceed context_len={context_len} (the new tokens are part "
                         f"of the context they attend to)")
    head_dim = d_model // num_heads
    per_layer = 2 * d_model * d_model + 2 * d_model * num_kv_heads * head_dim + 2 * d_model * d_ff
    params = num_layers * per_layer
    tokens = batch * new_tokens
    weight_bytes = params * bytes_per_value
    kv_bytes = batch * context_len * kv_cache_bytes_per_token(num_layers, num_kv_heads, head_dim, bytes_per_value)
    attention_flops = num_layers * 4 * num_heads * head_dim * context_len * tokens  # upper bound for prefill rows
    flops = 2 * params * tokens + attention_flops
    total = weight_bytes + kv_bytes
    return {"params": params, "weight bytes": weight_bytes, "kv bytes": kv_bytes, "bytes": total,
            "flops": flops, "intensity": flops / total}


# ---- one mask, three forms ----------------------------------------------------------------------------------------


def mask_forms(mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """One mask in the three forms PyTorch's functions take, from a boolean ``(L, S)`` mask (True = may attend).

    ``"sdpa bool"``: True = may attend (``F.scaled_dot_product_attention``'s ``attn_mask``);
    ``"nn.MultiheadAttention bool"``: True = blocked, the opposite (its ``attn_mask``);
    ``"additive float"``: 0.0 where allowed, -inf where blocked (added to the scores; both functions accept it).
    """
    check_bool_tensor("mask", mask, layout="(True = may attend)")
    check_has_values("mask", mask)
    additive = torch.zeros(mask.shape, device=mask.device).masked_fill(~mask, float("-inf"))  # (L, S): 0 or -inf
    return {"sdpa bool": mask.clone(), "nn.MultiheadAttention bool": ~mask, "additive float": additive}


def fully_masked_rows(mask: torch.Tensor) -> list[int]:
    """The query rows of a boolean ``(L, S)`` mask (True = may attend) that may attend to no key at all."""
    check_bool_tensor("mask", mask, ranks=(2,), layout="(L, S), True = may attend")
    check_has_values("mask", mask)
    return torch.nonzero(~mask.any(dim=-1)).flatten().tolist()


def naive_masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """softmax(scores with -inf where ``mask`` is False), with no special case: a fully masked row is NaN (0/0).

    ``scores`` ``(..., L, S)`` floats; ``mask`` booleans (True = may attend) that broadcast to them.
    """
    check_float_tensor("scores", scores)
    check_finite("scores", scores, allow_minus_inf=True)
    check_bool_tensor("mask", mask, layout="(True = may attend)")
    check_has_values("mask", mask)
    if mask.device != scores.device:
        raise ValueError(f"mask is on {mask.device} but scores are on {scores.device}; move it with "
                         f"mask.to('{scores.device}')")
    check_broadcasts_to("mask", mask, scores.shape, "the scores' shape")
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
