"""The exercise checkers of notebook 01 (Q/K/V projections): they pass the right answer, name the typical mistakes,
and say "not yet" for the untouched stub without raising. Also the 2-D soft look-up figure."""

from __future__ import annotations

import math

import matplotlib
import pytest
import torch
import torch.nn.functional as F
from checker_support import assert_hint, assert_passes, run, stub

import mha_helpers as mh

matplotlib.use("Agg")

_stub = stub
_run = run


# ---- Exercise 1.1: project_qkv ------------------------------------------------------------------


def _project_qkv(x, W_q, W_k, W_v):
    return x @ W_q.T, x @ W_k.T, x @ W_v.T


@pytest.mark.parametrize(
    "fn",
    [
        _project_qkv,
        lambda x, a, b, c: [F.linear(x, a), F.linear(x, b), F.linear(x, c)],
        lambda x, a, b, c: tuple(torch.einsum("bsd,od->bso", x, w) for w in (a, b, c)),
        lambda x, a, b, c: tuple(torch.matmul(x, w.transpose(0, 1)) for w in (a, b, c)),
        lambda x, a, b, c: tuple(x.double() @ w.double().T for w in (a, b, c)),
    ],
    ids=["matmul", "F.linear-as-list", "einsum", "matmul-transpose", "float64"],
)
def test_project_qkv_accepts_right_answers(fn, capsys):
    passed, out = _run(mh.check_project_qkv, fn, capsys)
    assert passed and out.startswith("✅ Exercise 1.1"), out


def test_project_qkv_says_not_yet_for_the_stub(capsys):
    passed, out = _run(mh.check_project_qkv, _stub, capsys)
    assert not passed and out.startswith("⏳") and "not yet" in out


@pytest.mark.parametrize(
    "fn,hint",
    [
        (lambda x, a, b, c: (x @ a, x @ b, x @ c), "without the transpose"),
        (lambda x, a, b, c: (x @ a.T, x @ a.T, x @ a.T), "K must use its own matrix W_k"),
        (lambda x, a, b, c: (x @ a.T, x @ c.T, x @ b.T), "your K equals x @ W_v.T"),
        (lambda x, a, b, c: x @ a.T, "return three tensors"),
        (lambda x, a, b, c: (x @ a.T, x @ b.T), "of length 2"),
        (lambda x, a, b, c: (x @ a.T, x @ b.T, (x @ c.T).transpose(1, 2)), "V has shape (2, 6, 5), expected (2, 5, 6)"),
        (lambda x, a, b, c: (2 * x @ a.T, x @ b.T, x @ c.T), "Q has the right shape but wrong values"),
        (lambda x, a, b, c: torch.stack([x @ a.T, x @ b.T, x @ c.T]), "one stacked tensor"),
        (lambda x, a, b, c: (x @ a.T / math.sqrt(a.shape[0]), x @ b.T, x @ c.T), "scaled by 1/√d"),
        (lambda x, a, b, c: (a @ x, b @ x, c @ x), "is the weight on the left?"),
        (lambda x, a, b, c: (x @ a.T, x @ b.T, None), "V should be a torch.Tensor"),
    ],
    ids=["no-transpose", "same-matrix", "swapped", "one-tensor", "two-tensors", "transposed-output", "scaled",
         "stacked", "pre-scaled", "W-at-x", "None-inside"],
)
def test_project_qkv_names_the_mistake(fn, hint, capsys):
    passed, out = _run(mh.check_project_qkv, fn, capsys)
    assert not passed and out.startswith("❌"), out
    assert hint in out, out


def test_project_qkv_catches_code_that_only_works_for_square_weights(capsys):
    def square_only(x, W_q, W_k, W_v):  # right for square weights, breaks on (d_out, d_model) with d_out != d_model
        d = x.shape[-1]
        return tuple(x @ W.T.reshape(d, d) for W in (W_q, W_k, W_v))

    passed, out = _run(mh.check_project_qkv, square_only, capsys)
    assert not passed and "works for square weights" in out and "x @ W_q.T" in out, out


def test_project_qkv_reports_other_errors_without_raising(capsys):
    passed, out = _run(mh.check_project_qkv, lambda x, a, b, c: 1 / 0, capsys)
    assert not passed and "raised ZeroDivisionError" in out


def test_project_qkv_explains_w_at_x(capsys):
    def w_at_x(x, W_q, W_k, W_v):
        return W_q @ x, W_k @ x, W_v @ x

    assert_hint(mh.check_project_qkv, w_at_x, "the projection is x @ W_q.T", capsys)


def test_soft_lookup_accepts_numpy_and_float64(capsys):
    def numpy_lookup(query, keys, values):
        weights, result = _soft_lookup(query, keys, values)
        return weights.numpy(), result.numpy()

    assert_passes(mh.check_soft_lookup, numpy_lookup, capsys)
    assert_passes(mh.check_soft_lookup, lambda q, k, v: _soft_lookup(q.double(), k.double(), v.double()), capsys)


# ---- Exercise 1.2: soft_lookup ------------------------------------------------------------------


