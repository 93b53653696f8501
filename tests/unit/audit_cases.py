"""Attention implementations that are not in notebook 13's zoo, for the audit tests: broken ones (each with the
property ``mh.audit`` must name) and correct ones written the ways tutorials and libraries write them (query/key/value/
out, q_proj/.../out_proj, to_q/.../to_out, packed qkv + proj, nanoGPT's c_attn, a loop over heads, RoPE, ALiBi, ...).

Modules are built by ``build(cls)`` under a fixed seed, so a report is the same on every run.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import mha_helpers as mh


def build(cls, *args, dtype=None, **kwargs):
    """``cls(*args, **kwargs)`` with weights drawn under seed 1, in ``dtype`` if given; the global RNG is kept."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        module = cls(*args, **kwargs)
    return module if dtype is None else module.to(dtype)


def _split(t, h):
    B, L, _ = t.shape
    return t.view(B, L, h, -1).transpose(1, 2)  # (B, L, h·hd) -> (B, h, L, hd)


def _merge(t):
    B, _, L, _ = t.shape
    return t.transpose(1, 2).reshape(B, L, -1)  # (B, H, L, hd) -> (B, L, H·hd)


# ---- query/key/value/out: the most common naming in tutorials -----------------------------------------------------


class QueryKeyValueOut(nn.Module):
    """Correct; ``bug`` picks one of three broken variants: "softmax_dim", "sqrt_d_model", "unnormalised"."""

    def __init__(self, d_model=32, num_heads=4, bug=None):
        super().__init__()
        self.d_model, self.num_heads, self.bug = d_model, num_heads, bug
        self.query, self.key, self.value, self.out = (nn.Linear(d_model, d_model) for _ in range(4))

    def forward(self, x):
        q, k, v = (_split(p(x), self.num_heads) for p in (self.query, self.key, self.value))
        d = self.d_model if self.bug == "sqrt_d_model" else q.shape[-1]
        scores = q @ k.transpose(-2, -1) / math.sqrt(d)  # (B, H, L, S)
        if self.bug == "unnormalised":
            weights = scores.exp()
        else:
            weights = torch.softmax(scores, dim=-2 if self.bug == "softmax_dim" else -1)
        return self.out(_merge(weights @ v))


class HuggingFaceOutProj(nn.Module):
    """Correct: q_proj/k_proj/v_proj/out_proj, embed_dim and num_heads, (output, weights) returned."""

    def __init__(self, embed_dim=48, num_heads=6):
        super().__init__()
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(embed_dim, embed_dim) for _ in range(4))

    def forward(self, x):
        q, k, v = (_split(p(x), self.num_heads) for p in (self.q_proj, self.k_proj, self.v_proj))
        w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
        return self.out_proj(_merge(w @ v)), w


class ToQKVOut(nn.Module):
    """Correct, lucidrains-style: to_q/to_k/to_v, to_out = Sequential(Linear, Dropout), heads × dim_head != dim."""

    def __init__(self, dim=24, heads=4, dim_head=8, dropout=0.1):
        super().__init__()
        self.heads = heads
        inner = heads * dim_head
        self.to_q, self.to_k, self.to_v = (nn.Linear(dim, inner, bias=False) for _ in range(3))
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))

    def forward(self, x):
        q, k, v = (_split(p(x), self.heads) for p in (self.to_q, self.to_k, self.to_v))
        return self.to_out(_merge(F.scaled_dot_product_attention(q, k, v)))


