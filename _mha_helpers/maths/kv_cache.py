"""Notebook 09, attention that costs less cache: grouped-query / multi-query attention, and the KV cache of
step-by-step decoding.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..common import valid_head_counts
from ..validation import (
    check_bool,
    check_divisible,
    check_factory_kwargs,
    check_finite,
    check_fits,
    check_float_tensor,
    check_instance,
    check_layer_input,
    check_mask_dtype,
    check_positive_int,
    check_qkv,
    check_scale,
    materialize_causal_bias,
)
from .attention import causal_mask, merge_heads, split_heads


def _check_gqa_heads(num_heads: int, num_kv_heads: int) -> None:
    if num_kv_heads < 1 or num_heads < 1:
        raise ValueError(
            f"need at least one query head and one K/V head, got num_heads={num_heads} and "
            f"num_kv_heads={num_kv_heads} (dim 1 of query and of key/value)"
        )
    if num_heads % num_kv_heads != 0:
        counts = ", ".join(str(h) for h in valid_head_counts(num_heads))
        raise ValueError(
            f"num_heads={num_heads} is not divisible by num_kv_heads={num_kv_heads}: every K/V head must serve the "
            f"same number of query heads; valid kv-head counts: {counts}"
        )


def grouped_query_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """Attention where groups of query heads share one K/V head (GQA; MQA when there is one K/V head).

    query ``(batch, num_heads, L, head_dim)``; key, value ``(batch, num_kv_heads, S, head_dim)`` with
    ``num_heads % num_kv_heads == 0`` -> output ``(batch, num_heads, L, head_dim)``. Query head h reads K/V head
    ``h // (num_heads // num_kv_heads)``: the grouping of ``key.repeat_interleave(num_heads // num_kv_heads, dim=1)``
    and of ``F.scaled_dot_product_attention(..., enable_gqa=True)``. K and V are never copied: the query heads of a
    group are stacked along the sequence axis and attend to their shared K/V head in one call.

    ``attn_mask``: an ``(L, S)`` mask in F.scaled_dot_product_attention's convention (bool True = may attend, or
    float added to the scores; a ``CausalBias`` from ``torch.nn.attention.bias`` too); ``is_causal`` is top-left
    aligned as there; pass one of them at most. ``scale`` defaults to 1/√head_dim.
    """
    _check_gqa_inputs(query, key, value, attn_mask, is_causal, scale)
    attn_mask = _gqa_mask(attn_mask, is_causal, query.shape[2], key.shape[2], query)  # (L, S) or None
    return _grouped_attention(query, key, value, attn_mask, scale)


def _grouped_attention(query, key, value, attn_mask, scale=None) -> torch.Tensor:
    """:func:`grouped_query_attention` on checked inputs, ``attn_mask`` an ``(L, S)`` mask or None."""
    batch, num_heads, L, head_dim = query.shape
    num_kv_heads = key.shape[1]
    group = num_heads // num_kv_heads
    q = query.reshape(batch, num_kv_heads, group * L, head_dim)  # (batch, H, L, hd) -> (batch, H_kv, group·L, hd)
    if attn_mask is not None:
        attn_mask = attn_mask.repeat(group, 1)  # (L, S) -> (group·L, S): the same rows for every head of a group
    out = F.scaled_dot_product_attention(q, key, value, attn_mask=attn_mask, scale=scale)  # (batch, H_kv, group·L, hd)
    return out.reshape(batch, num_heads, L, head_dim)  # (batch, H_kv, group·L, hd) -> (batch, H, L, hd)


def _check_gqa_inputs(query, key, value, attn_mask, is_causal, scale) -> None:
    """query ``(batch, H, L, hd)``, key and value ``(batch, H_kv, S, hd)`` with H_kv dividing H; is_causal, scale."""
    for name, t in (("query", query), ("key", key), ("value", value)):
        check_float_tensor(name, t, ranks=(4,))
    batch, num_heads, L, head_dim = query.shape
    if key.shape != value.shape:
        raise ValueError(f"key and value must have the same shape, got key {tuple(key.shape)}, value {tuple(value.shape)}")
    if key.shape[0] != batch or key.shape[3] != head_dim:
        raise ValueError(
            f"key/value must be (batch, num_kv_heads, S, head_dim) = ({batch}, num_kv_heads, S, {head_dim}) to match "
            f"query {tuple(query.shape)}, got {tuple(key.shape)}"
        )
    check_qkv(query, key, value)  # one dtype, one device
    for name, t in (("query", query), ("key", key), ("value", value)):
        check_finite(name, t)
    check_scale("scale", scale)
    for name, t in (("query", query), ("key", key)):
        if 0 in t.shape[2:]:
            raise ValueError(f"{name} has an empty dim (shape {tuple(t.shape)}): seq and head_dim must be at least 1")
    _check_gqa_heads(num_heads, key.shape[1])
    check_bool("is_causal", is_causal)
    if is_causal and attn_mask is not None:
        raise ValueError("pass either attn_mask or is_causal=True, not both (as F.scaled_dot_product_attention)")


def _gqa_mask(attn_mask, is_causal: bool, L: int, S: int, query: torch.Tensor) -> torch.Tensor | None:
    """The ``(L, S)`` mask :func:`grouped_query_attention` applies (True = may attend, or additive), or None."""
    if is_causal:
        return causal_mask(L, S, device=query.device)  # (L, S), True = may attend
    attn_mask = materialize_causal_bias("attn_mask", attn_mask, L, S, query.device)  # CausalBias -> (L, S) bool
    if attn_mask is not None:
        check_mask_dtype("attn_mask", attn_mask, query.dtype, query.device)
        if tuple(attn_mask.shape) != (L, S):
            raise ValueError(f"attn_mask must be (L, S) = ({L}, {S}), got shape {tuple(attn_mask.shape)}")
    return attn_mask


# ---- what a cache may be given (the layers of notebooks 09-11 check their cache with these) -----------------------


def check_cache_like(name: str, x: torch.Tensor, stored: torch.Tensor) -> None:
    """``x`` must have the dtype and the device of what a cache stores (``stored``): a cache writes into its own
    tensors, so anything else would be converted silently (float64 rounded to float32, float16 widened)."""
    if (x.dtype, x.device) != (stored.dtype, stored.device):
        raise TypeError(f"{name} is {x.dtype} on {x.device} but the cache holds {stored.dtype} on {stored.device}; "
                        f"use {name}.to({stored.dtype}) or build the cache with dtype={x.dtype}, device='{x.device}'")


def check_cache_fits(cache: object, sizes: Mapping[str, tuple[int, int]], stored: torch.Tensor,
                     parameter: torch.Tensor, new: int) -> None:
    """The ``cache`` a layer is given (a cache of the right class) must be built for it and for x: each of ``sizes``
    maps a name to (what the cache holds, what the layer and x need); ``stored`` is what the cache stores,
    ``parameter`` one of the layer's weights, ``new`` the tokens x brings. The message names ``cache``, the caller's
    argument (the keys or latents the cache would refuse are the layer's own)."""
    wrong = {name: pair for name, pair in sizes.items() if pair[0] != pair[1]}
    if wrong:
        has = ", ".join(f"{name}={held}" for name, (held, _) in wrong.items())
        need = ", ".join(f"{name}={needed}" for name, (_, needed) in wrong.items())
        raise ValueError(f"cache was built for {has}, but this layer and x need {need}; build it with "
                         f"layer.new_cache(batch, max_len)")
    if stored.dtype != parameter.dtype:
        raise TypeError(f"cache holds {stored.dtype} but the layer's parameters are {parameter.dtype}; build it with "
                        f"layer.new_cache(batch, max_len), which takes the layer's dtype")
    if stored.device != parameter.device:
        raise ValueError(f"cache is on {stored.device} but the layer's parameters are on {parameter.device}; build it "
                         f"with layer.new_cache(batch, max_len), which takes the layer's device")
    if len(cache) + new > cache.max_len:
        raise ValueError(f"cache is full: it holds max_len={cache.max_len} positions, {len(cache)} are filled and x "
                         f"brings {new} more; build a larger one with layer.new_cache(batch, max_len)")


def kv_cache_bytes_per_token(num_layers: int, num_kv_heads: int, head_dim: int, bytes_per_value: int = 2) -> int:
    """Bytes a KV cache stores per token (per sequence): 2 (K and V) · num_layers · num_kv_heads · head_dim · bytes.

    ``bytes_per_value`` is 2 for float16/bfloat16, 4 for float32. The number of QUERY heads does not appear.
    """
    for name, value in (("num_layers", num_layers), ("num_kv_heads", num_kv_heads), ("head_dim", head_dim),
                        ("bytes_per_value", bytes_per_value)):
        check_positive_int(name, value)
    return 2 * num_layers * num_kv_heads * head_dim * bytes_per_value


class KVCache:
    """The keys and values of the tokens seen so far, for one attention layer, filled left to right.

    ``KVCache(batch, num_kv_heads, head_dim, max_len, dtype=torch.float32, device=None)`` preallocates
    ``keys`` and ``values`` of shape ``(batch, num_kv_heads, max_len, head_dim)``; ``len(cache)`` is the number of
    positions filled. ``append(k, v)`` stores new positions ``(batch, num_kv_heads, T, head_dim)`` and returns views
    of everything cached, ``(batch, num_kv_heads, len(cache), head_dim)``. ``nbytes`` is what the filled part takes.
    """

    def __init__(self, batch: int, num_kv_heads: int, head_dim: int, max_len: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> None:
        for name, value in (("batch", batch), ("num_kv_heads", num_kv_heads), ("head_dim", head_dim),
                            ("max_len", max_len)):
            check_positive_int(name, value)
        check_factory_kwargs(device, dtype)
        shape = (batch, num_kv_heads, max_len, head_dim)
        check_fits({"batch": batch, "num_kv_heads": num_kv_heads, "head_dim": head_dim, "max_len": max_len},
                   2 * math.prod(shape) * (dtype or torch.get_default_dtype()).itemsize, "the cache's keys and values",
                   "notebooks 09 and 10 cache a few sequences of at most a few hundred positions")
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self.max_len = max_len
        self.length = 0

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        b, h, _, d = self.keys.shape
        return f"KVCache(batch={b}, num_kv_heads={h}, head_dim={d}, filled {self.length}/{self.max_len})"

    @property
    def nbytes(self) -> int:
        """Bytes of the filled positions: 2 · batch · num_kv_heads · len(cache) · head_dim · element size."""
        b, h, _, d = self.keys.shape
        return 2 * b * h * self.length * d * self.keys.element_size()

    def append(self, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``key``, ``value`` ``(batch, num_kv_heads, T, head_dim)``; return all cached keys and values.

        Gradients flow through the cache: when autograd records, the cache is copied before it is written, so the
        views handed out before stay as they were (an in-place write would break their backward pass)."""
        want = tuple(self.keys.shape[:2]) + (self.keys.shape[3],)
        for name, t in (("key", key), ("value", value)):
            check_float_tensor(name, t, ranks=(4,))
            if (t.shape[0], t.shape[1], t.shape[3]) != want:
                raise ValueError(
                    f"{name} must be (batch, num_kv_heads, T, head_dim) = ({want[0]}, {want[1]}, T, {want[2]}), "
                    f"got {tuple(t.shape)}"
                )
            check_cache_like(name, t, self.keys)
            check_finite(name, t)
        T = key.shape[2]
        if value.shape[2] != T:
            raise ValueError(f"key and value must add the same number of positions, got {T} and {value.shape[2]}")
        if self.length + T > self.max_len:
            raise ValueError(f"the cache holds max_len={self.max_len} positions; {self.length} + {T} do not fit")
        return self._write(key, value)

    def _write(self, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`append` without its checks, for a layer that checked its input and this cache already."""
        T = key.shape[2]
        if torch.is_grad_enabled() and (key.requires_grad or value.requires_grad or self.keys.requires_grad):
            self.keys, self.values = self.keys.clone(), self.values.clone()  # earlier views keep their values
        self.keys[:, :, self.length:self.length + T] = key
        self.values[:, :, self.length:self.length + T] = value
        self.length += T
        return self.keys[:, :, : self.length], self.values[:, :, : self.length]  # views, no copy


class GroupedQuerySelfAttention(nn.Module):
    """Causal self-attention with ``num_kv_heads`` K/V heads shared by ``num_heads`` query heads (no biases).

    ``W_q: d_model -> num_heads·head_dim``, ``W_k, W_v: d_model -> num_kv_heads·head_dim``,
    ``W_o: d_model -> d_model``. ``num_kv_heads == num_heads`` is ordinary multi-head attention, 1 is multi-query.

    ``forward(x, cache=None)``: x ``(batch, T, d_model)`` -> ``(batch, T, d_model)``. Without a cache, x is the whole
    sequence (causal attention). With a :class:`KVCache`, x holds only the NEW tokens: their keys and values are
    appended to the cache and their queries attend to everything cached (the causal mask aligned to the end).
    """

    def __init__(self, d_model: int, num_heads: int, num_kv_heads: int) -> None:
        super().__init__()
        for name, value in (("d_model", d_model), ("num_heads", num_heads), ("num_kv_heads", num_kv_heads)):
            check_positive_int(name, value)
        check_divisible(d_model, num_heads, d_name="d_model")
        _check_gqa_heads(num_heads, num_kv_heads)
        self.d_model, self.num_heads, self.num_kv_heads = d_model, num_heads, num_kv_heads
        self.head_dim = d_model // num_heads
        params = 2 * d_model * d_model + 2 * d_model * num_kv_heads * self.head_dim
        check_fits({"d_model": d_model, "num_kv_heads": num_kv_heads}, params * torch.get_default_dtype().itemsize,
                   "the layer's weights", "the notebooks use d_model up to a few hundred")
        self.W_q = nn.Linear(d_model, d_model, bias=False)
        self.W_k = nn.Linear(d_model, num_kv_heads * self.head_dim, bias=False)
        self.W_v = nn.Linear(d_model, num_kv_heads * self.head_dim, bias=False)
        self.W_o = nn.Linear(d_model, d_model, bias=False)

    def new_cache(self, batch: int, max_len: int) -> KVCache:
        """An empty :class:`KVCache` for this layer's K/V heads, on its device and dtype."""
        w = self.W_k.weight
        return KVCache(batch, self.num_kv_heads, self.head_dim, max_len, dtype=w.dtype, device=w.device)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """x ``(batch, T, d_model)`` -> ``(batch, T, d_model)``; with ``cache``, x holds only the new tokens."""
        check_layer_input("x", x, self.d_model, self.W_q.weight)
        batch, T, _ = x.shape
        if cache is not None:
            check_instance("cache", cache, KVCache, "a KVCache (layer.new_cache(batch, max_len))")
            b, h, _, d = cache.keys.shape
            check_cache_fits(cache, {"batch": (b, batch), "num_kv_heads": (h, self.num_kv_heads),
                                     "head_dim": (d, self.head_dim)}, cache.keys, self.W_k.weight, T)
        q = split_heads(self.W_q(x), self.num_heads)  # (batch, T, d_model) -> (batch, H, T, hd)
        k = split_heads(self.W_k(x), self.num_kv_heads)  # (batch, T, H_kv·hd) -> (batch, H_kv, T, hd)
        v = split_heads(self.W_v(x), self.num_kv_heads)  # (batch, T, H_kv·hd) -> (batch, H_kv, T, hd)
        if cache is None:
            heads = _grouped_attention(q, k, v, causal_mask(T, device=x.device))  # (batch, H, T, hd)
        else:
            past = len(cache)
            k, v = cache._write(k, v)  # (batch, H_kv, past + T, hd): the old keys and values are not recomputed
            # New token t (position past + t) may see keys 0..past + t: causal, aligned to the END of the cache.
            mask = causal_mask(T, past + T, device=x.device, align="bottom_right")  # (T, past + T)
            heads = _grouped_attention(q, k, v, None if T == 1 else mask)  # one new token sees every key
        return self.W_o(merge_heads(heads))  # (batch, H, T, hd) -> (batch, T, d_model) -> W_o


def decode_step_by_step(layer: GroupedQuerySelfAttention, x: torch.Tensor, use_cache: bool) -> torch.Tensor:
    """Outputs of ``layer`` for ``x`` ``(batch, T, d_model)`` computed one token at a time, as generation does.

    ``use_cache=False`` recomputes the whole prefix at every step (K and V of all earlier tokens again);
    ``use_cache=True`` keeps them in a :class:`KVCache` and computes only the new token's. Both return
    ``(batch, T, d_model)``, equal to ``layer(x)``.
    """
    check_instance("layer", layer, GroupedQuerySelfAttention, "a GroupedQuerySelfAttention")
    check_layer_input("x", x, layer.d_model, layer.W_q.weight)
    check_bool("use_cache", use_cache)
    batch, T, _ = x.shape
    outputs = []
    cache = layer.new_cache(batch, T) if use_cache else None
    for t in range(T):
        if use_cache:
            outputs.append(layer(x[:, t:t + 1], cache=cache))  # (batch, 1, d_model)
        else:
            outputs.append(layer(x[:, : t + 1])[:, -1:])  # the whole prefix again, keep the last position
    return torch.cat(outputs, dim=1)  # (batch, T, d_model)
