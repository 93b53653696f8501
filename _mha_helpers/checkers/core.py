"""The machinery every exercise checker shares: call the student's function, turn what happens into one line
(pass, a specific hint, or "not yet"), and never raise into the notebook.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch


class _NotYet(Exception):
    """Raised inside a checker when the student's function is still the stub."""


def _call_student(fn: Callable, *args, **kwargs):
    """Call the student's function; turn the stub's NotImplementedError or a None result into ``_NotYet``."""
    try:
        result = fn(*args, **kwargs)
    except NotImplementedError as exc:
        raise _NotYet() from exc
    if result is None:
        raise _NotYet()
    return result


class CheckResult:
    """What a checker returns: truthy when the exercise passed. It shows nothing in a notebook (the checker has
    already printed its verdict), so an exercise cell ends with the one line a student needs to read."""

    def __init__(self, passed: bool) -> None:
        self.passed = passed

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return f"CheckResult(passed={self.passed})"

    def _ipython_display_(self) -> None:  # IPython calls this instead of printing the repr: show nothing
        pass


def exercise_checker(title: str) -> Callable:
    """Decorator for checkers: the wrapped function returns None on success or a hint string on failure.

    The decorated checker prints ``✅ <title>: passed``, ``❌ <title>: <hint>`` or ``⏳ <title>: not yet ...`` and
    returns a :class:`CheckResult`, truthy only on success. Errors raised by the student's code become hints, never
    tracebacks.
    """

    def wrap(check: Callable[..., str | None]) -> Callable[..., CheckResult]:
        @functools.wraps(check)
        def run(*args, **kwargs) -> CheckResult:
            try:
                hint = check(*args, **kwargs)
            except _NotYet:
                print(f"⏳ {title}: not yet — replace the `raise NotImplementedError` with your code, then run again.")
                return CheckResult(False)
            except Exception as exc:  # the student's code raised: report it as a hint
                print(f"❌ {title}: your function raised {type(exc).__name__}: {exc}")
                return CheckResult(False)
            if hint:
                print(f"❌ {title}: {hint}")
                return CheckResult(False)
            print(f"✅ {title}: passed")
            return CheckResult(True)

        return run

    return wrap


def _matches(got: object, expected: torch.Tensor, atol: float = 1e-5) -> bool:
    """True when ``got`` is a tensor of ``expected``'s shape with the same values (``atol``, ``rtol=1e-4``; NaN never matches)."""
    return (
        isinstance(got, torch.Tensor)
        and tuple(got.shape) == tuple(expected.shape)
        and bool(torch.allclose(got.detach().double().cpu(), expected.detach().double().cpu(), atol=atol, rtol=1e-4))
    )


def _shape_hint(name: str, got: object, expected: Sequence[int]) -> str | None:
    """A hint when ``got`` is not a tensor of shape ``expected``; None when it is."""
    if not isinstance(got, torch.Tensor):
        return f"{name} should be a torch.Tensor, got {type(got).__name__}"
    if tuple(got.shape) != tuple(expected):
        return f"{name} has shape {tuple(got.shape)}, expected {tuple(expected)}"
    return None
