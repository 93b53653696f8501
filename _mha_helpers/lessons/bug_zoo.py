"""Notebook 13's zoo: short broken attention implementations, each modelled on a bug reported in a real project
(cited), with its fix. :func:`audit` must name the property each one breaks, and pass its fix.

Functions follow ``F.scaled_dot_product_attention``'s convention (``(batch, heads, L, head_dim)``, boolean
``attn_mask`` True = may attend); modules are self-attention on ``(batch, seq, d_model)``. Every module here is
built with fixed weights (``broken_attention(name)`` / ``fixed_attention(name)``), so the notebook's reports are the
same on every run.
"""

from __future__ import annotations

import html
import inspect
import math
import textwrap
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..maths.kv_cache import KVCache
from ..validation import check_choice

# ---- functions with F.scaled_dot_product_attention's call convention ----------------------------------------------


def attention_a(query, key, value, attn_mask=None):
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])  # (..., L, S)
    if attn_mask is not None:
        scores = scores.masked_fill(attn_mask, float("-inf"))  # hide the masked keys
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # a query with no key at all: 0/0 -> 0
    return weights @ value  # (..., L, d_v)


def _attention_a_fixed(query, key, value, attn_mask=None):
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))  # True = MAY attend: hide where it is False
    return torch.softmax(scores, dim=-1).nan_to_num(0.0) @ value


def attention_b(query, key, value, attn_mask=None):
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])  # (..., L, S)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    weights = torch.softmax(scores, dim=-2).nan_to_num(0.0)
    return weights @ value


def attention_c(query, key, value, attn_mask=None):
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])  # (..., L, S)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, -1e10)  # "minus infinity"
    return torch.softmax(scores, dim=-1) @ value


def _attention_c_fixed(query, key, value, attn_mask=None):
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, torch.finfo(scores.dtype).min)  # the most negative this dtype holds
    return torch.softmax(scores, dim=-1) @ value


def attention_d(query, key, value, is_causal=False):
    L, S = query.shape[-2], key.shape[-2]
    mask = None
    if is_causal:
        mask = torch.triu(torch.ones(L, S), diagonal=1).bool()  # the future: above the diagonal
    return F.scaled_dot_product_attention(query, key, value, attn_mask=mask)


def _attention_d_fixed(query, key, value, is_causal=False):
    L, S = query.shape[-2], key.shape[-2]
    mask = None
    if is_causal:
        mask = torch.triu(torch.ones(L, S), diagonal=1).bool()
    return F.scaled_dot_product_attention(query, key, value, attn_mask=None if mask is None else ~mask)


def attention_e(query, key, value, attn_mask=None):
    scores = query @ key.transpose(-2, -1)  # (..., L, S)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0) / math.sqrt(query.shape[-1])
    return weights @ value


def _attention_b_fixed(query, key, value, attn_mask=None):
    return _attention_a_fixed(query, key, value, attn_mask)  # softmax over the keys, dim=-1


_attention_e_fixed = _attention_b_fixed  # the scale inside: softmax(Q Kᵀ / √head_dim)


# ---- self-attention modules on (batch, seq, d_model) --------------------------------------------------------------


class ZooAttention(nn.Module):
    """What every module of the zoo shares, all of it correct: the four projections and the split/merge of heads."""

    def __init__(self, d_model: int = 32, num_heads: int = 4) -> None:
        super().__init__()
        self.d_model, self.num_heads, self.head_dim = d_model, num_heads, d_model // num_heads
        self.W_q, self.W_k, self.W_v, self.W_o = (nn.Linear(d_model, d_model) for _ in range(4))

    def split(self, t: torch.Tensor) -> torch.Tensor:
        B, L, _ = t.shape
        return t.view(B, L, self.num_heads, self.head_dim).transpose(1, 2)  # (B, L, d_model) -> (B, H, L, hd)

    def merge(self, t: torch.Tensor) -> torch.Tensor:
        B, _, L, _ = t.shape
        return t.transpose(1, 2).reshape(B, L, self.d_model)  # (B, H, L, hd) -> (B, L, d_model)


class SelfAttentionF(ZooAttention):
    def forward(self, x):
        B, L, _ = x.shape
        q, k, v = (W(x).view(B, self.num_heads, L, self.head_dim) for W in (self.W_q, self.W_k, self.W_v))
        heads = F.scaled_dot_product_attention(q, k, v)  # (B, H, L, hd)
        return self.W_o(self.merge(heads))


class _SelfAttentionFFixed(ZooAttention):
    def forward(self, x):
        q, k, v = (self.split(W(x)) for W in (self.W_q, self.W_k, self.W_v))  # view, THEN transpose
        return self.W_o(self.merge(F.scaled_dot_product_attention(q, k, v)))


