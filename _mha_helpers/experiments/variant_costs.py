"""Notebook 11, what each attention variant costs: the parameters and KV-cache bytes of one layer as multi-head,
grouped-query, latent (MLA) and sliding-window attention, by formula and measured on the real modules (the numbers
the cost meter, ``widgets/cost_meter.py``, shows).
"""

from __future__ import annotations

import torch

from ..common import OneThread
from ..maths.attention import split_heads
from ..maths.kv_cache import GroupedQuerySelfAttention, KVCache
from ..maths.latent import MultiHeadLatentAttention
from ..validation import check_divisible, check_fits, check_positive_int


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
    for name, value in (("d_model", d_model), ("num_heads", num_heads), ("num_kv_heads", num_kv_heads),
                        ("latent_dim", latent_dim), ("window", window), ("context", context)):
        check_positive_int(name, value)
    check_divisible(d_model, num_heads, d_name="d_model")
    weights = 4 * d_model * d_model + 2 * d_model * (num_heads + num_kv_heads) * (d_model // num_heads)
    check_fits({"d_model": d_model, "num_heads": num_heads, "num_kv_heads": num_kv_heads, "latent_dim": latent_dim,
                "context": context}, 4 * (weights + 3 * d_model * latent_dim + 4 * context * (d_model + latent_dim)),
               "the four layers and their caches", "notebook 11 uses d_model=64, 8 heads and a context of 32")
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
