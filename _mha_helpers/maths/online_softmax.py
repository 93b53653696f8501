"""Notebook 09, attention that costs less memory: the online softmax, and a FlashAttention-style attention that
walks over blocks of keys (forward and backward) so the L x S matrix of weights never exists.
"""

from __future__ import annotations

import math

import torch
from matplotlib.axes import Axes

from ..validation import (
    check_axes,
    check_bool,
    check_float_tensor,
    check_has_values,
    check_positive_int,
    check_qkv,
    check_scale,
)


def _causal_block_hidden(i0: int, i1: int, j0: int, j1: int, device: torch.device) -> torch.Tensor:
    """``(i1-i0, j1-j0)`` bool, True where key j is AFTER query i (j > i): what causal attention hides in a block."""
    rows = torch.arange(i0, i1, device=device)[:, None]  # (bq, 1) query positions
    cols = torch.arange(j0, j1, device=device)[None, :]  # (1, bk) key positions
    return cols > rows  # (bq, bk)


def _flash_forward(q, k, v, block_k: int, block_q: int, is_causal: bool, scale: float):
    """Blocked forward on 3-D tensors: q ``(N, L, d_k)``, k ``(N, S, d_k)``, v ``(N, S, d_v)``.

    Returns the output ``(N, L, d_v)`` and the log-sum-exp of each row's scores ``(N, L, 1)``, which is all the
    backward pass needs to rebuild any block of probabilities: P = exp(scores - lse).
    """
    N, L, _ = q.shape
    S, d_v = k.shape[1], v.shape[2]
    q = q * scale  # (N, L, d_k): the scale folded into Q once, instead of into every block of scores
    k_t = k.transpose(1, 2)  # (N, S, d_k) -> (N, d_k, S), a view; bmm reads its column blocks directly
    out = torch.empty(N, L, d_v, dtype=q.dtype, device=q.device)
    lse = torch.empty(N, L, 1, dtype=q.dtype, device=q.device)
    scores_buf = torch.empty(N * min(block_q, L) * min(block_k, S), dtype=q.dtype, device=q.device)
    for i0 in range(0, L, block_q):
        i1 = min(i0 + block_q, L)
        q_i = q[:, i0:i1]  # (N, bq, d_k)
        # Causal: query i sees keys 0..i, so this query block needs keys up to i1 - 1 only; later blocks are skipped.
        s_end = min(S, i1) if is_causal else S
        row_max = row_sum = acc = None
        for j0 in range(0, s_end, block_k):
            j1 = min(j0 + block_k, s_end)
            scores = scores_buf[: N * (i1 - i0) * (j1 - j0)].view(N, i1 - i0, j1 - j0)  # a (N, bq, bk) view
            torch.bmm(q_i, k_t[:, :, j0:j1], out=scores)  # (N, bq, d_k) @ (N, d_k, bk) -> (N, bq, bk)
            if is_causal and j1 - 1 > i0:  # the block crosses the diagonal: hide the keys after each query
                scores.masked_fill_(_causal_block_hidden(i0, i1, j0, j1, q.device), float("-inf"))
            block_max = scores.amax(dim=-1, keepdim=True)  # (N, bq, 1)
            # Key 0 is in the first block and every query sees it, so row_max is finite from the first block on.
            new_max = block_max if row_max is None else torch.maximum(row_max, block_max)
            probs = scores.sub_(new_max).exp_()  # exp(s - m) in place: every entry in [0, 1]
            if acc is None:
                row_sum = probs.sum(dim=-1, keepdim=True)  # (N, bq, 1)
                acc = torch.bmm(probs, v[:, j0:j1])  # (N, bq, bk) @ (N, bk, d_v) -> (N, bq, d_v)
            else:
                correction = (row_max - new_max).exp_()  # exp(m_old - m_new) <= 1: re-base the old sums
                row_sum.mul_(correction).add_(probs.sum(dim=-1, keepdim=True))
                acc.mul_(correction).baddbmm_(probs, v[:, j0:j1])  # acc = acc * c + probs @ v_j
            row_max = new_max
        out[:, i0:i1] = acc.div_(row_sum)  # the softmax's denominator, applied once at the end
        lse[:, i0:i1] = row_max + row_sum.log()  # log Σ_j exp(s_ij), per row
    return out, lse


