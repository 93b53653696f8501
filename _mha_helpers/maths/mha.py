"""The reference Multi-Head Attention module of notebook 05, with the semantics of ``torch.nn.MultiheadAttention``.

The forward pass reads top to bottom: project, split, attend, merge, ``W_o``. What only PyTorch compatibility needs
(input checks, mask conversion, copying weights to and from ``nn.MultiheadAttention``) lives in ``torch_compat.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..validation import (
    check_bool,
    check_divisible,
    check_factory_kwargs,
    check_fits,
    check_positive_int,
    check_probability,
)
from . import torch_compat
from .attention import merge_heads, scaled_dot_product_attention, split_heads


class MultiHeadAttention(nn.Module):
    """Multi-Head Attention with the semantics of ``torch.nn.MultiheadAttention``, built from readable steps.

    ``MultiHeadAttention(embed_dim, num_heads, dropout=0.0, bias=True, kdim=None, vdim=None, batch_first=True)``

    Parameters (the maths' names; the same count as PyTorch's module):
      ``W_q: Linear(embed_dim -> embed_dim)``, ``W_k: Linear(kdim -> embed_dim)``, ``W_v: Linear(vdim -> embed_dim)``
      and the output projection ``W_o: Linear(embed_dim -> embed_dim)``; ``head_dim = embed_dim // num_heads``.

    ``forward(query, key=None, value=None, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False) -> (output, weights or None)``

    Shapes (batch-first): query ``(batch, L, embed_dim)``, key ``(batch, S, kdim)``, value ``(batch, S, vdim)``;
    unbatched ``(L, embed_dim)`` etc. also work. Output ``(batch, L, embed_dim)``; weights ``(batch, L, S)``
    averaged over heads, or ``(batch, num_heads, L, S)`` with ``average_attn_weights=False``.

    Masks use **nn.MultiheadAttention's** conventions: a boolean mask is True where attention is NOT allowed; a float
    mask is added to the scores. ``attn_mask`` is ``(L, S)`` or ``(batch * num_heads, L, S)``; ``key_padding_mask`` is
    ``(batch, S)`` (True = padding). Dropout (p=``dropout``) acts on the attention weights in training mode only.
    A ``CausalBias`` (``torch.nn.attention.bias.causal_upper_left(L, S)`` / ``causal_lower_right(L, S)``) is read
    by what it means, the causal pattern in which True = may attend, as F.scaled_dot_product_attention reads it,
    NOT by this module's True = blocked rule for plain boolean masks (``nn.MultiheadAttention`` cannot read one).

    Deliberate differences from ``torch.nn.MultiheadAttention``:
      * ``batch_first`` defaults to True (the series works in ``(batch, seq, d_model)``);
      * ``key`` defaults to ``query`` and ``value`` to ``key`` (so ``mha(x)`` is self-attention);
      * ``is_causal=True`` alone builds the causal mask (PyTorch also demands ``attn_mask``). If a mask is also
        given, this module uses that mask; PyTorch treats ``is_causal`` as a promise that the mask IS the causal
        mask and may use either, so only pass both when they agree;
      * a query row whose keys are all masked gets zero weights and a zero attention result before the output
        projection (so its output is ``W_o``'s bias), never NaN; PyTorch returns NaN there with
        ``need_weights=True`` and on its eval-mode fast path;
      * float16/bfloat16 with ``need_weights=True``: the scores are computed in float32 (as PyTorch's fused
        kernels do), so inputs whose ``q·k`` exceeds float16's 65504 stay finite;
      * bad arguments raise a ValueError/TypeError that names the argument and what would work.
    ``add_bias_kv`` and ``add_zero_attn`` are not supported.

    With ``need_weights=False`` the forward uses one fused Q/K/V matrix multiply (self-attention with
    kdim = vdim = embed_dim) and ``torch.nn.functional.scaled_dot_product_attention``, so it is as fast as PyTorch.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_positive_int("embed_dim", embed_dim)
        check_positive_int("num_heads", num_heads)
        check_divisible(embed_dim, num_heads)
        if kdim is not None:
            check_positive_int("kdim", kdim)
        if vdim is not None:
            check_positive_int("vdim", vdim)
        check_probability("dropout", dropout)
        check_bool("bias", bias)
        check_bool("batch_first", batch_first)
        check_factory_kwargs(device, dtype)

        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.kdim = embed_dim if kdim is None else kdim
        self.vdim = embed_dim if vdim is None else vdim
        self.dropout = float(dropout)
        self.batch_first = batch_first
        self.has_bias = bias

        factory = {"device": device, "dtype": dtype}
        check_fits({"embed_dim": embed_dim, "kdim": self.kdim, "vdim": self.vdim},
                   embed_dim * (2 * embed_dim + self.kdim + self.vdim + 4) * (dtype or torch.get_default_dtype()).itemsize,
                   "the weights", "the notebooks use embed_dim up to a few hundred")
        self.W_q = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)  # d_model -> num_heads * head_dim
        self.W_k = nn.Linear(self.kdim, embed_dim, bias=bias, **factory)  # kdim    -> num_heads * head_dim
        self.W_v = nn.Linear(self.vdim, embed_dim, bias=bias, **factory)  # vdim    -> num_heads * head_dim
        self.W_o = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)  # concatenated heads -> d_model
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        # The same initialisation as nn.MultiheadAttention: Xavier-uniform over the packed (3*E, E) in-projection
        # (so each of W_q, W_k, W_v is drawn with that bound), zero biases, and nn.Linear's default for W_o's weight.
        E = self.embed_dim
        if self.kdim == E and self.vdim == E:
            packed = torch.empty(3 * E, E, device=self.W_q.weight.device, dtype=self.W_q.weight.dtype)
            nn.init.xavier_uniform_(packed)
            with torch.no_grad():
                for part, lin in zip(packed.chunk(3), (self.W_q, self.W_k, self.W_v), strict=True):
                    lin.weight.copy_(part)
        else:
            for lin in (self.W_q, self.W_k, self.W_v):
                nn.init.xavier_uniform_(lin.weight)
        if self.has_bias:
            for lin in (self.W_q, self.W_k, self.W_v, self.W_o):
                nn.init.zeros_(lin.bias)

    def extra_repr(self) -> str:
        extra = f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, head_dim={self.head_dim}"
        if self.kdim != self.embed_dim or self.vdim != self.embed_dim:
            extra += f", kdim={self.kdim}, vdim={self.vdim}"
        return extra + f", dropout={self.dropout}, bias={self.has_bias}, batch_first={self.batch_first}"

    # ---- PyTorch compatibility (torch_compat.py): weight copying, input checks, mask conversion ---------------
    from_torch = classmethod(torch_compat.from_torch)
    to_torch = torch_compat.to_torch
    _check_inputs = torch_compat.check_inputs
    _additive_mask = torch_compat.additive_mask

    # ---- the forward pass -----------------------------------------------------------------------------

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from ``query`` over ``key``/``value``; see the class docstring for shapes and masks."""
        key = query if key is None else key
        value = key if value is None else value
        query, key, value, batched = self._check_inputs(query, key, value)
        for name, flag in (("need_weights", need_weights), ("average_attn_weights", average_attn_weights),
                           ("is_causal", is_causal)):
            check_bool(name, flag)

        self_attention = query is key and key is value
        if not batched:  # (L, E) -> (1, L, E): one code path for both
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
        elif not self.batch_first:  # (L, batch, E) -> (batch, L, E); transpose is a view, no copy
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        batch, L, S = query.shape[0], query.shape[1], key.shape[1]

        bias = self._additive_mask(attn_mask, key_padding_mask, is_causal, batch, L, S, batched, query.dtype)

        # 1. Project: (batch, seq, dim) -> (batch, seq, embed_dim) for Q, K and V.
        q, k, v = self._project(query, key, value, fused=self_attention and not need_weights)
        # 2. Split: (batch, seq, embed_dim) -> (batch, heads, seq, head_dim).
        q, k, v = (split_heads(t, self.num_heads) for t in (q, k, v))
        dropout_p = self.dropout if self.training else 0.0

        if need_weights:
            # 3. Attend, every step in plain sight: (batch, heads, L, head_dim) -> (batch, heads, L, head_dim).
            heads, weights = scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p)
        else:
            heads = self._fast_attention(q, k, v, bias, dropout_p)
            weights = None

        # 4. Merge: (batch, heads, L, head_dim) -> (batch, L, embed_dim); 5. mix the heads with W_o.
        output = self.W_o(merge_heads(heads))  # (batch, L, embed_dim)

        if not batched:
            output = output.squeeze(0)  # (L, E)
        elif not self.batch_first:
            output = output.transpose(0, 1)  # (L, batch, E)
        if weights is not None:
            if average_attn_weights:
                weights = weights.mean(dim=1)  # (batch, heads, L, S) -> (batch, L, S)
            if not batched:
                weights = weights.squeeze(0)  # (L, S) or (heads, L, S)
        return output, weights

    def _project(self, query, key, value, fused: bool):
        """Q/K/V projections ``(batch, seq, dim) -> (batch, seq, embed_dim)``; one matmul when ``fused``."""
        if fused:
            w = torch.cat([self.W_q.weight, self.W_k.weight, self.W_v.weight])  # (3E, E)
            b = torch.cat([self.W_q.bias, self.W_k.bias, self.W_v.bias]) if self.has_bias else None  # (3E,)
            qkv = F.linear(query, w, b)  # (batch, L, 3E)
            return qkv.chunk(3, dim=-1)  # three views (batch, L, E)
        return self.W_q(query), self.W_k(key), self.W_v(value)

    @staticmethod
    def _fast_attention(q, k, v, bias, dropout_p):
        """PyTorch's fused kernel ``(batch, heads, L, head_dim) -> (batch, heads, L, head_dim)``, rows fully masked -> 0."""
        if bias is None:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        dead = torch.isneginf(bias).all(dim=-1, keepdim=True)  # (.., L, 1): rows with no key to look at
        if bool(dead.any()):
            bias = bias.masked_fill(dead, 0.0)  # keep the kernel away from 0/0 ...
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p)
            return out.masked_fill(dead, 0.0)  # ... then zero those rows, as the weights path does
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p)
