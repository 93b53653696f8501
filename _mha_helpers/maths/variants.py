"""Notebook 11, attention as today's models vary it: rotary positions (RoPE), linear distance biases (ALiBi),
sliding-window attention, and multi-head latent attention (MLA) with its latent KV cache.

Position convention of this file: query i and key j are positions i and j, as in :func:`causal_mask`'s default
(top-left). For queries that are the LAST L of S positions (decoding with a cache), take the last L rows of the
square version, e.g. ``sliding_window_mask(S, window)[-L:]``; :class:`MultiHeadLatentAttention` does that itself.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ..validation import (
    check_broadcasts_to,
    check_divisible,
    check_factory_kwargs,
    check_float_tensor,
    check_instance,
    check_int,
    check_list,
    check_number,
    check_positive_int,
)
from .attention import causal_mask, merge_heads, split_heads

if TYPE_CHECKING:  # type hints only: matplotlib is imported where a figure is drawn, not when the helpers load
    from matplotlib.figure import Figure

# ---- RoPE (Su et al. 2021, RoFormer) ----------------------------------------------------------------------------


def rope_frequencies(head_dim: int, base: float = 10000.0) -> torch.Tensor:
    """The rotation speed of each feature pair: ``theta_i = base^(-2i / head_dim)``, i = 0 .. head_dim/2 - 1.

    Returns ``(head_dim // 2,)`` float64, radians per position. These are the frequencies of the sinusoidal
    positions of notebook 01 (``sinusoidal_positions``): pair i turns by ``m * theta_i`` at position m.
    """
    check_positive_int("head_dim", head_dim)
    if head_dim % 2:
        raise ValueError(f"head_dim must be even (RoPE rotates pairs of features), got head_dim={head_dim}")
    base = check_number("base", base, minimum=1, above_minimum=True, what="a positive float such as 10000.0",
                        rule="a finite number > 1 (the paper uses 10000.0)")
    i = torch.arange(0, head_dim, 2, dtype=torch.float64)  # 0, 2, 4, ...: twice the pair index
    return torch.exp(-math.log(base) * i / head_dim)  # (head_dim/2,), the same formula as sinusoidal_positions


def _positions_tensor(positions: object, x: torch.Tensor) -> torch.Tensor:
    """``positions`` as a float64 tensor broadcastable to ``x.shape[:-1]``; None means 0, 1, ..., seq - 1."""
    seq = x.shape[-2]
    if positions is None:
        return torch.arange(seq, dtype=torch.float64, device=x.device)  # (seq,)
    if isinstance(positions, torch.Tensor):
        if positions.dtype == torch.bool or positions.is_complex():
            raise TypeError(f"positions must hold ints or floats, got a tensor of dtype {positions.dtype}")
        pos = positions.to(device=x.device, dtype=torch.float64)
    else:
        what = "None, a tensor or a list of ints, one per position of x"
        pos = torch.tensor(check_list("positions", positions, (int, float), what), dtype=torch.float64, device=x.device)
    check_broadcasts_to("positions", pos, x.shape[:-1], "x's rows",
                        f" (..., seq); pass one position per row of x, e.g. torch.arange({seq}) + offset")
    if not bool(torch.isfinite(pos).all()):
        raise ValueError("positions must be finite numbers")
    return pos


def rope(x: torch.Tensor, positions: torch.Tensor | Sequence[int] | None = None,
         base: float = 10000.0) -> torch.Tensor:
    """Rotary position embedding: rotate each feature pair of ``x`` by an angle proportional to its position.

    ``x`` ``(..., seq, head_dim)`` with an even ``head_dim`` (one head's queries or keys; the leading dims may be
    ``batch, num_heads``) -> the same shape and dtype. Row m (position ``positions[m]``, default m) has its pair i
    turned by ``m * theta_i`` with ``theta_i = base^(-2i/head_dim)`` (:func:`rope_frequencies`)::

        out[2i]   = x[2i] cos(m theta_i) - x[2i+1] sin(m theta_i)
        out[2i+1] = x[2i] sin(m theta_i) + x[2i+1] cos(m theta_i)

    Pairing convention: **interleaved**, features (0, 1), (2, 3), ... form the pairs. That is the paper's equation
    (Su et al. 2021, eq. 34), it reads directly as complex multiplication (pair i is the complex number
    ``x[2i] + 1j·x[2i+1]``, multiplied by ``exp(1j·m·theta_i)``) and it matches notebook 01's sinusoidal positions,
    which also keep the sine and cosine of one frequency in neighbouring columns. Many codebases (GPT-NeoX, Hugging
    Face Llama) pair feature i with feature i + head_dim/2 instead ("halves", ``rotate_half``): the same rotation
    applied to permuted features, so a model trained with one convention needs its W_q and W_k columns permuted to
    run with the other (notebook 11 shows the permutation).

    ``positions``: a tensor (ints or floats) or list broadcastable to ``x.shape[:-1]``, typically ``(seq,)``;
    e.g. ``torch.arange(past, past + T)`` for T new tokens after ``past`` cached ones.
    """
    check_float_tensor("x", x, layout="(..., seq, head_dim)")
    if x.dim() < 2:
        raise ValueError(f"x must be (..., seq, head_dim), at least 2-D, got shape {tuple(x.shape)}")
    head_dim = x.shape[-1]
    if head_dim == 0 or head_dim % 2:
        raise ValueError(f"x's last dim (head_dim) must be even and > 0: RoPE rotates feature pairs; got {head_dim}")
    theta = rope_frequencies(head_dim, base).to(x.device)  # (head_dim/2,)
    pos = _positions_tensor(positions, x)  # broadcastable to (..., seq)
    angles = pos[..., None] * theta  # (..., seq, head_dim/2), in float64 so that far positions keep their accuracy
    work = torch.promote_types(x.dtype, torch.float32)  # float16 inputs are rotated in float32
    cos, sin = angles.cos().to(work), angles.sin().to(work)
    x_even, x_odd = x[..., 0::2].to(work), x[..., 1::2].to(work)  # (..., seq, head_dim/2) each: the pairs
    out = torch.stack((x_even * cos - x_odd * sin, x_even * sin + x_odd * cos), dim=-1)  # (..., seq, hd/2, 2)
    return out.flatten(-2).to(x.dtype)  # (..., seq, head_dim/2, 2) -> (..., seq, head_dim): pairs interleaved again


# ---- ALiBi (Press et al. 2022) --------------------------------------------------------------------------------


def _geometric_slopes(n: int) -> list[float]:
    """For a power of two n: 2^(-8/n), 2^(-16/n), ..., 2^(-8): the paper's geometric sequence."""
    return [2.0 ** (-8.0 * k / n) for k in range(1, n + 1)]


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """The ALiBi slope m_h of each head, ``(num_heads,)`` float32, in the order of the authors' code.

    For a power of two n the slopes are the geometric sequence that starts at and steps by ``2^(-8/n)``: 8 heads
    get 1/2, 1/4, ..., 1/256 (Press et al. 2022, section 3). For other head counts the authors' code (repository
    ofirpress/attention_with_linear_biases) takes the slopes of the nearest smaller power of two p, then adds every
    other slope of the 2p-head sequence (its 1st, 3rd, 5th, ...) until there are ``num_heads``: 12 heads get the 8
    slopes of 8 heads, then 2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5.
    """
    check_positive_int("num_heads", num_heads)
    p = 1 << (num_heads.bit_length() - 1)  # the largest power of two <= num_heads
    slopes = _geometric_slopes(p)
    if p < num_heads:
        slopes += _geometric_slopes(2 * p)[0::2][: num_heads - p]  # the slopes that fall between p's
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_bias(num_heads: int, L: int, S: int) -> torch.Tensor:
    """The ALiBi bias added to each head's scores: ``(num_heads, L, S)`` float32, ``-m_h · |i - j|``.

    Query i and key j are positions i and j (the module's convention; for queries that are the last L of S
    positions take ``alibi_bias(num_heads, S, S)[:, -L:]``). The paper defines the causal case, j <= i, where the
    bias is ``-m_h · (i - j)``: a penalty growing linearly with the distance, no learned parameter. Above the diagonal
    this returns the mirror image, ``-m_h · (j - i)``, a symmetric choice for attention without a causal mask; with a
    causal mask those entries are blocked anyway. Add it to the scores, or pass it as SDPA's float ``attn_mask``
    (combined with a causal mask: ``bias.masked_fill(~causal_mask(L, S), float("-inf"))``).
    """
    check_positive_int("num_heads", num_heads)
    check_positive_int("L", L)
    check_positive_int("S", S)
    distance = (torch.arange(L)[:, None] - torch.arange(S)[None, :]).abs().float()  # (L, S): |i - j|
    return -alibi_slopes(num_heads)[:, None, None] * distance  # (H, 1, 1) * (L, S) -> (H, L, S)


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
    check_positive_int("window", window)
    check_positive_int("block_size", block_size)
    seq = query.shape[-2]
    outputs = []
    for i0 in range(0, seq, block_size):
        i1 = min(i0 + block_size, seq)
        j0 = max(0, i0 - window + 1)  # the first key any query of this block may see
        offset = torch.arange(i0, i1, device=query.device)[:, None] - torch.arange(j0, i1, device=query.device)
        band = (offset >= 0) & (offset < window)  # (bq, i1 - j0): this block's rows of sliding_window_mask
        outputs.append(F.scaled_dot_product_attention(query[..., i0:i1, :], key[..., j0:i1, :], value[..., j0:i1, :],
                                                      attn_mask=band))  # (..., bq, head_dim)
    return torch.cat(outputs, dim=-2)  # (..., seq, head_dim)


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
        """Store ``latent`` ``(batch, T, latent_dim)``; return every cached latent ``(batch, len, latent_dim)``."""
        check_float_tensor("latent", latent, ranks=(3,), layout="(batch, T, latent_dim)")
        b, _, c = self.latents.shape
        if latent.shape[0] != b or latent.shape[2] != c:
            raise ValueError(f"latent must be (batch, T, latent_dim) = ({b}, T, {c}), got {tuple(latent.shape)}")
        T = latent.shape[1]
        if self.length + T > self.max_len:
            raise ValueError(f"the cache holds max_len={self.max_len} positions; {self.length} + {T} do not fit")
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

    def _check_x(self, x: torch.Tensor) -> None:
        check_float_tensor("x", x, ranks=(3,), layout="(batch, T, d_model)")
        if x.shape[-1] != self.d_model:
            raise ValueError(f"x has {x.shape[-1]} features (shape {tuple(x.shape)}) but the layer has "
                             f"d_model={self.d_model}")

    def _latents_and_mask(self, x: torch.Tensor, cache: LatentCache | None):
        """The latents every new query sees ``(batch, S, latent_dim)`` and the ``(T, S)`` mask (None = causal)."""
        c = self.W_dkv(x)  # (batch, T, d_model) -> (batch, T, latent_dim)
        if cache is None:
            return c, None
        check_instance("cache", cache, LatentCache, "a LatentCache (layer.new_cache(batch, max_len))")
        T, past = x.shape[1], len(cache)
        c = cache.append(c)  # (batch, past + T, latent_dim): earlier latents are read, not recomputed
        # New token t (position past + t) may see positions 0 .. past + t: causal, aligned to the END of the cache.
        mask = causal_mask(T, past + T, device=x.device, align="bottom_right")  # (T, past + T)
        return c, mask

    def up_project(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rebuild every head's keys and values from latents ``(batch, S, latent_dim)``: two ``(batch, H, S, hd)``."""
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
        self._check_x(x)
        c, mask = self._latents_and_mask(x, cache)  # (batch, S, latent_dim)
        q = split_heads(self.W_q(x), self.num_heads)  # (batch, T, d_model) -> (batch, H, T, hd)
        k, v = self.up_project(c)  # (batch, H, S, hd) each, rebuilt from the latents
        heads = self._attend(q, k, v, mask)  # (batch, H, T, hd)
        return self.W_o(merge_heads(heads))  # (batch, H, T, hd) -> (batch, T, d_model) -> W_o

    def forward_absorbed(self, x: torch.Tensor, cache: LatentCache | None = None) -> torch.Tensor:
        """The same output as :meth:`forward`, computed on the latents without building K or V.

        ``q_h · k_h = q_h · (W_uk,h c) = (W_uk,hᵀ q_h) · c``: each query is mapped into the latent space once, and
        all heads attend to the same latents (multi-query attention with one "K/V head" of width latent_dim, keys =
        values = latents). The weighted sum of latents is then lifted by ``W_uv,h`` (which could be folded into W_o).
        The score scale stays ``1/sqrt(head_dim)``.
        """
        self._check_x(x)
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


# ---- the variant cost meter (notebook 11's widget) -------------------------------------------------------------

_METER_COLORS = {"multi-head": "#8d99ae", "grouped-query": "#2a9d8f", "latent (MLA)": "#e76f51",
                 "sliding window": "#e9c46a"}


def variant_costs(d_model: int = 64, num_heads: int = 8, num_kv_heads: int = 2, latent_dim: int = 16,
                  window: int = 8, context: int = 32) -> list[dict]:
    """Parameters and KV-cache bytes of one attention layer in four variants, by formula AND measured.

    One row (a dict) per variant: ``multi-head`` (``num_kv_heads = num_heads``), ``grouped-query`` (``num_kv_heads``),
    ``latent (MLA)`` (``latent_dim``) and ``sliding window`` (grouped-query keeping only the last ``window`` tokens).
    Keys: ``variant``, ``parameters`` (counted on the real module), ``formula`` (text), ``bytes/token`` (formula,
    float32), ``measured bytes/token`` (``cache.nbytes`` after ``context`` tokens, divided by ``context``) and
    ``cache bytes`` (for the whole ``context``, measured). The layers are built with a fixed seed; the global random
    state is left as it was.
    """
    from ..common import OneThread
    from .kv_cache import GroupedQuerySelfAttention, KVCache

    for name, value in (("d_model", d_model), ("num_heads", num_heads), ("num_kv_heads", num_kv_heads),
                        ("latent_dim", latent_dim), ("window", window), ("context", context)):
        check_positive_int(name, value)
    check_divisible(d_model, num_heads, d_name="d_model")
    head_dim, fp32 = d_model // num_heads, 4
    rows = []
    with torch.random.fork_rng(devices=[]), torch.no_grad(), OneThread():
        torch.manual_seed(0)
        x = torch.randn(1, context, d_model)  # (1, context, d_model): the tokens that fill each cache
        for name, kv in (("multi-head", num_heads), ("grouped-query", num_kv_heads)):
            layer = GroupedQuerySelfAttention(d_model, num_heads, kv)
            cache = layer.new_cache(1, context)
            k = split_heads(layer.W_k(x), kv)  # (1, context, H_kv·hd) -> (1, H_kv, context, hd)
            v = split_heads(layer.W_v(x), kv)  # (1, context, H_kv·hd) -> (1, H_kv, context, hd)
            cache.append(k, v)  # what layer(x, cache=cache) stores, without running the attention
            rows.append({"variant": name, "parameters": sum(p.numel() for p in layer.parameters()),
                         "formula": f"2·{kv}·{head_dim}·4", "bytes/token": 2 * kv * head_dim * fp32,
                         "cache bytes": cache.nbytes})
            if name == "grouped-query":  # the same layer with a rolling cache of the last `window` tokens
                kept = min(window, context)
                rolling = KVCache(1, kv, head_dim, kept)
                rolling.append(k[:, :, -kept:], v[:, :, -kept:])  # (1, H_kv, kept, hd): the last `window` tokens
                gqa_params = rows[-1]["parameters"]
        mla = MultiHeadLatentAttention(d_model, num_heads, latent_dim)
        latent_cache = mla.new_cache(1, context)
        mla(x, cache=latent_cache)
    rows.append({"variant": "latent (MLA)", "parameters": sum(p.numel() for p in mla.parameters()),
                 "formula": f"{latent_dim}·4", "bytes/token": latent_dim * fp32, "cache bytes": latent_cache.nbytes})
    rows.append({"variant": "sliding window", "parameters": gqa_params,
                 "formula": f"2·{num_kv_heads}·{head_dim}·4 · min({window}, {context})/{context}",
                 "bytes/token": 2 * num_kv_heads * head_dim * fp32 * min(window, context) / context,
                 "cache bytes": rolling.nbytes})
    for row in rows:
        row["measured bytes/token"] = row["cache bytes"] / context
    return rows


def _draw_meter(fig, rows: list[dict], num_heads: int, num_kv_heads: int, window: int, context: int) -> None:
    """Draw the meter's three panels into ``fig``: the K/V head each query head reads, the window, the bytes."""
    import matplotlib.colors as mcolors

    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.0, 1.2, 1.6], "wspace": 0.45})
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.16, top=0.84)  # fixed margins: tight_layout is slow
    group = num_heads // num_kv_heads
    reads = torch.zeros(num_heads, num_kv_heads)
    reads[torch.arange(num_heads), torch.arange(num_heads) // group] = 1  # query head h reads K/V head h // group
    axes[0].imshow(reads.numpy(), cmap=mcolors.ListedColormap(["#f4f4f4", "#2a9d8f"]), vmin=0, vmax=1, aspect="auto")
    axes[0].set_title(f"GQA: {num_heads} query heads share\n{num_kv_heads} K/V head(s)", fontsize=9)
    axes[0].set_xlabel("K/V head")
    axes[0].set_ylabel("query head")
    axes[0].set_xticks(range(num_kv_heads))
    axes[0].set_yticks(range(num_heads))
    band = sliding_window_mask(context, window).float()  # (context, context), 1 = may attend
    axes[1].imshow(band.numpy(), cmap=mcolors.ListedColormap(["#f4f4f4", "#e9c46a"]), vmin=0, vmax=1)
    axes[1].set_title(f"sliding window {window}: {int(band.sum())} of\n{context * (context + 1) // 2} causal pairs",
                      fontsize=9)
    axes[1].set_xlabel("key position")
    axes[1].set_ylabel("query position")
    names = [r["variant"] for r in rows]
    values = [r["cache bytes"] for r in rows]
    bars = axes[2].barh(names, values, color=[_METER_COLORS[n] for n in names])
    axes[2].invert_yaxis()
    axes[2].bar_label(bars, labels=[f"{v:,}" for v in values], fontsize=8, padding=2)
    axes[2].set_xlim(0, max(values) * 1.35)
    axes[2].set_xlabel(f"KV-cache bytes for {context} tokens (measured)")
    axes[2].set_title("cache per layer and sequence, float32", fontsize=9)
    axes[2].tick_params(axis="y", labelsize=8)


def plot_variant_cost_meter(d_model: int = 64, num_heads: int = 8, num_kv_heads: int = 2, latent_dim: int = 16,
                            window: int = 8, context: int = 32) -> Figure:
    """The cost meter frozen at one setting, as a matplotlib Figure (the static copy of :func:`variant_cost_meter`)."""
    import matplotlib.pyplot as plt

    rows = variant_costs(d_model, num_heads, num_kv_heads, latent_dim, window, context)
    fig = plt.figure(figsize=(11, 3.4), dpi=100)
    _draw_meter(fig, rows, num_heads, num_kv_heads, window, context)
    return fig


def _meter_table_html(rows: list[dict], context: int) -> str:
    cells = "".join(
        f"<tr><td>{r['variant']}</td><td>{r['parameters']:,}</td><td>{r['formula']} = {r['bytes/token']:g}</td>"
        f"<td>{r['measured bytes/token']:g}</td><td>{r['cache bytes']:,}</td></tr>" for r in rows
    )
    return ("<table style='border-collapse:collapse;font-size:12px'><tr><th>variant</th><th>parameters</th>"
            "<th>bytes/token (formula)</th><th>bytes/token (measured nbytes)</th>"
            f"<th>cache for {context} tokens</th></tr>{cells}</table>")


class VariantCostMeter:
    """The widget returned by :func:`variant_cost_meter`; display it as a cell's last expression.

    Attributes (ipywidgets): ``kv_slider`` (num_kv_heads, the divisors of num_heads), ``latent_slider``
    (latent_dim), ``window_slider`` (window), ``readout`` (HTML table: parameters and bytes per token by formula
    and measured), ``image`` (the figure, PNG), ``widget`` (the whole box); ``rows`` the last :func:`variant_costs`.
    """

    def __init__(self, d_model: int, num_heads: int, num_kv_heads: int, latent_dim: int, window: int,
                 context: int) -> None:
        import ipywidgets as widgets

        from ..common import valid_head_counts

        self.d_model, self.num_heads, self.context = d_model, num_heads, context
        self.rows: list[dict] = []
        style, layout = {"description_width": "110px"}, widgets.Layout(width="380px")
        self.kv_slider = widgets.SelectionSlider(options=valid_head_counts(num_heads), value=num_kv_heads,
                                                 description="num_kv_heads", style=style, layout=layout)
        self.latent_slider = widgets.IntSlider(value=latent_dim, min=4, max=2 * d_model, step=4,
                                               description="latent_dim", style=style, layout=layout)
        self.window_slider = widgets.IntSlider(value=window, min=1, max=context, description="window",
                                               style=style, layout=layout)
        for slider, css in ((self.kv_slider, "mha-meter-kv"), (self.latent_slider, "mha-meter-latent"),
                            (self.window_slider, "mha-meter-window")):
            slider.add_class(css)
        self.readout = widgets.HTML()
        self.readout.add_class("mha-meter-readout")
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%", height="auto"))
        self.image.add_class("mha-meter-figure")
        self.widget = widgets.VBox([widgets.HBox([self.kv_slider, self.latent_slider, self.window_slider],
                                                 layout=widgets.Layout(flex_flow="row wrap")),
                                    self.readout, self.image])
        self.widget.add_class("mha-variant-meter")
        self.redraw()
        for slider in (self.kv_slider, self.latent_slider, self.window_slider):
            slider.observe(self._on_change, names="value")

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.widget._repr_mimebundle_(**kwargs)  # the widget view, for JupyterLab
        bundle["text/plain"] = repr(self)
        return bundle

    def __repr__(self) -> str:
        return (f"VariantCostMeter(d_model={self.d_model}, num_heads={self.num_heads}, "
                f"num_kv_heads={self.kv_slider.value}, latent_dim={self.latent_slider.value}, "
                f"window={self.window_slider.value}, context={self.context})")

    def _on_change(self, change) -> None:
        try:
            self.redraw()
        except Exception as exc:  # an observer's exception would vanish into a log: show it instead
            self.readout.value = f"<b style='color:#b00'>could not redraw: {type(exc).__name__}: {exc}</b>"

    def redraw(self) -> bytes:
        """Measure the four variants at the sliders' values, redraw; returns the PNG bytes shown."""

        from matplotlib.figure import Figure

        kv, latent, window = self.kv_slider.value, self.latent_slider.value, self.window_slider.value
        self.rows = variant_costs(self.d_model, self.num_heads, kv, latent, window, self.context)
        fig = Figure(figsize=(11, 3.4), dpi=80)  # not pyplot's: nothing is left open, nothing shown twice
        _draw_meter(fig, self.rows, self.num_heads, kv, window, self.context)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", pil_kwargs={"compress_level": 1})  # fast: 3x quicker than the default
        self.image.value = buffer.getvalue()
        self.readout.value = (f"<b>num_kv_heads = {kv}</b> · <b>latent_dim = {latent}</b> · <b>window = {window}</b>"
                              f" (d_model {self.d_model}, {self.num_heads} heads of head_dim "
                              f"{self.d_model // self.num_heads})<br>" + _meter_table_html(self.rows, self.context))
        return self.image.value


def variant_cost_meter(d_model: int = 64, num_heads: int = 8, num_kv_heads: int = 2, latent_dim: int = 16,
                       window: int = 8, context: int = 32) -> VariantCostMeter:
    """A widget with sliders for ``num_kv_heads``, ``latent_dim`` and ``window``: one layer's parameters and KV-cache
    bytes per token (formula and measured ``nbytes``) in four variants (:func:`variant_costs`), which K/V head each
    query head reads, the window's band, and the cache of ``context`` tokens. :func:`plot_variant_cost_meter` draws
    the same figure statically."""
    for name, value in (("d_model", d_model), ("num_heads", num_heads), ("num_kv_heads", num_kv_heads),
                        ("latent_dim", latent_dim), ("window", window), ("context", context)):
        check_positive_int(name, value)
    check_divisible(d_model, num_heads, d_name="d_model")
    if num_heads % num_kv_heads:
        raise ValueError(f"num_kv_heads={num_kv_heads} must divide num_heads={num_heads}")
    if window > context:
        raise ValueError(f"window={window} must be at most context={context} (the slider's range)")
    if latent_dim > 2 * d_model or latent_dim % 4:
        raise ValueError(f"latent_dim must be a multiple of 4 up to 2·d_model={2 * d_model}, got {latent_dim}")
    return VariantCostMeter(d_model, num_heads, num_kv_heads, latent_dim, window, context)
