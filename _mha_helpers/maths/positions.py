"""Notebook 11, where a token is: rotary positions (RoPE, which turns queries and keys by their position) and
linear distance biases (ALiBi, which penalise a score by the distance between query and key).

Position convention: query i and key j are positions i and j, as in :func:`causal_mask`'s default (top-left). For
queries that are the LAST L of S positions (decoding with a cache), take the last L rows of the square version, e.g.
``alibi_bias(num_heads, S, S)[:, -L:]``, or pass ``rope`` the positions ``torch.arange(past, past + T)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..validation import (
    check_broadcasts_to,
    check_finite,
    check_fits,
    check_float_tensor,
    check_list,
    check_number,
    check_positive_int,
)

# ---- RoPE (Su et al. 2021, RoFormer) ----------------------------------------------------------------------------


def rope_frequencies(head_dim: int, base: float = 10000.0) -> torch.Tensor:
    """The rotation speed of each feature pair: ``theta_i = base^(-2i / head_dim)``, i = 0 .. head_dim/2 - 1.

    Returns ``(head_dim // 2,)`` float64, radians per position. These are the frequencies of the sinusoidal
    positions of notebook 01 (``sinusoidal_positions``): pair i turns by ``m * theta_i`` at position m.
    """
    check_positive_int("head_dim", head_dim)
    if head_dim % 2:
        raise ValueError(f"head_dim must be even (RoPE rotates pairs of features), got head_dim={head_dim}")
    check_fits({"head_dim": head_dim}, head_dim * 8, "the frequencies", "the notebooks use head_dim up to 128")
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
    check_finite("x", x)
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
    check_fits({"num_heads": num_heads}, num_heads * 8, "the slopes", "the notebooks use up to 16 heads")
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
    check_fits({"num_heads": num_heads, "L": L, "S": S}, (num_heads + 2) * L * S * 4, "the bias",
               "notebook 11 uses up to 8 heads and a few hundred positions")
    distance = (torch.arange(L)[:, None] - torch.arange(S)[None, :]).abs().float()  # (L, S): |i - j|
    return -alibi_slopes(num_heads)[:, None, None] * distance  # (H, 1, 1) * (L, S) -> (H, L, S)