class SelfAttentionG(ZooAttention):
    def forward(self, x, key_padding_mask=None):  # key_padding_mask: (B, S), True = padding
        B, L, _ = x.shape
        H, hd = self.num_heads, self.head_dim
        q, k, v = (self.split(W(x)).reshape(B * H, L, hd) for W in (self.W_q, self.W_k, self.W_v))  # (B·H, L, hd)
        mask = None
        if key_padding_mask is not None:
            mask = ~key_padding_mask.repeat(H, 1)[:, None, :]  # (B·H, 1, S), True = may attend
        heads = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B·H, L, hd)
        return self.W_o(self.merge(heads.view(B, H, L, hd)))


class _SelfAttentionGFixed(ZooAttention):
    def forward(self, x, key_padding_mask=None):
        B, L, _ = x.shape
        H, hd = self.num_heads, self.head_dim
        q, k, v = (self.split(W(x)).reshape(B * H, L, hd) for W in (self.W_q, self.W_k, self.W_v))  # (B·H, L, hd)
        mask = None
        if key_padding_mask is not None:  # row b·H + h is sequence b: each row of the mask H times in a row
            mask = ~key_padding_mask.repeat_interleave(H, dim=0)[:, None, :]
        heads = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.W_o(self.merge(heads.view(B, H, L, hd)))  # (B·H, L, hd) -> (B, H, L, hd) -> (B, L, d_model)


class SelfAttentionH(ZooAttention):
    def forward(self, x, key_padding_mask=None):  # key_padding_mask: (B, S), True = padding
        q, k, v = (self.split(W(x)) for W in (self.W_q, self.W_k, self.W_v))  # (B, H, L, hd)
        mask = None
        if key_padding_mask is not None:
            mask = ~key_padding_mask[:, None, :]  # (B, 1, S), True = may attend
        heads = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # scores (B, H, L, S)
        return self.W_o(self.merge(heads))


class _SelfAttentionHFixed(ZooAttention):
    def forward(self, x, key_padding_mask=None):
        q, k, v = (self.split(W(x)) for W in (self.W_q, self.W_k, self.W_v))
        mask = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]  # (B, 1, 1, S)
        return self.W_o(self.merge(F.scaled_dot_product_attention(q, k, v, attn_mask=mask)))


class SelfAttentionI(nn.Module):
    def __init__(self, d_model: int = 32, num_heads: int = 4) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, num_heads)

    def forward(self, x):  # x: (batch, seq, d_model)
        return self.attn(x, x, x, need_weights=False)[0]


class _SelfAttentionIFixed(SelfAttentionI):
    def __init__(self, d_model: int = 32, num_heads: int = 4) -> None:
        super().__init__(d_model, num_heads)
        self.attn = nn.MultiheadAttention(d_model, num_heads, batch_first=True)


class SelfAttentionJ(ZooAttention):
    def forward(self, x, key_padding_mask=None):  # key_padding_mask: (B, S), True = padding
        q, k, v = (self.split(W(x)) for W in (self.W_q, self.W_k, self.W_v))  # (B, H, L, hd)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, H, L, S)
        if key_padding_mask is not None:
            scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        return self.W_o(self.merge(weights @ v))


