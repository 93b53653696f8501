"""The exercise checkers of notebook 09 (what heads cost): hidden cases, a reference, and a hint for each common mistake."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .core import _call_student, _shape_hint, exercise_checker


@exercise_checker("Exercise 9.1: the online softmax")
def check_online_softmax(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> str | None:
    """Check ``fn(x, block_size)``: the softmax of a 1-D ``x``, read block by block with a running max and sum."""
    cases = [
        (torch.tensor([0.5, 1.0, 2.0, 3.0, 4.0, 5.0]), 2, "a vector whose max grows from block to block"),
        (torch.tensor([1000.0, 998.0, 1001.0, 990.0, 1003.0, 1002.0]), 3, "scores as large as 1000"),
        (torch.linspace(-2.0, 3.0, 7), 3, "7 values in blocks of 3 (the last block is shorter)"),
        (torch.randn(10, generator=torch.Generator().manual_seed(9)) * 3, 1, "blocks of one value"),
        (torch.randn(5, generator=torch.Generator().manual_seed(5)), 8, "one block larger than the vector"),
    ]
    for x, block_size, what in cases:
        got = _call_student(fn, x.clone(), block_size)
        hint = _shape_hint("your output", got, x.shape)
        if hint:
            return f"{hint} (for {what})"
        expected = torch.softmax(x, dim=0)
        got = got.detach().to(expected.dtype)
        if not bool(torch.isfinite(got).all()):
            return (f"your output has inf or NaN for {what}: exp(1000) overflows float32; subtract the running max "
                    f"before exp (exp(x - m) is at most 1)")
        total = float(got.sum())
        if abs(total - 1.0) > 1e-4:
            return (f"your output sums to {total:.3g}, not 1, for {what}: when the running max grows from m_old to "
                    f"m_new, multiply the old running sum by exp(old_max - new_max) before adding the new block")
        if not torch.allclose(got, expected, atol=1e-5):
            return f"your output differs from torch.softmax(x, dim=0) for {what}: expected {expected}, got {got}"
    return None


@exercise_checker("Exercise 9.2: KV-cache bytes")
def check_kv_cache_bytes(fn: Callable[..., int]) -> str | None:
    """Check ``fn(num_layers, num_heads, num_kv_heads, head_dim, seq_len, batch, bytes_per_value)`` -> bytes."""
    cases = [(32, 32, 8, 128, 4096, 1, 2), (2, 8, 1, 64, 100, 3, 4), (4, 6, 6, 16, 10, 2, 2)]
    for num_layers, num_heads, num_kv_heads, head_dim, seq_len, batch, bpv in cases:
        got = _call_student(fn, num_layers, num_heads, num_kv_heads, head_dim, seq_len, batch, bpv)
        expected = 2 * num_layers * num_kv_heads * head_dim * seq_len * batch * bpv
        args = (f"num_layers={num_layers}, num_heads={num_heads}, num_kv_heads={num_kv_heads}, "
                f"head_dim={head_dim}, seq_len={seq_len}, batch={batch}, bytes_per_value={bpv}")
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            return f"return a number of bytes (an int), got {type(got).__name__}"
        if got == expected:
            continue
        if got * 2 == expected:
            return f"half of the expected {expected:,} for {args}: the cache stores the keys AND the values"
        if num_heads != num_kv_heads and got * num_kv_heads == expected * num_heads:
            return (f"you counted num_heads ({num_heads}) heads for {args}: only the num_kv_heads={num_kv_heads} "
                    f"K/V heads are cached; query heads share them")
        if got * bpv == expected:
            return f"that is a number of values, not bytes, for {args}: multiply by bytes_per_value={bpv}"
        if batch != 1 and got * batch == expected:
            return f"every sequence of the batch has its own cache: multiply by batch={batch} ({args})"
        return f"expected {expected:,} bytes for {args}, got {got:,}"
    return None
