"""The probes behind :func:`audit` (audit.py): each runs the implementation on small seeded inputs built to expose
one property of attention and returns ``(status, evidence)``, where status is "pass", "fail" or "n/a".

A probe never changes the caller's module: probes that set weights (``W_o = I``, one-hot values, ...) work on a copy.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..maths.attention import merge_heads, split_heads


def _g(x: float) -> str:
    """A number at 3 significant digits, the same at 1 and 2 threads."""
    return f"{x:.3g}"


def output_and_weights(result: object) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(output, weights or None) from what an implementation returned."""
    weights = None
    if isinstance(result, (tuple, list)):
        if not result:
            raise ValueError("attention returned an empty tuple; return the output tensor (or (output, weights))")
        if len(result) > 1 and isinstance(result[1], torch.Tensor):
            weights = result[1]
        result = result[0]
    if not isinstance(result, torch.Tensor):
        raise ValueError(f"attention returned {type(result).__name__}; return the output tensor (or (output, weights))")
    return result, weights


def _scale(t: torch.Tensor) -> float:
    return 1.0 + float(t.detach().abs().max()) if t.numel() else 1.0


def _maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    d = (a.detach().double() - b.detach().double()).abs()
    return float("nan") if bool(torch.isnan(d).any()) else float(d.max())


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> bool:
    d = _maxdiff(a, b)
    return d == d and d <= tol * max(_scale(a), _scale(b))


def raised_text(exc: Exception) -> str:
    """``raised ValueError: <first line of the message>``, for evidence and error messages."""
    return f"raised {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"


def positive_int_attr(obj: object, names: tuple[str, ...]) -> int | None:
    """The first of the attributes ``names`` of ``obj`` that is a positive int (e.g. d_model under its many names)."""
    for n in names:
        value = getattr(obj, n, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def projections(m: nn.Module, d_model: int) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]] | None:
    """Views of the Q/K/V/O weights (out_features, in_features) and biases, for the module families audit knows."""
    def lin(name):
        layer = getattr(m, name, None)
        return (layer.weight, layer.bias) if isinstance(layer, nn.Linear) else None

    for names in (("W_q", "W_k", "W_v", "W_o"), ("q_proj", "k_proj", "v_proj", "o_proj"),
                  ("q_proj", "k_proj", "v_proj", "out_proj"), ("wq", "wk", "wv", "wo"),
                  ("to_q", "to_k", "to_v", "to_out")):
        found = [lin(n) for n in names]
        if all(found):
            return dict(zip("qkvo", found, strict=True))
    packed = None
    if isinstance(getattr(m, "in_proj_weight", None), torch.Tensor) and lin("out_proj"):
        packed, bias, out = m.in_proj_weight, getattr(m, "in_proj_bias", None), lin("out_proj")
    elif lin("c_attn") and lin("c_proj"):
        (packed, bias), out = lin("c_attn"), lin("c_proj")
    if packed is None or packed.shape[0] != 3 * d_model:
        return None
    E = d_model
    parts = {c: (packed[i * E:(i + 1) * E], None if bias is None else bias[i * E:(i + 1) * E])
             for i, c in enumerate("qkv")}
    return {**parts, "o": out}


# ---- the probes: each returns (status, evidence) ---------------------------------------------------------------


def _probe(fn):
    """Run a probe; an exception raised by the implementation is a failure with its message as evidence."""
    def run(*args):
        try:
            return fn(*args)
        except _NotApplicable as na:
            return "n/a", f"not applicable: {na}"
        except Exception as exc:  # the implementation raised on this input
            return "fail", f"{fn.__doc__.strip().rstrip('.')}: {raised_text(exc)}"
    return run


class _NotApplicable(Exception):
    pass


