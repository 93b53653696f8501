"""The probes behind :func:`audit` (audit.py): each runs the implementation on small seeded inputs built to expose
one property of attention and returns ``(status, evidence)``, where status is "pass", "fail" or "n/a". This file
holds the checks made before the properties (determinism, mixing), the probes that treat the implementation as a
black box, and the numbers and tolerances all probes share; the probes that read or set a module's weights are in
audit_weight_probes.py.

Probes work in the implementation's own dtype and on its device (audit_target.py), with tolerances that follow the
dtype: float16 and bfloat16 round far more than float32 does. A probe never changes the caller's module.
"""

from __future__ import annotations

import copy

import torch

from .audit_reading import HOW_TO_READ
from .audit_target import ImplementationRaised


class NotApplicable(Exception):
    """The probe cannot judge this implementation; the message says why."""


# ---- numbers and tolerances -------------------------------------------------------------------------------------

#: The relative error float16 and bfloat16 leave in audit's small probes (float32 and float64: 1e-5 or tighter).
LOW_PRECISION = {torch.float16: 1e-2, torch.bfloat16: 6e-2}


def short(x: float) -> str:
    """A number at 3 significant digits, the same at 1 and 2 threads."""
    return f"{x:.3g}"


def within(tol: float) -> str:
    """A tolerance as the evidence writes it: 1e-4, 6e-2."""
    return f"{tol:.0e}".replace("e-0", "e-")


def tolerance(d, base: float = 1e-5) -> float:
    """``base`` (the float32 tolerance of a probe), widened for a float16 or bfloat16 implementation."""
    return max(base, LOW_PRECISION.get(d.dtype, 0.0))


def magnitude(t: torch.Tensor) -> float:
    """1 + the largest finite |entry|: the scale a tolerance is relative to."""
    finite = t.detach().double()[torch.isfinite(t.detach())]
    return 1.0 + float(finite.abs().max()) if finite.numel() else 1.0


def maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest |a - b|; NaN where only one of them is NaN or inf. Entries that are NaN (or the same inf) in both
    count as equal: an output that is NaN on every call is the same output, not a random one."""
    a, b = a.detach().double(), b.detach().double().to(a.device)
    same = (a.isnan() & b.isnan()) | (a.isinf() & (a == b))
    diff = (a - b).abs().masked_fill(same, 0.0)
    return float("nan") if bool(torch.isnan(diff).any()) else float(diff.max()) if diff.numel() else 0.0


def close(a: torch.Tensor, b: torch.Tensor, tol: float) -> bool:
    diff = maxdiff(a, b)
    return diff == diff and diff <= tol * max(magnitude(a), magnitude(b))


def changed(a, b, where: str = "") -> str:
    return f"max |change| {short(maxdiff(a, b))} {where}".rstrip()


def raised(exc: BaseException) -> str:
    return f"raised {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"


def probe(fn):
    """Run a probe. The implementation raising is a failure, with its message as evidence; a fault of audit's own
    code is never blamed on the implementation: its row is "n/a" and says so."""
    def run(*args):
        try:
            return fn(*args)
        except NotApplicable as na:
            return "n/a", f"not applicable: {na}"
        except ImplementationRaised as exc:
            return "fail", f"{fn.__doc__.strip().rstrip('.')}: {raised(exc.__cause__ or exc)}"
        except Exception as exc:  # a fault in audit itself
            return "n/a", f"⚠️ audit itself failed on this probe ({raised(exc)}): not a finding about your code"
    run.__name__ = fn.__name__
    return run


def unreadable(t) -> str:
    """Why a module's weight-based rows cannot run, and how to make them run."""
    s = t.structure
    if s.layout is None:
        return f"{s.problem}; to check it, {HOW_TO_READ}"
    if s.problem:
        return f"audit read its projections ({s.layout.naming}), but {s.problem}"
    return (f"audit read its projections ({s.layout.naming}) but not its number of heads, and no head count "
            f"reproduced its output; give it a num_heads (or n_head) attribute")


# ---- the masks the probes use -------------------------------------------------------------------------------------


def function_mask(d) -> torch.Tensor:
    """(L, S) bool, True = may attend: keys 1 and 3 blocked for every query, a few more blocked here and there."""
    mask = torch.ones(5, 5, dtype=torch.bool, device=d.device)
    mask[:, [1, 3]] = False
    mask[0, 4] = mask[2, 0] = mask[4, 2] = False
    return mask