class TimmStyle(nn.Module):
    """Correct, timm-style: one packed qkv layer, proj, attn_drop gated by self.training, scale = head_dim ** -0.5."""

    def __init__(self, dim=32, num_heads=4, attn_drop=0.1):
        super().__init__()
        self.num_heads, self.head_dim, self.scale = num_heads, dim // num_heads, (dim // num_heads) ** -0.5
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.attn_drop = attn_drop

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (3, B, H, N, hd)
        q, k, v = qkv.unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class NanoGPTFlash(nn.Module):
    """Correct, nanoGPT's flash path: c_attn/c_proj, n_head, dropout gated on self.training, causal."""

    def __init__(self, n_embd=32, n_head=4, dropout=0.1):
        super().__init__()
        self.n_embd, self.n_head, self.dropout = n_embd, n_head, dropout
        self.c_attn, self.c_proj = nn.Linear(n_embd, 3 * n_embd), nn.Linear(n_embd, n_embd)

    def forward(self, x):
        q, k, v = (_split(t, self.n_head) for t in self.c_attn(x).split(self.n_embd, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0, is_causal=True)
        return self.c_proj(_merge(y))


class DropoutInEval(NanoGPTFlash):
    """BROKEN: dropout_p=self.dropout whatever the mode (nanoGPT gates it on self.training)."""

    def forward(self, x):
        q, k, v = (_split(t, self.n_head) for t in self.c_attn(x).split(self.n_embd, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout, is_causal=True)
        return self.c_proj(_merge(y))


class DropoutInEvalNotCausal(QueryKeyValueOut):
    """BROKEN: an nn.functional.dropout on the weights with training=True hard-coded."""

    def forward(self, x):
        q, k, v = (_split(p(x), self.num_heads) for p in (self.query, self.key, self.value))
        w = F.dropout(torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1), 0.1, training=True)
        return self.out(_merge(w @ v))


class AnnotatedTransformer(nn.Module):
    """Correct, the Annotated Transformer's layout: four Linears in a ModuleList, h and d_k, forward(q, k, v)."""

    def __init__(self, h=4, d_model=32):
        super().__init__()
        self.h, self.d_k = h, d_model // h
        self.linears = nn.ModuleList(nn.Linear(d_model, d_model) for _ in range(4))

    def forward(self, query, key, value, mask=None):
        q, k, v = (_split(lin(t), self.h) for lin, t in zip(self.linears, (query, key, value), strict=False))
        w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.d_k), dim=-1)
        return self.linears[-1](_merge(w @ v))


# ---- the reviewer's implementations (notebooks-07-13 review, "mh.audit on my own implementations") ---------------


def mask_after_softmax(query, key, value, attn_mask=None, is_causal=False):
    """BROKEN: the mask zeroes weights after the softmax, without renormalising."""
    w = torch.softmax(query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1]), dim=-1)
    L, S = w.shape[-2:]
    allowed = torch.ones(L, S, dtype=torch.bool).tril() if is_causal else torch.ones(L, S, dtype=torch.bool)
    if attn_mask is not None:
        allowed = allowed & attn_mask
    return (w * allowed) @ value


def causal_sees_next(query, key, value, is_causal=False):
    """BROKEN: tril(diagonal=1), each query also sees the next token."""
    L, S = query.shape[-2], key.shape[-2]
    mask = torch.ones(L, S, dtype=torch.bool).tril(diagonal=1) if is_causal else None
    return F.scaled_dot_product_attention(query, key, value, attn_mask=mask)


def causal_never_itself(query, key, value, is_causal=False):
    """BROKEN: tril(diagonal=-1), no query sees itself; query 0 sees nothing."""
    L, S = query.shape[-2], key.shape[-2]
    mask = torch.ones(L, S, dtype=torch.bool).tril(diagonal=-1) if is_causal else None
    return F.scaled_dot_product_attention(query, key, value, attn_mask=mask)


def keys_times_queries(query, key, value, attn_mask=None):
    """BROKEN: K Qᵀ instead of Q Kᵀ."""
    scores = key @ query.transpose(-2, -1) / math.sqrt(query.shape[-1])
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    return torch.softmax(scores, dim=-1).nan_to_num(0.0) @ value


def scores_times_mask(query, key, value, attn_mask=None):
    """BROKEN: scores * mask instead of a -inf fill (a blocked score becomes 0, not minus infinity)."""
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    if attn_mask is not None:
        scores = scores * attn_mask
    return torch.softmax(scores, dim=-1) @ value


def scale_one_over_d(query, key, value, attn_mask=None):
    """BROKEN: 1/d_k instead of 1/√d_k."""
    return F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask, scale=1.0 / query.shape[-1])


