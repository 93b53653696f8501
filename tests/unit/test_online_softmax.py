"""mha_helpers.online_softmax_attention (notebook 09): equal to naive attention in outputs and gradients, clear errors.

Naive attention is the series' reference, mha_helpers.scaled_dot_product_attention (notebook 02), and PyTorch's
F.scaled_dot_product_attention. float64 for tight comparisons, float32 within 1e-5.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import mha_helpers as mh


def _outputs_and_grads(fn, q, k, v, seed=1):
    out = fn(q, k, v)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    grads = torch.autograd.grad(out, (q, k, v), grad_out)
    return out, grads


def _assert_same(fn_a, fn_b, q, k, v, atol):
    out_a, grads_a = _outputs_and_grads(fn_a, q, k, v)
    out_b, grads_b = _outputs_and_grads(fn_b, q, k, v)
    assert out_a.shape == out_b.shape
    torch.testing.assert_close(out_a, out_b, atol=atol, rtol=0)
    for name, ga, gb in zip("qkv", grads_a, grads_b, strict=True):
        torch.testing.assert_close(ga, gb, atol=atol, rtol=0, msg=lambda m, name=name: f"grad of {name}: {m}")


# (leading dims, L, S, block_size, query_block_size): odd sizes, blocks that do not divide n, one block, a block
# larger than n, blocks of 1, L > S and L < S.
CASES = [
    ((), 37, 37, 8, 5),
    ((2,), 29, 29, 29, 29),  # one block exactly
    ((2, 3), 50, 29, 7, 11),  # L > S
    ((1, 2), 20, 45, 100, 3),  # block larger than S, L < S
    ((3,), 13, 13, 1, 1),  # blocks of one key and one query
    ((2, 2), 64, 64, 16, 1024),  # default-sized query block larger than L
]


@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize(("lead", "L", "S", "block", "qblock"), CASES)
def test_online_equals_naive_float64(lead, L, S, block, qblock, is_causal, qkv):
    q, k, v = qkv(L, S, lead=lead, d_k=6, d_v=5, dtype=torch.float64, requires_grad=True)

    def online(q, k, v):
        return mh.online_softmax_attention(q, k, v, block_size=block, is_causal=is_causal, query_block_size=qblock)

    def naive(q, k, v):
        return mh.scaled_dot_product_attention(q, k, v, is_causal=is_causal)[0]

    _assert_same(online, naive, q, k, v, atol=1e-12)


@pytest.mark.parametrize("is_causal", [False, True])
def test_online_equals_naive_and_torch_float32(is_causal, qkv):
    q, k, v = qkv(300, 300, lead=(2, 4), d_k=64, dtype=torch.float32, requires_grad=True)

    def online(q, k, v):
        return mh.online_softmax_attention(q, k, v, block_size=64, is_causal=is_causal, query_block_size=96)

    def naive(q, k, v):
        return mh.scaled_dot_product_attention(q, k, v, is_causal=is_causal)[0]

    def torch_sdpa(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)

    _assert_same(online, naive, q, k, v, atol=1e-5)
    _assert_same(online, torch_sdpa, q, k, v, atol=1e-5)


def test_default_blocks_large_scores_and_custom_scale(qkv):
    # Scores in the hundreds: exp() would overflow without the running max.
    q, k, v = qkv(700, 700, lead=(1,), d_k=16, dtype=torch.float64, requires_grad=True)
    q = (q.detach() * 30).requires_grad_()

    def online(q, k, v):
        return mh.online_softmax_attention(q, k, v, scale=0.5)

    def naive(q, k, v):
        return mh.scaled_dot_product_attention(q, k, v, scale=0.5)[0]

    _assert_same(online, naive, q, k, v, atol=1e-10)
    assert torch.isfinite(online(q, k, v)).all()


def test_gradcheck_causal_small_blocks(qkv):
    q, k, v = qkv(9, 7, lead=(1, 2), d_k=4, d_v=3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda q, k, v: mh.online_softmax_attention(q, k, v, block_size=3, is_causal=True, query_block_size=4),
        (q, k, v),
    )


def test_only_some_inputs_need_grad(qkv):
    q, k, v = qkv(20, 20, lead=(2,), requires_grad=False, dtype=torch.float64)
    v.requires_grad_()
    out = mh.online_softmax_attention(q, k, v, block_size=6, query_block_size=7)
    (grad_v,) = torch.autograd.grad(out.sum(), v)
    v_ref = v.detach().requires_grad_()
    (grad_ref,) = torch.autograd.grad(mh.scaled_dot_product_attention(q, k, v_ref)[0].sum(), v_ref)
    torch.testing.assert_close(grad_v, grad_ref, atol=1e-12, rtol=0)


def test_no_grad_and_half_precision(qkv):
    q, k, v = qkv(33, 33, lead=(2,), dtype=torch.float32, requires_grad=False)
    with torch.no_grad():
        out = mh.online_softmax_attention(q, k, v, block_size=10)
    assert not out.requires_grad
    half = mh.online_softmax_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), block_size=10)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), out, atol=3e-2, rtol=0)


def test_saves_no_square_matrix(qkv):
    """The autograd graph keeps only tensors of size O(L·d): nothing with L x S entries."""
    L = 256
    q, k, v = qkv(L, L, lead=(1,), d_k=4, dtype=torch.float32, requires_grad=True)
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = mh.online_softmax_attention(q, k, v, block_size=32)
    out.sum().backward()
    assert saved and max(saved) <= L * 4
    assert sum(saved) < L * L / 10


def test_causal_blocks_above_the_diagonal_are_skipped(monkeypatch, qkv):
    """With is_causal, a key block entirely after a query block is never multiplied: count the bmm calls."""
    q, k, v = qkv(64, 64, lead=(1,), d_k=8, dtype=torch.float32, requires_grad=False)
    calls = {}
    real_bmm = torch.bmm
    for causal in (False, True):
        count = [0]

        def counting_bmm(*args, count=count, **kwargs):
            count[0] += 1
            return real_bmm(*args, **kwargs)

        monkeypatch.setattr(torch, "bmm", counting_bmm)
        mh.online_softmax_attention(q, k, v, block_size=16, is_causal=causal, query_block_size=16)
        monkeypatch.setattr(torch, "bmm", real_bmm)
        calls[causal] = count[0]
    # 4 x 4 blocks of scores, plus the first weights @ V of each of the 4 query blocks; causal keeps the 10 blocks
    # on or below the diagonal.
    assert calls == {False: 16 + 4, True: 10 + 4}


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"block_size": 0}, ValueError, "block_size"),
        ({"block_size": -4}, ValueError, "block_size"),
        ({"block_size": 2.5}, TypeError, "block_size"),
        ({"block_size": True}, TypeError, "block_size"),
        ({"query_block_size": 0}, ValueError, "query_block_size"),
        ({"scale": -1.0}, ValueError, "scale"),
        ({"is_causal": 1}, TypeError, "is_causal"),
    ],
)
def test_bad_arguments(kwargs, error, words, qkv):
    q, k, v = qkv(5, 5, lead=(1,), requires_grad=False, dtype=torch.float64)
    with pytest.raises(error, match=words):
        mh.online_softmax_attention(q, k, v, **kwargs)


def test_bad_tensors(qkv):
    q, k, v = qkv(5, 6, lead=(2,), requires_grad=False, dtype=torch.float64)
    with pytest.raises(TypeError, match="floating-point"):
        mh.online_softmax_attention(q.long(), k, v)
    with pytest.raises(ValueError, match="same last dim"):
        mh.online_softmax_attention(q[..., :3], k, v)
    with pytest.raises(ValueError, match="same length S"):
        mh.online_softmax_attention(q, k, v[:, :4])
    with pytest.raises(ValueError, match="leading dims"):
        mh.online_softmax_attention(q[None], k, v)
    with pytest.raises(ValueError, match="at least 2 dims"):
        mh.online_softmax_attention(q[0, 0], k, v)
    with pytest.raises(ValueError, match="S=0"):
        mh.online_softmax_attention(q, k[:, :0], v[:, :0])
    with pytest.raises(TypeError, match="key has dtype torch.float64 but query has torch.float32"):
        mh.online_softmax_attention(q.float(), k, v)


def test_online_softmax_steps_reach_the_softmax():
    x = torch.tensor([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0])
    steps = mh.online_softmax_steps(x, block_size=3)
    assert len(steps) == 3
    m, total = steps[-1]["running max"], steps[-1]["running sum"]
    assert m == 9.0
    assert math.isclose(total, float(torch.exp(x - 9.0).sum()), rel_tol=1e-6)
    torch.testing.assert_close(torch.exp(x - m) / total, torch.softmax(x, 0))