def left_padding(d) -> tuple[torch.Tensor, list[int]]:
    pads = [b % (d.L - 1) for b in range(d.B)]  # 0, 1, 2, ... padded tokens at the START of each sequence
    kpm = torch.arange(d.L, device=d.device)[None, :] < torch.tensor(pads, device=d.device)[:, None]  # (B, S)
    return kpm, pads


# ---- before the properties: is it deterministic, and does it mix tokens at all? --------------------------------


def perturbed(t, d, j):
    """The output with token j changed (for a function: key and value j)."""
    if t.kind == "function":
        k, v = d.k.clone(), d.v.clone()
        k[:, :, j] += 2 * d.noise(k[:, :, j].shape)
        v[:, :, j] += 2 * d.noise(v[:, :, j].shape)
        return t(d.q, k, v)[0]
    x = d.x.clone()
    x[:, j] += 2 * d.noise(x[:, j].shape)
    return t(x)[0]


def dependencies(t, d) -> torch.Tensor:
    """(L, L) bool: [i, j] is True when changing token j (for a function: key and value j) moved output i."""
    found = torch.zeros(d.L, d.L, dtype=torch.bool)
    for j in range(d.L):
        diff = (perturbed(t, d, j).double() - d.out.double()).abs()  # (batch, [heads,] L, features)
        per_token = diff.amax(dim=(0, 1, 3)) if t.kind == "function" else diff.amax(dim=(0, 2))  # (L,)
        found[:, j] = (per_token > tolerance(d) * magnitude(d.out)).cpu()
    return found


def mixes_the_batch(t, d) -> bool:
    """Does changing sequence 1 of the batch move another sequence's output (attention across the batch)?"""
    if t.kind == "function":
        k, v = d.k.clone(), d.v.clone()
        k[1] += 2 * d.noise(k[1].shape)
        v[1] += 2 * d.noise(v[1].shape)
        out = t(d.q, k, v)[0]
    else:
        x = d.x.clone()
        x[1] += 2 * d.noise(x[1].shape)
        out = t(x)[0]
    others = [b for b in range(out.shape[0]) if b != 1]
    return not close(out[others], d.out[others], tolerance(d))


@probe
def deterministic(t, d):
    """the same input twice."""
    pairs = [(t(d.q, d.k, d.v)[0] if t.kind == "function" else t(d.x)[0], d.out, "")]
    if t.takes_mask:  # the masked path too: randomness may hide there
        if t.kind == "function":
            mask = function_mask(d)
            pairs.append((t(d.q, d.k, d.v, mask, False)[0], t(d.q, d.k, d.v, mask, False)[0], ", and with a mask"))
        else:
            kpm = left_padding(d)[0]
            pairs.append((t(d.x, kpm)[0], t(d.x, kpm)[0], ", and with a key_padding_mask"))
    mode = " in eval mode" if t.kind == "module" else ""
    for again, first, masked in pairs:
        if not close(again, first, tolerance(d)):
            return "fail", (f"the same input twice{mode}{masked} ({d.what}): the outputs differ, "
                            f"{changed(again, first)}; every other row compares two calls, so none can be judged")
    return "pass", f"the same input twice{mode} ({d.what}): the same output"


# ---- the properties: each returns (status, evidence) ------------------------------------------------------------


@probe
def causal(t, d):
    """a later token changed."""
    if not t.causal:
        raise NotApplicable("causal=False (pass causal=True for a decoder's self-attention)")
    s = 3
    if t.kind == "function":
        q, k, v = (a.clone() for a in (d.q, d.k, d.v))
        for a in (q, k, v):
            a[:, :, s:] += 2 * d.noise(a[:, :, s:].shape)
        out = t(q, k, v)[0]
        a, b, what = d.out[:, :, :s], out[:, :, :s], f"query/key/value at positions >= {s} changed ({d.what})"
    else:
        x = d.x.clone()
        x[:, s:] += 2 * d.noise(x[:, s:].shape)
        out = t(x)[0]
        a, b, what = d.out[:, :s], out[:, :s], f"tokens {s}..{d.L - 1} changed ({d.what})"
    if close(a, b, tolerance(d)):
        return "pass", f"{what}: outputs 0..{s - 1} unchanged"
    return "fail", f"{what}: outputs 0..{s - 1} moved, {changed(a, b)}"