class _Heads(nn.Module):
    def __init__(self, d_model=32, num_heads=4, num_kv_heads=None):
        super().__init__()
        self.d_model, self.num_heads = d_model, num_heads
        self.num_kv_heads = num_kv_heads or num_heads
        self.head_dim = d_model // num_heads
        self.W_q, self.W_o = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
        self.W_k, self.W_v = (nn.Linear(d_model, self.num_kv_heads * self.head_dim) for _ in range(2))

    def qkv(self, x):
        return (_split(W(x), h) for W, h in ((self.W_q, self.num_heads), (self.W_k, self.num_kv_heads),
                                             (self.W_v, self.num_kv_heads)))


class MergeFeatureMajor(_Heads):
    """BROKEN: the merge permutes to (B, L, hd, H), feature-major."""

    def forward(self, x):
        q, k, v = self.qkv(x)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, H, L, hd)
        return self.W_o(out.permute(0, 2, 3, 1).reshape(x.shape))


class HeadsReversed(_Heads):
    """BROKEN: the heads concatenated in reverse order."""

    def forward(self, x):
        q, k, v = self.qkv(x)
        return self.W_o(_merge(F.scaled_dot_product_attention(q, k, v).flip(1)))


class PaddingOnQueries(_Heads):
    """BROKEN: the padding mask (B, 1, L, 1) masks queries, not keys."""

    def forward(self, x, key_padding_mask=None):
        q, k, v = self.qkv(x)
        mask = None if key_padding_mask is None else ~key_padding_mask[:, None, :, None]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.W_o(_merge(out.nan_to_num(0.0)))


class GQARepeat(_Heads):
    """BROKEN: K/V heads expanded with repeat instead of repeat_interleave."""

    def __init__(self):
        super().__init__(32, 4, 2)

    def forward(self, x):
        q, k, v = self.qkv(x)
        k, v = (t.repeat(1, 2, 1, 1) for t in (k, v))
        return self.W_o(_merge(F.scaled_dot_product_attention(q, k, v)))


class CacheNeverRead(_Heads):
    """BROKEN: a KV cache that is appended to but never read."""

    def new_cache(self, batch, max_len):
        return mh.KVCache(batch, self.num_heads, self.head_dim, max_len, dtype=self.W_k.weight.dtype)

    def forward(self, x, cache=None):
        q, k, v = self.qkv(x)
        if cache is not None:
            cache.append(k, v)  # the returned full keys and values are dropped
        return self.W_o(_merge(F.scaled_dot_product_attention(q, k, v, is_causal=True)))


# ---- the reviewer's correct implementations --------------------------------------------------------------------


def einsum_attention(query, key, value, attn_mask=None, is_causal=False):
    scores = torch.einsum("bhld,bhsd->bhls", query, key) / math.sqrt(query.shape[-1])
    allowed = torch.ones(scores.shape[-2:], dtype=torch.bool).tril() if is_causal else None
    if attn_mask is not None:
        allowed = attn_mask if allowed is None else allowed & attn_mask
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.einsum("bhls,bhsd->bhld", torch.softmax(scores, dim=-1).nan_to_num(0.0), value)


def renormalised_attention(query, key, value, attn_mask=None, is_causal=False):
    """Correct: exp of the shifted scores, blocked ones zeroed, renormalised (guarded for a row with no key)."""
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    L, S = scores.shape[-2:]
    allowed = torch.ones(L, S, dtype=torch.bool).tril() if is_causal else torch.ones(L, S, dtype=torch.bool)
    if attn_mask is not None:
        allowed = allowed & attn_mask
    e = (scores - scores.amax(-1, keepdim=True)).exp() * allowed
    return e / e.sum(-1, keepdim=True).clamp_min(torch.finfo(e.dtype).tiny) @ value


