"""The probes of :func:`audit` (audit.py) that read or set a module's weights: ``rows_sum_to_one`` (values set equal),
``matches_reference`` (the module's own weights through the reference), ``heads_split_correctly`` (one head's rows
changed) and ``scale_correct`` (one-hot values, so that the outputs are the weights); and the head count found from
the output when no attribute names it. They work on a copy of the module (audit_reading.py finds its projections);
the other probes, and the tolerances, are in audit_probes.py.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import torch
import torch.nn.functional as F

from .audit_probes import (
    LOW_PRECISION,
    NotApplicable,
    changed,
    close,
    magnitude,
    maxdiff,
    probe,
    short,
    tolerance,
    unreadable,
    within,
)
from .audit_reading import head_counts, output_layer
from .audit_reference import attend, module_reference, schemes_for


def _edited(t):
    """(copy of the module, its projection views, hooked): W_o = I on the copy when W_o is square, so that the
    output IS the merged heads; otherwise (hooked=True) the merged heads are read at the input of W_o."""
    s = t.structure
    if not s.readable:
        raise NotApplicable(unreadable(t))
    m = copy.deepcopy(t.m)
    P = s.weights(m)
    if P["o"] is None or P["o"][0].shape[0] != P["o"][0].shape[1]:
        return m, P, P["o"] is not None
    with torch.no_grad():
        w = P["o"][0]
        w.copy_(torch.eye(w.shape[0], dtype=w.dtype, device=w.device))
        if P["o"][1] is not None:
            P["o"][1].zero_()
    return m, P, False


def _merged(t, x, m, hooked: bool, **kwargs) -> torch.Tensor:
    """The merged heads (batch, seq, heads·head_dim) of a call of the edited copy ``m`` (see :func:`_edited`)."""
    if not hooked:
        return t(x, module=m, **kwargs)[0]
    seen = []
    handle = output_layer(m, t.structure.layout).register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    try:
        t(x, module=m, **kwargs)
    finally:
        handle.remove()
    if not seen:
        raise NotApplicable("its output projection is not called as a layer, so audit cannot read the heads")
    return seen[-1]


def _rows_verdict(out, want, what, d):
    """rows_sum_to_one's verdict from outputs (batch, heads, L, head_dim) that should all equal v: which queries
    differ and how."""
    tol = tolerance(d, 1e-4)
    if close(out, want, tol):
        return "pass", f"{what}: every output = v (within {within(tol)})"
    o, v = out.double(), want.double()
    err = (o - v).abs().nan_to_num(nan=math.inf).amax(dim=(0, 1, 3))  # (L,): by query position
    bad = [i for i in range(err.shape[0]) if float(err[i]) > tol * magnitude(want)]
    nan = o.isnan().any(-1).any(0).any(0)  # (L,)
    zero = o.nan_to_num(nan=1.0).abs().amax(dim=(0, 1, 3)) <= tol
    if len(bad) < err.shape[0] and all(bool(zero[i] | nan[i]) for i in bad):
        got = "NaN" if all(bool(nan[i]) for i in bad) else "0"
        return "fail", (f"{what}: the output of quer{'y' if len(bad) == 1 else 'ies'} {', '.join(map(str, bad))} is "
                        f"{got}, not v: {'it sees' if len(bad) == 1 else 'they see'} no key; the others = v")
    ratios = (o * v).sum(-1, keepdim=True) / (v * v).sum(-1, keepdim=True)  # each head's output against v
    if close(o, ratios * v, 10 * tol):
        low, high = float(ratios.min()), float(ratios.max())
        if high - low <= 10 * tol * max(1.0, abs(high)):
            return "fail", f"{what}: every output is {short(low)} × v instead of v"
        return "fail", (f"{what}: each output is a multiple of v, from {short(low)} × v to {short(high)} × v: the "
                        "weights do not sum to 1")
    return "fail", f"{what}: the outputs are not v, {changed(out, want, 'from v')}"


@probe
def rows_sum_to_one(t, d):
    """values all equal, output checked."""
    if t.kind == "function":
        c = d.noise((2, 2, 1, t.head_dim))  # one value vector per (batch, head)
        out, _ = t(d.q, d.k, c.expand_as(d.v).contiguous())
        return _rows_verdict(out, c.expand_as(out), f"every key's value = the same vector v ({d.what})", d)
    if (w := t(d.x)[1]) is not None and w.dim() in (3, 4) and w.shape[-2:] == (d.L, d.L):
        sums = w.detach().double().sum(-1)
        if not (bool(torch.allclose(sums, torch.ones_like(sums), atol=tolerance(d, 1e-4))) and bool((w >= -1e-6).all())):
            return "fail", (f"returned weights for {d.what}: rows sum to {short(float(sums.min()))}..."
                            f"{short(float(sums.max()))}, min weight {short(float(w.min()))}")
        if not t.structure.readable:
            return "pass", f"returned weights for {d.what}: >= 0, rows sum to 1 (within {within(tolerance(d, 1e-4))})"
    m, P, hooked = _edited(t)
    hd, kv = t.head_dim, t.num_kv_heads
    c0 = d.noise((hd,))
    with torch.no_grad():  # value of every token = c0 in every head: W_v reads feature 0, which is 1 everywhere
        P["v"][0].zero_()
        P["v"][0][:, 0] = c0.repeat(kv)
        if P["v"][1] is not None:
            P["v"][1].zero_()
    x = d.x.clone()
    x[..., 0] = 1.0
    out = _merged(t, x, m, hooked)
    what = (f"every token's value = the same vector v, {'the heads read before W_o' if hooked else 'W_o = I'} "
            f"({d.what})")
    B, L, _ = out.shape
    out = out.reshape(B, L, t.num_heads, hd).transpose(1, 2)  # (B, L, H·hd) -> (B, H, L, hd)
    return _rows_verdict(out, c0.expand_as(out), what, d)


@probe
def matches_reference(t, d):
    """against the reference."""
    if t.kind == "module" and not t.structure.readable:
        raise NotApplicable(unreadable(t))
    tol = tolerance(d, 1e-4)
    for scheme in schemes_for(t.positions, t.head_dim):
        if t.kind == "function":
            want = attend(d.q, d.k, d.v, causal=t.causal, scheme=scheme)
            what = f"softmax(Q Kᵀ/√{t.head_dim}) V" + (" with the causal mask" if t.causal else "")
        else:
            want = module_reference(t.structure, t.m, d.x, t.causal, scheme)
            what = f"project -> {t.num_heads} heads of {t.head_dim} -> attend -> merge -> W_o from its own weights"
        if maxdiff(d.out, want) <= tol * magnitude(want):
            scheme = f" + {scheme}" if t.positions else ""
            return "pass", f"{d.what}: equal to {what}{scheme} (within {within(tol)})"
    if t.positions:
        raise NotApplicable(f"positions=True and the output matches none of the position schemes audit knows "
                            f"({'; '.join(schemes_for(True, t.head_dim)[1:])}), so it cannot be compared")
    return "fail", f"{d.what}: differs from {what}, {changed(d.out, want)}"


def _heads_split_function(t, d):
    q, k, v = (a.clone() for a in (d.q, d.k, d.v))
    for a in (q, k, v):
        a[:, 1] += 2 * d.noise(a[:, 1].shape)
    out = t(q, k, v)[0]
    if close(out[:, 0], d.out[:, 0], tolerance(d)):
        return "pass", f"head 1's query/key/value changed ({d.what}): head 0's output unchanged"
    return "fail", (f"head 1's query/key/value changed ({d.what}): head 0's output moved, "
                    f"{changed(out[:, 0], d.out[:, 0])}")


@probe
def heads_split_correctly(t, d):
    """one head's weights changed."""
    if t.kind == "function":
        return _heads_split_function(t, d)
    if t.structure.readable and t.num_heads < 2:
        raise NotApplicable("one head: nothing to split")
    m, P, hooked = _edited(t)
    hd, H, kv = t.head_dim, t.num_heads, t.num_kv_heads
    base = _merged(t, d.x, m, hooked)
    seen = "the heads read before W_o" if hooked else "W_o = I"
    for part, head, owners in (("W_q", 1, [1]), ("W_v", kv - 1, list(range((kv - 1) * H // kv, H)))):
        m2 = copy.deepcopy(m)
        rows = t.structure.weights(m2)["q" if part == "W_q" else "v"][0]
        with torch.no_grad():
            rows[head * hd:(head + 1) * hd] += d.noise(rows[head * hd:(head + 1) * hd].shape)
        out = _merged(t, d.x, m2, hooked)
        moved = (out - base).abs().amax(dim=(0, 1)).view(H, hd).amax(-1) > tolerance(d) * magnitude(base)  # per head
        others = [h for h in range(H) if h not in owners]
        what = f"{seen}, the {part} rows of {'head' if part == 'W_q' else 'K/V head'} {head} changed ({d.what})"
        if bool(moved[others].any()):
            bad = [h for h in others if bool(moved[h])]
            return "fail", f"{what}: the output of head(s) {bad} moved too; only head(s) {owners} may change"
        if not bool(moved[owners].all()):
            return "fail", f"{what}: head(s) {owners} did not change; the features of one head land elsewhere"
    return "pass", (f"{seen}, one head's W_q rows and one K/V head's W_v rows changed ({d.what}): only their "
                    "heads moved")


def _module_weights_and_scores(t, d, n):
    """(weights (H·n queries, n keys) read through one-hot values, q_i·k_j (H·n, n) in float64) for a module."""
    m, P, hooked = _edited(t)
    hd, kv, H = t.head_dim, t.num_kv_heads, t.num_heads
    if hd < n or t.d_model < n:
        raise NotApplicable(f"head_dim {hd} or d_model {t.d_model} < {n}")
    x = d.noise((1, n, t.d_model)) * (3 if d.dtype in LOW_PRECISION else 1)  # wider scores: well-measured ratios
    x[0, :, :n] = torch.eye(n, dtype=x.dtype, device=x.device)
    with torch.no_grad():  # value of token j = e_j in every head
        P["v"][0].zero_()
        for g in range(kv):
            P["v"][0][g * hd:g * hd + n, :n] = torch.eye(n, dtype=P["v"][0].dtype, device=P["v"][0].device)
        if P["v"][1] is not None:
            P["v"][1].zero_()
    out = _merged(t, x, m, hooked)
    w = out[0].reshape(n, H, hd)[:, :, :n].transpose(0, 1).reshape(H * n, n)  # (H·n queries, n keys)

    def heads(name, h):
        wt, b = P[name]
        y = F.linear(x.double(), wt.detach().double(), None if b is None else b.detach().double())[0]  # (n, h·hd)
        return y.view(n, h, hd).transpose(0, 1)  # (n, h·hd) -> (h, n, hd)

    qs, ks = heads("q", H), heads("k", kv).repeat_interleave(H // kv, dim=0)  # (H, n, hd) each
    return w, (qs @ ks.transpose(-2, -1)).reshape(-1, n)


def _scale_ratios(t, d, w, delta, n) -> list[float]:
    """The scale each pair of weights implies: log(w_ij / w_i0) / (q_i·k_j − q_i·k_0), for well-measured pairs."""
    low = LOW_PRECISION.get(d.dtype, 0.0)
    smallest, spread = (1e-3, 0.5 + 20 * low * math.sqrt(t.head_dim)) if low else (1e-12, 0.5)
    found = []
    for i in range(w.shape[0]):
        seen = (i % n) + 1 if t.causal else n
        for j in range(1, seen):
            dlt = float(delta[i, j] - delta[i, 0])
            if abs(dlt) > spread and float(w[i, j]) > smallest and float(w[i, 0]) > smallest:
                found.append(math.log(float(w[i, j]) / float(w[i, 0])) / dlt)
    return sorted(found)


@probe
def scale_correct(t, d):
    """measuring the scale."""
    if t.positions:
        raise NotApplicable("positions=True: the scores carry position terms, so weight ratios do not give the "
                            "scale alone (matches_reference checks it when it knows the scheme)")
    n = 4  # tokens; the values are one-hot, so the output row i IS query i's weights over the keys
    if t.kind == "function":
        q, k = (1.5 * d.noise((1, 1, n, t.head_dim)) for _ in range(2))
        v = torch.eye(n, t.head_dim, dtype=d.dtype, device=d.device)[None, None]
        w = t(q, k, v)[0][0, 0, :, :n]  # (n queries, n keys)
        delta = (q[0].double() @ k[0].double().transpose(-2, -1)).reshape(-1, n)
    else:
        w, delta = _module_weights_and_scores(t, d, n)
    found = _scale_ratios(t, d, w.detach().double().cpu(), delta.cpu(), n)
    if len(found) < 3:
        raise NotApplicable("too few usable weight ratios to measure a scale")
    med, low = found[len(found) // 2], LOW_PRECISION.get(d.dtype, 0.0)
    if not all(abs(s - med) <= (0.02 + 3 * low) * abs(med) + 1e-6 for s in found):
        raise NotApplicable("the weights are not softmax(s · q·k) over the keys for any one scale s "
                            "(see the rows above)")
    hd, want = t.head_dim, 1 / math.sqrt(t.head_dim)
    what = "one-hot values so that the outputs are the weights; scale = log(w_ij / w_i0) / (q_i·k_j − q_i·k_0)"
    if abs(med - want) <= (0.01 + 2 * low) * want:
        return "pass", f"{what}: scale {short(med)} = 1/√{hd} (head_dim)"
    guesses = {" (no scale)": 1.0, f" = 1/{hd} (head_dim)": 1 / hd}
    if t.kind == "module":
        guesses[f" = 1/√{t.d_model} (d_model)"] = 1 / math.sqrt(t.d_model)
    named = next((k for k, s in guesses.items() if abs(med - s) <= (0.01 + 2 * low) * s), "")
    return "fail", f"{what}: scale {short(med)}{named}, expected 1/√{hd} = {short(want)}"




def infer_heads(t, d) -> str:
    """For a module whose projections were read but not its head count: try every count the widths allow and keep
    the one whose reference reproduces the output. Returns a note, or sets ``t.structure.problem``."""
    s, tol = t.structure, tolerance(d, 1e-4)
    matching = []
    for H, kv, hd in head_counts(t.m, s):
        trial = dataclasses.replace(s, num_heads=H, num_kv_heads=kv, head_dim=hd)
        if any(maxdiff(d.out, want := module_reference(trial, t.m, d.x, t.causal, scheme)) <= tol * magnitude(want)
               for scheme in schemes_for(t.positions, hd)):
            matching.append((H, kv, hd))
    if len(matching) == 1:
        s.num_heads, s.num_kv_heads, s.head_dim = matching[0]
        return (f"no num_heads attribute under a usual name: {s.num_heads} heads is the one head count whose "
                f"reference reproduces its output")
    s.problem = ("it has no num_heads attribute under a usual name (num_heads, n_head, n_heads, heads), and "
                 + ("no head count reproduces its output" if not matching else "several head counts fit"))
    return ""