@probe
def permutation_equivariant(t, d):
    """tokens reordered."""
    if t.causal:
        raise NotApplicable("causal attention is not permutation equivariant by design")
    if t.positions:
        raise NotApplicable("positions=True: attention that uses positions is not permutation equivariant by design")
    if t.kind == "function":
        perm = torch.tensor([2, 0, 4, 1, 3], device=d.device)
        out = t(d.q[:, :, perm], d.k[:, :, perm], d.v[:, :, perm])[0]
        want = d.out[:, :, perm]
        keys_only = t(d.q, d.k[:, :, perm], d.v[:, :, perm])[0]
        if not close(keys_only, d.out, tolerance(d)):
            return "fail", (f"keys and values reordered by {tuple(perm.tolist())}, queries kept ({d.what}): outputs "
                            f"changed, {changed(keys_only, d.out)}")
    else:
        perm = torch.tensor([3, 0, 5, 1, 4, 2], device=d.device)
        out = t(d.x[:, perm])[0]
        want = d.out[:, perm]
    if close(out, want, tolerance(d)):
        return "pass", f"tokens reordered by {tuple(perm.tolist())} ({d.what}): outputs reordered the same way"
    return "fail", (f"tokens reordered by {tuple(perm.tolist())} ({d.what}): outputs are not the reordered outputs, "
                    f"{changed(out, want)}")


@probe
def batch_independent(t, d):
    """sequence 1 of the batch changed."""
    if t.kind == "function":
        q, k, v = (a.clone() for a in (d.q, d.k, d.v))
        for a in (q, k, v):
            a[1] += 2 * d.noise(a[1].shape)
        out = t(q, k, v)[0]
    else:
        x = d.x.clone()
        x[1] += 2 * d.noise(x[1].shape)
        out = t(x)[0]
    others = [b for b in range(out.shape[0]) if b != 1]
    if close(out[others], d.out[others], tolerance(d)):
        return "pass", f"sequence 1 changed ({d.what}): the other sequences' outputs unchanged"
    return "fail", (f"sequence 1 changed ({d.what}): sequence {others[0]}'s output moved, "
                    f"{changed(out[others], d.out[others])}")


def _function_mask_respected(t, d):
    mask = function_mask(d)
    base = t(d.q, d.k, d.v, mask, False)[0]
    k, v = d.k.clone(), d.v.clone()
    k[:, :, [1, 3]] += 3 * d.noise(k[:, :, [1, 3]].shape)
    v[:, :, [1, 3]] += 3 * d.noise(v[:, :, [1, 3]].shape)
    out = t(d.q, k, v, mask, False)[0]
    what = f"an (L, S) bool mask (True = may attend) blocking keys 1 and 3 for every query ({d.what})"
    if not close(out, base, tolerance(d)):
        return "fail", f"{what}: changing the blocked keys (k and v) changed the output, {changed(out, base)}"
    for j in range(5):  # value j may only move the rows that may see key j
        v = d.v.clone()
        v[:, :, j] += 3.0
        moved = (t(d.q, d.k, v, mask, False)[0] - base).abs().amax(dim=(0, 1, 3)) > tolerance(d) * magnitude(base)
        if bool((moved & ~mask[:, j]).any()):
            i = int((moved & ~mask[:, j]).nonzero()[0])
            return "fail", f"{what}: query {i} may not see key {j}, yet changing value {j} changed its output"
    return "pass", (f"{what}: blocked keys changed, output unchanged; each value moves only the queries allowed "
                    "to see it")


@probe
def mask_respected(t, d):
    """with a mask."""
    if not t.takes_mask:
        raise NotApplicable("it takes no " + ("attn_mask" if t.kind == "function" else "key_padding_mask"))
    if t.kind == "function":
        return _function_mask_respected(t, d)
    kpm, pads = left_padding(d)
    base = t(d.x, kpm)[0]
    x = d.x.clone()
    x[kpm] += 3 * d.noise(x[kpm].shape)
    out = t(x, kpm)[0]
    real = ~kpm
    what = f"key_padding_mask (True = padding) with {pads} pads at the start of the sequences ({d.what})"
    if close(out[real], base[real], tolerance(d)):
        return "pass", f"{what}: padded tokens changed, real tokens' outputs unchanged"
    worst = int(((out - base).abs().amax(-1) * real).amax(-1).argmax())
    return "fail", (f"{what}: changing padded tokens changed real tokens' outputs (worst in sequence {worst}, "
                    f"{pads[worst]} pads), {changed(out[real], base[real])}")


@probe
def fully_masked_rows_finite(t, d):
    """with a fully masked query."""
    if not t.takes_mask:
        raise NotApplicable("it takes no " + ("attn_mask" if t.kind == "function" else "key_padding_mask"))
    if t.kind == "function":
        mask = function_mask(d)
        mask[2] = False
        out = t(d.q, d.k, d.v, mask, False)[0]
        what = f"an (L, S) mask where query 2 may see no key ({d.what})"
    else:
        kpm = torch.zeros(d.B, d.L, dtype=torch.bool, device=d.device)
        kpm[1] = True
        out = t(d.x, kpm)[0]
        what = f"key_padding_mask with sequence 1 all padding ({d.what})"
    bad = int((~torch.isfinite(out)).sum())
    if bad == 0:
        return "pass", f"{what}: every output finite"
    return "fail", f"{what}: {bad} of {out.numel()} outputs are NaN or inf"