def renormalised_clamp_1e30(query, key, value, attn_mask=None, is_causal=False):
    """BROKEN in float16 only: the guard clamp_min(1e-30) is 0 in float16, so a query with no key gets 0/0 = NaN."""
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    allowed = torch.ones(scores.shape[-2:], dtype=torch.bool)
    if attn_mask is not None:
        allowed = allowed & attn_mask
    e = (scores - scores.amax(-1, keepdim=True)).exp() * allowed
    return e / e.sum(-1, keepdim=True).clamp_min(1e-30) @ value


class LoopOverHeads(nn.Module):
    """Correct: one head at a time with slices of W_q/W_k/W_v, a key_padding_mask; causal if asked."""

    def __init__(self, d_model=32, num_heads=4, causal=False):
        super().__init__()
        self.d_model, self.num_heads, self.causal = d_model, num_heads, causal
        self.W_q, self.W_k, self.W_v, self.W_o = (nn.Linear(d_model, d_model) for _ in range(4))

    def forward(self, x, key_padding_mask=None):
        L, hd = x.shape[1], self.d_model // self.num_heads
        q, k, v = self.W_q(x), self.W_k(x), self.W_v(x)
        heads = []
        for h in range(self.num_heads):
            cols = slice(h * hd, (h + 1) * hd)
            scores = q[..., cols] @ k[..., cols].transpose(1, 2) / math.sqrt(hd)  # (B, L, S)
            if self.causal:
                scores = scores.masked_fill(~torch.ones(L, L, dtype=torch.bool).tril(), float("-inf"))
            if key_padding_mask is not None:
                scores = scores.masked_fill(key_padding_mask[:, None, :], float("-inf"))
            heads.append(torch.softmax(scores, dim=-1).nan_to_num(0.0) @ v[..., cols])
        return self.W_o(torch.cat(heads, dim=-1))


class PackedEinsum(nn.Module):
    """Correct: a packed in_proj_weight and out_proj, no biases, einsum, returns (output, weights)."""

    def __init__(self, embed_dim=32, num_heads=4):
        super().__init__()
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.in_proj_weight = nn.Parameter(torch.randn(3 * embed_dim, embed_dim) / math.sqrt(embed_dim))
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=False)

    def forward(self, x):
        q, k, v = (_split(t, self.num_heads) for t in F.linear(x, self.in_proj_weight).chunk(3, dim=-1))
        w = torch.einsum("bhld,bhsd->bhls", q, k).div(math.sqrt(q.shape[-1])).softmax(-1)
        return self.out_proj(_merge(torch.einsum("bhls,bhsd->bhld", w, v))), w


class BottomRightCache(_Heads):
    """Correct: a cached decoder with the bottom-right causal mask."""

    def new_cache(self, batch, max_len):
        return mh.KVCache(batch, self.num_heads, self.head_dim, max_len, dtype=self.W_k.weight.dtype)

    def forward(self, x, cache=None):
        q, k, v = self.qkv(x)
        if cache is not None:
            k, v = cache.append(k, v)
        T, S = q.shape[2], k.shape[2]
        mask = torch.ones(T, S, dtype=torch.bool).tril(diagonal=S - T)
        return self.W_o(_merge(F.scaled_dot_product_attention(q, k, v, attn_mask=mask)))


# ---- position-aware attention (notebook 11) ---------------------------------------------------------------------


class RoPEAttention(nn.Module):
    """Correct: RoPE (mh.rope, interleaved pairs) on each head's queries and keys; causal if asked."""

    def __init__(self, d_model=32, num_heads=4, causal=False, halves=False):
        super().__init__()
        self.d_model, self.num_heads, self.causal, self.halves = d_model, num_heads, causal, halves
        self.W_q, self.W_k, self.W_v, self.W_o = (nn.Linear(d_model, d_model) for _ in range(4))

    def rotate(self, t):
        if not self.halves:
            return mh.rope(t)
        half, L = t.shape[-1] // 2, t.shape[-2]
        angles = torch.arange(L, dtype=torch.float64)[:, None] * mh.rope_frequencies(t.shape[-1])  # (L, half)
        cos, sin = angles.cos().to(t.dtype), angles.sin().to(t.dtype)
        t1, t2 = t[..., :half], t[..., half:]
        return torch.cat([t1 * cos - t2 * sin, t1 * sin + t2 * cos], dim=-1)

    def forward(self, x):
        q, k, v = (_split(W(x), self.num_heads) for W in (self.W_q, self.W_k, self.W_v))
        out = F.scaled_dot_product_attention(self.rotate(q), self.rotate(k), v, is_causal=self.causal)
        return self.W_o(_merge(out))


