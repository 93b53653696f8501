"""The exercise checkers of notebook 09 (what heads cost): hidden cases, a reference, and a hint for each common mistake."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.overrides import TorchFunctionMode

from .core import (
    _as_number,
    _as_tensor,
    _call_student,
    _close,
    _describe_case,
    _isclose_number,
    _shape_hint,
    _spying_on_softmax,
    exercise_checker,
)

#: torch functions that look at many values at once to find (or use) their maximum.
_MAX_LIKE = {"max", "amax", "argmax", "aminmax", "logsumexp", "sort", "argsort", "topk", "cummax", "kthvalue",
             "msort", "softmax", "log_softmax"}


class _WholeVectorMax(TorchFunctionMode):
    """Records a max-like reduction over more than ``limit`` values: reading ``x`` whole, not block by block."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit, self.seen = limit, []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        first = args[0] if args else None
        pairwise = name == "max" and (any(isinstance(a, torch.Tensor) for a in args[1:]) or "other" in kwargs)
        if name in _MAX_LIKE and not pairwise and isinstance(first, torch.Tensor) and first.numel() > self.limit:
            self.seen.append(name)
        return func(*args, **kwargs)



@exercise_checker("Exercise 9.1: the online softmax")
def check_online_softmax(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> str | None:
    """Check ``fn(x, block_size)``: the softmax of a 1-D ``x``, read block by block with a running max and sum.

    It must not call torch's softmax, nor take the max of the whole vector first (a max-like reduction over more
    than ``block_size`` values is detected); its running max must work for all-negative scores. Prints a pass, a
    specific hint or "not yet"; returns True on a pass.
    """
    cases = [
        (torch.tensor([0.5, 1.0, 2.0, 3.0, 4.0, 5.0]), 2, "a vector whose max grows from block to block"),
        (torch.tensor([1000.0, 998.0, 1001.0, 990.0, 1003.0, 1002.0]), 3, "scores as large as 1000"),
        (torch.tensor([-1000.0, -1002.0, -999.0, -1005.0, -1001.0]), 2, "scores that are all near -1000"),
        (torch.linspace(-2.0, 3.0, 7), 3, "7 values in blocks of 3 (the last block is shorter)"),
        (torch.randn(10, generator=torch.Generator().manual_seed(9)) * 3, 1, "blocks of one value"),
        (torch.randn(5, generator=torch.Generator().manual_seed(5)), 8, "one block larger than the vector"),
    ]
    for x, block_size, what in cases:
        spy = _WholeVectorMax(block_size)
        with _describe_case(what), _spying_on_softmax() as calls, spy:
            got = _call_student(fn, x.clone(), block_size)
        if calls:
            return (f"your function calls {', '.join(dict.fromkeys(calls))}: the exercise is to compute the softmax "
                    "yourself, block by block, with a running max and a running sum")
        if spy.seen:
            return (f"your function takes the {spy.seen[0]} of the whole vector (more than block_size={block_size} "
                    f"values at once, for {what}): an online softmax never sees the whole vector; keep a running max "
                    "m, update it per block, m_new = max(m, block.max())")
        got = _as_tensor(got)
        hint = _shape_hint("your output", got, x.shape, "(n,)", f"for {what}")
        if hint:
            return hint
        expected = torch.softmax(x, dim=0)
        got = got.double()
        if not bool(torch.isfinite(got).all()):
            if bool((x < -80).all()):
                return (f"your output has inf or NaN for {what}: does your running max start at 0? For scores "
                        "below 0 it then never moves, exp(x - 0) underflows to 0 and the sum is 0. Start it at "
                        "float('-inf') (or at the first block's max)")
            return (f"your output has inf or NaN for {what}: exp(1000) overflows float32; subtract the running max "
                    f"before exp (exp(x - m) is at most 1)")
        total = float(got.sum())
        blocks = -(-len(x) // block_size)
        if blocks > 1 and abs(total - blocks) < 1e-3:
            return (f"your output sums to {total:.3g}, one per block, for {what}: you normalised each block by its "
                    "own sum; divide everything by the total running sum at the end")
        if abs(total - 1.0) > 1e-4:
            return (f"your output sums to {total:.3g}, not 1, for {what}: when the running max grows from m_old to "
                    f"m_new, multiply the old running sum by exp(old_max - new_max) before adding the new block")
        if not _close(got, expected):
            return f"your output differs from torch.softmax(x, dim=0) for {what}: expected {expected}, got {got}"
    return None


@exercise_checker("Exercise 9.2: KV-cache bytes")
def check_kv_cache_bytes(fn: Callable[..., int]) -> str | None:
    """Check ``fn(num_layers, num_heads, num_kv_heads, head_dim, seq_len, batch, bytes_per_value)`` -> bytes (an
    int in any reasonable form: Python or NumPy int, ``np.prod(...)``, ``math.prod``, a one-element tensor)."""
    # The first case's factors all differ (and differ from K/V's 2), so each wrong answer is told apart.
    cases = [(3, 8, 2, 16, 10, 5, 4), (32, 32, 8, 128, 4096, 1, 2), (2, 8, 1, 64, 100, 3, 4), (4, 6, 6, 16, 10, 2, 2)]
    for num_layers, num_heads, num_kv_heads, head_dim, seq_len, batch, bpv in cases:
        args = (f"num_layers={num_layers}, num_heads={num_heads}, num_kv_heads={num_kv_heads}, "
                f"head_dim={head_dim}, seq_len={seq_len}, batch={batch}, bytes_per_value={bpv}")
        with _describe_case(args):
            raw = _call_student(fn, num_layers, num_heads, num_kv_heads, head_dim, seq_len, batch, bpv)
        expected = 2 * num_layers * num_kv_heads * head_dim * seq_len * batch * bpv
        got = _as_number(raw)
        if got is None:
            return f"return a number of bytes (an int), got {type(raw).__name__}"
        if _isclose_number(got, expected):
            continue
        for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
            if _isclose_number(got * size, expected):
                return f"that is {unit}; return the number of bytes itself ({expected:,} for {args})"
        if _isclose_number(got, expected * 8):
            return f"that is bits: bytes_per_value already counts bytes, do not multiply by 8 ({args})"
        if _isclose_number(got * 2, expected):
            return f"half of the expected {expected:,} for {args}: the cache stores the keys AND the values"
        if num_heads != num_kv_heads and _isclose_number(got * num_kv_heads, expected * num_heads):
            return (f"you counted num_heads ({num_heads}) heads for {args}: only the num_kv_heads={num_kv_heads} "
                    f"K/V heads are cached; query heads share them")
        if num_heads != num_kv_heads and _isclose_number(got * num_kv_heads, expected * (num_heads + num_kv_heads)):
            return (f"you counted the query heads too ({args}): the cache holds only keys and values, "
                    f"num_kv_heads={num_kv_heads} heads of each")
        if _isclose_number(got * bpv, expected):
            return f"that is a number of values, not bytes, for {args}: multiply by bytes_per_value={bpv}"
        if batch != 1 and _isclose_number(got * batch, expected):
            return f"every sequence of the batch has its own cache: multiply by batch={batch} ({args})"
        if num_layers != 1 and _isclose_number(got * num_layers, expected):
            return f"every layer has its own cache: multiply by num_layers={num_layers} ({args})"
        return f"expected {expected:,} bytes for {args}, got {got:,}"
    return None
