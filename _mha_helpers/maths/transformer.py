"""Notebook 07: the pre-norm Transformer block built around ``MultiHeadAttention``, and a padded toy batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..common import toy_embeddings
from ..validation import (
    check_bool,
    check_fits,
    check_float_tensor,
    check_like_parameters,
    check_list,
    check_mask_dtype,
    check_positive_int,
    check_seed,
    check_str,
    check_tokens,
)
from .attention import padding_mask
from .mha import MultiHeadAttention


class TransformerBlock(nn.Module):
    """One Transformer layer built around :class:`MultiHeadAttention`: attention, then an MLP, each wrapped in a
    residual connection and a LayerNorm.

    ``TransformerBlock(d_model, num_heads, d_ff=4 * d_model, memory_dim=None, dropout=0.0, norm_first=True)``

    * ``norm_first=True`` (pre-norm, the default): ``x = x + SelfAttn(LN(x))``, then ``x = x + MLP(LN(x))``. The
      residual path stays a clean sum, which lets deep stacks train without a learning-rate warm-up (Xiong et al.,
      2020, "On Layer Normalization in the Transformer Architecture"); GPT-2 and most later models use it.
    * ``norm_first=False`` (post-norm, as in Vaswani et al., 2017, section 3.1): ``x = LN(x + SelfAttn(x))``, then
      ``x = LN(x + MLP(x))``.
    * ``memory_dim`` given: a decoder block with a cross-attention sub-layer between the two (queries from ``x``,
      keys and values from ``memory``, whose width ``memory_dim`` may differ from ``d_model``: the module's
      ``kdim = vdim = memory_dim``).

    ``forward(x, memory=None, key_padding_mask=None, memory_key_padding_mask=None, is_causal=False,
    return_weights=False)``: ``x (batch, L, d_model)``, ``memory (batch, S, memory_dim)``; masks in
    ``nn.MultiheadAttention``'s convention (``key_padding_mask (batch, L)`` and ``memory_key_padding_mask
    (batch, S)``, True = padding). Returns ``(batch, L, d_model)``; with ``return_weights=True`` also a dict of
    per-head attention maps: ``"self" (batch, heads, L, L)`` and, in a decoder block, ``"cross" (batch, heads, L, S)``.
    The MLP is ``Linear(d_model, d_ff) -> ReLU -> Linear(d_ff, d_model)``, as in the paper (section 3.3).
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_ff: int | None = None,
        memory_dim: int | None = None,
        dropout: float = 0.0,
        norm_first: bool = True,
    ) -> None:
        super().__init__()
        check_positive_int("d_model", d_model)
        d_ff = 4 * d_model if d_ff is None else d_ff
        check_positive_int("d_ff", d_ff)
        if memory_dim is not None:
            check_positive_int("memory_dim", memory_dim)
        check_bool("norm_first", norm_first)
        memory = memory_dim or 0
        check_fits({"d_model": d_model, "d_ff": d_ff, "memory_dim": memory_dim},
                   d_model * (8 * d_model + 2 * d_ff + 2 * memory + 16) * torch.get_default_dtype().itemsize,
                   "the block's weights", "notebook 07 uses d_model up to a few hundred and d_ff = 4 * d_model")
        self.d_model, self.d_ff, self.memory_dim, self.norm_first = d_model, d_ff, memory_dim, norm_first
        # MultiHeadAttention checks num_heads (a positive divisor of d_model) and dropout.
        # Sub-modules in the order the data meets them (pre-norm): norm, attention, [norm, cross-attention], norm, MLP.
        self.norm1 = nn.LayerNorm(d_model)
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout)
        self.cross_attn = None
        if memory_dim is not None:
            self.norm_cross = nn.LayerNorm(d_model)
            self.cross_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout, kdim=memory_dim, vdim=memory_dim)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, d_ff), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model)
        )  # (..., d_model) -> (..., d_ff) -> (..., d_model), position by position
        self.drop = nn.Dropout(dropout)  # on each sub-layer's output, before it joins the residual

    @property
    def num_heads(self) -> int:
        return self.self_attn.num_heads

    def extra_repr(self) -> str:
        kind = "decoder (self + cross)" if self.cross_attn is not None else "self-attention only"
        return f"d_model={self.d_model}, d_ff={self.d_ff}, {'pre-norm' if self.norm_first else 'post-norm'}, {kind}"

    def _sublayer(self, x: torch.Tensor, norm: nn.LayerNorm, fn: Callable[[torch.Tensor], torch.Tensor]):
        """One residual sub-layer ``(batch, L, d_model) -> (batch, L, d_model)``, pre- or post-norm."""
        if self.norm_first:
            return x + self.drop(fn(norm(x)))
        return norm(x + self.drop(fn(x)))

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        memory_key_padding_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        return_weights: bool = False,
    ):
        check_float_tensor("x", x, ranks=(3,))
        check_like_parameters("x", x, self.norm1.weight, "block")
        if x.shape[-1] != self.d_model or x.shape[1] == 0:
            raise ValueError(f"x must be (batch, L, {self.d_model}) with L >= 1 (the block has d_model="
                             f"{self.d_model}), got shape {tuple(x.shape)}")
        check_bool("is_causal", is_causal)
        check_bool("return_weights", return_weights)
        if self.cross_attn is None and (memory is not None or memory_key_padding_mask is not None):
            raise ValueError("this block has no cross-attention, so it takes no memory; build it with "
                             "TransformerBlock(..., memory_dim=<the memory's width>) to make a decoder block")
        if self.cross_attn is not None:
            if memory is None:
                raise ValueError(f"this is a decoder block (memory_dim={self.memory_dim}): pass memory, the "
                                 f"encoder's output of shape (batch, S, {self.memory_dim})")
            check_float_tensor("memory", memory, ranks=(3,))
            check_like_parameters("memory", memory, self.norm1.weight, "block")
            batch, S, width = memory.shape
            if width != self.memory_dim or S == 0 or batch != x.shape[0]:
                raise ValueError(f"memory must be (batch, S, memory_dim) = ({x.shape[0]}, S >= 1, {self.memory_dim}) "
                                 f"(the cross-attention's kdim={self.memory_dim}), got shape {tuple(memory.shape)}")
            if memory_key_padding_mask is not None:
                check_mask_dtype("memory_key_padding_mask", memory_key_padding_mask, x.dtype, x.device)
                if tuple(memory_key_padding_mask.shape) != (batch, S):
                    raise ValueError(f"memory_key_padding_mask must be (batch, S) = ({batch}, {S}), True at the "
                                     f"memory's padding, got shape {tuple(memory_key_padding_mask.shape)}")
        weights: dict[str, torch.Tensor] = {}

        def self_attention(h):  # (batch, L, d_model) -> (batch, L, d_model)
            out, w = self.self_attn(h, key_padding_mask=key_padding_mask, is_causal=is_causal,
                                    need_weights=return_weights, average_attn_weights=False)
            weights["self"] = w  # (batch, heads, L, L) or None
            return out

        def cross_attention(h):  # queries (batch, L, d_model), keys/values (batch, S, memory_dim) -> (batch, L, d_model)
            out, w = self.cross_attn(h, memory, memory, key_padding_mask=memory_key_padding_mask,
                                     need_weights=return_weights, average_attn_weights=False)
            weights["cross"] = w  # (batch, heads, L, S) or None
            return out

        x = self._sublayer(x, self.norm1, self_attention)
        if self.cross_attn is not None:
            x = self._sublayer(x, self.norm_cross, cross_attention)
        x = self._sublayer(x, self.norm2, self.mlp)
        return (x, weights) if return_weights else x

    def to_torch(self) -> nn.TransformerEncoderLayer:
        """An ``nn.TransformerEncoderLayer`` (ReLU, ``batch_first=True``, same ``norm_first`` and dropout) holding
        this block's weights. Only for blocks without cross-attention (PyTorch's decoder layer has no ``kdim``)."""
        if self.cross_attn is not None:
            raise ValueError("to_torch() converts encoder blocks only; this block has cross-attention "
                             "(memory_dim is set), which nn.TransformerEncoderLayer does not have")
        ref = self.norm1.weight
        layer = nn.TransformerEncoderLayer(
            self.d_model, self.num_heads, dim_feedforward=self.d_ff, dropout=self.self_attn.dropout,
            activation="relu", batch_first=True, norm_first=self.norm_first, device=ref.device, dtype=ref.dtype,
        )
        layer.self_attn.load_state_dict(self.self_attn.to_torch().state_dict())
        layer.linear1.load_state_dict(self.mlp[0].state_dict())
        layer.linear2.load_state_dict(self.mlp[3].state_dict())
        layer.norm1.load_state_dict(self.norm1.state_dict())
        layer.norm2.load_state_dict(self.norm2.state_dict())
        layer.train(self.training)
        return layer


