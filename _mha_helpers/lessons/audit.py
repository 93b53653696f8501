"""Notebook 13, the bug hunt: ``audit`` runs an attention implementation on small, seeded inputs and reports which
property of attention it breaks, with the input it tried, what it saw, the usual cause and the section to reread.

Two kinds of ``attention`` are understood (audit_target.py): a **function** with ``F.scaled_dot_product_attention``'s
call convention, and an ``nn.Module`` **self-attention** called as ``module(x)``. A module whose forward takes
``key_padding_mask`` (``(batch, S)``, True = padding) gets the mask properties; one whose projections audit can read
(audit_reading.py: ``W_q/W_k/W_v/W_o``, ``q_proj/.../o_proj`` or ``out_proj``, ``query/key/value/out``,
``to_q/to_k/to_v/to_out``, packed ``qkv`` + ``proj``, ``c_attn`` + ``c_proj``, ``in_proj_weight`` + ``out_proj``, in
the module or a sub-module) gets the weight-based ones; one with ``new_cache(batch, max_len)`` and
``forward(x, cache=...)`` (as ``GroupedQuerySelfAttention``) gets ``cached_equals_full``. The probes are in
audit_probes.py, the references they compare with in audit_reference.py.

Before the properties, two checks decide whether they can be judged at all: the same input twice must give the same
output (else the verdict is "non-deterministic"), and some output must depend on another token (else "not
attention").
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..common import OneThread
from ..validation import check_bool, check_callable
from . import audit_probes as box
from . import audit_weight_probes as weights
from .audit_probes import close, dependencies, mixes_the_batch, raised, tolerance, unreadable
from .audit_target import Function, ImplementationRaised, Inputs, Module, WrongOutput, batch_size
from .audit_weight_probes import infer_heads

#: Every property ``audit`` reports, in the order of its table: the fixed set ``AuditReport.failed`` draws from.
AUDIT_PROPERTIES: tuple[str, ...] = (
    "deterministic", "rows_sum_to_one", "causal", "permutation_equivariant", "batch_independent", "mask_respected",
    "fully_masked_rows_finite", "half_precision_safe", "matches_reference", "heads_split_correctly",
    "scale_correct", "cached_equals_full",
)

#: property -> its probe, (target, inputs) -> (status, evidence): box = audit_probes.py, weights = audit_weight_probes.py
PROBES = {
    "deterministic": box.deterministic, "rows_sum_to_one": weights.rows_sum_to_one, "causal": box.causal,
    "permutation_equivariant": box.permutation_equivariant, "batch_independent": box.batch_independent,
    "mask_respected": box.mask_respected, "fully_masked_rows_finite": box.fully_masked_rows_finite,
    "half_precision_safe": box.half_precision_safe, "matches_reference": weights.matches_reference,
    "heads_split_correctly": weights.heads_split_correctly, "scale_correct": weights.scale_correct,
    "cached_equals_full": box.cached_equals_full,
}

_POSITIONS_HINT = "if it uses positions on purpose (RoPE, ALiBi, a relative bias), audit it with positions=True"

# property -> (what it means, the usual cause of a failure, the notebook section that explains it)
ABOUT: dict[str, tuple[str, str, str]] = {
    "deterministic": (
        "the same input gives the same output (a module is run in eval mode, as in use)",
        "non-deterministic in eval mode: dropout left on, e.g. dropout_p=self.dropout passed to "
        "F.scaled_dot_product_attention without `if self.training else 0.0`, or F.dropout(..., training=True); or "
        "state kept from one call to the next (a cache that is never reset)",
        "PyTorch's module.eval() sets self.training = False; gate dropout on it, as mh.MultiHeadAttention does"),
    "rows_sum_to_one": (
        "each output is a weighted average of the values (weights >= 0 that sum to 1 over the keys)",
        "softmax over the wrong dim (dim=-2 or 1 instead of -1), the scale applied after the softmax, weights never "
        "normalised (exp without dividing by the sum), or a query that sees no key (a causal mask with its diagonal "
        "off by one, tril(diagonal=-1): query 0 then gets a zero output)",
        "02 §3 Softmax: each row becomes weights that sum to 1"),
    "causal": (
        "changing a later token never changes an earlier output",
        "no causal mask, triu where tril was meant, or a diagonal off by one",
        "03 §2 The causal mask: each token sees only the past"),
    "permutation_equivariant": (
        "without positions, reordering the tokens reorders the outputs the same way",
        "something mixes token positions: a reshape without transpose, queries and keys swapped (K Qᵀ instead of "
        f"Q Kᵀ), or a position-dependent term; {_POSITIONS_HINT}",
        "04 §2 The tempting wrong reshape"),
    "batch_independent": (
        "changing one sequence of the batch never changes another sequence's output",
        "batch_first swapped (attention runs across the batch), or a mask broadcast across the batch",
        "05 §4 batch_first: the silent swap"),
    "mask_respected": (
        "blocked or padded keys get no weight: changing their keys and values changes nothing",
        "boolean mask inverted (SDPA: True = may attend; nn.MultiheadAttention: True = blocked), a padding mask "
        "expanded with repeat instead of repeat_interleave, a (batch, 1, S) mask on (batch, heads, L, S) scores, or "
        "the mask applied after the softmax (or multiplied into the scores) instead of -inf before it",
        "03 §3 The padding mask, §4 Two conventions: True means opposite things"),
    "fully_masked_rows_finite": (
        "a query whose keys are all masked gets a finite output (no NaN)",
        "softmax over a row of only -inf is 0/0 = NaN",
        "03 §5 A row with nothing to attend to: NaN"),
    "half_precision_safe": (
        "float16/bfloat16 with masks: finite and close to the implementation's own dtype",
        "a mask fill such as -1e10 that float16 cannot hold (its largest value is 65504)",
        "03 §6 -inf, -1e9 or torch.finfo(dtype).min?"),
    "matches_reference": (
        "equal to softmax(Q Kᵀ/√head_dim) V (then W_o) computed from the same inputs and weights; with "
        "positions=True, with RoPE or ALiBi as notebook 11 writes them",
        f"a step differs from project -> split -> attend -> merge -> W_o; {_POSITIONS_HINT}; a variant with a step "
        "the reference does not have (QK-norm, a learned temperature, softcapping) fails here by design",
        "05 §3 Assemble the whole module, one step per cell"),
    "heads_split_correctly": (
        "one head's output depends only on that head's slice of the features",
        "view to (batch, heads, seq, head_dim) without transpose, a merge without transposing back, or K/V heads "
        "expanded with repeat instead of repeat_interleave",
        "04 §2 The tempting wrong reshape"),
    "scale_correct": (
        "scores are scaled by 1/√head_dim before the softmax",
        "√d_model instead of √head_dim, no scale, or the scale applied after the softmax",
        "02 §5 Why divide by √d_k? (1) Dot products grow with d_k"),
    "cached_equals_full": (
        "decoding token by token (and in chunks) with the KV cache equals the full causal pass",
        "the causal mask aligned top-left (is_causal=True with fewer queries than keys) instead of to the end, or "
        "keys and values appended to the cache but not read back",
        "10 §2 Which keys may the new queries see? Top-left vs bottom-right"),
}

#: What ``AuditReport.verdict`` can say; only "passed" is ok.
VERDICTS: dict[str, str] = {
    "passed": "nothing failed, and at least half of the properties were checked",
    "failed": "at least one property failed",
    "incomplete": "nothing failed, but too little could be checked: audit says what it could not read and how to "
                  "make it readable",
    "not attention": "no output depends on another token: nothing is mixed across tokens, as attention does",
    "non-deterministic": "the same input twice gave different outputs, so no other property can be judged",
}

_MARK = {"pass": "✅ pass", "fail": "❌ fail", "n/a": "— n/a"}  # the word too: without an emoji font a symbol alone is blank


@dataclass(frozen=True)
class AuditRow:
    """One property's verdict: ``status`` is "pass", "fail" or "n/a"; ``evidence`` says what was tried and seen."""

    property: str
    status: str
    evidence: str

    @property
    def cause(self) -> str:
        return ABOUT[self.property][1]

    @property
    def section(self) -> str:
        return ABOUT[self.property][2]


