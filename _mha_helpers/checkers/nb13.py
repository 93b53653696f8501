"""The exercise checkers of notebook 13 (the bug hunt): each runs :func:`audit` on the student's fix and passes when
nothing fails and the properties the bug was about are really checked (not "n/a").

The student's code is first called once through ``_call_student`` (so the untouched stub, a forgotten ``return`` and
the student's own errors get the usual lines), then audited.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..lessons.audit import audit
from ..lessons.audit_reading import positive_int_attr
from ..lessons.bug_zoo import build_implementation
from .core import _call_student, exercise_checker


def _first_call(implementation: object, kind: str) -> tuple[object, str | None]:
    """Build (a class) and call the student's code once on audit-like inputs; return it ready for audit, or a hint."""
    g = torch.Generator().manual_seed(13)
    if kind == "function":
        if isinstance(implementation, type) or isinstance(implementation, nn.Module):
            return None, f"pass your function, got {type(implementation).__name__}"
        q, k, v = (torch.randn(2, 2, 5, 8, generator=g) for _ in range(3))
        _call_student(implementation, q, k, v)  # query, key, value: (batch, heads, L, head_dim) = (2, 2, 5, 8)
        return implementation, None
    if not (isinstance(implementation, type) and issubclass(implementation, nn.Module)):
        return None, f"pass the class itself (an nn.Module subclass), got {type(implementation).__name__}"
    module = _call_student(build_implementation, implementation)  # built with its default arguments and fixed weights
    d_model = positive_int_attr(module, ("d_model", "n_embd", "embed_dim")) or 32
    with torch.no_grad():
        _call_student(module, torch.randn(2, 6, d_model, generator=g))  # x: (batch, seq, d_model)
    return module, None


def _verdict_hint(report) -> str | None:
    """The hint for a report that is not "passed", most telling row first; None when it passed."""
    if report.verdict == "non-deterministic":
        row = report["deterministic"]
        return f"audit: {row.evidence}. Usual cause: {row.cause}"
    if report.verdict == "not attention":
        return f"audit says this is not attention: {report.not_attention}"
    if report.failed:
        specific = [p for p in report.failed if p != "matches_reference"] or report.failed  # the most telling row
        first = report[specific[0]]
        return (f"audit still fails {', '.join(report.failed)}. {first.property}: {first.evidence}. "
                f"Usual cause: {first.cause}")
    if report.verdict == "incomplete":
        return f"audit could check only {report.checked} of {len(report.rows)} properties: {report.unreadable[0]}"
    return None


def _audit_hint(implementation: object, must_pass: tuple[str, ...], causal: bool, kind: str) -> str | None:
    """None when ``audit`` passes ``implementation`` with every one of ``must_pass`` checked; else a hint."""
    implementation, hint = _first_call(implementation, kind)
    if hint:
        return hint
    try:
        report = audit(implementation, causal=causal)
    except (TypeError, ValueError) as exc:  # audit names what is wrong with the implementation itself
        return str(exc).splitlines()[0]
    if (hint := _verdict_hint(report)) is not None:
        return hint
    for name in must_pass:
        if report[name].status != "pass":
            return f"{name} is no longer checked ({report[name].evidence}): keep the argument the bug was about"
    return None


def _fill_hint(fn: Callable) -> str | None:
    """None when the mask fill lies below every score; else a hint. The keys a query may see all score about
    -2.5e5 here: a fill of -1e4 (or -65504) is then ABOVE them, and the blocked keys take all the weight."""
    dtype = torch.get_default_dtype()
    q = torch.full((1, 1, 5, 8), 300.0, dtype=dtype)  # (batch, heads, L, head_dim); q·k/√8 = -300·300·8/√8
    v = torch.randn(1, 1, 5, 8, generator=torch.Generator().manual_seed(13), dtype=torch.float32).to(dtype)
    mask = torch.ones(5, 5, dtype=torch.bool)
    mask[:, [1, 3]] = False  # True = may attend: keys 1 and 3 blocked
    got = _call_student(fn, q, -q, v, attn_mask=mask)
    want = v[:, :, [0, 2, 4]].mean(dim=-2, keepdim=True).expand_as(v)  # equal scores: the mean of the visible values
    if torch.allclose(got.double(), want.double(), atol=1e-3):
        return None
    return ("with every score a query may see near -2.5e5, the blocked keys took the weight: the fill must lie below "
            "every possible score, and a number such as -1e4 or -65504 does not. Fill with "
            "torch.finfo(scores.dtype).min (or float('-inf'), with a guard for a query that sees no key)")


@exercise_checker("Exercise 13.1: fix the -1e10 fill")
def check_fix_fill_value(fn: Callable) -> str | None:
    """Check a fixed ``attention_c(query, key, value, attn_mask=None)``: audit passes, half_precision_safe included,
    and the fill lies below every score (scores near -2.5e5 are tried too)."""
    must_pass = ("half_precision_safe", "mask_respected", "fully_masked_rows_finite")
    return _audit_hint(fn, must_pass, False, "function") or _fill_hint(fn)


@exercise_checker("Exercise 13.2: fix the padding mask over the heads")
def check_fix_padding_heads(cls: type) -> str | None:
    """Check a fixed ``SelfAttentionG`` class: audit of ``cls()`` passes, mask_respected included."""
    return _audit_hint(cls, ("mask_respected", "matches_reference", "heads_split_correctly"), False, "module")


@exercise_checker("Exercise 13.3: fix the GPT-style block")
def check_fix_gpt_block(cls: type) -> str | None:
    """Check a fixed ``CausalSelfAttention`` class: audit of ``cls()`` with causal=True passes, scale included."""
    return _audit_hint(cls, ("scale_correct", "causal", "matches_reference"), True, "module")
