"""The exercise checkers of notebook 09 (what heads cost): hidden cases, a reference, and a hint for each common mistake."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.overrides import TorchFunctionMode

from .core import (
    _as_number,
    _call_student,
    _close,
    _describe_case,
    _isclose_number,
    _shape_hint,
    _spying_on_softmax,
    _sums_to_one,
    _tensor_answer,
    _values,
    exercise_checker,
)

#: torch functions that look at many values at once to find (or use) their maximum, or to add them up.
_MAX_LIKE = {"max", "amax", "argmax", "aminmax", "logsumexp", "sort", "argsort", "topk", "cummax", "kthvalue",
             "msort", "softmax", "log_softmax"}
_SUM_LIKE = {"sum", "nansum", "mean", "cumsum", "trapezoid", "dot", "inner", "matmul", "__matmul__", "mv"}
_SUB_LIKE = {"sub", "sub_", "subtract", "__sub__", "__isub__"}


class _WholeVectorWatch(TorchFunctionMode):
    """Watches the student's torch calls for signs that ``x`` was read whole, not block by block: a max-like or
    sum-like reduction over more values than any block (or any list of per-block results) holds, or a block of
    ``x`` shifted by a maximum of values not read yet (one taken in advance, in whatever way, Python's
    ``max(x.tolist())`` and NumPy's included). "Read" means used by a torch call on a slice of at most
    ``block_size`` values; ``seen`` holds one sentence per sign found."""

    def __init__(self, x: torch.Tensor, block_size: int) -> None:
        super().__init__()
        self.x, self.original = x, x.clone()  # the tensor passed (to recognise its slices), and its values
        self.block_size, self.read_until = block_size, 0  # x[:read_until] has been read block by block
        self.limit = max(block_size, -(-len(x) // block_size))  # a block, or one result per block
        self.seen: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        first = args[0] if args else None
        if isinstance(first, torch.Tensor) and first.numel() > self.limit:
            pairwise = name == "max" and (any(isinstance(a, torch.Tensor) for a in args[1:]) or "other" in kwargs)
            if (name in _MAX_LIKE and not pairwise) or name in _SUM_LIKE:
                self.seen.append(f"takes the {name} of {first.numel()} values at once")
        if name in _SUB_LIKE and isinstance(first, torch.Tensor) and len(args) > 1:
            self._check_shift(first, args[1])
        for arg in args:
            span = self._slice_of_x(arg)
            if span is not None and span[1] - span[0] <= self.block_size:
                self.read_until = max(self.read_until, span[1])  # a block read
        return func(*args, **kwargs)

    def _slice_of_x(self, t: object) -> tuple[int, int] | None:
        """``(start, end)`` when ``t`` is a contiguous slice ``x[start:end]`` of the tensor passed (or one value of
        it); None otherwise."""
        if not isinstance(t, torch.Tensor) or t.dim() > 1 or t.numel() == 0 or (t.dim() == 1 and t.stride(0) != 1):
            return None
        if t.untyped_storage().data_ptr() != self.x.untyped_storage().data_ptr():
            return None
        return t.storage_offset(), t.storage_offset() + t.numel()

    def _check_shift(self, block: torch.Tensor, shift: object) -> None:
        """Record it when a slice of ``x`` is shifted by more than every value read so far (this block included),
        by one of the values not read yet: a maximum read in advance. (A running max that starts too high, at 0, is
        none of x's values; a second pass over the blocks after the first has read them all is fine.)"""
        span = self._slice_of_x(block)
        if isinstance(shift, torch.Tensor):
            shift = shift.item() if shift.numel() == 1 else None
        if span is None or not isinstance(shift, (int, float)) or not math.isfinite(shift):
            return
        end = max(span[1], self.read_until)
        read, unread = float(self.original[:end].max()), self.original[end:].double()
        tolerance = 1e-5 * max(1.0, abs(shift))
        if shift > read + tolerance and bool(((unread - shift).abs() <= tolerance).any()):
            self.seen.append(f"shifts values {span[0]}..{span[1] - 1} by {shift:.6g}, a value it has not read yet "
                             f"(the largest read so far is {read:.6g}): a maximum taken before the blocks were read")


@exercise_checker("Exercise 9.1: the online softmax")
def check_online_softmax(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> str | None:
    """Check ``fn(x, block_size)``: the softmax of a 1-D ``x``, read block by block with a running max and sum.

    It must not call torch's softmax, nor read the whole vector at once: torch calls that take a max-like or
    sum-like reduction over more values than a block holds, or shift a block by a maximum not read yet (however it
    was taken) are detected; a maximum taken and used only in plain Python or NumPy, never passing through torch,
    cannot be. Its running max must work for all-negative scores. Prints a pass, a specific hint or "not yet";
    returns True on a pass.
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
        passed = x.clone()
        watch = _WholeVectorWatch(passed, block_size)
        with _describe_case(what), _spying_on_softmax() as calls, watch:
            got = _call_student(fn, passed, block_size)
        if calls:
            return (f"your function calls {', '.join(dict.fromkeys(calls))}: the exercise is to compute the softmax "
                    "yourself, block by block, with a running max and a running sum")
        if watch.seen:
            return (f"your function reads the whole vector at once: it {watch.seen[0]} (block_size={block_size}, "
                    f"for {what}). An online softmax never sees the whole vector: keep a running max m, update it "
                    "per block, m_new = max(m, block.max()), and a running sum re-based by exp(m_old - m_new)")
        hint = _online_softmax_values_hint(_tensor_answer(got), x, block_size, what)
        if hint:
            return hint
    return None


def _online_softmax_values_hint(got: object, x: torch.Tensor, block_size: int, what: str) -> str | None:
    """None when ``got`` is softmax(x) (at its own dtype's tolerance); else what went wrong with the running max or
    sum."""
    hint = _shape_hint("your output", got, x.shape, "(n,)", f"for {what}")
    if hint:
        return hint
    if not bool(torch.isfinite(got).all()):
        if bool((x < -80).all()):
            return (f"your output has inf or NaN for {what}: does your running max start at 0? For scores "
                    "below 0 it then never moves, exp(x - 0) underflows to 0 and the sum is 0. Start it at "
                    "float('-inf') (or at the first block's max)")
        return (f"your output has inf or NaN for {what}: exp(1000) overflows float32; subtract the running max "
                f"before exp (exp(x - m) is at most 1)")
    total = float(got.double().sum())
    blocks = -(-len(x) // block_size)
    if blocks > 1 and abs(total - blocks) < 1e-3 * blocks:
        return (f"your output sums to {total:.3g}, one per block, for {what}: you normalised each block by its "
                "own sum; divide everything by the total running sum at the end")
    if not _sums_to_one(got, -1):
        return (f"your output sums to {total:.3g}, not 1, for {what}: when the running max grows from m_old to "
                f"m_new, multiply the old running sum by exp(old_max - new_max) before adding the new block")
    expected = torch.softmax(x, dim=0)
    if not _close(got, expected):
        return (f"your output differs from torch.softmax(x, dim=0) for {what}: expected {_values(expected)}, "
                f"got {_values(got)}")
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
