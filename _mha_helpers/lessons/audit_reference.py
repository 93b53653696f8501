"""The references behind :func:`audit`'s ``matches_reference`` row (audit.py): attention computed in float64 from the
same inputs (and, for a module, its own weights), position-free or with one of the position schemes of notebook 11.

``positions=True`` tells audit that the attention uses positions on purpose; its output is then compared with each
scheme of ``POSITION_SCHEMES`` and the row passes when one matches. When none does, the row cannot judge it ("n/a"):
a scheme audit does not know is not a bug.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..maths.positions import alibi_slopes, rope, rope_frequencies


def _rope_halves(x: torch.Tensor) -> torch.Tensor:
    """RoPE with feature i paired with feature i + head_dim/2 ("rotate_half", GPT-NeoX and Hugging Face Llama)."""
    half = x.shape[-1] // 2
    angles = torch.arange(x.shape[-2], dtype=torch.float64, device=x.device)[:, None] * rope_frequencies(
        x.shape[-1]).to(x.device)  # (L, half)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * angles.cos() - x2 * angles.sin(), x1 * angles.sin() + x2 * angles.cos()], dim=-1)


def _alibi(q: torch.Tensor, k: torch.Tensor, symmetric: bool) -> torch.Tensor:
    """(H, L, S) float64: -m_h·|i - j| (mh.alibi_bias) or -m_h·(i - j) on every key (the same under a causal mask)."""
    L, S = q.shape[-2], k.shape[-2]
    offset = (torch.arange(L, device=q.device)[:, None] - torch.arange(S, device=q.device)[None, :]).double()
    slopes = alibi_slopes(q.shape[-3]).double().to(q.device)[:, None, None]  # (H, 1, 1)
    return -slopes * (offset.abs() if symmetric else offset)


#: name -> (q, k) -> (rotated q, rotated k, bias added to the scores or None). "no position terms" comes first.
POSITION_SCHEMES: dict[str, Callable] = {
    "no position terms": lambda q, k: (q, k, None),
    "RoPE: interleaved pairs, as mh.rope": lambda q, k: (rope(q), rope(k), None),
    "RoPE: halves, as rotate_half": lambda q, k: (_rope_halves(q), _rope_halves(k), None),
    "ALiBi: -m·|i - j|, as mh.alibi_bias": lambda q, k: (q, k, _alibi(q, k, True)),
    "ALiBi: -m·(i - j) on every key": lambda q, k: (q, k, _alibi(q, k, False)),
}


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
           causal: bool = False, scale: float | None = None, scheme: str = "no position terms") -> torch.Tensor:
    """softmax(q kᵀ · scale + position bias, masked) v in float64 on ``(..., heads, L, head_dim)`` inputs; K/V heads
    are shared by groups of query heads; a query that may see no key gets zero output."""
    q, k, v = q.double(), k.double(), v.double()
    if k.shape[-3] != q.shape[-3]:
        k = k.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)  # (b, H_kv, S, hd) -> (b, H, S, hd)
        v = v.repeat_interleave(q.shape[-3] // v.shape[-3], dim=-3)
    q, k, bias = POSITION_SCHEMES[scheme](q, k)
    scores = q @ k.transpose(-2, -1) * (scale or 1.0 / math.sqrt(q.shape[-1]))  # (..., L, S)
    if bias is not None:
        scores = scores + bias
    allowed = torch.ones(scores.shape[-2:], dtype=torch.bool, device=q.device)
    if causal:
        allowed = allowed.tril()
    if mask is not None:
        allowed = allowed & mask
    dead = ~allowed.any(-1, keepdim=True)
    scores = scores.masked_fill(~allowed, float("-inf")).masked_fill(dead, 0.0)
    return torch.softmax(scores, dim=-1).masked_fill(dead, 0.0) @ v


def module_reference(structure, module, x: torch.Tensor, causal: bool, scheme: str = "no position terms"
                     ) -> torch.Tensor:
    """The module's own weights through project -> split -> attend -> merge -> W_o, in float64."""
    P = structure.weights(module)
    B, L, _ = x.shape
    hd = structure.head_dim

    def heads(name: str, h: int) -> torch.Tensor:
        w, b = P[name]
        y = F.linear(x.double(), w.double(), None if b is None else b.double())  # (B, L, h·hd)
        return y.view(B, L, h, hd).transpose(1, 2)  # (B, L, h·hd) -> (B, h, L, hd)

    out = attend(heads("q", structure.num_heads), heads("k", structure.num_kv_heads),
                 heads("v", structure.num_kv_heads), causal=causal, scheme=scheme)
    merged = out.transpose(1, 2).reshape(B, L, structure.num_heads * hd)  # (B, H, L, hd) -> (B, L, H·hd)
    if P["o"] is None:
        return merged
    w, b = P["o"]
    return F.linear(merged, w.double(), None if b is None else b.double())


def schemes_for(positions: bool, head_dim: int) -> list[str]:
    """The schemes to compare with: position-free only, or (``positions=True``) every one that fits ``head_dim``."""
    if not positions:
        return ["no position terms"]
    return [s for s in POSITION_SCHEMES if head_dim % 2 == 0 or not s.startswith("RoPE")]