class AuditReport:
    """What :func:`audit` returns: one :class:`AuditRow` per property of ``AUDIT_PROPERTIES``, and a verdict.

    ``verdict`` is one of ``VERDICTS``: "passed", "failed", "incomplete" (too little could be checked; ``unreadable``
    says what audit could not read and how to make it readable), "not attention" or "non-deterministic". ``ok`` is
    True only for "passed". ``failed``, ``passed`` and ``not_applicable`` list property names; ``kind`` is
    "function" or "module"; ``notes`` say how the implementation was called. In a notebook it shows as a table;
    ``print(report)`` gives the same as text.
    """

    def __init__(self, kind: str, what: str, causal: bool, rows: list[AuditRow], notes: list[str],
                 positions: bool = False, unreadable: list[str] | None = None, not_attention: str = "") -> None:
        self.kind, self.what, self.causal, self.rows, self.notes = kind, what, causal, rows, notes
        self.positions, self.unreadable, self.not_attention = positions, list(unreadable or []), not_attention

    @property
    def failed(self) -> list[str]:
        return [r.property for r in self.rows if r.status == "fail"]

    @property
    def passed(self) -> list[str]:
        return [r.property for r in self.rows if r.status == "pass"]

    @property
    def not_applicable(self) -> list[str]:
        return [r.property for r in self.rows if r.status == "n/a"]

    @property
    def checked(self) -> int:
        return len(self.passed) + len(self.failed)

    @property
    def verdict(self) -> str:
        if self["deterministic"].status == "fail":
            return "non-deterministic"
        if self.not_attention:
            return "not attention"
        if self.failed:
            return "failed"
        return "incomplete" if self.unreadable or 2 * self.checked < len(self.rows) else "passed"

    @property
    def ok(self) -> bool:
        return self.verdict == "passed"

    def __getitem__(self, name: str) -> AuditRow:
        for row in self.rows:
            if row.property == name:
                return row
        raise KeyError(f"{name!r} is not an audit property; they are {', '.join(AUDIT_PROPERTIES)}")

    def _headline(self) -> str:
        how = f"a {self.kind}, causal={self.causal}" + (", positions=True" if self.positions else "")
        checked = f"{self.checked} of {len(self.rows)} properties checked"
        verdict = {
            "passed": f"{checked}, all passed",
            "failed": f"{checked}, {len(self.failed)} failed: {', '.join(self.failed)}",
            "incomplete": f"NOT OK, INCOMPLETE: only {checked}, all passed; " + (
                "see 'could not read' below" if self.unreadable else "too few apply to call it passed (see the — rows)"),
            "not attention": f"NOT ATTENTION: {self.not_attention}",
            "non-deterministic": "NON-DETERMINISTIC: the same input twice gave different outputs; nothing else "
                                 "can be judged",
        }[self.verdict]
        return f"audit of {self.what} ({how}): {verdict}"

    def _lines(self) -> list[str]:
        return [f"note: {n}" for n in self.notes] + [f"could not read: {u}" for u in self.unreadable]

    def __repr__(self) -> str:
        lines = [self._headline()] + [f"  {line}" for line in self._lines()]
        width = max(len(p) for p in AUDIT_PROPERTIES)
        for r in self.rows:
            lines.append(f"{_MARK[r.status]:<6} {r.property:<{width}}  {r.evidence}")
            if r.status == "fail":
                lines.append(f"   {'':<{width}}  usual cause: {r.cause}")
                lines.append(f"   {'':<{width}}  read: {r.section}")
        return "\n".join(lines)

    __str__ = __repr__

    def _repr_html_(self) -> str:
        e = html.escape
        left = ' style="text-align:left; vertical-align:top"'  # notebooks right-align table cells by default
        head = f"<p><b>{e(self._headline())}</b></p>" + "".join(f"<p>{e(line)}</p>" for line in self._lines())
        cells = "".join(
            f"<tr><td{left}><code>{e(r.property)}</code></td><td{left}>{_MARK[r.status]}</td>"
            f"<td{left}>{e(r.evidence)}</td><td{left}>{e(r.cause) if r.status == 'fail' else ''}</td>"
            f"<td{left}>{e(r.section) if r.status == 'fail' else ''}</td></tr>"
            for r in self.rows
        )
        titles = ("property", "", "evidence: what audit tried and saw", "usual cause", "read")
        return head + "<table><tr>" + "".join(f"<th{left}>{t}</th>" for t in titles) + "</tr>" + cells + "</table>"