def _flash_backward(grad_out, q, k, v, out, lse, block_k: int, block_q: int, is_causal: bool, scale: float,
                    needs: tuple[bool, bool, bool]):
    """Blocked backward: recomputes each block's probabilities from ``lse`` instead of having stored them.

    With P = softmax(Q Kᵀ · scale) and O = P V, for each block:  dV += Pᵀ dO,  dP = dO Vᵀ,
    dS = P ∘ (dP - D) with D = rowsum(dO ∘ O),  dQ += scale · dS K,  dK += scale · dSᵀ Q.
    """
    N, L, d_k = q.shape
    S = k.shape[1]
    grad_out = grad_out.contiguous()
    delta = (grad_out * out).sum(dim=-1, keepdim=True)  # (N, L, 1): D_i = Σ_j P_ij dP_ij = dO_i · O_i
    q_scaled = q * scale  # (N, L, d_k)
    v_t = v.transpose(1, 2)  # (N, S, d_v) -> (N, d_v, S), a view
    k_t = k.transpose(1, 2)  # (N, S, d_k) -> (N, d_k, S), a view
    dq = torch.zeros_like(q) if needs[0] else None
    dk = torch.empty_like(k) if needs[1] else None
    dv = torch.empty_like(v) if needs[2] else None
    buf_size = N * min(block_q, L) * min(block_k, S)
    probs_buf = torch.empty(buf_size, dtype=q.dtype, device=q.device)
    dp_buf = torch.empty(buf_size, dtype=q.dtype, device=q.device)
    for j0 in range(0, S, block_k):
        j1 = min(j0 + block_k, S)
        dk_j = torch.zeros(N, j1 - j0, d_k, dtype=q.dtype, device=q.device)
        dv_j = torch.zeros(N, j1 - j0, v.shape[2], dtype=q.dtype, device=q.device)
        # Causal: queries before j0 see none of these keys; start at the query block that holds position j0.
        first = (j0 // block_q) * block_q if is_causal else 0
        for i0 in range(first, L, block_q):
            i1 = min(i0 + block_q, L)
            shape = (N, i1 - i0, j1 - j0)
            probs = probs_buf[: math.prod(shape)].view(shape)
            torch.bmm(q_scaled[:, i0:i1], k_t[:, :, j0:j1], out=probs)  # scores (N, bq, bk)
            if is_causal and j1 - 1 > i0:
                probs.masked_fill_(_causal_block_hidden(i0, i1, j0, j1, q.device), float("-inf"))
            probs.sub_(lse[:, i0:i1]).exp_()  # P = exp(s - lse): the softmax, rebuilt block by block
            g_i = grad_out[:, i0:i1]  # (N, bq, d_v)
            if needs[2]:
                dv_j.baddbmm_(probs.transpose(1, 2), g_i)  # (N, bk, bq) @ (N, bq, d_v) -> (N, bk, d_v)
            if needs[0] or needs[1]:
                dp = dp_buf[: math.prod(shape)].view(shape)
                torch.bmm(g_i, v_t[:, :, j0:j1], out=dp)  # dP = dO Vᵀ: (N, bq, d_v) @ (N, d_v, bk)
                ds = dp.sub_(delta[:, i0:i1]).mul_(probs)  # dS = P ∘ (dP - D), the softmax's backward
                if needs[0]:
                    dq[:, i0:i1].baddbmm_(ds, k[:, j0:j1])  # (N, bq, bk) @ (N, bk, d_k); scaled once at the end
                if needs[1]:
                    dk_j.baddbmm_(ds.transpose(1, 2), q_scaled[:, i0:i1])  # (N, bk, bq) @ (N, bq, d_k)
        if needs[1]:
            dk[:, j0:j1] = dk_j
        if needs[2]:
            dv[:, j0:j1] = dv_j
    if needs[0]:
        dq.mul_(scale)
    return dq, dk, dv


class _OnlineSoftmaxAttention(torch.autograd.Function):
    """Autograd for :func:`online_softmax_attention`: saves q, k, v, the output and one log-sum-exp per row."""

    @staticmethod
    def forward(ctx, q, k, v, block_k: int, block_q: int, is_causal: bool, scale: float):
        out, lse = _flash_forward(q, k, v, block_k, block_q, is_causal, scale)
        ctx.save_for_backward(q, k, v, out, lse)  # O(L·d) in all: no L x S tensor is kept
        ctx.config = (block_k, block_q, is_causal, scale)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = _flash_backward(grad_out, q, k, v, out, lse, *ctx.config, needs=tuple(ctx.needs_input_grad[:3]))
        return dq, dk, dv, None, None, None, None


def online_softmax_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    block_size: int = 1024,
    is_causal: bool = False,
    scale: float | None = None,
    *,
    query_block_size: int = 1024,
) -> torch.Tensor:
    """softmax(Q Kᵀ · scale) V over blocks of keys, FlashAttention-style: the L x S matrix never exists.

    Shapes and conventions of ``torch.nn.functional.scaled_dot_product_attention``: query ``(..., L, d_k)``,
    key ``(..., S, d_k)``, value ``(..., S, d_v)`` with the same leading dims ``...`` (e.g. ``(batch, heads)``)
    -> output ``(..., L, d_v)``. Only the output is returned: the weights are never formed. ``is_causal=True``
    lets query i see keys 0..i (top-left aligned, as torch's; with L > S the queries i >= S see every key), and
    skips the blocks above the diagonal. ``scale`` defaults to 1/√d_k.

    How: queries are cut into blocks of ``query_block_size`` rows and keys into blocks of ``block_size``; for each
    query block, a running max m, a running sum l and an output accumulator walk over the key blocks (when m grows,
    the old l and accumulator are multiplied by exp(m_old - m_new)). Temporaries are ``(..., query_block_size,
    block_size)``, so memory is linear in the sequence length: 4 MiB per (batch, head) pair at the default 1024 x 1024
    in float32 (pass smaller blocks when batch x heads is large). Large blocks keep the Python loop short and every
    PyTorch operation big, which is what makes this plain-PyTorch version fast.

    Backward is its own (``torch.autograd.Function``): it saves q, k, v, the output and one log-sum-exp per row, and
    recomputes each block's probabilities, so training memory is linear too. float16/bfloat16 inputs are computed
    in float32 and returned in their dtype. Works on any device (CPU, CUDA, ...).
    """
    check_qkv(query, key, value)
    check_positive_int("block_size", block_size)
    check_positive_int("query_block_size", query_block_size)
    check_bool("is_causal", is_causal)
    check_scale("scale", scale)
    if not (query.shape[:-2] == key.shape[:-2] == value.shape[:-2]):
        raise ValueError(
            f"query, key and value must have the same leading dims (...), e.g. (batch, heads), got query "
            f"{tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}; for fewer K/V heads use "
            f"grouped_query_attention"
        )
    if key.shape[-2] == 0:
        raise ValueError(f"key has no positions (S=0, shape {tuple(key.shape)}): there is nothing to attend to")

    lead, (L, d_k), (S, d_v) = query.shape[:-2], query.shape[-2:], value.shape[-2:]
    scale = 1.0 / math.sqrt(d_k) if scale is None else float(scale)
    work = torch.float32 if query.dtype in (torch.float16, torch.bfloat16) else query.dtype
    N = math.prod(lead)  # the product of the leading dims, e.g. batch * heads
    q = query.reshape(N, L, d_k).to(work)  # (..., L, d_k) -> (N, L, d_k)
    k = key.reshape(N, S, d_k).to(work)  # (..., S, d_k) -> (N, S, d_k)
    v = value.reshape(N, S, d_v).to(work)  # (..., S, d_v) -> (N, S, d_v)
    out = _OnlineSoftmaxAttention.apply(q, k, v, block_size, query_block_size, is_causal, scale)  # (N, L, d_v)
    return out.to(query.dtype).view(*lead, L, d_v)  # (N, L, d_v) -> (..., L, d_v)


