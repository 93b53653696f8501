"""Notebook 13, the bug hunt: ``audit`` runs an attention implementation on small, seeded inputs and reports which
property of attention it breaks, with the input it tried, what it saw, the usual cause and the section to reread.

Two kinds of ``attention`` are understood:

* a **function** with ``F.scaled_dot_product_attention``'s call convention: ``fn(query, key, value, attn_mask=...,
  is_causal=...)`` on ``(batch, heads, L, head_dim)`` tensors, a boolean ``attn_mask`` True where a query MAY attend;
  it returns the output (or a tuple whose first item is the output and whose second may be the weights);
* an ``nn.Module`` **self-attention** called as ``module(x)`` on ``(batch, seq, d_model)``; a tuple output's first
  item is the output. ``nn.MultiheadAttention`` is called as ``module(x, x, x, need_weights=False)``. A module whose
  forward takes ``key_padding_mask`` (``(batch, S)``, True = padding, nn.MultiheadAttention's convention) gets the
  mask properties; one with ``W_q/W_k/W_v/W_o``, ``q_proj/k_proj/v_proj/o_proj``, packed ``in_proj_weight`` +
  ``out_proj`` or nanoGPT's ``c_attn`` + ``c_proj`` (and ``num_heads``/``n_head``) gets the weight-based ones; one
  with ``new_cache(batch, max_len)`` and ``forward(x, cache=...)`` (as ``GroupedQuerySelfAttention``) gets
  ``cached_equals_full``.
"""

from __future__ import annotations

import copy
import html
import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..common import OneThread
from ..maths.attention import causal_mask
from ..validation import check_bool, check_callable
from .audit_probes import (
    PROBES,
    ProbeInputs,
    audit_batch_size,
    looks_causal,
    output_and_weights,
    positive_int_attr,
    projections,
    raised_text,
)

#: Every property ``audit`` reports, in the order of its table: the fixed set ``AuditReport.failed`` draws from.
AUDIT_PROPERTIES: tuple[str, ...] = (
    "rows_sum_to_one", "causal", "permutation_equivariant", "batch_independent", "mask_respected",
    "fully_masked_rows_finite", "half_precision_safe", "matches_reference", "heads_split_correctly",
    "scale_correct", "cached_equals_full",
)

# property -> (what it means, the usual cause of a failure, the notebook section that explains it)
ABOUT: dict[str, tuple[str, str, str]] = {
    "rows_sum_to_one": (
        "each output is a weighted average of the values (weights >= 0 that sum to 1 over the keys)",
        "softmax over the wrong dim (dim=-2 or 1 instead of -1), or the scale applied after the softmax",
        "02 §3 Softmax: each row becomes weights that sum to 1"),
    "causal": (
        "changing a later token never changes an earlier output",
        "no causal mask, triu where tril was meant, or a diagonal off by one",
        "03 §2 The causal mask: each token sees only the past"),
    "permutation_equivariant": (
        "without positions, reordering the tokens reorders the outputs the same way",
        "something mixes token positions: a reshape without transpose, or a position-dependent term",
        "04 §2 The tempting wrong reshape"),
    "batch_independent": (
        "changing one sequence of the batch never changes another sequence's output",
        "batch_first swapped (attention runs across the batch), or a mask broadcast across the batch",
        "05 §4 batch_first: the silent swap"),
    "mask_respected": (
        "blocked or padded keys get no weight: changing their values changes nothing",
        "boolean mask inverted (SDPA: True = may attend; nn.MultiheadAttention: True = blocked), a padding mask "
        "expanded with repeat instead of repeat_interleave, or a (batch, 1, S) mask on (batch, heads, L, S) scores",
        "03 §3 The padding mask, §4 Two conventions: True means opposite things"),
    "fully_masked_rows_finite": (
        "a query whose keys are all masked gets a finite output (no NaN)",
        "softmax over a row of only -inf is 0/0 = NaN",
        "03 §5 A row with nothing to attend to: NaN"),
    "half_precision_safe": (
        "float16/bfloat16 with masks: finite and close to float32",
        "a mask fill such as -1e10 that float16 cannot hold (its largest value is 65504)",
        "03 §6 -inf, -1e9 or torch.finfo(dtype).min?"),
    "matches_reference": (
        "equal to softmax(Q Kᵀ/√head_dim) V (then W_o) computed from the same inputs and weights",
        "a step differs from project -> split -> attend -> merge -> W_o",
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
        "the causal mask aligned top-left (is_causal=True with fewer queries than keys) instead of to the end",
        "09 §7 The KV cache"),
}

