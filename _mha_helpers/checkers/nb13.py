"""The exercise checkers of notebook 13 (the bug hunt): each runs :func:`audit` on the student's fix and passes when
nothing fails and the property the bug broke is really checked (not "n/a")."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..audit import audit
from ..bug_zoo import _build
from .core import _NotYet, exercise_checker


def _audit_hint(implementation: object, must_pass: tuple[str, ...], causal: bool, kind: str) -> str | None:
    """None when ``audit`` passes ``implementation`` with every one of ``must_pass`` checked; else a hint."""
    if kind == "module":
        if not (isinstance(implementation, type) and issubclass(implementation, nn.Module)):
            return f"pass the class itself (an nn.Module subclass), got {type(implementation).__name__}"
        try:
            implementation = _build(implementation)  # fixed weights, as the zoo's modules
        except NotImplementedError as exc:
            raise _NotYet() from exc
    elif isinstance(implementation, nn.Module) or not callable(implementation):
        return f"pass your function, got {type(implementation).__name__}"
    try:
        report = audit(implementation, causal=causal)
    except ValueError as exc:
        if isinstance(exc.__cause__, NotImplementedError):
            raise _NotYet() from exc
        return str(exc)
    if report.failed:
        specific = [p for p in report.failed if p != "matches_reference"] or report.failed  # the most telling row
        first = report[specific[0]]
        return (f"audit still fails {', '.join(report.failed)}. {first.property}: {first.evidence}. "
                f"Usual cause: {first.cause}")
    for name in must_pass:
        if report[name].status != "pass":
            return f"{name} is no longer checked ({report[name].evidence}): keep the argument the bug was about"
    return None


@exercise_checker("Exercise 13.1: fix the -1e10 fill")
def check_fix_fill_value(fn: Callable) -> str | None:
    """Check a fixed ``attention_c(query, key, value, attn_mask=None)``: audit passes, half_precision_safe included."""
    return _audit_hint(fn, ("half_precision_safe", "mask_respected", "fully_masked_rows_finite"), False, "function")


@exercise_checker("Exercise 13.2: fix the padding mask over the heads")
def check_fix_padding_heads(cls: type) -> str | None:
    """Check a fixed ``SelfAttentionG`` class: audit of ``cls()`` passes, mask_respected included."""
    return _audit_hint(cls, ("mask_respected", "matches_reference", "heads_split_correctly"), False, "module")


@exercise_checker("Exercise 13.3: fix the GPT-style block")
def check_fix_gpt_block(cls: type) -> str | None:
    """Check a fixed ``CausalSelfAttention`` class: audit of ``cls()`` with causal=True passes, scale included."""
    return _audit_hint(cls, ("scale_correct", "causal", "matches_reference"), True, "module")