def online_softmax_steps(x: torch.Tensor, block_size: int) -> list[dict[str, object]]:
    """The online softmax of a 1-D vector, one block at a time, for printing.

    Returns one dict per block: ``"block"`` (its values), ``"block max"``, ``"running max"`` m, ``"rescale"``
    exp(m_old - m_new) applied to the old sum, and ``"running sum"`` l = Σ exp(x_j - m) over the blocks so far.
    The softmax is then ``exp(x - m) / l`` with the final m and l.
    """
    check_float_tensor("x", x, ranks=(1,))
    check_has_values("x", x)
    if x.numel() == 0:
        raise ValueError("x is empty (shape (0,)): pass at least one score")
    check_positive_int("block_size", block_size)
    steps, m, total = [], float("-inf"), 0.0
    for start in range(0, x.numel(), block_size):
        block = x[start:start + block_size]
        new_m = max(m, float(block.max()))
        rescale = math.exp(m - new_m)  # exp(-inf) = 0 before the first block
        total = total * rescale + float(torch.exp(block - new_m).sum())
        steps.append({"block": block, "block max": float(block.max()), "running max": new_m, "rescale": rescale,
                      "running sum": total})
        m = new_m
    return steps


def plot_block_schedule(seq_len: int, key_len: int, block_size: int, query_block_size: int, is_causal: bool = True,
                        ax: Axes | None = None) -> Axes:
    """Draw which (query block, key block) tiles :func:`online_softmax_attention` computes; returns the Axes.

    Tiles below the diagonal are computed whole, tiles that cross it are computed and then masked, tiles above it
    (causal only) are skipped: never multiplied, never stored.
    """
    for name, value in (("seq_len", seq_len), ("key_len", key_len), ("block_size", block_size),
                        ("query_block_size", query_block_size)):
        check_positive_int(name, value)
    check_bool("is_causal", is_causal)
    check_axes("ax", ax)
    rows = math.ceil(seq_len / query_block_size)
    cols = math.ceil(key_len / block_size)
    if rows > 64 or cols > 64:  # a larger grid is unreadable, and drawing its tiles one by one takes minutes
        raise ValueError(f"the schedule has {rows} x {cols} tiles; plot_block_schedule draws at most 64 x 64: "
                         f"use larger blocks (block_size, query_block_size) or a shorter seq_len/key_len")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    kind = torch.zeros(rows, cols)  # 0 skipped, 1 masked, 2 computed whole
    for r in range(rows):
        i0, i1 = r * query_block_size, min((r + 1) * query_block_size, seq_len)
        for c in range(cols):
            j0, j1 = c * block_size, min((c + 1) * block_size, key_len)
            if not is_causal or j1 - 1 <= i0:
                kind[r, c] = 2
            elif j0 <= i1 - 1:
                kind[r, c] = 1
    if ax is None:
        _, ax = plt.subplots(figsize=(0.45 * cols + 2.6, 0.45 * rows + 1.4))
    cmap = ListedColormap(["#f0f0f0", "#f4a261", "#2a9d8f"])
    ax.imshow(kind.numpy(), cmap=cmap, vmin=0, vmax=2, aspect="auto",
              extent=(0, key_len, seq_len, 0), interpolation="nearest")
    for c in range(1, cols):
        ax.axvline(c * block_size, color="white", lw=1)
    for r in range(1, rows):
        ax.axhline(r * query_block_size, color="white", lw=1)
    ax.set_xlabel(f"key position (blocks of {block_size})")
    ax.set_ylabel(f"query position (blocks of {query_block_size})")
    done = int((kind > 0).sum())
    ax.set_title(f"{'causal' if is_causal else 'full'} attention: {done} of {rows * cols} tiles computed")
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color="#2a9d8f", label="computed"), Patch(color="#f4a261", label="computed, then masked"),
                       Patch(color="#f0f0f0", label="skipped")], loc="upper right", fontsize=8, framealpha=0.9)
    return ax
