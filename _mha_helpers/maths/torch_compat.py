"""What only PyTorch compatibility needs, kept out of ``MultiHeadAttention``'s way (``mha.py`` uses these as methods).

* copying the weights from and to ``torch.nn.MultiheadAttention`` (``from_torch`` / ``to_torch``);
* checking query/key/value the way PyTorch's module accepts them, with messages that say what would work;
* turning PyTorch's masks (boolean True = blocked, or additive floats; ``attn_mask`` and ``key_padding_mask``)
  into one additive float mask for the scores.
"""

from __future__ import annotations

import torch
from torch import nn

from ..validation import (
    check_float_tensor,
    check_instance,
    check_mask_dtype,
    is_causal_bias,
    materialize_causal_bias,
)
from .attention import causal_mask

# ---- copying weights to and from nn.MultiheadAttention ------------------------------------------------------------


def from_torch(cls: type, module: nn.MultiheadAttention) -> nn.Module:
    """A copy of an ``nn.MultiheadAttention`` (same weights, sizes, dropout, batch_first, device and dtype)."""
    check_instance("module", module, nn.MultiheadAttention, "a torch.nn.MultiheadAttention",
                   hint="; to copy one of ours, use copy.deepcopy(module)")
    for option, used in (("add_bias_kv", module.bias_k is not None), ("add_zero_attn", module.add_zero_attn)):
        if used:
            raise ValueError(
                f"module was built with {option}=True, which MultiHeadAttention does not support; "
                f"build the nn.MultiheadAttention with {option}=False"
            )
    ref = module.out_proj.weight
    bias = module.out_proj.bias is not None
    new = cls(
        module.embed_dim, module.num_heads, dropout=module.dropout, bias=bias, kdim=module.kdim,
        vdim=module.vdim, batch_first=module.batch_first, device=ref.device, dtype=ref.dtype,
    )
    E = module.embed_dim
    with torch.no_grad():
        if module._qkv_same_embed_dim:
            w_q, w_k, w_v = module.in_proj_weight.chunk(3)  # (3E, E) -> three (E, E)
        else:
            w_q, w_k, w_v = module.q_proj_weight, module.k_proj_weight, module.v_proj_weight
        for lin, w in zip((new.W_q, new.W_k, new.W_v), (w_q, w_k, w_v), strict=True):
            lin.weight.copy_(w)
        new.W_o.weight.copy_(module.out_proj.weight)
        if bias:
            for i, lin in enumerate((new.W_q, new.W_k, new.W_v)):
                lin.bias.copy_(module.in_proj_bias[i * E : (i + 1) * E])
            new.W_o.bias.copy_(module.out_proj.bias)
    new.train(module.training)
    return new

def to_torch(self: nn.Module) -> nn.MultiheadAttention:
    """An ``nn.MultiheadAttention`` with this module's weights, sizes, dropout, batch_first, device and dtype."""
    ref = self.W_o.weight
    module = nn.MultiheadAttention(
        self.embed_dim, self.num_heads, dropout=self.dropout, bias=self.has_bias, kdim=self.kdim,
        vdim=self.vdim, batch_first=self.batch_first, device=ref.device, dtype=ref.dtype,
    )
    with torch.no_grad():
        if module._qkv_same_embed_dim:
            module.in_proj_weight.copy_(torch.cat([self.W_q.weight, self.W_k.weight, self.W_v.weight]))
        else:
            module.q_proj_weight.copy_(self.W_q.weight)
            module.k_proj_weight.copy_(self.W_k.weight)
            module.v_proj_weight.copy_(self.W_v.weight)
        module.out_proj.weight.copy_(self.W_o.weight)
        if self.has_bias:
            module.in_proj_bias.copy_(torch.cat([self.W_q.bias, self.W_k.bias, self.W_v.bias]))
            module.out_proj.bias.copy_(self.W_o.bias)
    module.train(self.training)
    return module


# ---- input checks ---------------------------------------------------------------------------------------------------