_MARK = {"pass": "✅", "fail": "❌", "n/a": "—"}


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
    """What :func:`audit` returns: one :class:`AuditRow` per property of ``AUDIT_PROPERTIES``.

    ``failed``, ``passed`` and ``not_applicable`` list property names; ``ok`` is True when nothing failed;
    ``kind`` is "function" or "module"; ``notes`` say how the implementation was called. In a notebook it shows as
    a table; ``print(report)`` gives the same as text.
    """

    def __init__(self, kind: str, what: str, causal: bool, rows: list[AuditRow], notes: list[str]) -> None:
        self.kind, self.what, self.causal, self.rows, self.notes = kind, what, causal, rows, notes

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
    def ok(self) -> bool:
        return not self.failed

    def __getitem__(self, name: str) -> AuditRow:
        for row in self.rows:
            if row.property == name:
                return row
        raise KeyError(f"{name!r} is not an audit property; they are {', '.join(AUDIT_PROPERTIES)}")

    def _headline(self) -> str:
        checked = len(self.rows) - len(self.not_applicable)
        verdict = "all passed" if self.ok else f"{len(self.failed)} failed: {', '.join(self.failed)}"
        return f"audit of {self.what} (a {self.kind}, causal={self.causal}): {checked} properties checked, {verdict}"

    def __repr__(self) -> str:
        lines = [self._headline()]
        lines += [f"  note: {n}" for n in self.notes]
        width = max(len(p) for p in AUDIT_PROPERTIES)
        for r in self.rows:
            lines.append(f"{_MARK[r.status]} {r.property:<{width}}  {r.evidence}")
            if r.status == "fail":
                lines.append(f"   {'':<{width}}  usual cause: {r.cause}")
                lines.append(f"   {'':<{width}}  read: {r.section}")
        return "\n".join(lines)

    __str__ = __repr__

    def _repr_html_(self) -> str:
        e = html.escape
        left = ' style="text-align:left; vertical-align:top"'  # notebooks right-align table cells by default
        head = f"<p><b>{e(self._headline())}</b></p>" + "".join(f"<p>note: {e(n)}</p>" for n in self.notes)
        cells = "".join(
            f"<tr><td{left}><code>{e(r.property)}</code></td><td{left}>{_MARK[r.status]}</td>"
            f"<td{left}>{e(r.evidence)}</td><td{left}>{e(r.cause) if r.status == 'fail' else ''}</td>"
            f"<td{left}>{e(r.section) if r.status == 'fail' else ''}</td></tr>"
            for r in self.rows
        )
        titles = ("property", "", "evidence: what audit tried and saw", "usual cause", "read")
        return head + "<table><tr>" + "".join(f"<th{left}>{t}</th>" for t in titles) + "</tr>" + cells + "</table>"


# ---- the two kinds of implementation ---------------------------------------------------------------------------


class _Function:
    """An SDPA-convention function: (batch, heads, L, head_dim) in, output out."""

    kind = "function"

    def __init__(self, fn: Callable, causal: bool) -> None:
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            sig = None
        self.takes_mask = self.takes_causal = True
        if sig is not None:
            params = list(sig.parameters.values())
            var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
            positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            if len(positional) < 3 and not any(p.kind is p.VAR_POSITIONAL for p in params):
                raise TypeError(
                    f"attention must take (query, key, value, attn_mask=None, is_causal=False) like "
                    f"F.scaled_dot_product_attention, got a function with signature {sig}; for a module called as "
                    f"module(x), pass an nn.Module"
                )
            self.takes_mask = var_kw or "attn_mask" in sig.parameters
            self.takes_causal = var_kw or "is_causal" in sig.parameters
            if causal and not self.takes_causal:
                raise TypeError(f"causal=True needs attention to accept is_causal=True; its signature is {sig}")
        self.fn, self.causal = fn, causal
        self.name = getattr(fn, "__qualname__", type(fn).__name__)
        self.head_dim = 8

    def __call__(self, q, k, v, mask=None, causal=None):
        kwargs = {}
        if mask is not None:
            kwargs["attn_mask"] = mask
        if (self.causal if causal is None else causal):
            kwargs["is_causal"] = True
        out, weights = output_and_weights(self.fn(q, k, v, **kwargs))
        if tuple(out.shape) != tuple(q.shape[:-1]) + (v.shape[-1],):
            raise ValueError(f"attention returned shape {tuple(out.shape)} for query {tuple(q.shape)} and value "
                             f"{tuple(v.shape)}; expected (batch, heads, L, d_v) = "
                             f"{tuple(q.shape[:-1]) + (v.shape[-1],)}")
        return out, weights


