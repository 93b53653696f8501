"""Notebook 11, multi-head latent attention (MLA): keys and values rebuilt from one shared low-rank latent per token,
the only thing its KV cache stores.

Position convention: query i and key j are positions i and j, as in :func:`causal_mask`'s default (top-left); with a
cache, the new queries are the LAST positions and :class:`MultiHeadLatentAttention` aligns its causal mask to the end.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..validation import (
    check_divisible,
    check_factory_kwargs,
    check_finite,
    check_fits,
    check_float_tensor,
    check_instance,
    check_int,
    check_layer_input,
    check_positive_int,
)
from .attention import causal_mask, merge_heads, split_heads
from .kv_cache import check_cache_fits, check_cache_like

# ---- multi-head latent attention (DeepSeek-AI 2024, DeepSeek-V2) -----------------------------------------------


class LatentCache:
    """The latent vectors of the tokens seen so far, for one MLA layer: ``latents`` ``(batch, max_len, latent_dim)``.

    ``append(c)`` stores new positions ``(batch, T, latent_dim)`` and returns a view of all cached latents
    ``(batch, len(cache), latent_dim)``. ``nbytes`` = ``batch · len(cache) · latent_dim · element size``: one vector
    per token, shared by all heads, for keys AND values.
    """

    def __init__(self, batch: int, latent_dim: int, max_len: int, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> None:
        for name, value in (("batch", batch), ("latent_dim", latent_dim), ("max_len", max_len)):
            check_positive_int(name, value)
        check_factory_kwargs(device, dtype)
        check_fits({"batch": batch, "latent_dim": latent_dim, "max_len": max_len},
                   batch * max_len * latent_dim * (dtype or torch.get_default_dtype()).itemsize, "the cache's latents",
                   "notebook 11 caches a few sequences of at most a few hundred positions")
        self.latents = torch.zeros(batch, max_len, latent_dim, dtype=dtype, device=device)
        self.max_len, self.length = max_len, 0

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        b, _, c = self.latents.shape
        return f"LatentCache(batch={b}, latent_dim={c}, filled {self.length}/{self.max_len})"

    @property
    def nbytes(self) -> int:
        """Bytes of the filled positions: batch · len(cache) · latent_dim · element size."""
        b, _, c = self.latents.shape
        return b * self.length * c * self.latents.element_size()

    def append(self, latent: torch.Tensor) -> torch.Tensor:
        """Store ``latent`` ``(batch, T, latent_dim)``; return every cached latent ``(batch, len, latent_dim)``.

        ``latent`` must have the cache's dtype and device (nothing is converted silently). Gradients flow through
        the cache: when autograd records, it is copied before it is written, so the views handed out before keep
        their values."""
        check_float_tensor("latent", latent, ranks=(3,), layout="(batch, T, latent_dim)")
        b, _, c = self.latents.shape
        if latent.shape[0] != b or latent.shape[2] != c:
            raise ValueError(f"latent must be (batch, T, latent_dim) = ({b}, T, {c}), got {tuple(latent.shape)}")
        check_cache_like("latent", latent, self.latents)
        check_finite("latent", latent)
        T = latent.shape[1]
        if self.length + T > self.max_len:
            raise ValueError(f"the cache holds max_len={self.max_len} positions; {self.length} + {T} do not fit")
        return self._write(latent)

    def _write(self, latent: torch.Tensor) -> torch.Tensor:
        """:meth:`append` without its checks, for a layer that checked its input and this cache already."""
        T = latent.shape[1]
        if torch.is_grad_enabled() and (latent.requires_grad or self.latents.requires_grad):
            self.latents = self.latents.clone()  # earlier views keep their values
        self.latents[:, self.length:self.length + T] = latent
        self.length += T
        return self.latents[:, : self.length]  # a view, no copy


class MultiHeadLatentAttention(nn.Module):
    """Causal self-attention whose keys and values come from ONE shared low-rank latent per token (MLA).

    ``W_dkv: d_model -> latent_dim`` compresses each token to ``c = W_dkv x``; per head h, ``W_uk`` and ``W_uv``
    (``latent_dim -> d_model``, cut into ``num_heads`` blocks of ``head_dim``) rebuild ``k_h = W_uk,h c`` and
    ``v_h = W_uv,h c``; ``W_q`` and ``W_o`` are as in multi-head attention. No biases. Parameters:
    ``2·d_model² + 3·d_model·latent_dim``.

    ``forward(x, cache=None)``: the contract of :class:`GroupedQuerySelfAttention`. x ``(batch, T, d_model)`` ->
    ``(batch, T, d_model)``; without a cache x is the whole sequence; with a :class:`LatentCache` (from
    :meth:`new_cache`) x holds only the new tokens, their latents are appended, and their queries see every cached
    position (the causal mask aligned to the end). The cache stores the latent, so ``cache.nbytes`` grows by
    ``latent_dim × element size`` per token and sequence: :attr:`cache_bytes_per_token`.

    :meth:`forward_absorbed` computes the same output without ever rebuilding K and V: ``W_uk`` is absorbed into the
    queries and ``W_uv`` applied after the weighted sum (DeepSeek-V2, section 2.1.2).

    Simplifications against DeepSeek-V2: the queries are not compressed, and there is no position encoding, hence
    no decoupled RoPE key features (``rope_dim = 0``). DeepSeek-V2 caches ``rope_dim`` = head_dim / 2 shared, rotated
    key features per token besides the latent, because a position-dependent rotation between W_uk and the query
    would stop W_uk from being absorbed; its cache is then ``(latent_dim + rope_dim) × element size`` per token.
    """

    rope_dim = 0  # decoupled RoPE key features cached per token (none in this layer)

    def __init__(self, d_model: int, num_heads: int, latent_dim: int) -> None:
        super().__init__()
        for name, value in (("d_model", d_model), ("num_heads", num_heads), ("latent_dim", latent_dim)):
            check_positive_int(name, value)
        check_divisible(d_model, num_heads, d_name="d_model")
        self.d_model, self.num_heads, self.latent_dim = d_model, num_heads, latent_dim
        self.head_dim = d_model // num_heads
        check_fits({"d_model": d_model, "latent_dim": latent_dim},
                   (2 * d_model * d_model + 3 * d_model * latent_dim) * torch.get_default_dtype().itemsize,
                   "the layer's weights", "notebook 11 uses d_model and latent_dim up to a few hundred")
        self.W_q = nn.Linear(d_model, d_model, bias=False)
        self.W_dkv = nn.Linear(d_model, latent_dim, bias=False)  # down-projection: the only thing cached
        self.W_uk = nn.Linear(latent_dim, d_model, bias=False)  # up-projection to every head's keys
        self.W_uv = nn.Linear(latent_dim, d_model, bias=False)  # up-projection to every head's values
        self.W_o = nn.Linear(d_model, d_model, bias=False)

    @property
    def cache_bytes_per_token(self) -> int:
        """Bytes one token adds to one sequence's cache: (latent_dim + rope_dim) × element size."""
        return (self.latent_dim + self.rope_dim) * self.W_dkv.weight.element_size()

    def new_cache(self, batch: int, max_len: int) -> LatentCache:
        """An empty :class:`LatentCache` for this layer, on its device and dtype."""
        w = self.W_dkv.weight
        return LatentCache(batch, self.latent_dim, max_len, dtype=w.dtype, device=w.device)

    def _check_x(self, x: torch.Tensor, cache: LatentCache | None) -> None:
        check_layer_input("x", x, self.d_model, self.W_q.weight)
        if cache is not None:
            check_instance("cache", cache, LatentCache, "a LatentCache (layer.new_cache(batch, max_len))")
            b, _, c = cache.latents.shape
            check_cache_fits(cache, {"batch": (b, x.shape[0]), "latent_dim": (c, self.latent_dim)}, cache.latents,
                             self.W_dkv.weight, x.shape[1])

    def _latents_and_mask(self, x: torch.Tensor, cache: LatentCache | None):
        """The latents every new query sees ``(batch, S, latent_dim)`` and the ``(T, S)`` mask (None = causal)."""
        c = self.W_dkv(x)  # (batch, T, d_model) -> (batch, T, latent_dim)
        if cache is None:
            return c, None
        T, past = x.shape[1], len(cache)
        c = cache._write(c)  # (batch, past + T, latent_dim): earlier latents are read, not recomputed
        # New token t (position past + t) may see positions 0 .. past + t: causal, aligned to the END of the cache.
        mask = causal_mask(T, past + T, device=x.device, align="bottom_right")  # (T, past + T)
        return c, mask

    def up_project(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rebuild every head's keys and values from latents ``(batch, S, latent_dim)``: two ``(batch, H, S, hd)``."""
        check_layer_input("latents", latents, self.latent_dim, self.W_uk.weight, features="latent_dim")
        return self._up_project(latents)

    def _up_project(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = split_heads(self.W_uk(latents), self.num_heads)  # (batch, S, d_model) -> (batch, H, S, hd)
        v = split_heads(self.W_uv(latents), self.num_heads)  # (batch, S, d_model) -> (batch, H, S, hd)
        return k, v

    @staticmethod
    def _attend(q, k, v, mask, scale=None):
        """SDPA of q ``(batch, H, T, d)`` over k, v ``(batch, H or 1, S, d)``; ``mask`` None means causal (T == S)."""
        gqa = k.shape[1] != q.shape[1]  # the absorbed form: every query head reads the one latent "head"
        if mask is None:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=gqa)
        mask = None if q.shape[2] == 1 else mask  # one new token sees every cached position
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=gqa)

    def forward(self, x: torch.Tensor, cache: LatentCache | None = None) -> torch.Tensor:
        """x ``(batch, T, d_model)`` -> ``(batch, T, d_model)``; with ``cache``, x holds only the new tokens."""
        self._check_x(x, cache)
        c, mask = self._latents_and_mask(x, cache)  # (batch, S, latent_dim)
        q = split_heads(self.W_q(x), self.num_heads)  # (batch, T, d_model) -> (batch, H, T, hd)
        k, v = self._up_project(c)  # (batch, H, S, hd) each, rebuilt from the latents
        heads = self._attend(q, k, v, mask)  # (batch, H, T, hd)
        return self.W_o(merge_heads(heads))  # (batch, H, T, hd) -> (batch, T, d_model) -> W_o

    def forward_absorbed(self, x: torch.Tensor, cache: LatentCache | None = None) -> torch.Tensor:
        """The same output as :meth:`forward`, computed on the latents without building K or V.

        ``q_h · k_h = q_h · (W_uk,h c) = (W_uk,hᵀ q_h) · c``: each query is mapped into the latent space once, and
        all heads attend to the same latents (multi-query attention with one "K/V head" of width latent_dim, keys =
        values = latents). The weighted sum of latents is then lifted by ``W_uv,h`` (which could be folded into W_o).
        The score scale stays ``1/sqrt(head_dim)``.
        """
        self._check_x(x, cache)
        c, mask = self._latents_and_mask(x, cache)  # (batch, S, latent_dim)
        q = split_heads(self.W_q(x), self.num_heads)  # (batch, T, d_model) -> (batch, H, T, hd)
        W_uk = self.W_uk.weight.view(self.num_heads, self.head_dim, self.latent_dim)  # (d, c) -> (H, hd, c)
        W_uv = self.W_uv.weight.view(self.num_heads, self.head_dim, self.latent_dim)  # (d, c) -> (H, hd, c)
        q_latent = q @ W_uk  # (batch, H, T, hd) @ (H, hd, c) -> (batch, H, T, c)
        latents = c[:, None]  # (batch, S, c) -> (batch, 1, S, c): one shared K/V "head"
        mixed = self._attend(q_latent, latents, latents, mask, scale=1.0 / math.sqrt(self.head_dim))  # (b, H, T, c)
        heads = mixed @ W_uv.transpose(1, 2)  # (batch, H, T, c) @ (H, c, hd) -> (batch, H, T, hd)
        return self.W_o(merge_heads(heads))  # (batch, H, T, hd) -> (batch, T, d_model) -> W_o


def latent_cache_bytes_per_token(num_layers: int, latent_dim: int, rope_dim: int = 0, bytes_per_value: int = 2) -> int:
    """Bytes an MLA cache stores per token (per sequence): num_layers · (latent_dim + rope_dim) · bytes_per_value.

    Compare :func:`kv_cache_bytes_per_token`, 2 · num_layers · num_kv_heads · head_dim · bytes_per_value: neither
    the number of heads nor a factor 2 for K and V appears, since one latent serves every head's keys and values.
    """
    for name, value in (("num_layers", num_layers), ("latent_dim", latent_dim), ("bytes_per_value", bytes_per_value)):
        check_positive_int(name, value)
    check_int("rope_dim", rope_dim, minimum=0)  # decoupled RoPE key features
    return num_layers * (latent_dim + rope_dim) * bytes_per_value