# ---- running it ---------------------------------------------------------------------------------------------------


def _first_run(t) -> Inputs:
    """The seeded inputs and the first call; an implementation that cannot run on them gets an error naming why."""
    try:
        return Inputs(t)
    except ImplementationRaised as exc:
        cause = exc.__cause__ or exc
        if isinstance(cause, WrongOutput):
            raise WrongOutput(str(cause)) from None
        call = "module(x)" if t.kind == "module" else "attention(query, key, value)"
        shapes = (f"x of shape (batch, seq, d_model) = ({batch_size(t)}, 6, {t.d_model})" if t.kind == "module" else
                  f"query, key, value of shape (batch, heads, L, head_dim) = (2, 2, 5, {t.head_dim})")
        problem = t.structure.problem if t.kind == "module" and t.structure.problem else ""
        raise ValueError(f"audit could not run {t.name}: {call} with {shapes} {raised(cause)}"
                         + (f" (note: {problem})" if problem else "")
                         + ". Run it yourself on such inputs and fix that first") from cause


def _all_but(first: AuditRow, why: str) -> list[AuditRow]:
    return [first] + [AuditRow(p, "n/a", f"not applicable: {why}") for p in AUDIT_PROPERTIES[1:]]


def _wrapper_note(t, d) -> str:
    """The projections were read in a sub-module: use them only when the module's output IS that sub-module's
    self-attention (a wrapper); a Transformer block does more, and its weights would give false alarms."""
    path = t.structure.layout.path
    try:
        inner = Module(t.m.get_submodule(path), t.causal)
        same = inner.d_model == t.d_model and close(inner(d.x)[0], d.out, tolerance(d))
    except (ImplementationRaised, TypeError, ValueError):
        same = False
    if same:
        return f"weights read in .{path}: the module's output is the self-attention of .{path}"
    t.structure.problem = (f"the module's output is not the self-attention of .{path} alone (a block around it?): "
                           f"audit .{path} itself")
    return ""