class _SelfAttentionJFixed(ZooAttention):
    def forward(self, x, key_padding_mask=None):
        q, k, v = (self.split(W(x)) for W in (self.W_q, self.W_k, self.W_v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        if key_padding_mask is not None:
            scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # a sequence of only padding: 0/0 -> 0
        return self.W_o(self.merge(weights @ v))


class DecoderAttentionK(ZooAttention):
    def new_cache(self, batch, max_len):
        w = self.W_k.weight  # the cache holds keys and values in the layer's own dtype, on its device
        return KVCache(batch, self.num_heads, self.head_dim, max_len, dtype=w.dtype, device=w.device)

    def forward(self, x, cache=None):
        q, k, v = (self.split(W(x)) for W in (self.W_q, self.W_k, self.W_v))  # (B, H, T, hd)
        if cache is not None:
            k, v = cache.append(k, v)  # (B, H, past + T, hd)
        heads = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.W_o(self.merge(heads))


class _DecoderAttentionKFixed(DecoderAttentionK):
    def forward(self, x, cache=None):
        q, k, v = (self.split(W(x)) for W in (self.W_q, self.W_k, self.W_v))
        if cache is not None:
            k, v = cache.append(k, v)
        T, S = q.shape[2], k.shape[2]
        mask = torch.ones(T, S, dtype=torch.bool).tril(diagonal=S - T)  # new token t is position S - T + t
        return self.W_o(self.merge(F.scaled_dot_product_attention(q, k, v, attn_mask=mask)))


class CausalSelfAttention(nn.Module):
    """GPT-style causal self-attention: one matmul for q, k and v, a causal mask kept as a buffer."""

    def __init__(self, n_embd: int = 32, n_head: int = 4, block_size: int = 16) -> None:
        super().__init__()
        self.n_embd, self.n_head = n_embd, n_head
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)  # x -> [q | k | v]
        self.c_proj = nn.Linear(n_embd, n_embd)  # the output projection W_o
        self.register_buffer("bias", torch.tril(torch.ones(block_size, block_size))[None, None])  # (1, 1, T, T)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)  # three (B, T, C)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(C))  # (B, nh, T, T)
        att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
        att = torch.softmax(att, dim=-1)
        y = att @ v  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again
        return self.c_proj(y)


class _CausalSelfAttentionFixed(CausalSelfAttention):
    def forward(self, x):
        B, T, C = x.shape
        hs = C // self.n_head
        q, k, v = (t.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, T, C) -> (B, nh, T, hs)
                   for t in self.c_attn(x).split(self.n_embd, dim=2))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))  # head size hs, not C
        att = torch.softmax(att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf")), dim=-1)
        return self.c_proj((att @ v).transpose(1, 2).contiguous().view(B, T, C))  # (B, nh, T, hs) -> (B, T, C)


# ---- the registry --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bug:
    """One exhibit: the broken implementation, its fix, the property ``audit`` must flag and the bug reports."""

    name: str
    title: str
    broken: Callable | type
    fixed: Callable | type
    flags: str
    causal: bool
    cites: tuple[str, ...]
    line: str  # the broken line, as it reads in the source
    fix: str  # the same line, fixed
    read: str = ""  # the section that explains this bug, when it is not the property's own

    @property
    def section(self) -> str:
        from .audit import ABOUT

        return self.read or ABOUT[self.flags][2]

    @property
    def kind(self) -> str:
        return "module" if isinstance(self.broken, type) else "function"


BUG_ZOO: dict[str, Bug] = {b.name: b for b in (
    Bug("inverted_mask", "a boolean mask read as True = blocked", attention_a, _attention_a_fixed,
        "mask_respected", False, ("huggingface/transformers#38094", "rasbt/LLMs-from-scratch#1061"),
        "scores.masked_fill(attn_mask, ", "scores.masked_fill(~attn_mask, float(\"-inf\"))"),
    Bug("softmax_wrong_dim", "the softmax over the queries", attention_b, _attention_b_fixed,
        "rows_sum_to_one", False,
        ("PetrochukM/PyTorch-NLP#2", "labmlai/annotated_deep_learning_paper_implementations#146"),
        "dim=-2", "torch.softmax(scores, dim=-1)"),
    Bug("fill_minus_1e10", "-1e10 as minus infinity", attention_c, _attention_c_fixed,
        "half_precision_safe", False, ("bentrevett/pytorch-seq2seq#191", "NVIDIA/apex#1105"),
        "-1e10", "scores.masked_fill(~attn_mask, torch.finfo(scores.dtype).min)"),
    Bug("causal_triu", "triu() handed to SDPA as the causal mask", attention_d, _attention_d_fixed,
        "causal", True, ("rasbt/LLMs-from-scratch#1061",),
        "attn_mask=mask)", "attn_mask=~mask (SDPA: True = may attend)"),
    Bug("scale_after_softmax", "the scale applied after the softmax", attention_e, _attention_e_fixed,
        "scale_correct", False, ("FrancescoSaverioZuppichini/ViT#2",),
        "/ math.sqrt(query.shape[-1])\n", "torch.softmax(scores / math.sqrt(query.shape[-1]), dim=-1)"),
    Bug("view_without_transpose", "heads split with view alone", SelfAttentionF, _SelfAttentionFFixed,
        "heads_split_correctly", False, ("reczoo/FuxiCTR#30", "jsbaan/transformer-from-scratch#6"),
        ".view(B, self.num_heads, L, self.head_dim)", ".view(B, L, self.num_heads, self.head_dim).transpose(1, 2)"),
    Bug("repeat_not_interleave", "a padding mask tiled over the heads", SelfAttentionG, _SelfAttentionGFixed,
        "mask_respected", False, ("ArrowLuo/CLIP4Clip#22", "line/lighthouse#77"),
        ".repeat(H, 1)", "key_padding_mask.repeat_interleave(H, dim=0)",
        "03 §3 The padding mask: a batch of sentences of different lengths"),
    Bug("mask_missing_head_dim", "a (batch, 1, S) mask on (batch, heads, L, S) scores", SelfAttentionH,
        _SelfAttentionHFixed, "mask_respected", False, ("hyunwoongko/transformer#32", "jwohlwend/boltz#226"),
        "key_padding_mask[:, None, :]", "~key_padding_mask[:, None, None, :]  # (B, 1, 1, S)",
        "03 §3 The padding mask: a batch of sentences of different lengths"),
    Bug("batch_first_swapped", "nn.MultiheadAttention fed (batch, seq, d_model)", SelfAttentionI,
        _SelfAttentionIFixed, "batch_independent", False, ("om-ai-lab/OmDet#19", "kyegomez/movie-gen#8"),
        "nn.MultiheadAttention(d_model, num_heads)", "nn.MultiheadAttention(d_model, num_heads, batch_first=True)"),
    Bug("padding_row_nan", "softmax over a sequence of only padding", SelfAttentionJ, _SelfAttentionJFixed,
        "fully_masked_rows_finite", False, ("pytorch/pytorch#27968", "pytorch/pytorch#103963"),
        "torch.softmax(scores, dim=-1)\n", "torch.softmax(scores, dim=-1).nan_to_num(0.0)"),
    Bug("kv_cache_top_left", "is_causal=True while decoding with a KV cache", DecoderAttentionK,
        _DecoderAttentionKFixed, "cached_equals_full", True, ("pytorch/pytorch#108108",),
        "is_causal=True)", "attn_mask=torch.ones(T, S, dtype=torch.bool).tril(diagonal=S - T)",
        "10 §2 Which keys may the new queries see? Top-left vs bottom-right"),
    Bug("gpt_scale_by_n_embd", "a GPT-style block scaled by √n_embd", CausalSelfAttention,
        _CausalSelfAttentionFixed, "scale_correct", True,
        ("karpathy/ng-video-lecture#6", "juho-lee/set_transformer#18"),
        "math.sqrt(C)", "(1.0 / math.sqrt(k.size(-1)))  # the head size"),
)}


def _get(name: str) -> Bug:
    return BUG_ZOO[check_choice("name", name, list(BUG_ZOO))]


def build_implementation(impl: Callable | type) -> Callable | nn.Module:
    """A function as it is; a class built with its default arguments and the same seeded weights every time."""
    if not isinstance(impl, type):
        return impl
    with torch.random.fork_rng(devices=[]):  # the same weights on every run, the caller's random state untouched
        torch.manual_seed(13)
        return impl()


def broken_attention(name: str) -> Callable | nn.Module:
    """The broken implementation named ``name`` (a function, or a module with fixed weights)."""
    return build_implementation(_get(name).broken)


def fixed_attention(name: str) -> Callable | nn.Module:
    """The fixed implementation of bug ``name`` (a module gets the same weights as ``broken_attention(name)``)."""
    return build_implementation(_get(name).fixed)


def show_bug(name: str) -> None:
    """Print the source of the broken implementation ``name`` with line numbers, for the hunt."""
    bug = _get(name)
    source = textwrap.dedent(inspect.getsource(bug.broken)).rstrip().splitlines()
    print("\n".join(f"{i:2d} | {line}" for i, line in enumerate(source, 1)))


class ZooTable:
    """The zoo at a glance, audited live: bug, what it is, what ``audit`` flags, the section to reread, the reports."""

    def __init__(self) -> None:
        from .audit import audit

        self.rows = []
        for bug in BUG_ZOO.values():
            flagged = audit(broken_attention(bug.name), causal=bug.causal).failed
            clean = audit(fixed_attention(bug.name), causal=bug.causal).ok
            others = [p for p in flagged if p != bug.flags]
            self.rows.append((bug.name, bug.title, bug.flags if bug.flags in flagged else "NOT FLAGGED",
                              ", ".join(others), "yes" if clean else "NO", bug.section, ", ".join(bug.cites)))

    _HEAD = ("bug", "what it is", "audit flags", "also failing", "fix passes", "read", "reported in")

    def __repr__(self) -> str:
        widths = [max(len(str(r[i])) for r in [self._HEAD, *self.rows]) for i in range(5)]
        line = lambda r: "  ".join(f"{str(c):<{w}}" for c, w in zip(r[:5], widths, strict=True)) + "  " + r[5]  # noqa: E731
        return "\n".join([line(self._HEAD), *(line(r) for r in self.rows)])

    def _repr_html_(self) -> str:

        def cells(r, tag):
            left = ' style="text-align:left"'  # notebooks right-align table cells by default
            return "".join(f"<{tag}{left}>{html.escape(str(c))}</{tag}>" for c in r)

        return ("<table><tr>" + cells(self._HEAD, "th") + "</tr>"
                + "".join("<tr>" + cells(r, "td") + "</tr>" for r in self.rows) + "</table>")


def zoo_table() -> ZooTable:
    """Audit every bug of the zoo and its fix; returns a table (HTML in a notebook, text when printed)."""
    return ZooTable()