def _soft_lookup(query, keys, values):
    weights = torch.softmax(keys @ query, dim=-1)
    return weights, weights @ values


def test_soft_lookup_accepts_the_right_answer(capsys):
    passed, out = _run(mh.check_soft_lookup, _soft_lookup, capsys)
    assert passed and out.startswith("✅ Exercise 1.2"), out


def test_soft_lookup_says_not_yet_for_the_stub(capsys):
    passed, out = _run(mh.check_soft_lookup, _stub, capsys)
    assert not passed and out.startswith("⏳") and "not yet" in out


def _weights_then(weights_fn, result_fn=lambda w, k, v: w @ v):
    def fn(query, keys, values):
        w = weights_fn(query, keys)
        return w, result_fn(w, keys, values)

    return fn


@pytest.mark.parametrize(
    "fn,hint",
    [
        (_weights_then(lambda q, k: k @ q), "raw scores"),
        (_weights_then(lambda q, k: torch.softmax(k @ q / math.sqrt(q.shape[0]), -1)), "notebook 02"),
        (_weights_then(lambda q, k: F.one_hot((k @ q).argmax(), k.shape[0]).float()), "hard look-up"),
        (_weights_then(lambda q, k: torch.softmax(-(k @ q), -1)), "LEAST like the query"),
        (_weights_then(lambda q, k: torch.exp(k @ q)), "not 1: did you apply torch.softmax"),
        (_weights_then(lambda q, k: torch.softmax(k @ q, -1)[None]), "weights has shape (1, 3), expected (3,)"),
        (_weights_then(lambda q, k: torch.softmax(k @ q, -1), lambda w, k, v: w[:, None] * v), "did not add them up"),
        (_weights_then(lambda q, k: torch.softmax(k @ q, -1), lambda w, k, v: w @ k), "blends the keys"),
        (_weights_then(lambda q, k: torch.softmax(k @ q, -1), lambda w, k, v: v.mean(0)), "plain mean of the values"),
        (_weights_then(lambda q, k: torch.softmax(k @ q, -1), lambda w, k, v: 2 * w @ v), "not weights @ values"),
        (lambda q, k, v: torch.softmax(k @ q, -1), "return two tensors"),
        (lambda q, k, v: tuple(reversed(_soft_lookup(q, k, v))), "wrong order"),
        (_weights_then(lambda q, k: (k @ q) / (k @ q).sum()), "not a softmax"),
    ],
    ids=["no-softmax", "scaled", "hard", "negated", "exp-only", "extra-dim", "no-sum", "blend-keys", "mean",
         "doubled", "weights-only", "wrong-order", "divide-by-sum"],
)
def test_soft_lookup_names_the_mistake(fn, hint, capsys):
    passed, out = _run(mh.check_soft_lookup, fn, capsys)
    assert not passed and out.startswith("❌"), out
    assert hint in out, out


# ---- the 2-D soft look-up figure -------------------------------------------------------------------


def test_plot_soft_lookup_draws_and_checks_its_arguments():
    import matplotlib.pyplot as plt

    keys = torch.tensor([[1.0, 1.0], [2.0, 0.0], [0.0, 2.0]])
    query = torch.tensor([2.0, 0.0])
    weights = torch.softmax(keys @ query, dim=-1)
    ax = mh.plot_soft_lookup(query, keys, weights, ["a", "b", "c"], axis_labels=("x", "y"), title="t")
    assert ax.get_title() == "t" and ax.get_xlabel() == "x"
    assert any("w = 0.87" in t.get_text() for t in ax.texts)
    with pytest.raises(ValueError, match="2-D vectors"):
        mh.plot_soft_lookup(torch.zeros(3), torch.zeros(3, 3), weights, ["a", "b", "c"])
    with pytest.raises(ValueError, match="one weight and one name per key"):
        mh.plot_soft_lookup(query, keys, weights, ["a", "b"])
    with pytest.raises(TypeError, match="query must be a floating-point tensor"):
        mh.plot_soft_lookup(torch.tensor([1, 0]), keys, weights, ["a", "b", "c"])
    plt.close("all")


def test_checkers_accept_float64_and_grad_tracking_answers(capsys):
    def project_qkv(x, W_q, W_k, W_v):
        return tuple((x.double() @ W.double().T).requires_grad_() for W in (W_q, W_k, W_v))

    def soft_lookup(query, keys, values):
        weights = torch.softmax(keys.double() @ query.double(), dim=-1).requires_grad_()
        return weights, weights @ values.double()

    assert mh.check_project_qkv(project_qkv), capsys.readouterr().out
    assert mh.check_soft_lookup(soft_lookup), capsys.readouterr().out


def test_soft_lookup_explains_a_dim_that_is_not_there(capsys):
    def transposes_a_vector(query, keys, values):
        weights = torch.softmax(keys @ query.transpose(-2, -1), dim=-1)
        return weights, weights @ values

    assert_hint(mh.check_soft_lookup, transposes_a_vector, "count dims from the end", capsys)
