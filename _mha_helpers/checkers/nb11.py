"""The exercise checkers of notebook 11 (attention variants): hidden cases, a reference, and a hint for each common
mistake."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..maths.positions import alibi_slopes, rope
from ..maths.sliding_window import sliding_window_mask
from .core import _call_student, _matches, _shape_hint, exercise_checker


def _rope_halves(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """RoPE with the OTHER pairing (feature i with i + head_dim/2): the answer of a student who used rotate_half."""
    half = x.shape[-1] // 2
    perm = torch.cat([torch.arange(0, 2 * half, 2), torch.arange(1, 2 * half, 2)])  # interleaved -> halves order
    inverse = torch.argsort(perm)
    return rope(x[..., inverse], positions)[..., perm]


@exercise_checker("Exercise 11.1: rotary positions")
def check_rope(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> str | None:
    """Check ``fn(x, positions)``: x ``(..., seq, head_dim)`` with pairs (0, 1), (2, 3), ... rotated by
    ``positions[m] · 10000^(-2i/head_dim)``."""
    g = torch.Generator().manual_seed(11)
    cases = [
        (torch.randn(1, 5, 4, generator=g), torch.arange(5), "x (1, 5, 4), positions 0..4"),
        (torch.randn(2, 3, 6, 8, generator=g), torch.arange(7, 13), "x (2, 3, 6, 8), positions 7..12"),
        (torch.randn(4, 2, generator=g), torch.tensor([0, 3, 1, 100]), "x (4, 2) (one pair), positions 0, 3, 1, 100"),
    ]
    for x, positions, what in cases:
        got = _call_student(fn, x.clone(), positions.clone())
        hint = _shape_hint("your output", got, x.shape)
        if hint:
            return f"{hint} (for {what})"
        expected = rope(x, positions)
        if _matches(got, expected, atol=1e-4):
            continue
        got = got.detach().to(expected.dtype)
        if _matches(got, x):
            return f"your output equals x for {what}: rotate each pair by positions[m] * theta_i"
        if not torch.allclose(got.norm(dim=-1), x.norm(dim=-1), atol=1e-4):
            return (f"your output changes the vectors' lengths for {what}: a rotation keeps them; use "
                    f"(a cos - b sin, a sin + b cos) on each pair (a, b)")
        if _matches(got, rope(x, -positions), atol=1e-4):
            return f"you rotate the wrong way for {what}: the second feature of a pair gets a·sin + b·cos"
        if x.shape[-1] > 2 and _matches(got, _rope_halves(x, positions), atol=1e-4):
            return (f"you paired feature i with feature i + head_dim/2 (the 'halves' convention) for {what}; this "
                    f"exercise pairs neighbours: (x[0], x[1]), (x[2], x[3]), ...")
        return f"your output differs from the rotation for {what}; check theta_i = 10000 ** (-2 * i / head_dim)"
    return None


@exercise_checker("Exercise 11.2: ALiBi slopes")
def check_alibi_slopes(fn: Callable[[int], torch.Tensor]) -> str | None:
    """Check ``fn(num_heads)`` -> ``(num_heads,)``: the slopes of Press et al. (2022), non-powers of two included."""
    for num_heads in (8, 1, 2, 16, 12, 6, 3):
        got = _call_student(fn, num_heads)
        if not isinstance(got, torch.Tensor):
            try:
                got = torch.as_tensor(got, dtype=torch.float32)  # a list, tuple or NumPy array of slopes
            except (TypeError, ValueError, RuntimeError):
                return f"return a tensor (or a list) of {num_heads} slopes for num_heads={num_heads}"
        expected = alibi_slopes(num_heads)
        hint = _shape_hint(f"your slopes for num_heads={num_heads}", got, expected.shape)
        if hint:
            return hint
        got = got.detach().float()
        if _matches(got, expected, atol=1e-6):
            continue
        if _matches(got.flip(0), expected, atol=1e-6):
            return f"your slopes for num_heads={num_heads} are in reverse order: head 0 gets the largest, 2^(-8/n)"
        naive = torch.tensor([2.0 ** (-8.0 * k / num_heads) for k in range(1, num_heads + 1)])
        if num_heads & (num_heads - 1) and _matches(got, naive, atol=1e-6):
            return (f"2^(-8k/n) is the rule for a power of two only; for num_heads={num_heads} take the slopes of the "
                    f"largest power of two p below it, then every other slope of 2p heads")
        shifted = torch.tensor([2.0 ** (-8.0 * k / num_heads) for k in range(num_heads)])
        if _matches(got, shifted, atol=1e-6):
            return f"your first slope is 1 for num_heads={num_heads}: the sequence starts at 2^(-8/n), k = 1..n"
        return f"for num_heads={num_heads} expected {expected}, got {got}"
    return None


@exercise_checker("Exercise 11.3: the sliding-window mask")
def check_sliding_window_mask(fn: Callable[[int, int], torch.Tensor]) -> str | None:
    """Check ``fn(seq_len, window)`` -> ``(seq_len, seq_len)`` bool, True where query i may see key j."""
    for seq_len, window in ((6, 3), (5, 1), (4, 4), (3, 8), (9, 2)):
        got = _call_student(fn, seq_len, window)
        what = f"seq_len={seq_len}, window={window}"
        hint = _shape_hint(f"your mask for {what}", got, (seq_len, seq_len))
        if hint:
            return hint
        if got.dtype != torch.bool:
            return f"your mask has dtype {got.dtype}; make it boolean (True = may attend), e.g. with a comparison"
        expected = sliding_window_mask(seq_len, window)
        if torch.equal(got, expected):
            continue
        if torch.equal(got, ~expected):
            return f"your mask is inverted for {what}: True must mean 'may attend' (SDPA's convention)"
        if torch.equal(got, sliding_window_mask(seq_len, window + 1)):
            return f"each query sees window + 1 keys for {what}: the window counts the query's own position"
        if bool((got & ~torch.ones(seq_len, seq_len, dtype=torch.bool).tril()).any()):
            return f"your mask lets a query see later keys for {what}: the window ends at the query (j <= i)"
        return f"for {what} expected\n{expected.int()}\ngot\n{got.int()}"
    return None


@exercise_checker("Exercise 11.4: the MLA cache")
def check_latent_cache_bytes(fn: Callable[..., int]) -> str | None:
    """Check ``fn(num_layers, num_heads, head_dim, latent_dim, rope_dim, seq_len, bytes_per_value)`` -> bytes."""
    cases = [(60, 128, 128, 512, 64, 4096, 2), (2, 8, 16, 32, 0, 10, 4), (4, 4, 8, 12, 4, 7, 2)]
    for num_layers, num_heads, head_dim, latent_dim, rope_dim, seq_len, bpv in cases:
        got = _call_student(fn, num_layers, num_heads, head_dim, latent_dim, rope_dim, seq_len, bpv)
        args = (f"num_layers={num_layers}, num_heads={num_heads}, head_dim={head_dim}, latent_dim={latent_dim}, "
                f"rope_dim={rope_dim}, seq_len={seq_len}, bytes_per_value={bpv}")
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            return f"return a number of bytes (an int), got {type(got).__name__}"
        expected = num_layers * (latent_dim + rope_dim) * seq_len * bpv
        if got == expected:
            continue
        if got == 2 * num_layers * num_heads * head_dim * seq_len * bpv:
            return (f"that is the cache of the up-projected K and V ({args}), as large as multi-head attention's: "
                    f"MLA caches the latent instead")
        if got == 2 * expected:
            return f"twice the answer for {args}: ONE latent serves keys and values, so there is no factor 2"
        if rope_dim and got == num_layers * latent_dim * seq_len * bpv:
            return f"you left out the decoupled RoPE key features for {args}: they are cached too (rope_dim per token)"
        if got * bpv == expected:
            return f"that is a number of values, not bytes, for {args}: multiply by bytes_per_value={bpv}"
        return f"expected {expected:,} bytes for {args}, got {got:,}"
    return None