def _reference(q, k, v, mask=None, causal=False, scale=None):
    """softmax(q kᵀ · scale + mask) v in float64, K/V heads shared by groups of query heads; zero for dead rows."""
    q, k, v = q.double(), k.double(), v.double()
    if k.shape[-3] != q.shape[-3]:
        k = k.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)  # (b, H_kv, S, hd) -> (b, H, S, hd)
        v = v.repeat_interleave(q.shape[-3] // v.shape[-3], dim=-3)
    scores = q @ k.transpose(-2, -1) * (scale or 1.0 / math.sqrt(q.shape[-1]))  # (..., L, S)
    allowed = torch.ones(scores.shape[-2:], dtype=torch.bool)
    if causal:
        allowed = allowed.tril()
    if mask is not None:
        allowed = allowed & mask
    scores = scores.masked_fill(~allowed, float("-inf"))
    dead = ~allowed.any(-1, keepdim=True)
    w = torch.softmax(scores.masked_fill(dead, 0.0), dim=-1).masked_fill(dead, 0.0)
    return w @ v


def _module_reference(t, x: torch.Tensor, proj=None) -> torch.Tensor:
    """The module's own weights through project -> split -> attend -> merge -> W_o, in float64."""
    P = proj or t.proj

    def heads(name, h):
        w, b = P[name]
        y = F.linear(x.double(), w.double(), None if b is None else b.double())  # (B, L, h·hd)
        return split_heads(y, h)  # (B, L, h·hd) -> (B, h, L, hd)
    out = _reference(heads("q", t.num_heads), heads("k", t.num_kv_heads), heads("v", t.num_kv_heads), causal=t.causal)
    merged = merge_heads(out)  # (B, H, L, hd) -> (B, L, d_model)
    w, b = P["o"]
    return F.linear(merged, w.double(), None if b is None else b.double())


def _edited(t):
    """A copy of the module and its projection views, for probes that set weights (W_o = identity etc.)."""
    if not (t.proj and t.num_heads and t.head_dim and t.num_heads * t.head_dim == t.d_model
            and t.proj["o"][0].shape == (t.d_model, t.d_model)):
        raise _NotApplicable("audit does not recognise this module's W_q/W_k/W_v/W_o (see the audit docstring)")
    m = copy.deepcopy(t.m)
    P = projections(m, t.d_model)
    with torch.no_grad():
        P["o"][0].copy_(torch.eye(t.d_model))
        if P["o"][1] is not None:
            P["o"][1].zero_()
    return m, P


def audit_batch_size(t) -> int:
    """The batch of a module's inputs: as many sequences as heads (2..8), so that a (batch, 1, S) mask broadcasts
    over (batch, heads, L, S) scores silently, as it does in the bug it exposes; else 3."""
    return t.num_heads if t.num_heads and 2 <= t.num_heads <= 8 else 3


class ProbeInputs:
    """The seeded inputs every probe starts from."""

    def __init__(self, t) -> None:
        g = torch.Generator().manual_seed(13)
        self.g = g
        if t.kind == "function":
            self.shape = (2, 2, 5, t.head_dim)  # (batch, heads, L, head_dim)
            self.q, self.k, self.v = (torch.randn(self.shape, generator=g) for _ in range(3))
            self.out = t(self.q, self.k, self.v)[0]
            self.what = f"query/key/value {self.shape}"
        else:
            self.B = audit_batch_size(t)
            self.L = 6
            self.x = torch.randn(self.B, self.L, t.d_model, generator=g).to(t.dtype)
            self.out = t(self.x)[0]
            self.what = f"x ({self.B}, {self.L}, {t.d_model})"

    def noise(self, shape) -> torch.Tensor:
        return torch.randn(shape, generator=self.g)


def _changed(a, b, where: str = "") -> str:
    return f"max |change| {_g(_maxdiff(a, b))} {where}".rstrip()


@_probe
def _rows_sum_to_one(t, d):
    """values all equal, output checked."""
    if t.kind == "function":
        c = d.noise((2, 2, 1, t.head_dim))  # one value vector per (batch, head)
        out, w = t(d.q, d.k, c.expand_as(d.v).contiguous())
        want, what = c.expand_as(out), f"every key's value = the same vector v ({d.what})"
    else:
        if (w := t(d.x)[1]) is not None and w.dim() in (3, 4) and w.shape[-2:] == (d.L, d.L):
            sums = w.detach().double().sum(-1)
            if not (bool(torch.allclose(sums, torch.ones_like(sums), atol=1e-4)) and bool((w >= -1e-6).all())):
                return "fail", (f"returned weights for {d.what}: rows sum to {_g(float(sums.min()))}..."
                                f"{_g(float(sums.max()))}, min weight {_g(float(w.min()))}")
            if t.proj is None:
                return "pass", f"returned weights for {d.what}: >= 0, rows sum to 1 (within 1e-4)"
        m, P = _edited(t)
        hd, kv = t.head_dim, t.num_kv_heads
        c0 = d.noise((hd,))
        with torch.no_grad():  # value of every token = c0 in every head: W_v reads feature 0, which is 1 everywhere
            P["v"][0].zero_()
            P["v"][0][:, 0] = c0.repeat(kv)
            if P["v"][1] is not None:
                P["v"][1].zero_()
        x = d.x.clone()
        x[..., 0] = 1.0
        out, w = t(x, module=m)
        want = c0.repeat(t.num_heads).expand_as(out)
        what = f"every token's value = the same vector v, W_o = I ({d.what})"
    if _close(out, want, 1e-4):
        return "pass", f"{what}: every output = v (within 1e-4)"
    ratio = float((out.double() * want.double()).sum() / (want.double() ** 2).sum())
    if _close(out, ratio * want.double(), 1e-3):
        return "fail", f"{what}: every output is {_g(ratio)} × v instead of v"
    return "fail", f"{what}: the outputs are not v, {_changed(out, want, 'from v')}"


@_probe
def _causal(t, d):
    """a later token changed."""
    if not t.causal:
        raise _NotApplicable("causal=False (pass causal=True for a decoder's self-attention)")
    s = 3
    if t.kind == "function":
        q, k, v = (a.clone() for a in (d.q, d.k, d.v))
        for a in (q, k, v):
            a[:, :, s:] += 2 * d.noise(a[:, :, s:].shape)
        out = t(q, k, v)[0]
        a, b, what = d.out[:, :, :s], out[:, :, :s], f"query/key/value at positions >= {s} changed ({d.what})"
    else:
        x = d.x.clone()
        x[:, s:] += 2 * d.noise(x[:, s:].shape).to(x.dtype)
        out = t(x)[0]
        a, b, what = d.out[:, :s], out[:, :s], f"tokens {s}..{d.L - 1} changed ({d.what})"
    if _close(a, b):
        return "pass", f"{what}: outputs 0..{s - 1} unchanged"
    return "fail", f"{what}: outputs 0..{s - 1} moved, {_changed(a, b, '')}".rstrip()


@_probe
def _permutation(t, d):
    """tokens reordered."""
    if t.causal:
        raise _NotApplicable("causal attention is not permutation equivariant by design")
    if t.kind == "function":
        perm = torch.tensor([2, 0, 4, 1, 3])
        out = t(d.q[:, :, perm], d.k[:, :, perm], d.v[:, :, perm])[0]
        want = d.out[:, :, perm]
        keys_only = t(d.q, d.k[:, :, perm], d.v[:, :, perm])[0]
        if not _close(keys_only, d.out):
            return "fail", (f"keys and values reordered by {tuple(perm.tolist())}, queries kept ({d.what}): outputs "
                            f"changed, {_changed(keys_only, d.out, '')}").rstrip()
    else:
        perm = torch.tensor([3, 0, 5, 1, 4, 2])
        out = t(d.x[:, perm])[0]
        want = d.out[:, perm]
    if _close(out, want):
        return "pass", f"tokens reordered by {tuple(perm.tolist())} ({d.what}): outputs reordered the same way"
    return "fail", (f"tokens reordered by {tuple(perm.tolist())} ({d.what}): outputs are not the reordered outputs, "
                    f"{_changed(out, want, '')}").rstrip()


@_probe
def _batch_independent(t, d):
    """sequence 1 of the batch changed."""
    if t.kind == "function":
        q, k, v = (a.clone() for a in (d.q, d.k, d.v))
        for a in (q, k, v):
            a[1] += 2 * d.noise(a[1].shape)
        out = t(q, k, v)[0]
    else:
        x = d.x.clone()
        x[1] += 2 * d.noise(x[1].shape).to(x.dtype)
        out = t(x)[0]
    others = [b for b in range(out.shape[0]) if b != 1]
    if _close(out[others], d.out[others]):
        return "pass", f"sequence 1 changed ({d.what}): the other sequences' outputs unchanged"
    return "fail", (f"sequence 1 changed ({d.what}): sequence {others[0]}'s output moved, "
                    f"{_changed(out[others], d.out[others], '')}").rstrip()


def _function_mask(d) -> torch.Tensor:
    """(L, S) bool, True = may attend: keys 1 and 3 blocked for every query, a few more blocked here and there."""
    mask = torch.ones(5, 5, dtype=torch.bool)
    mask[:, [1, 3]] = False
    mask[0, 4] = mask[2, 0] = mask[4, 2] = False
    return mask


def _left_padding(d) -> tuple[torch.Tensor, list[int]]:
    pads = [b % (d.L - 1) for b in range(d.B)]  # 0, 1, 2, ... padded tokens at the START of each sequence
    kpm = torch.arange(d.L)[None, :] < torch.tensor(pads)[:, None]  # (B, S), True = padding
    return kpm, pads


@_probe
def _mask_respected(t, d):
    """with a mask."""
    if not t.takes_mask:
        raise _NotApplicable("it takes no " + ("attn_mask" if t.kind == "function" else "key_padding_mask"))
    if t.kind == "function":
        mask = _function_mask(d)
        base = t(d.q, d.k, d.v, mask, False)[0]
        k, v = d.k.clone(), d.v.clone()
        k[:, :, [1, 3]] += 3 * d.noise(k[:, :, [1, 3]].shape)
        v[:, :, [1, 3]] += 3 * d.noise(v[:, :, [1, 3]].shape)
        out = t(d.q, k, v, mask, False)[0]
        what = f"an (L, S) bool mask (True = may attend) blocking keys 1 and 3 for every query ({d.what})"
        if not _close(out, base):
            return "fail", f"{what}: changing the blocked keys' values changed the output, {_changed(out, base, '')}"
        for j in range(5):  # value j may only move the rows that may see key j
            v = d.v.clone()
            v[:, :, j] += 3.0
            moved = (t(d.q, d.k, v, mask, False)[0] - base).abs().amax(dim=(0, 1, 3)) > 1e-5 * _scale(base)
            if bool((moved & ~mask[:, j]).any()):
                i = int((moved & ~mask[:, j]).nonzero()[0])
                return "fail", f"{what}: query {i} may not see key {j}, yet changing value {j} changed its output"
        return "pass", (f"{what}: blocked keys changed, output unchanged; each value moves only the queries allowed "
                        "to see it")
    kpm, pads = _left_padding(d)
    base = t(d.x, kpm)[0]
    x = d.x.clone()
    x[kpm] += 3 * d.noise(x[kpm].shape).to(x.dtype)
    out = t(x, kpm)[0]
    real = ~kpm
    what = f"key_padding_mask (True = padding) with {pads} pads at the start of the sequences ({d.what})"
    if _close(out[real], base[real]):
        return "pass", f"{what}: padded tokens changed, real tokens' outputs unchanged"
    worst = int(((out - base).abs().amax(-1) * real).amax(-1).argmax())
    return "fail", (f"{what}: changing padded tokens changed real tokens' outputs (worst in sequence {worst}, "
                    f"{pads[worst]} pads), {_changed(out[real], base[real], '')}").rstrip()


@_probe
def _fully_masked(t, d):
    """with a fully masked query."""
    if not t.takes_mask:
        raise _NotApplicable("it takes no " + ("attn_mask" if t.kind == "function" else "key_padding_mask"))
    if t.kind == "function":
        mask = _function_mask(d)
        mask[2] = False
        out = t(d.q, d.k, d.v, mask, False)[0]
        what = f"an (L, S) mask where query 2 may see no key ({d.what})"
    else:
        kpm = torch.zeros(d.B, d.L, dtype=torch.bool)
        kpm[1] = True
        out = t(d.x, kpm)[0]
        what = f"key_padding_mask with sequence 1 all padding ({d.what})"
    bad = int((~torch.isfinite(out)).sum())
    if bad == 0:
        return "pass", f"{what}: every output finite"
    return "fail", f"{what}: {bad} of {out.numel()} outputs are NaN or inf"


def _half_tolerance(dtype) -> float:
    return 2e-2 if dtype == torch.float16 else 8e-2


@_probe
def _half(t, d):
    """in float16/bfloat16."""
    checks = []
    for dtype in (torch.float16, torch.bfloat16):
        name = str(dtype).replace("torch.", "")
        if t.kind == "function":
            q, k, v = (a.to(dtype) for a in (d.q, d.k, d.v))
            cases = [("no mask", None)]
            if t.takes_mask:
                dead = _function_mask(d)
                dead[2] = False
                cases = [("the (L, S) mask", _function_mask(d)), ("a query with no key", dead)]
            for label, mask in cases:
                try:
                    got = t(q, k, v, mask, None if mask is None else False)[0]
                except Exception as exc:
                    return "fail", f"{name} with {label} ({d.what}): {raised_text(exc)}"
                want = t(q.float(), k.float(), v.float(), mask, None if mask is None else False)[0]
                checks.append((name, label, got, want))
        else:
            m = copy.deepcopy(t.m).to(dtype)
            x = d.x.to(dtype)
            cases = [("no mask", None)]
            if t.takes_mask:
                kpm, pads = _left_padding(d)
                dead = kpm.clone()
                dead[1] = True
                cases = [(f"{pads} pads", kpm), ("sequence 1 all padding", dead)]
            for label, kpm in cases:
                try:
                    got = t(x, kpm, module=m)[0]
                except Exception as exc:
                    return "fail", f"{name} with {label} ({d.what}): {raised_text(exc)}"
                want = t(x.to(t.dtype), kpm)[0]  # the same rounded input, in the module's own dtype
                checks.append((name, label, got, want))
    for name, label, got, want in checks:
        if not bool(torch.isfinite(want).all()):
            continue  # float32 itself is not finite here: that is fully_masked_rows_finite's row
        if not bool(torch.isfinite(got).all()):
            return "fail", f"{name} with {label} ({d.what}): {int((~torch.isfinite(got)).sum())} outputs NaN or inf"
        tol = _half_tolerance(got.dtype)
        if _maxdiff(got, want) > tol * _scale(want):
            return "fail", (f"{name} with {label} ({d.what}): {_changed(got, want, 'from float32')} "
                            f"(allowed {tol:g} × scale)")
    labels = sorted({c[1] for c in checks})
    return "pass", f"float16 and bfloat16 with {', '.join(labels)} ({d.what}): finite and close to float32"


@_probe
def _matches_reference(t, d):
    """against the reference."""
    if t.kind == "function":
        want = _reference(d.q, d.k, d.v, causal=t.causal)
        what = f"softmax(Q Kᵀ/√{t.head_dim}) V" + (" with the causal mask" if t.causal else "")
    else:
        if not (t.proj and t.num_heads and t.num_kv_heads and t.head_dim):
            raise _NotApplicable("audit does not recognise this module's W_q/W_k/W_v/W_o or its num_heads")
        want = _module_reference(t, d.x)
        what = f"project -> {t.num_heads} heads of {t.head_dim} -> attend -> merge -> W_o from its own weights"
    if _maxdiff(d.out, want) <= 1e-4 * _scale(want):
        return "pass", f"{d.what}: equal to {what} (within 1e-4)"
    return "fail", f"{d.what}: differs from {what}, {_changed(d.out, want, '')}".rstrip()


@_probe
def _heads_split(t, d):
    """one head's weights changed."""
    if t.kind == "function":
        q, k, v = (a.clone() for a in (d.q, d.k, d.v))
        for a in (q, k, v):
            a[:, 1] += 2 * d.noise(a[:, 1].shape)
        out = t(q, k, v)[0]
        if _close(out[:, 0], d.out[:, 0]):
            return "pass", f"head 1's query/key/value changed ({d.what}): head 0's output unchanged"
        return "fail", (f"head 1's query/key/value changed ({d.what}): head 0's output moved, "
                        f"{_changed(out[:, 0], d.out[:, 0])}")
    if not t.num_heads or t.num_heads < 2:
        raise _NotApplicable("one head: nothing to split" if t.num_heads else "audit cannot tell num_heads")
    m, P = _edited(t)
    hd, H, kv = t.head_dim, t.num_heads, t.num_kv_heads
    base = t(d.x, module=m)[0]
    for part, head, owners in (("W_q", 1, [1]), ("W_v", kv - 1, list(range((kv - 1) * H // kv, H)))):
        m2 = copy.deepcopy(m)
        P2 = projections(m2, t.d_model)
        rows = P2["q" if part == "W_q" else "v"][0]
        with torch.no_grad():
            rows[head * hd:(head + 1) * hd] += d.noise(rows[head * hd:(head + 1) * hd].shape)
        out = t(d.x, module=m2)[0]
        moved = (out - base).abs().amax(dim=(0, 1)).view(H, hd).amax(-1) > 1e-5 * _scale(base)  # per head
        others = [h for h in range(H) if h not in owners]
        what = f"W_o = I, the {part} rows of {'head' if part == 'W_q' else 'K/V head'} {head} changed ({d.what})"
        if bool(moved[others].any()):
            bad = [h for h in others if bool(moved[h])]
            return "fail", f"{what}: the output of head(s) {bad} moved too; only head(s) {owners} may change"
        if not bool(moved[owners].all()):
            return "fail", f"{what}: head(s) {owners} did not change; the features of one head land elsewhere"
    return "pass", (f"W_o = I, one head's W_q rows and one K/V head's W_v rows changed ({d.what}): only their "
                    "heads moved")


@_probe
def _scale_correct(t, d):
    """measuring the scale."""
    n = 4  # tokens; the values are one-hot, so the output row i IS query i's weights over the keys
    if t.kind == "function":
        hd = t.head_dim
        q, k = (1.5 * d.noise((1, 1, n, hd)) for _ in range(2))
        v = torch.eye(n, hd)[None, None]
        w = t(q, k, v)[0][0, 0, :, :n]  # (n queries, n keys)
        qs, ks = q[0], k[0]  # (1, n, hd)
    else:
        m, P = _edited(t)
        hd, kv, H = t.head_dim, t.num_kv_heads, t.num_heads
        if hd < n:
            raise _NotApplicable(f"head_dim {hd} < {n}")
        x = torch.randn(1, n, t.d_model, generator=d.g)
        x[0, :, :n] = torch.eye(n)
        with torch.no_grad():  # value of token j = e_j in every head
            P["v"][0].zero_()
            for g in range(kv):
                P["v"][0][g * hd:g * hd + n, :n] = torch.eye(n)
            if P["v"][1] is not None:
                P["v"][1].zero_()
        out = t(x.to(t.dtype), module=m)[0]
        w = out[0].view(n, H, hd)[:, :, :n].transpose(0, 1).reshape(H * n, n)  # (H·n queries, n keys)
        def heads(name, h):
            wt, b = P[name]
            y = F.linear(x, wt.detach().float(), None if b is None else b.detach().float())[0]  # (n, h·hd)
            return y.view(n, h, hd).transpose(0, 1)  # (n, h·hd) -> (h, n, hd)
        qs = heads("q", H)  # (H, n, hd)
        ks = heads("k", kv).repeat_interleave(H // kv, dim=0)
    w = w.detach().double()
    delta = (qs.double() @ ks.double().transpose(-2, -1)).reshape(-1, n)  # (queries, n) q_i · k_j
    found = []
    for i in range(w.shape[0]):
        seen = (i % n) + 1 if t.causal else n
        for j in range(1, seen):
            dlt = float(delta[i, j] - delta[i, 0])
            if abs(dlt) > 0.5 and float(w[i, j]) > 1e-12 and float(w[i, 0]) > 1e-12:
                found.append(math.log(float(w[i, j]) / float(w[i, 0])) / dlt)
    if len(found) < 3:
        raise _NotApplicable("too few usable weight ratios to measure a scale")
    found.sort()
    med = found[len(found) // 2]
    if not all(abs(s - med) <= 0.02 * abs(med) + 1e-6 for s in found):
        raise _NotApplicable("the weights are not softmax(s · q·k) over the keys for any one scale s "
                             "(see the rows above)")
    want = 1 / math.sqrt(hd)
    what = "one-hot values so that the outputs are the weights; scale = log(w_ij / w_i0) / (q_i·k_j − q_i·k_0)"
    if abs(med - want) <= 0.01 * want:
        return "pass", f"{what}: scale {_g(med)} = 1/√{hd} (head_dim)"
    guesses = {" (no scale)": 1.0, f" = 1/{hd} (head_dim)": 1 / hd}
    if t.kind == "module":
        guesses[f" = 1/√{t.d_model} (d_model)"] = 1 / math.sqrt(t.d_model)
    named = next((k for k, s in guesses.items() if abs(med - s) <= 0.01 * s), "")
    return "fail", f"{what}: scale {_g(med)}{named}, expected 1/√{hd} = {_g(want)}"


@_probe
def _cached(t, d):
    """decoding with the cache."""
    if t.kind == "function" or not t.has_cache:
        raise _NotApplicable("no new_cache(batch, max_len) / forward(x, cache=...) as GroupedQuerySelfAttention's")
    if not t.causal:
        raise _NotApplicable("a KV cache is for causal decoding (pass causal=True)")
    full = d.out
    for chunks in ((1,) * d.L, (3, 2, 1)):
        cache = t.m.new_cache(d.B, d.L)
        outs, start = [], 0
        for size in chunks:
            outs.append(output_and_weights(t.m(d.x[:, start:start + size], cache=cache))[0])
            start += size
        got = torch.cat(outs, dim=1)
        if not _close(got, full, 1e-4):
            wrong = (got - full).abs().amax(dim=(0, 2)) > 1e-4 * _scale(full)  # (L,): positions that differ
            pos = int(wrong.nonzero()[0])
            how = "one token at a time" if chunks[0] == 1 else f"in chunks of {chunks}"
            return "fail", (f"{d.what} decoded {how}: differs from the full pass from position {pos} on, "
                            f"{_changed(got, full, '')}").rstrip()
    return "pass", f"{d.what} decoded one token at a time and in chunks (3, 2, 1): equal to the full pass"


PROBES = {
    "rows_sum_to_one": _rows_sum_to_one, "causal": _causal, "permutation_equivariant": _permutation,
    "batch_independent": _batch_independent, "mask_respected": _mask_respected,
    "fully_masked_rows_finite": _fully_masked, "half_precision_safe": _half, "matches_reference": _matches_reference,
    "heads_split_correctly": _heads_split, "scale_correct": _scale_correct, "cached_equals_full": _cached,
}


def looks_causal(t, d) -> bool:
    """A module that ignores later tokens but not earlier ones is a causal layer (e.g. GroupedQuerySelfAttention)."""
    x = d.x.clone()
    x[:, 3:] += 2 * d.noise(x[:, 3:].shape).to(x.dtype)
    y = d.x.clone()
    y[:, 0] += 2 * d.noise(y[:, 0].shape).to(y.dtype)
    return _close(t(x)[0][:, :3], d.out[:, :3], 1e-6) and not _close(t(y)[0][:, -1], d.out[:, -1], 1e-4)