def _report(t, d, positions: bool) -> AuditReport:
    """Determinism, then mixing, then (a module) causality and heads found out, then every property."""
    notes = list(t.notes)
    first = AuditRow("deterministic", *PROBES["deterministic"](t, d))
    report = lambda rows, **kw: AuditReport(t.kind, t.name, t.causal, rows, notes, positions, **kw)  # noqa: E731
    if first.status == "fail":
        return report(_all_but(first, "the outputs are random (see deterministic), so no difference means anything"))
    found = dependencies(t, d)  # (L, L): output i moved when token j changed
    if not bool((found & ~torch.eye(d.L, dtype=torch.bool)).any()):
        if not mixes_the_batch(t, d):
            why = (f"changing one token at a time ({d.L} tokens, {d.what}) never moved another token's output, nor "
                   "another sequence's: nothing is mixed across tokens, as attention does")
            return report(_all_but(first, "not attention (see above)"), not_attention=why)
        notes.append("no output depends on another token of its own sequence, but outputs depend on the other "
                     "sequences of the batch: it attends across the batch")
    elif t.kind == "module" and not t.causal and not bool(found.triu(1).any()):
        t.causal = True
        d.out = t(d.x)[0]
        notes.append("the module is causal (later tokens never changed earlier outputs): audited with causal=True")
    if t.kind == "function" and not t.takes_mask:
        notes.append(f"{t.name} takes no attn_mask: the mask properties do not apply")
    if t.kind == "module" and t.structure.layout is not None and t.structure.problem is None:
        if t.structure.layout.path and (note := _wrapper_note(t, d)):
            notes.append(note)
        if t.structure.num_heads is None and t.structure.problem is None and (note := infer_heads(t, d)):
            notes.append(note)
    rows = [first] + [AuditRow(name, *PROBES[name](t, d)) for name in AUDIT_PROPERTIES[1:]]
    return report(rows, unreadable=[unreadable(t)] if t.kind == "module" and not t.structure.readable else [])


def audit(attention: Callable | nn.Module, *, causal: bool = False, positions: bool = False) -> AuditReport:
    """Run ``attention`` on small seeded inputs and report which of ``AUDIT_PROPERTIES`` it keeps and breaks.

    ``attention`` is a function with ``F.scaled_dot_product_attention``'s call convention (query/key/value
    ``(batch, heads, L, head_dim)``, a boolean ``attn_mask`` True = may attend, ``is_causal``) that returns the output
    (or ``(output, weights)``), or an ``nn.Module`` self-attention called as ``module(x)`` on ``(batch, seq,
    d_model)`` (see this file's docstring for what else a module may offer). ``causal=True`` says it should be causal
    (a function then gets ``is_causal=True``); a module that turns out causal on its own is audited as causal.
    ``positions=True`` says it uses token positions on purpose (RoPE, ALiBi, a relative bias): the output is then
    compared with RoPE and ALiBi as notebook 11 writes them, and the rows that assume no positions
    (``permutation_equivariant``, ``scale_correct``) are "n/a".

    Returns an :class:`AuditReport` (a table in a notebook) whose ``verdict`` is "passed", "failed", "incomplete",
    "not attention" or "non-deterministic"; ``report.ok`` is True only when it passed. A property that does not
    apply (no mask argument, no cache, ...) is "n/a", never failed. A module is copied before anything is changed;
    probes run in the implementation's own dtype and on its device (a function: the default dtype, on the CPU), on
    one CPU thread, in well under a second at d_model 64. The caller's random state is left as it was.
    """
    check_bool("causal", causal)
    check_bool("positions", positions)
    if isinstance(attention, type):
        raise TypeError(f"attention must be an instance or a function, got the class {attention.__name__}; "
                        f"build one first, e.g. audit({attention.__name__}(64, 4))")
    check_callable("attention", attention, "F.scaled_dot_product_attention, or an nn.Module")
    t = Module(attention, causal) if isinstance(attention, nn.Module) else Function(attention, causal)
    t.positions = positions
    cuda = [t.device] if t.device.type == "cuda" else []
    with OneThread(), torch.no_grad(), torch.random.fork_rng(devices=cuda):
        return _report(t, _first_run(t), positions)