#: How far float16 and bfloat16 outputs may lie from the implementation's own dtype, as a share of the scale.
_HALF_TOLERANCE = {torch.float16: 2e-2, torch.bfloat16: 8e-2}


def _half_cases(t, d, dtype):
    """(label, run) per mask case; run() gives (output in ``dtype``, output in the implementation's own dtype from
    the same rounded input)."""
    if t.kind == "function":
        q, k, v = (a.to(dtype) for a in (d.q, d.k, d.v))
        cases = [("no mask", None)]
        if t.takes_mask:
            dead = function_mask(d)
            dead[2] = False
            cases = [("the (L, S) mask", function_mask(d)), ("a query with no key", dead)]
        own = [a.to(d.dtype) for a in (q, k, v)]
        return [(label, lambda mask=mask, flag=(None if mask is None else False):
                 (t(q, k, v, mask, flag)[0], t(*own, mask, flag)[0])) for label, mask in cases]
    m = copy.deepcopy(t.m).to(dtype)
    x = d.x.to(dtype)
    cases = [("no mask", None)]
    if t.takes_mask:
        kpm, pads = left_padding(d)
        dead = kpm.clone()
        dead[1] = True
        cases = [(f"{pads} pads", kpm), ("sequence 1 all padding", dead)]
    return [(label, lambda kpm=kpm: (t(x, kpm, module=m)[0], t(x.to(t.dtype), kpm)[0])) for label, kpm in cases]


@probe
def half_precision_safe(t, d):
    """in float16/bfloat16."""
    own = str(d.dtype).replace("torch.", "")
    labels, skipped = set(), set()
    for dtype, allowed in _HALF_TOLERANCE.items():
        name = str(dtype).replace("torch.", "")
        for label, run in _half_cases(t, d, dtype):
            labels.add(label)
            try:
                got, want = run()
            except ImplementationRaised as exc:
                return "fail", f"{name} with {label} ({d.what}): {raised(exc.__cause__ or exc)}"
            if not bool(torch.isfinite(want).all()):
                skipped.add(label)  # not finite in its own dtype either: that is another row's finding
                continue
            if not bool(torch.isfinite(got).all()):
                return "fail", (f"{name} with {label} ({d.what}): {int((~torch.isfinite(got)).sum())} outputs NaN "
                                f"or inf")
            tol = max(allowed, tolerance(d))
            if maxdiff(got, want) > tol * magnitude(want):
                return "fail", (f"{name} with {label} ({d.what}): {changed(got, want, 'from ' + own)} "
                                f"(allowed {tol:g} × scale)")
    if not labels - skipped:
        raise NotApplicable(f"its outputs are already NaN or inf in {own} with {', '.join(sorted(skipped))}")
    return "pass", (f"float16 and bfloat16 with {', '.join(sorted(labels - skipped))} ({d.what}): finite and close "
                    f"to {own}")


@probe
def cached_equals_full(t, d):
    """decoding with the cache."""
    if t.kind == "function" or not t.has_cache:
        raise NotApplicable("no new_cache(batch, max_len) / forward(x, cache=...) as GroupedQuerySelfAttention's")
    if not t.causal:
        raise NotApplicable("a KV cache is for causal decoding (pass causal=True)")
    full = d.out
    for chunks in ((1,) * d.L, (3, 2, 1)):
        cache = t.m.new_cache(d.B, d.L)
        outs, start = [], 0
        for size in chunks:
            outs.append(t(d.x[:, start:start + size], cache=cache)[0])
            start += size
        got = torch.cat(outs, dim=1)
        if not close(got, full, tolerance(d, 1e-4)):
            wrong = (got - full).abs().amax(dim=(0, 2)) > tolerance(d, 1e-4) * magnitude(full)  # (L,): positions that differ
            pos = int(wrong.nonzero()[0])
            how = "one token at a time" if chunks[0] == 1 else f"in chunks of {chunks}"
            return "fail", (f"{d.what} decoded {how}: differs from the full pass from position {pos} on, "
                            f"{changed(got, full)}")
    return "pass", f"{d.what} decoded one token at a time and in chunks (3, 2, 1): equal to the full pass"