class _Module:
    """A self-attention module called as module(x) on (batch, seq, d_model)."""

    kind = "module"

    def __init__(self, module: nn.Module, causal: bool) -> None:
        sig = inspect.signature(module.forward)
        positional = [p for p in sig.parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
        if not positional:
            raise TypeError(f"the module's forward must take x (batch, seq, d_model), its signature is {sig}")
        self.notes: list[str] = []
        self.torch_mha = isinstance(module, nn.MultiheadAttention)
        base = copy.deepcopy(module)
        if self.torch_mha:
            base.dropout = 0.0  # on audit's copy only
            base.train()  # its eval fast path returns NaN for a fully padded sequence (03 §5)
            self.notes.append("nn.MultiheadAttention called as module(x, x, x, need_weights=False) in training mode "
                              "with dropout 0: its eval fast path gives NaN for a fully padded sequence (03 §5)")
            if not base.batch_first:
                self.notes.append("batch_first=False: this module reads dim 0 of (batch, seq, d_model) as the sequence")
        else:
            base.eval()  # dropout off
        self.m = base
        self.d_model = positive_int_attr(module, ("embed_dim", "d_model", "n_embd", "hidden_size", "dim"))
        params = [p for p in module.parameters()]
        if self.d_model is None:
            first = next((c for c in module.modules() if isinstance(c, nn.Linear)), None)
            if first is None:
                raise ValueError(f"cannot tell d_model of {type(module).__name__}: give it a d_model attribute")
            self.d_model = first.in_features
        self.dtype = params[0].dtype if params else torch.float32
        self.num_heads = positive_int_attr(module, ("num_heads", "n_head", "n_heads", "nhead", "num_attention_heads", "heads"))
        self.proj = projections(base, self.d_model)
        self.head_dim = positive_int_attr(module, ("head_dim",)) or (self.d_model // self.num_heads if self.num_heads else None)
        self.num_kv_heads = positive_int_attr(module, ("num_kv_heads", "n_kv_heads"))
        if self.proj and self.num_heads and not self.num_kv_heads:
            self.num_kv_heads = self.proj["k"][0].shape[0] // self.head_dim
        accepted = set(sig.parameters)
        var_kw = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
        self.takes_mask = self.torch_mha or var_kw or "key_padding_mask" in accepted
        self.has_cache = callable(getattr(module, "new_cache", None)) and (var_kw or "cache" in accepted)
        self.ours = "is_causal" in accepted and not self.torch_mha
        self.causal = causal
        self.name = f"{type(module).__name__}(d_model={self.d_model}" + (
            f", {self.num_heads} heads)" if self.num_heads else ")")

    def __call__(self, x, kpm=None, module=None, **extra):
        m = self.m if module is None else module
        kwargs = dict(extra)
        if kpm is not None:
            kwargs["key_padding_mask"] = kpm
        if self.torch_mha:
            if self.causal:
                kwargs["attn_mask"] = ~causal_mask(x.shape[1])  # nn.MultiheadAttention's convention: True = blocked
            result = m(x, x, x, need_weights=False, **kwargs)
        else:
            if self.causal and self.ours and kpm is None:
                kwargs["is_causal"] = True
            result = m(x, **kwargs)
        out, weights = output_and_weights(result)
        if tuple(out.shape) != tuple(x.shape[:2]) + (self.d_model,):
            raise ValueError(f"the module returned shape {tuple(out.shape)} for x {tuple(x.shape)}; expected "
                             f"(batch, seq, d_model) = {tuple(x.shape)}")
        return out, weights


def audit(attention: Callable | nn.Module, *, causal: bool = False) -> AuditReport:
    """Run ``attention`` on small seeded inputs and report which of ``AUDIT_PROPERTIES`` it keeps and breaks.

    ``attention`` is a function with ``F.scaled_dot_product_attention``'s call convention (query/key/value
    ``(batch, heads, L, head_dim)``, a boolean ``attn_mask`` True = may attend, ``is_causal``) that returns the output
    (or ``(output, weights)``), or an ``nn.Module`` self-attention called as ``module(x)`` on ``(batch, seq,
    d_model)`` (see this file's docstring for what else a module may offer). ``causal=True`` says it should be causal
    (a function then gets ``is_causal=True``). A module that turns out causal on its own is audited as causal.

    Returns an :class:`AuditReport` (a table in a notebook); ``report.failed`` lists the broken properties, and a
    property that does not apply (no mask argument, no cache, ...) is "n/a", never failed. The module is copied
    before anything is changed; everything runs on the CPU, on one thread, in a second or less at d_model 64.
    """
    check_bool("causal", causal)
    if isinstance(attention, type):
        raise TypeError(f"attention must be an instance or a function, got the class {attention.__name__}; "
                        f"build one first, e.g. audit({attention.__name__}(64, 4))")
    check_callable("attention", attention, what="a function like F.scaled_dot_product_attention or an nn.Module")
    with OneThread(), torch.no_grad():
        t = _Module(attention, causal) if isinstance(attention, nn.Module) else _Function(attention, causal)
        try:
            d = ProbeInputs(t)
        except Exception as exc:
            call = "module(x)" if t.kind == "module" else "attention(query, key, value)"
            shapes = (f"x of shape (batch, seq, d_model) = ({audit_batch_size(t)}, 6, {t.d_model})"
                      if t.kind == "module" else
                      "query, key, value of shape (batch, heads, L, head_dim) = (2, 2, 5, 8)")
            raise ValueError(f"audit could not run {t.name}: {call} with {shapes} {raised_text(exc)}. Run it yourself "
                             f"on such inputs and fix that first") from exc
        notes = list(getattr(t, "notes", []))
        if t.kind == "module" and not causal and looks_causal(t, d):
            t.causal = True
            d.out = t(d.x)[0]
            notes.append("the module is causal (later tokens never changed earlier outputs): audited with causal=True")
        if t.kind == "function" and not t.takes_mask:
            notes.append(f"{t.name} takes no attn_mask: the mask properties do not apply")
        rows = [AuditRow(name, *PROBES[name](t, d)) for name in AUDIT_PROPERTIES]
    return AuditReport(t.kind, t.name, t.causal, rows, notes)