def check_inputs(self: nn.Module, query, key, value):
    """Validate query/key/value; return them with a flag: batched (3-D) or not (2-D)."""
    layout = "(batch, seq, features)" if self.batch_first else "(seq, batch, features)"
    for name, t in (("query", query), ("key", key), ("value", value)):
        check_float_tensor(name, t, ranks=(2, 3), layout=f"unbatched (seq, features) or batched {layout}")
    batched = query.dim() == 3
    if key.dim() != query.dim() or value.dim() != query.dim():
        raise ValueError(
            f"query, key and value must all be batched (3-D) or all unbatched (2-D), got query "
            f"{tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}"
        )
    b_axis = 0 if self.batch_first else 1
    if batched and not (query.shape[b_axis] == key.shape[b_axis] == value.shape[b_axis]):
        raise ValueError(
            f"query, key and value must have the same batch size (dim {b_axis} of {layout}), got "
            f"query {tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}"
        )
    s_axis = -2 if not batched or self.batch_first else 0
    if key.shape[s_axis] != value.shape[s_axis]:
        raise ValueError(
            f"key and value must have the same length S (one value per key), got key {tuple(key.shape)} "
            f"and value {tuple(value.shape)}"
        )
    for name, t, want, arg in (("query", query, self.embed_dim, "embed_dim"), ("key", key, self.kdim, "kdim"),
                               ("value", value, self.vdim, "vdim")):
        if t.shape[-1] != want:
            raise ValueError(
                f"{name} has {t.shape[-1]} features (last dim of shape {tuple(t.shape)}) but the module expects "
                f"{arg}={want}; build it with {arg}={t.shape[-1]} or project the input first"
            )
        if t.dtype != self.W_o.weight.dtype:
            raise TypeError(
                f"{name} has dtype {t.dtype} but the module's parameters are {self.W_o.weight.dtype}; "
                f"convert one of them, e.g. {name}.to({self.W_o.weight.dtype})"
            )
        if t.device != self.W_o.weight.device:
            raise ValueError(
                f"{name} is on {t.device} but the module's parameters are on {self.W_o.weight.device}; "
                f"move one of them, e.g. {name}.to('{self.W_o.weight.device}')"
            )
    return query, key, value, batched


# ---- PyTorch's masks -> one additive float mask -----------------------------------------------------------------------


def additive_mask(self: nn.Module, attn_mask, key_padding_mask, is_causal, batch, L, S, batched, dtype):
    """Turn nn.MultiheadAttention's masks into one float mask to add to the scores.

    Returns None (no mask) or a tensor broadcastable to ``(batch, heads, L, S)``: 0 where attention is allowed,
    -inf where it is not (bool masks), plus any float mask's values.
    """
    H = self.num_heads
    if is_causal_bias(attn_mask):
        # A CausalBias says which keys each query MAY see (it is the same object F.scaled_dot_product_attention
        # takes), whatever a plain boolean mask means here; so it is read by its meaning, not by this module's
        # True = blocked polarity: materialised (True = may attend), then inverted.
        allowed = materialize_causal_bias("attn_mask", attn_mask, L, S, self.W_o.weight.device, is_causal)
        attn_mask = ~allowed  # (L, S), True = blocked
    if attn_mask is None and is_causal:
        attn_mask = ~causal_mask(L, S, device=self.W_o.weight.device)  # True = blocked, as this module reads it
    bias = None
    if attn_mask is not None:
        check_mask_dtype("attn_mask", attn_mask, dtype, self.W_o.weight.device)
        n = batch * H if batched else H
        if attn_mask.dim() == 2:
            if tuple(attn_mask.shape) != (L, S):
                raise ValueError(
                    f"attn_mask has shape {tuple(attn_mask.shape)}, expected (L, S) = ({L}, {S}) "
                    f"or 3-D ({n}, {L}, {S}) = (batch * num_heads, L, S)"
                )
            m = attn_mask.view(1, 1, L, S)  # (L, S) -> (1, 1, L, S), the same for every batch and head
        elif attn_mask.dim() == 3:
            if tuple(attn_mask.shape) != (n, L, S):
                raise ValueError(
                    f"attn_mask has shape {tuple(attn_mask.shape)}, expected 3-D ({n}, {L}, {S}) = "
                    f"(batch * num_heads, L, S) or 2-D ({L}, {S}) = (L, S)"
                )
            m = attn_mask.view(batch, H, L, S)  # (batch * heads, L, S) -> (batch, heads, L, S)
        else:
            raise ValueError(
                f"attn_mask must be 2-D (L, S) or 3-D (batch * num_heads, L, S), got shape {tuple(attn_mask.shape)}"
            )
        bias = _to_additive(m, dtype)
    if key_padding_mask is not None:
        check_mask_dtype("key_padding_mask", key_padding_mask, dtype, self.W_o.weight.device)
        want = (batch, S) if batched else (S,)
        if tuple(key_padding_mask.shape) != want:
            raise ValueError(
                f"key_padding_mask has shape {tuple(key_padding_mask.shape)}, expected "
                f"{'(batch, S)' if batched else '(S,)'} = {want} (True = padding)"
            )
        kpm = _to_additive(key_padding_mask.view(batch, 1, 1, S), dtype)  # (batch, S) -> (batch, 1, 1, S)
        bias = kpm if bias is None else bias + kpm
    return bias

def _to_additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """nn.MultiheadAttention's mask -> additive float mask: bool True (blocked) -> -inf, False -> 0; floats as they are."""
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
    return mask.to(dtype)
