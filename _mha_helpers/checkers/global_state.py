"""The global state a checker must leave as it found it: the random states (torch, Python, NumPy, CUDA), torch's
thread count, grad mode and default dtype, saved before every check and put back after it (checkers/core.py).

A piece that cannot be read stops the check before the student's code runs; a piece that cannot be written back
does not stop the others, and the checker then reports its own failure (tests/unit/test_checker_contract.py makes
each of these functions raise in turn).
"""

from __future__ import annotations

import operator
import random
import sys
from collections.abc import Callable, Sequence

import torch


class StateNotRestored(Exception):
    """A piece of global state the checker saved could not be put back (the checker's failure, never the student's)."""


def _same_numpy_state(a: tuple, b: tuple) -> bool:
    """NumPy's legacy random state, ``('MT19937', keys, pos, has_gauss, cached)``, compared entry by entry."""
    numpy = sys.modules["numpy"]
    return len(a) == len(b) and all(bool(numpy.array_equal(x, y)) for x, y in zip(a, b, strict=True))


def _same_tensors(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def state_pieces() -> list[tuple[str, Callable, Callable, Callable]]:
    """``(what, read, write, same)`` for each piece of global state a check must leave as it found it: the random
    states (torch, Python, NumPy, CUDA), torch's thread count, grad mode and default dtype. Looked up on every call,
    so they are the functions torch, random and NumPy hold at that moment."""
    pieces = [
        ("torch's random state", torch.get_rng_state, torch.set_rng_state, torch.equal),
        ("Python's random state", random.getstate, random.setstate, operator.eq),
        ("torch's thread count", torch.get_num_threads, torch.set_num_threads, operator.eq),
        ("torch's grad mode", torch.is_grad_enabled, torch.set_grad_enabled, operator.eq),
        ("torch's default dtype", torch.get_default_dtype, torch.set_default_dtype, operator.eq),
    ]
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        pieces.append(("NumPy's random state", numpy.random.get_state, numpy.random.set_state, _same_numpy_state))
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        pieces.append(("CUDA's random states", torch.cuda.get_rng_state_all, torch.cuda.set_rng_state_all,
                       _same_tensors))
    return pieces


def save_global_state() -> list[tuple[tuple, object]]:
    """Every piece of :func:`state_pieces` with its current value. Raises if one cannot be read: the check must then
    not run, since it could not promise to put that piece back."""
    return [(piece, piece[1]()) for piece in state_pieces()]


def restore_global_state(saved: list[tuple[tuple, object]]) -> StateNotRestored | None:
    """Put every saved piece back (only those that changed); a piece that cannot be put back does not stop the
    others. Returns the first failure (None when all went well), so that the checker reports it as its own."""
    failure = None
    for (what, read, write, same), value in saved:
        try:
            if same(read(), value):
                continue
        except Exception:  # noqa: BLE001 - cannot tell whether it changed: write it back anyway
            pass
        try:
            write(value)
        except Exception as exc:  # noqa: BLE001 - reported after the other pieces are back
            failure = failure or StateNotRestored(f"could not restore {what}: {type(exc).__name__}: {exc}")
    return failure