def toy_batch(
    sentences: Sequence[Sequence[str]], d_model: int = 8, seed: int = 0, pad: str = "<pad>"
) -> tuple[torch.Tensor, torch.Tensor, list[list[str]]]:
    """A padded batch of toy sentences: ``(x, key_padding_mask, padded_tokens)``.

    ``x`` is ``(batch, max_len, d_model)``: each sentence's :func:`toy_embeddings` (words + positions), zeros at the
    padding; ``key_padding_mask`` is ``(batch, max_len)``, True at padding (:func:`padding_mask`); ``padded_tokens``
    are the sentences filled up with ``pad``, ready to label attention maps.
    """
    check_list("sentences", sentences, Sequence, "a non-empty list of token lists, e.g. [['the', 'cat'], ['a', "
               "'dog']]", allow_empty=False)
    for b, sentence in enumerate(sentences):
        check_tokens(f"sentences[{b}]", sentence)
    check_positive_int("d_model", d_model)
    check_seed("seed", seed)
    check_str("pad", pad, "a string (the label of padding positions)")
    lengths = [len(s) for s in sentences]
    longest = max(lengths)
    check_fits({"d_model": d_model}, 8 * len(sentences) * longest * d_model, "the embeddings",
               "notebook 07 uses d_model up to a few hundred")
    x = torch.zeros(len(sentences), longest, d_model)  # (batch, max_len, d_model), zeros = padding
    for b, sentence in enumerate(sentences):
        x[b, : len(sentence)] = toy_embeddings(list(sentence), d_model=d_model, seed=seed)[0]  # (len, d_model)
    padded = [list(s) + [pad] * (longest - len(s)) for s in sentences]
    return x, padding_mask(lengths), padded
