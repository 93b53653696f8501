"""The exercise checkers of notebook 11 (attention variants): hidden cases, a reference, and a hint for each common
mistake."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..maths.positions import alibi_slopes, rope
from ..maths.sliding_window import sliding_window_mask
from .core import (
    _as_number,
    _call_student,
    _close,
    _describe_case,
    _isclose_number,
    _matches,
    _shape_hint,
    _tensor_answer,
    _values,
    exercise_checker,
)


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
        with _describe_case(what):
            got = _tensor_answer(_call_student(fn, x.clone(), positions.clone()))
        hint = _shape_hint("your output", got, x.shape)
        if hint:
            return f"{hint} (for {what})"
        hint = _rope_hint(got, x, positions, what)
        if hint:
            return hint
    return None


def _rope_hint(got: torch.Tensor, x: torch.Tensor, positions: torch.Tensor, what: str) -> str | None:
    """None when ``got`` is x rotated by RoPE (at the tolerance of its own dtype, half precision included); else the
    mistake it shows."""
    expected = rope(x, positions)
    if _matches(got, expected, atol=1e-4):
        return None
    if _matches(got, x):
        return f"your output equals x for {what}: rotate each pair by positions[m] * theta_i"
    lengths = got.double().norm(dim=-1).to(got.dtype)  # judged at the answer's own precision
    if not _close(lengths, x.norm(dim=-1), atol=1e-4):
        return (f"your output changes the vectors' lengths for {what}: a rotation keeps them; use "
                f"(a cos - b sin, a sin + b cos) on each pair (a, b)")
    if _matches(got, rope(x, -positions), atol=1e-4):
        return f"you rotate the wrong way for {what}: the second feature of a pair gets a·sin + b·cos"
    if x.shape[-1] > 2 and _matches(got, _rope_halves(x, positions), atol=1e-4):
        return (f"you paired feature i with feature i + head_dim/2 (the 'halves' convention) for {what}; this "
                f"exercise pairs neighbours: (x[0], x[1]), (x[2], x[3]), ...")
    return f"your output differs from the rotation for {what}; check theta_i = 10000 ** (-2 * i / head_dim)"


@exercise_checker("Exercise 11.2: ALiBi slopes")
def check_alibi_slopes(fn: Callable[[int], torch.Tensor]) -> str | None:
    """Check ``fn(num_heads)`` -> ``(num_heads,)``: the slopes of Press et al. (2022), non-powers of two included."""
    for num_heads in (8, 1, 2, 16, 12, 6, 3):
        with _describe_case(f"num_heads={num_heads}"):
            got = _tensor_answer(_call_student(fn, num_heads))
        if isinstance(got, (list, tuple)):
            try:
                got = torch.tensor([_as_number(v) for v in got])  # a list of slopes (Python or NumPy numbers)
            except (TypeError, ValueError, RuntimeError):
                got = None
        if not isinstance(got, torch.Tensor) or not got.is_floating_point():
            return f"return a tensor (or a list) of {num_heads} slopes, floats, for num_heads={num_heads}"
        expected = alibi_slopes(num_heads)
        hint = _shape_hint(f"your slopes for num_heads={num_heads}", got, expected.shape)
        if hint:
            return hint
        if _matches(got, expected):
            continue
        if _matches(got.flip(0), expected):
            return f"your slopes for num_heads={num_heads} are in reverse order: head 0 gets the largest, 2^(-8/n)"
        naive = torch.tensor([2.0 ** (-8.0 * k / num_heads) for k in range(1, num_heads + 1)])
        if num_heads & (num_heads - 1) and _matches(got, naive):
            return (f"2^(-8k/n) is the rule for a power of two only; for num_heads={num_heads} take the slopes of the "
                    f"largest power of two p below it, then every other slope of 2p heads")
        shifted = torch.tensor([2.0 ** (-8.0 * k / num_heads) for k in range(num_heads)])
        if _matches(got, shifted):
            return f"your first slope is 1 for num_heads={num_heads}: the sequence starts at 2^(-8/n), k = 1..n"
        return f"for num_heads={num_heads} expected {_values(expected)}, got {_values(got)}"
    return None


@exercise_checker("Exercise 11.3: the sliding-window mask")
def check_sliding_window_mask(fn: Callable[[int, int], torch.Tensor]) -> str | None:
    """Check ``fn(seq_len, window)`` -> ``(seq_len, seq_len)`` bool, True where query i may see key j."""
    for seq_len, window in ((6, 3), (5, 1), (4, 4), (3, 8), (9, 2)):
        what = f"seq_len={seq_len}, window={window}"
        with _describe_case(what):
            got = _tensor_answer(_call_student(fn, seq_len, window))
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
        i, j = (int(t) for t in (got != expected).nonzero()[0])
        return (f"for {what} your mask differs from the window in {int((got != expected).sum())} places, e.g. "
                f"query {i}, key {j} is {bool(got[i, j])} but should be {bool(expected[i, j])} (True where "
                f"i - window < j <= i)")
    return None


@exercise_checker("Exercise 11.4: the MLA cache")
def check_latent_cache_bytes(fn: Callable[..., int]) -> str | None:
    """Check ``fn(num_layers, num_heads, head_dim, latent_dim, rope_dim, seq_len, bytes_per_value)`` -> bytes."""
    cases = [(60, 128, 128, 512, 64, 4096, 2), (2, 8, 16, 32, 0, 10, 4), (4, 4, 8, 12, 4, 7, 2)]
    for num_layers, num_heads, head_dim, latent_dim, rope_dim, seq_len, bpv in cases:
        args = (f"num_layers={num_layers}, num_heads={num_heads}, head_dim={head_dim}, latent_dim={latent_dim}, "
                f"rope_dim={rope_dim}, seq_len={seq_len}, bytes_per_value={bpv}")
        with _describe_case(args):
            raw = _call_student(fn, num_layers, num_heads, head_dim, latent_dim, rope_dim, seq_len, bpv)
        got = _as_number(raw)
        if got is None:
            return f"return a number of bytes (an int), got {type(raw).__name__}"
        expected = num_layers * (latent_dim + rope_dim) * seq_len * bpv
        if _isclose_number(got, expected):
            continue
        if _isclose_number(got, 2 * num_layers * num_heads * head_dim * seq_len * bpv):
            return (f"that is the cache of the up-projected K and V ({args}), as large as multi-head attention's: "
                    f"MLA caches the latent instead")
        if _isclose_number(got, 2 * expected):
            return f"twice the answer for {args}: ONE latent serves keys and values, so there is no factor 2"
        if rope_dim and _isclose_number(got, num_layers * latent_dim * seq_len * bpv):
            return f"you left out the decoupled RoPE key features for {args}: they are cached too (rope_dim per token)"
        if _isclose_number(got * bpv, expected):
            return f"that is a number of values, not bytes, for {args}: multiply by bytes_per_value={bpv}"
        return f"expected {expected:,} bytes for {args}, got {got:,}"
    return None