def alibi_attention(query, key, value, attn_mask=None, is_causal=False):
    """Correct: ALiBi (mh.alibi_bias) added to the scores, SDPA's call convention."""
    H, L, S = query.shape[-3], query.shape[-2], key.shape[-2]
    bias = mh.alibi_bias(H, L, S).to(query.dtype)  # (H, L, S)
    allowed = torch.ones(L, S, dtype=torch.bool).tril() if is_causal else torch.ones(L, S, dtype=torch.bool)
    if attn_mask is not None:
        allowed = allowed & attn_mask
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1]) + bias
    return torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1).nan_to_num(0.0) @ value


def rope_attention(query, key, value, attn_mask=None, is_causal=False):
    """Correct: RoPE on queries and keys, then SDPA."""
    return F.scaled_dot_product_attention(mh.rope(query), mh.rope(key), value, attn_mask=attn_mask,
                                          is_causal=is_causal)


# ---- not attention, and odd shapes ------------------------------------------------------------------------------


def mlp():
    return build(nn.Sequential, nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 8))


class MoreHeadsThanFeatures(nn.Module):
    """num_heads = 16 > d_model = 8, as a student might set it: head_dim = 8 // 16 = 0."""

    def __init__(self, d_model=8, num_heads=16):
        super().__init__()
        self.d_model, self.num_heads = d_model, num_heads
        self.W_q, self.W_k, self.W_v, self.W_o = (nn.Linear(d_model, d_model) for _ in range(4))

    def forward(self, x):
        q, k, v = (W(x)[:, None] for W in (self.W_q, self.W_k, self.W_v))  # one head, whatever num_heads says
        return self.W_o(F.scaled_dot_product_attention(q, k, v)[:, 0])


class ManyNarrowHeads(nn.Module):
    """Correct: 16 heads of 4 features on d_model = 8 (the heads are wider together than the model)."""

    def __init__(self, d_model=8, num_heads=16, head_dim=4):
        super().__init__()
        self.d_model, self.num_heads, self.head_dim = d_model, num_heads, head_dim
        self.W_q, self.W_k, self.W_v = (nn.Linear(d_model, num_heads * head_dim) for _ in range(3))
        self.W_o = nn.Linear(num_heads * head_dim, d_model)

    def forward(self, x):
        q, k, v = (_split(W(x), self.num_heads) for W in (self.W_q, self.W_k, self.W_v))
        return self.W_o(_merge(F.scaled_dot_product_attention(q, k, v)))


class NoHeadCount(nn.Module):
    """Correct, but no num_heads attribute under any usual name: 4 heads, read from the code only."""

    def __init__(self, d_model=32):
        super().__init__()
        self.W_q, self.W_k, self.W_v, self.W_o = (nn.Linear(d_model, d_model) for _ in range(4))

    def forward(self, x):
        q, k, v = (_split(W(x), 4) for W in (self.W_q, self.W_k, self.W_v))
        return self.W_o(_merge(F.scaled_dot_product_attention(q, k, v)))


class Unreadable(nn.Module):
    """Correct attention whose projections have names audit does not know (proj_a/proj_b/...)."""

    def __init__(self, d_model=32, num_heads=4):
        super().__init__()
        self.num_heads = num_heads
        self.proj_a, self.proj_b, self.proj_c, self.proj_d = (nn.Linear(d_model, d_model) for _ in range(4))

    def forward(self, x):
        q, k, v = (_split(p(x), self.num_heads) for p in (self.proj_a, self.proj_b, self.proj_c))
        return self.proj_d(_merge(F.scaled_dot_product_attention(q, k, v)))
