"""The exercise checkers of notebook 02 (scaled dot-product attention): right answers in any reasonable form pass,
each typical wrong answer gets the hint that names its mistake, and torch's softmax is detected where 2.1 forbids it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from checker_support import assert_hint, assert_passes

import mha_helpers as mh

pytestmark = pytest.mark.filterwarnings("ignore:The use of `x.T`:UserWarning")  # a student's .T on a 3-D tensor

# ---- Exercise 2.1: a softmax that does not overflow -----------------------------------------------------------


def softmax_ok(scores):
    shifted = scores - scores.max(dim=-1, keepdim=True).values  # the largest score in each row becomes 0
    e = torch.exp(shifted)
    return e / e.sum(dim=-1, keepdim=True)


def softmax_logsumexp(scores):
    return torch.exp(scores - torch.logsumexp(scores, dim=-1, keepdim=True))


def softmax_amax_float64(scores):
    s = scores.double()
    e = (s - s.amax(-1, keepdim=True)).exp()
    return e / e.sum(-1, keepdim=True)


def softmax_numpy(scores):
    s = scores.numpy()
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize(
    "fn",
    [softmax_ok, softmax_logsumexp, softmax_amax_float64, softmax_numpy, lambda s: softmax_ok(s).half(),
     lambda s: softmax_ok(s.half()), lambda s: softmax_ok(s.bfloat16()), lambda s: softmax_ok(s).bfloat16()],
    ids=["max", "logsumexp", "amax-float64", "numpy", "result-float16", "computed-in-float16",
         "computed-in-bfloat16", "result-bfloat16"],
)
def test_softmax_accepts_right_answers(fn, capsys):
    assert_passes(mh.check_softmax, fn, capsys)


def softmax_naive(scores):
    e = torch.exp(scores)
    return e / e.sum(dim=-1, keepdim=True)


def softmax_global_max(scores):
    e = torch.exp(scores - scores.max())
    return e / e.sum(dim=-1, keepdim=True)


def softmax_row_min(scores):
    e = torch.exp(scores - scores.min(dim=-1, keepdim=True).values)
    return e / e.sum(dim=-1, keepdim=True)


def softmax_row_mean(scores):
    e = torch.exp(scores - scores.mean(dim=-1, keepdim=True))
    return e / e.sum(dim=-1, keepdim=True)


def softmax_column_max(scores):
    e = torch.exp(scores - scores.max(dim=-2, keepdim=True).values)
    return e / e.sum(dim=-1, keepdim=True)


def softmax_wrong_dim(scores):
    e = torch.exp(scores - scores.max(dim=-2, keepdim=True).values)
    return e / e.sum(dim=-2, keepdim=True)


def softmax_no_norm(scores):
    return torch.exp(scores - scores.max(dim=-1, keepdim=True).values)


def softmax_no_keepdim(scores):
    e = torch.exp(scores - scores.max(dim=-1).values)
    return e / e.sum(dim=-1)


def softmax_whole_tensor(scores):
    e = torch.exp(scores - scores.max(dim=-1, keepdim=True).values)
    return e / e.sum()


@pytest.mark.parametrize(
    "wrong,hint",
    [
        (softmax_naive, "overflows"),
        (softmax_global_max, "ONE maximum for the whole tensor"),
        (softmax_row_min, "minimum? its mean?"),
        (softmax_row_mean, "Subtract the row's MAXIMUM"),
        (softmax_column_max, "the values differ from softmax"),
        (softmax_wrong_dim, "wrong dim"),
        (softmax_no_norm, "rows do not sum to 1"),
        (softmax_whole_tensor, "the whole tensor sums to 1, not each row"),
        (softmax_no_keepdim, "keepdim=True"),
        (lambda s: s[..., :-1], "softmax keeps the shape"),
        (lambda s: torch.softmax(s, dim=-1), "calls torch.softmax"),
        (lambda s: F.softmax(s, dim=-1), "calls F.softmax"),
        (lambda s: s.softmax(-1), "calls .softmax"),
        (lambda s: torch.nn.Softmax(dim=-1)(s), "F.softmax"),
        (lambda s: torch.log_softmax(s, -1).exp(), "torch.log_softmax"),
        (lambda s: torch.special.softmax(s, -1), "torch.special.softmax"),
        (lambda s: torch._softmax(s, -1, False), "calls torch._softmax"),
        (lambda s: torch.ops.aten._softmax(s, -1, False), "calls torch.ops.aten._softmax"),
        (lambda s: F.softmin(-s, -1), "calls F.softmin"),
        (lambda s: torch.exp(s.clamp(max=80)) / torch.exp(s.clamp(max=80)).sum(-1, keepdim=True),
         "clamped before exp"),
        (lambda s: torch.exp(s.clamp(-80, 80)) / torch.exp(s.clamp(-80, 80)).sum(-1, keepdim=True),
         "clamped before exp"),
        (lambda s: softmax_ok(s).tolist(), "should be a torch.Tensor"),
    ],
)
def test_softmax_checker_names_the_mistake(wrong, hint, capsys):
    assert_hint(mh.check_softmax, wrong, hint, capsys)


def test_the_softmax_spy_patches_nothing(capsys):
    """The spy is a TorchFunctionMode: inside the student's call every softmax is still torch's own object."""
    originals = (torch.softmax, F.softmax, torch.Tensor.softmax, torch.special.softmax, torch._softmax)
    seen = []

    def looks(scores):
        seen.append((torch.softmax, F.softmax, torch.Tensor.softmax, torch.special.softmax, torch._softmax))
        return softmax_ok(scores)

    assert_passes(mh.check_softmax, looks, capsys)
    assert seen and all(entry == originals for entry in seen)


def test_the_softmax_spy_puts_everything_back(capsys):
    originals = (torch.softmax, F.softmax, torch.Tensor.softmax, torch.special.softmax, torch.log_softmax)
    assert "softmax" not in vars(torch.Tensor)
    mh.check_softmax(lambda s: torch.softmax(s, -1))
    mh.check_softmax(lambda s: 1 / 0)
    capsys.readouterr()
    assert (torch.softmax, F.softmax, torch.Tensor.softmax, torch.special.softmax, torch.log_softmax) == originals
    assert "softmax" not in vars(torch.Tensor)


# ---- Exercise 2.2: scaled dot-product attention -------------------------------------------------------------------


def attention_ok(query, key, value):
    d_k = query.shape[-1]
    scores = query @ key.transpose(-2, -1) / math.sqrt(d_k)  # (..., L, S)
    weights = torch.softmax(scores, dim=-1)
    return weights @ value, weights


def attention_sdpa_output(query, key, value):
    weights = torch.softmax(query @ key.mT / query.shape[-1] ** 0.5, dim=-1)
    return F.scaled_dot_product_attention(query, key, value), weights


@pytest.mark.parametrize(
    "fn",
    [attention_ok, attention_sdpa_output, lambda q, k, v: mh.scaled_dot_product_attention(q, k, v),
     lambda q, k, v: [t.double() for t in attention_ok(q, k, v)]],
    ids=["solution", "sdpa-output", "reference", "float64-list"],
)
def test_attention_accepts_right_answers(fn, capsys):
    assert_passes(mh.check_attention, fn, capsys)


def attention_scaled(factor):
    def fn(query, key, value):
        scores = query @ key.transpose(-2, -1) * factor(query, key, value)
        weights = torch.softmax(scores, dim=-1)
        return weights @ value, weights

    return fn


def attention_wrong_dim(query, key, value):
    weights = torch.softmax(query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1]), dim=-2)
    return weights @ value, weights


def attention_k_qt(query, key, value):
    weights = torch.softmax(key @ query.transpose(-2, -1) / math.sqrt(query.shape[-1]), dim=-1)
    return value, weights


def attention_output_wrong(query, key, value):
    out, weights = attention_ok(query, key, value)
    return out * 2, weights


def attention_dot_T(query, key, value):
    weights = torch.softmax(query @ key.T / math.sqrt(query.shape[-1]), dim=-1)
    return weights @ value, weights


def attention_scale_after_softmax(query, key, value):
    weights = torch.softmax(query @ key.transpose(-2, -1), dim=-1) / math.sqrt(query.shape[-1])
    return weights @ value, weights


def attention_blend_keys(query, key, value):
    _, weights = attention_ok(query, key, value)
    return weights @ key, weights


@pytest.mark.parametrize(
    "wrong,hint",
    [
        (attention_scaled(lambda q, k, v: 1.0), "missing the 1/√d_k scale"),
        (attention_scaled(lambda q, k, v: 1.0 / q.shape[-1]), "divided the scores by d_k"),
        (attention_scaled(lambda q, k, v: math.sqrt(q.shape[-1])), "multiplied"),
        (attention_scaled(lambda q, k, v: 1.0 / math.sqrt(v.shape[-1])), "√d_v"),
        (attention_scaled(lambda q, k, v: 1.0 / math.sqrt(k.shape[-2])), "√S"),
        (attention_wrong_dim, "wrong dim: rows do not sum to 1"),
        (attention_k_qt, "not key @ queryᵀ"),
        (attention_output_wrong, "not weights @ value"),
        (attention_dot_T, "swap only the last two with .transpose(-2, -1)"),
        (attention_scale_after_softmax, "AFTER the softmax"),
        (attention_blend_keys, "blends the keys"),
        (lambda q, k, v: tuple(reversed(attention_ok(q, k, v))), "wrong order"),
        (lambda q, k, v: q, "return two tensors"),
        (lambda q, k, v: attention_ok(q, k, v)[0], "return two tensors"),
    ],
)
def test_attention_checker_names_the_mistake(wrong, hint, capsys):
    assert_hint(mh.check_attention, wrong, hint, capsys)


def test_math_not_imported_gets_its_own_hint(capsys):
    def uses_missing_math(query, key, value):
        return attention_ok(query, key, value) if undefined_math.pi else None  # noqa: F821

    assert_hint(mh.check_attention, uses_missing_math, "is not defined here", capsys)


def test_dot_T_is_explained_even_without_source(capsys):
    """A function typed where no source is kept (a plain exec) still gets the .T hint, from its code's names."""
    namespace = {"torch": torch, "math": math}
    exec("def attention(q, k, v):\n    w = torch.softmax(q @ k.T / math.sqrt(q.shape[-1]), -1)\n    return w @ v, w\n",
         namespace)
    for _ in range(2):  # torch warns about .T only once per process: the hint must not depend on it
        assert_hint(mh.check_attention, namespace["attention"], "swap only the last two", capsys)


def test_the_students_warnings_still_reach_the_notebook(capsys):
    import warnings

    def noisy(scores):
        warnings.warn("a warning of the student's own", UserWarning, stacklevel=1)
        return softmax_ok(scores)

    with pytest.warns(UserWarning, match="student's own"):
        assert_passes(mh.check_softmax, noisy, capsys)


def test_a_changed_signature_gets_a_hint(capsys):
    def stable_softmax(scores, dim):
        return softmax_ok(scores)

    assert_hint(mh.check_softmax, stable_softmax, "keep the stub's name and parameters", capsys)
