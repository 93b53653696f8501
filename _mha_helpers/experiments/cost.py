"""Notebook 09, measuring what attention costs: FLOPs counted, time measured, and which SDPA kernel PyTorch picked
(peak memory is measured in ``memory.py``).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..validation import (
    check_callable,
    check_divisible,
    check_int,
    check_leading_dims_broadcast,
    check_positive_int,
    check_qkv,
)


def attention_flops(batch: int, seq_len: int, d_model: int, num_heads: int) -> dict[str, int]:
    """Count the work of one multi-head self-attention forward pass, ``(batch, seq_len, d_model)`` in and out.

    Matrix products count 2 FLOPs per multiply-add (as ``torch.utils.flop_counter.FlopCounterMode`` does):

    * ``"Q/K/V projections"``: 3 x 2·batch·L·d_model²
    * ``"scores Q·Kᵀ"``: num_heads x 2·batch·L·L·head_dim = 2·batch·L²·d_model
    * ``"weights·V"``: the same, 2·batch·L²·d_model
    * ``"output projection"``: 2·batch·L·d_model²
    * ``"total matmul FLOPs"``: the sum of the four; ``num_heads`` cancels out of every term.

    and, not FLOPs of a matrix product but what does grow with the number of heads:

    * ``"attention-map entries"``: batch·num_heads·L² scores, each of which goes through the softmax
      (max, subtract, exp, sum, divide) and, when the weights are kept, takes memory.
    """
    for name, value in (("batch", batch), ("seq_len", seq_len), ("d_model", d_model), ("num_heads", num_heads)):
        check_positive_int(name, value)
    check_divisible(d_model, num_heads, d_name="d_model")
    head_dim = d_model // num_heads
    counts = {
        "Q/K/V projections": 3 * 2 * batch * seq_len * d_model * d_model,
        "scores Q·Kᵀ": num_heads * 2 * batch * seq_len * seq_len * head_dim,
        "weights·V": num_heads * 2 * batch * seq_len * seq_len * head_dim,
        "output projection": 2 * batch * seq_len * d_model * d_model,
    }
    counts["total matmul FLOPs"] = sum(counts.values())
    counts["attention-map entries"] = batch * num_heads * seq_len * seq_len
    return counts


def count_matmul_flops(fn: Callable[[], object]) -> int:
    """Run ``fn()`` once under ``torch.utils.flop_counter.FlopCounterMode`` and return the FLOPs it counted.

    The counter knows matrix products (``mm``, ``bmm``, ``addmm``, ``baddbmm``, ...) and some fused attention
    kernels; elementwise work such as the softmax counts 0.
    """
    from torch.utils.flop_counter import FlopCounterMode

    check_callable("fn", fn)
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def attention_map_bytes(batch: int, num_heads: int, seq_len: int, key_len: int | None = None,
                        bytes_per_value: int = 4) -> int:
    """Bytes of the attention weights ``(batch, num_heads, L, S)``: batch·num_heads·L·S·bytes_per_value."""
    key_len = seq_len if key_len is None else key_len
    for name, value in (("batch", batch), ("num_heads", num_heads), ("seq_len", seq_len), ("key_len", key_len),
                        ("bytes_per_value", bytes_per_value)):
        check_positive_int(name, value)
    return batch * num_heads * seq_len * key_len * bytes_per_value


def median_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """The median wall-clock time of ``fn()`` over ``repeats`` runs, after ``warmup`` runs (CUDA is synchronised)."""

    check_callable("fn", fn)
    check_positive_int("repeats", repeats)
    check_int("warmup", warmup, minimum=0)
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


class _QuietStderr:
    """Silence the process's stderr (file descriptor 2) for a moment: torch's profiler prints start/stop lines there."""

    def __enter__(self):

        sys.stderr.flush()
        self._saved = os.dup(2)
        self._null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(self._null, 2)
        return self

    def __exit__(self, *exc):
        os.dup2(self._saved, 2)
        os.close(self._saved)
        os.close(self._null)
        return False


def sdpa_kernel_used(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, **kwargs) -> str:
    """Which kernel ``F.scaled_dot_product_attention(query, key, value, **kwargs)`` runs, seen by ``torch.profiler``.

    Returns the name of the ATen operator that did the work, e.g. ``"_scaled_dot_product_flash_attention_for_cpu"``
    (PyTorch's flash kernel on the CPU) or ``"_scaled_dot_product_attention_math"`` (the plain "math" version, which
    forms the whole weight matrix, as notebook 02 does).
    """
    from torch.profiler import ProfilerActivity, profile

    check_qkv(query, key, value)  # clear messages instead of the kernel's own
    check_leading_dims_broadcast(query, key, value)
    with _QuietStderr(), profile(activities=[ProfilerActivity.CPU]) as prof:
        F.scaled_dot_product_attention(query, key, value, **kwargs)
    names = [e.name.removeprefix("aten::") for e in prof.events()]
    kernels = [n for n in names if n.startswith("_scaled_dot_product") and "backward" not in n]
    return kernels[0] if kernels else "none of the fused kernels: " + ", ".join(sorted(set(names))[:5])
