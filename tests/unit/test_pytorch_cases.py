"""PyTorch's own test cases for multi-head attention and SDPA, adapted to run against mha_helpers.

The cases come from PyTorch's ``test/nn/test_multihead_attention.py`` and ``test/test_transformers.py``
(classes TestMultiheadAttentionNN, TestMultiheadAttentionNNDeviceType, TestTransformers, TestSDPAFailureModes,
TestSDPA, TestSDPACpuOnly, TestAttnBias). Each test here names the PyTorch test it adapts. The scenarios (shapes,
masks, dtypes, what is compared) are PyTorch's; the code is written for this project: ``mh.MultiHeadAttention`` and
``mh.scaled_dot_product_attention`` take the place of ``nn.MultiheadAttention`` and
``F.scaled_dot_product_attention``, and the references are PyTorch's own functions or a plain reference written here.
Sizes are smaller than PyTorch's where its sizes only stress CUDA kernels, so that the file runs in seconds on a CPU.

Documented differences (deliberate; each has a test below that pins the behaviour we give instead):

1. ``add_bias_kv``, ``add_zero_attn`` and ``static_k``/``static_v`` are not supported: ``from_torch`` refuses a
   module built with them (ValueError naming the option), and the constructor has no such arguments.
2. Bad input raises ``ValueError``/``TypeError`` with a message naming the argument and what would work, where
   PyTorch raises ``AssertionError`` or ``RuntimeError`` with its own wording.
3. ``scale`` must be positive and finite: PyTorch's ``..._math_with_negative_scale`` case (scale = -1/0.0001) is
   refused with a ValueError (a negative scale turns attention into "attend to the LEAST similar key").
4. A query row whose keys are all masked gets zero weights and a zero result (W_o's bias after the output
   projection); ``nn.MultiheadAttention`` returns NaN there with ``need_weights=True`` and on its fast path.
   PyTorch's tests exclude those rows from comparisons, and so do these.
5. Nested (jagged) tensors are not accepted: a TypeError says to pad them (``torch.nested.to_padded_tensor``) and
   pass a ``key_padding_mask``.
6. ``MultiHeadAttention.forward`` reads a ``CausalBias`` by its meaning (True = may attend, as SDPA reads it),
   which ``nn.MultiheadAttention`` cannot read at all; and with ``causal_lower_right(L, S)`` where L > S, the first
   L - S queries see no key and get zeros, where PyTorch's CausalBias dispatch gives NaN (PyTorch's own test skips
   that case).
7. Cases about PyTorch internals have nothing to adapt: the BetterTransformer fast path and its mock, TorchScript,
   torch.compile, CUDA kernel selection, custom devices (PrivateUse1), nested-tensor kernels, and the
   ``in_proj_bias`` of a different dtype (our module has separate W_q/W_k/W_v layers).
8. The CUDA-only dtype cases (``test_multihead_attention_dtype``) run here on the CPU, for float16, float32 and
   float64.
"""

from __future__ import annotations

import math
import random
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention.bias import causal_lower_right, causal_upper_left

import mha_helpers as mh

pytestmark = pytest.mark.usefixtures("single_thread")


def _live_rows(*tensors: torch.Tensor) -> torch.Tensor:
    """Positions where every given tensor is finite (PyTorch gives NaN for fully masked rows: difference 4)."""
    ok = torch.ones_like(tensors[0], dtype=torch.bool)
    for t in tensors:
        ok &= torch.isfinite(t)
    return ok


# ---- test_multihead_attention.py: TestMultiheadAttentionNN.test_multihead_attention -------------------------------
#
# PyTorch builds a random module (d_head 3..10, 4..10 heads, kdim = vdim != embed_dim unless same_embed_dim), one
# query per batch element (a decoder state), keys of 2..10 positions, an additive attn_mask of 0 / -inf over the keys
# and optionally a key_padding_mask, and compares output and weights with a NumPy reference to 1e-5.


def _numpy_reference(Q, K, V, module: nn.MultiheadAttention, attn_mask, key_padding_mask, average):
    """The NumPy reference of PyTorch's test: project, split, scaled dot product with masks, merge, project."""
    E, H = module.embed_dim, module.num_heads
    d = E // H
    if module._qkv_same_embed_dim:
        w_q, w_k, w_v = (w.detach().numpy() for w in module.in_proj_weight.chunk(3))
    else:
        w_q, w_k, w_v = (w.detach().numpy() for w in (module.q_proj_weight, module.k_proj_weight,
                                                       module.v_proj_weight))
    b_q, b_k, b_v = (b.detach().numpy() for b in module.in_proj_bias.chunk(3))
    q, k, v = Q @ w_q.T + b_q, K @ w_k.T + b_k, V @ w_v.T + b_v  # (B, 1, E), (B, S, E), (B, S, E)

    def heads(x):  # (B, T, E) -> (B, H, T, d)
        return x.reshape(x.shape[0], x.shape[1], H, d).transpose(0, 2, 1, 3)

    q, k, v = heads(q), heads(k), heads(v)
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d)  # (B, H, 1, S)
    blocked = np.zeros(scores.shape, dtype=bool)
    if attn_mask is not None:
        blocked |= (attn_mask == 0)[None, None]  # (1, S): 0 = blocked, as in PyTorch's test
    if key_padding_mask is not None:
        blocked |= key_padding_mask[:, None, None, :]
    scores = np.where(blocked, -np.inf, scores)
    with np.errstate(invalid="ignore"):
        e = np.exp(scores - scores.max(axis=-1, keepdims=True))
        weights = e / e.sum(axis=-1, keepdims=True)
    out = (weights @ v).transpose(0, 2, 1, 3).reshape(Q.shape[0], 1, E)  # merge heads
    out = out @ module.out_proj.weight.detach().numpy().T + module.out_proj.bias.detach().numpy()
    return out[:, 0], (weights.mean(axis=1) if average else weights)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("average_attn_weights", [True, False])
@pytest.mark.parametrize("key_padding", [False, True], ids=["no_key_padding", "key_padding"])
@pytest.mark.parametrize("same_embed_dim", [False, True], ids=["kdim_vdim", "same_embed_dim"])
def test_multihead_attention_numpy_reference(seed, average_attn_weights, key_padding, same_embed_dim):
    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)
    batch, seq = rng.randint(2, 10), rng.randint(2, 10)
    d_head, heads = rng.randint(3, 10), rng.randint(2, 5) * 2
    d_model = d_head * heads
    kv_dim = d_model if same_embed_dim else rng.randint(5, 20)
    torch.manual_seed(seed)
    theirs = nn.MultiheadAttention(d_model, heads, kdim=kv_dim, vdim=kv_dim)  # sequence-first, as PyTorch's test
    with torch.no_grad():
        theirs.in_proj_bias.uniform_(-0.5, 0.5)
        theirs.out_proj.bias.uniform_(-0.5, 0.5)
    ours = mh.MultiHeadAttention.from_torch(theirs)

    K = np_rng.random((batch, seq, kv_dim)).astype(np.float32)
    Q = np_rng.random((batch, 1, d_model)).astype(np.float32)
    attn_mask = np_rng.integers(0, 2, size=(1, seq))
    attn_mask[0, 0] = 1  # one key always visible: PyTorch's reference gives NaN rows otherwise (difference 4)
    mask_tensor = torch.zeros(1, seq).masked_fill(torch.from_numpy(attn_mask) == 0, float("-inf"))
    kpm = kpm_tensor = None
    if key_padding:
        row = np_rng.integers(0, 2, (1, seq)) == 1
        row[0, 0] = False
        kpm = np.repeat(row, batch, axis=0)
        kpm_tensor = torch.from_numpy(kpm)

    query = torch.from_numpy(Q).transpose(0, 1)  # (1, batch, d_model): sequence-first
    key = torch.from_numpy(K).transpose(0, 1)  # (seq, batch, kv_dim)
    out, weights = ours(query, key, key, key_padding_mask=kpm_tensor, attn_mask=mask_tensor,
                        average_attn_weights=average_attn_weights)
    ref_out, ref_weights = _numpy_reference(Q, K, K, theirs, attn_mask, kpm, average_attn_weights)
    np.testing.assert_allclose(out[0].detach().numpy(), ref_out, atol=1e-5)
    assert tuple(weights.shape) == tuple(ref_weights.shape)
    np.testing.assert_allclose(weights.detach().numpy(), ref_weights, atol=1e-5)


@pytest.mark.parametrize("option", ["add_bias_kv", "add_zero_attn"])
def test_bias_kv_and_zero_attn_are_refused_by_name(option):
    # Difference 1: PyTorch's test_multihead_attn_add_bias_kv / _add_zero_attn / _all_arguments* cases.
    theirs = nn.MultiheadAttention(8, 2, **{option: True})
    with pytest.raises(ValueError, match=f"{option}=True"):
        mh.MultiHeadAttention.from_torch(theirs)


def test_static_kv_is_not_an_argument():
    # Difference 1: static_k/static_v (PyTorch's saved_kv cases) exist only in F.multi_head_attention_forward.
    with pytest.raises(TypeError):
        mh.MultiHeadAttention(8, 2)(torch.randn(1, 3, 8), static_k=torch.randn(2, 3, 4))


# ---- TestMultiheadAttentionNN: 3-D attn_mask, no bias, invalid shapes ---------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_multihead_attn_3d_attn_mask(seed):
    embed_dim, num_heads, batch, src_len, tgt_len = 8, 4, 8, 3, 2
    g = torch.Generator().manual_seed(seed)
    query, key = torch.rand(batch, tgt_len, embed_dim, generator=g), torch.rand(batch, src_len, embed_dim, generator=g)
    allowed = torch.randint(0, 2, (batch, tgt_len, src_len), generator=g).float()
    allowed[..., 0] = 1.0
    attn_mask = allowed.masked_fill(allowed == 0, float("-inf")).masked_fill(allowed == 1, 0.0)
    torch.manual_seed(seed)
    model = mh.MultiHeadAttention(embed_dim, num_heads, batch_first=False)
    mask_3d = torch.repeat_interleave(attn_mask, num_heads, dim=0)  # (N * H, T, S)
    out_3d = model(query.transpose(0, 1), key.transpose(0, 1), key.transpose(0, 1), attn_mask=mask_3d)[0]
    for i in range(batch):
        out_2d = model(query[i:i + 1].transpose(0, 1), key[i:i + 1].transpose(0, 1), key[i:i + 1].transpose(0, 1),
                       attn_mask=attn_mask[i])[0]
        torch.testing.assert_close(out_3d[:, i:i + 1], out_2d)


def test_multihead_attn_no_bias():
    mha = mh.MultiHeadAttention(8, 4, bias=False)
    for layer in (mha.W_q, mha.W_k, mha.W_v, mha.W_o):
        assert layer.bias is None
    assert mha.to_torch().in_proj_bias is None and mha.to_torch().out_proj.bias is None


def _invalid_shape_cases():
    q3, q2 = torch.randn(4, 4, 4), torch.randn(4, 4)
    kpm1 = torch.tensor([False, False, True, True])
    return [
        ("3-D query, 2-D key", (q3, torch.randn(4, 4), q3), {}, "batched"),
        ("3-D query, 2-D value", (q3, q3, torch.randn(4, 4)), {}, "batched"),
        ("3-D query, 1-D key_padding_mask", (q3, q3, q3), {"key_padding_mask": kpm1}, "key_padding_mask"),
        ("3-D query, 1-D attn_mask", (q3, q3, q3), {"attn_mask": kpm1}, "attn_mask"),
        ("2-D query, 3-D key", (q2, q3, q2), {}, "batched"),
        ("2-D query, 3-D value", (q2, q2, q3), {}, "batched"),
        ("2-D query, 2-D key_padding_mask", (q2, q2, q2),
         {"key_padding_mask": torch.tensor([[False, False, True, True] * 2])}, "key_padding_mask"),
        ("2-D query, 1-D attn_mask", (q2, q2, q2), {"attn_mask": kpm1}, "attn_mask"),
        ("2-D query, 3-D attn_mask of the wrong size", (q2, q2, q2),
         {"attn_mask": torch.randn(5, 4, 4).bernoulli_().bool()}, r"\(4, 4, 4\)"),
    ]


@pytest.mark.parametrize("case", _invalid_shape_cases(), ids=lambda c: c[0])
@pytest.mark.parametrize("mode", ["train", "eval_no_grad", "eval_need_weights_false"])
def test_multihead_attn_invalid_shape(case, mode):
    # PyTorch's test_multihead_attn_invalid_shape and ..._fast_path_invalid_shape (AssertionError there; difference 2).
    _, args, kwargs, pattern = case
    mha = mh.MultiHeadAttention(4, 4, batch_first=False)
    if mode != "train":
        mha.eval()
    if mode == "eval_need_weights_false":
        kwargs = {**kwargs, "need_weights": False}
    with torch.no_grad(), pytest.raises(ValueError, match=pattern):
        mha(*args, **kwargs)


def test_nested_tensors_are_refused_with_the_way_out():
    # Difference 5: PyTorch's test_multihead_attn_nested_tensor_outside_fast_path.
    nt = torch.nested.nested_tensor([torch.randn(4, 10), torch.randn(6, 10)], layout=torch.jagged)
    with pytest.raises(TypeError, match="to_padded_tensor"):
        mh.MultiHeadAttention(10, 5)(nt, nt, nt)


# ---- TestMultiheadAttentionNNDeviceType ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("need_weights", [True, False])
def test_multihead_self_attn_two_masks(seed, need_weights, mha_pair):
    # test_multihead_self_attn_two_masks_fast_path: a boolean attn_mask AND a key_padding_mask; rows that both
    # masks together block completely are excluded from the comparison, as in PyTorch's test.
    embed_dim, num_heads, batch, src_len = 14, 7, 8, 5
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, src_len, embed_dim, generator=g)
    attn_mask = torch.randint(0, 2, (src_len, src_len), generator=g).bool()
    key_padding_mask = torch.randint(0, 2, (batch, src_len), generator=g).bool()
    ours, theirs = mha_pair(embed_dim, num_heads, seed=seed)
    with torch.no_grad():
        out, _ = ours(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=need_weights)
        ref, _ = theirs(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False)
    merged = attn_mask[None] | key_padding_mask[:, None, :]  # (batch, L, S), True = blocked
    dead = merged.all(-1, keepdim=True).expand(batch, src_len, embed_dim)
    torch.testing.assert_close(out.masked_fill(dead, 0), ref.masked_fill(dead, 0), atol=1e-5, rtol=1e-5)
    # Difference 4: where every key is blocked, our attention result is zero, so the output is W_o's bias.
    torch.testing.assert_close(out[dead].view(-1, embed_dim) if dead.any() else out[:0, 0],
                               ours.W_o.bias.expand(int(dead.any(-1).sum()), -1) if dead.any() else out[:0, 0])


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_multihead_attention_dtype(dtype):
    model = mh.MultiHeadAttention(128, 8, batch_first=False).to(dtype)
    q, k, v = (torch.randn(10, 8, 128, dtype=dtype) for _ in range(3))
    out = model(q, k, v)
    assert out[0].shape == q.shape and out[0].dtype == dtype


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize("training", [True, False])
def test_multihead_attention_dtype_batch_first(dtype, training):
    model = mh.MultiHeadAttention(128, 8, batch_first=True).to(dtype).train(training)
    q, k, v = (torch.randn(8, 10, 128, dtype=dtype) for _ in range(3))
    with torch.set_grad_enabled(training):
        out = model(q, k, v, need_weights=False)
    assert out[0].shape == q.shape and out[0].dtype == dtype


def test_multihead_attn_small_double():
    # test_multihead_attn_fast_path_small_test and test_multihead_attn_in_proj_bias_none.
    query = torch.randn(4, 4, 4, dtype=torch.double)
    for model in (mh.MultiHeadAttention(4, 4, dtype=torch.double).eval(),
                  mh.MultiHeadAttention(2, 2, bias=False, batch_first=False, dtype=torch.double)):
        x = query if model.embed_dim == 4 else torch.rand(2, 2, 2, dtype=torch.double)
        with torch.no_grad():
            out, _ = model(x, x, x)
        assert out.shape == x.shape and bool(torch.isfinite(out).all())


def test_multihead_attn_in_proj_weight_none():
    # kdim = vdim = 2 != embed_dim: PyTorch keeps separate q/k/v weights; so do we (always).
    mha = mh.MultiHeadAttention(4, 4, vdim=2, kdim=2, batch_first=False, dtype=torch.double)
    query, key = torch.rand(4, 4, 4, dtype=torch.double), torch.rand(4, 4, 2, dtype=torch.double)
    with torch.no_grad():
        out, _ = mha(query, key, key)
    assert out.shape == query.shape
    assert mha.to_torch().in_proj_weight is None


# ---- test_transformers.py: TestTransformers -----------------------------------------------------------------------


@pytest.mark.parametrize("attn_mask_dim", [2, 3, None])
@pytest.mark.parametrize("key_padding_mask_dim", [2, None])
@pytest.mark.parametrize("mask_dtype", [torch.bool, torch.float32])
@pytest.mark.parametrize("seed", range(3))
def test_multiheadattention_fastpath_attn_mask(attn_mask_dim, key_padding_mask_dim, mask_dtype, seed, mha_pair):
    # Train and eval give the same output; and both equal nn.MultiheadAttention where its rows are finite.
    B, L, D, H = 2, 4, 8, 4
    g = torch.Generator().manual_seed(seed)

    def random_mask(shape):
        if mask_dtype == torch.bool:
            return torch.rand(shape, generator=g) > 0.5
        return torch.randn(shape, generator=g)

    attn_mask = {2: lambda: random_mask((L, L)), 3: lambda: random_mask((B * H, L, L)), None: lambda: None}[
        attn_mask_dim]()
    key_padding_mask = random_mask((B, L)) if key_padding_mask_dim == 2 else None
    ours, theirs = mha_pair(D, H, seed=seed)
    X = torch.randn(B, L, D, generator=g)
    with torch.no_grad():
        out, _ = ours.train()(X, X, X, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False)
        out_eval, _ = ours.eval()(X, X, X, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                                  need_weights=False)
        out_weights, _ = ours(X, X, X, attn_mask=attn_mask, key_padding_mask=key_padding_mask)
        ref, _ = theirs.train()(X, X, X, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False)
    torch.testing.assert_close(out, out_eval)
    live = _live_rows(ref)
    torch.testing.assert_close(out[live], ref[live], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_weights[live], ref[live], atol=1e-5, rtol=1e-5)
    assert bool(torch.isfinite(out).all())  # difference 4: never NaN


def _sdp_reference(q, k, v, attn_mask=None, dropout_p=0.0):
    """PyTorch's sdp_ref: scale q, baddbmm with the float mask, softmax, dropout, bmm (3-D inputs)."""
    q = q / math.sqrt(q.size(-1))
    attn = torch.baddbmm(attn_mask, q, k.transpose(-2, -1)) if attn_mask is not None else q @ k.transpose(-2, -1)
    attn = torch.softmax(attn, dim=-1)
    if dropout_p > 0.0:
        attn = F.dropout(attn, p=dropout_p)
    return attn @ v


@pytest.mark.parametrize("batch_size", [0, 5])
@pytest.mark.parametrize("input_dim,attn_mask_dim,is_causal",
                         [(3, None, False), (3, 2, False), (3, 2, True), (3, 3, False), (3, 3, True),
                          (4, None, False), (4, 2, False), (4, 2, True), (4, 4, False), (4, 4, True)])
@pytest.mark.parametrize("dropout_p", [0.0, 0.2, 0.5])
@pytest.mark.parametrize("dtype", [torch.double, torch.float])
def test_scaled_dot_product_attention(batch_size, input_dim, attn_mask_dim, is_causal, dropout_p, dtype):
    N, N_prime, L, S, E = batch_size, 2, 4, 3, 8
    g = torch.Generator().manual_seed(0)
    shape = (N, N_prime) if input_dim == 4 else (N,)
    query, key, value = (torch.randn(*shape, n, E, generator=g, dtype=dtype) for n in (L, S, S))
    attn_mask = None
    if attn_mask_dim is not None:
        mask_shape = (L, S) if attn_mask_dim == 2 else (shape + (L, S))
        if is_causal:  # the reference gets the causal mask as floats; our function gets is_causal=True
            attn_mask = torch.ones(L, S, dtype=torch.bool).tril().expand(mask_shape)
        else:
            attn_mask = torch.randint(0, 2, mask_shape, generator=g).bool()
            attn_mask[..., 0] = True  # no fully masked rows (PyTorch's reference would give NaN there)
        float_mask = torch.zeros(attn_mask.shape, dtype=dtype).masked_fill(~attn_mask, float("-inf"))
    # The reference works on 3-D (batch, seq, features): fold a 4-D input's first two dims together.
    q3, k3, v3 = (t.reshape(-1, t.shape[-2], E) for t in (query, key, value))
    m3 = None
    if attn_mask is not None:
        m3 = float_mask.expand(shape + (L, S)).reshape(-1, L, S)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        expected = _sdp_reference(q3, k3, v3, m3, dropout_p).reshape(*shape, L, E)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)  # the same dropout draw: our dropout also acts on the weights after the softmax
        if is_causal and attn_mask is not None:
            actual, _ = mh.scaled_dot_product_attention(query, key, value, is_causal=True, dropout_p=dropout_p)
        else:
            actual, _ = mh.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p)
    torch.testing.assert_close(actual, expected)


@pytest.mark.parametrize("is_causal", [True, False])
def test_train_with_is_causal(is_causal):
    # test_train_with_is_causal: is_causal with and without an explicit mask gives the same result.
    S, L, E, H = 4, 4, 8, 2
    torch.manual_seed(0)
    model = mh.MultiHeadAttention(E, H, batch_first=True)
    x = torch.randn(2, L, E)
    mask = ~mh.causal_mask(L, S) if is_causal else None  # nn.MultiheadAttention's polarity: True = blocked
    out_mask, _ = model(x, x, x, attn_mask=mask, is_causal=is_causal)
    out_flag, _ = model(x, x, x, is_causal=is_causal)
    torch.testing.assert_close(out_mask, out_flag)
    ref, _ = model.to_torch()(x, x, x, attn_mask=mask, is_causal=is_causal)
    torch.testing.assert_close(out_mask, ref, atol=1e-5, rtol=1e-5)


# ---- TestSDPAFailureModes -------------------------------------------------------------------------------------------


def _sdpa_shapes(**changes):
    shapes = {"q": (2, 8, 16, 16), "k": (2, 8, 16, 16), "v": (2, 8, 16, 16)}
    shapes.update(changes)
    return [torch.randn(s) for s in shapes.values()]


def test_invalid_inputs_different_datatypes():
    q, k, v = _sdpa_shapes()
    with pytest.raises(TypeError, match="dtype"):  # difference 2: PyTorch raises RuntimeError
        mh.scaled_dot_product_attention(q, k.double(), v)


def test_invalid_inputs_1_dimensional_inputs():
    with pytest.raises(ValueError, match="at least 2 dims"):
        mh.scaled_dot_product_attention(torch.randn(4), torch.randn(4), torch.randn(4))


def test_invalid_inputs_dim_3_mismatch():
    q, k, v = _sdpa_shapes(k=(2, 8, 16, 8))  # d_k differs
    with pytest.raises(ValueError, match="same last dim d_k"):
        mh.scaled_dot_product_attention(q, k, v)


def test_invalid_inputs_broadcast_mismatch():
    q, k, v = _sdpa_shapes(k=(3, 8, 16, 16), v=(3, 8, 16, 16))
    with pytest.raises(ValueError, match="leading dims"):
        mh.scaled_dot_product_attention(q, k, v)


def test_is_causal_and_mask_fails_plain_mask():
    q, k, v = _sdpa_shapes()
    with pytest.raises(ValueError, match="not both"):
        mh.scaled_dot_product_attention(q, k, v, attn_mask=torch.ones(16, 16, dtype=torch.bool), is_causal=True)


def test_negative_scale_is_refused():
    # Difference 3: PyTorch's test_scaled_dot_product_attention_math_with_negative_scale.
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(ValueError, match="positive"):
        mh.scaled_dot_product_attention(x, x, x, scale=-1.0 / 0.0001)


# ---- TestSDPA / TestSDPACpuOnly -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_scaled_dot_product_attention_fp16_overflow(dtype):
    x = torch.full((1, 32, 23, 80), 256.0, dtype=dtype)
    y, _ = mh.scaled_dot_product_attention(x, x, x)
    assert not bool(y.isnan().any())


_CPU_TOL = {torch.float64: 1e-7, torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 2e-3}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("batch_size,q_len,kv_len", [(2, 7, 19), (3, 16, 16), (1, 33, 9)])
@pytest.mark.parametrize("n_head,head_dim", [(1, 8), (3, 16)])
@pytest.mark.parametrize("mask", ["none", "bool_2d", "bool_4d", "float_2d", "float_4d", "causal"])
def test_fused_attention_mask_vs_math_cpu(dtype, batch_size, q_len, kv_len, n_head, head_dim, mask):
    # test_scaled_dot_product_fused_attention_mask_vs_math_cpu: forward and, for float32/64, gradients, against
    # PyTorch's SDPA with the same mask (a random boolean or float mask, 2-D or 4-D, or is_causal).
    g = torch.Generator().manual_seed(batch_size * 100 + q_len)
    shape = (batch_size, n_head)
    q, k, v = (torch.randn(*shape, n, head_dim, generator=g).to(dtype) for n in (q_len, kv_len, kv_len))
    attn_mask, is_causal = None, mask == "causal"
    if mask.startswith(("bool", "float")):
        mask_shape = (q_len, kv_len) if mask.endswith("2d") else (*shape, q_len, kv_len)
        allowed = torch.rand(mask_shape, generator=g) > 0.3
        allowed[..., 0] = True
        attn_mask = allowed if mask.startswith("bool") else torch.randn(mask_shape, generator=g).to(dtype)
    train = dtype in (torch.float32, torch.float64)
    ours_in = [t.clone().requires_grad_(train) for t in (q, k, v)]
    theirs_in = [t.clone().requires_grad_(train) for t in (q, k, v)]
    out, _ = mh.scaled_dot_product_attention(*ours_in, attn_mask=attn_mask, is_causal=is_causal)
    ref = F.scaled_dot_product_attention(*theirs_in, attn_mask=attn_mask, is_causal=is_causal)
    tol = _CPU_TOL[dtype]
    torch.testing.assert_close(out, ref, atol=tol, rtol=tol)
    if train:
        grad = torch.randn(ref.shape, generator=g, dtype=dtype)
        out.backward(grad)
        ref.backward(grad)
        for a, b in zip(ours_in, theirs_in, strict=True):
            torch.testing.assert_close(a.grad, b.grad, atol=10 * tol, rtol=10 * tol)


def test_sdpa_with_inf():
    # A float mask of -inf over a whole row: PyTorch's math and flash kernels agree (zeros); so do we.
    q = torch.randn(1, 1, 4, 8)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., 1, :] = float("-inf")
    out, weights = mh.scaled_dot_product_attention(q, q, q, attn_mask=mask)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, q, q, attn_mask=mask))
    assert bool((weights[..., 1, :] == 0).all())


def test_math_gradcheck():
    # test_scaled_dot_product_attention_math_gradcheck, on our function in float64.
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 3, 4, generator=g, dtype=torch.double, requires_grad=True) for _ in range(3))
    assert torch.autograd.gradcheck(lambda *t: mh.scaled_dot_product_attention(*t)[0], (q, k, v))
    assert torch.autograd.gradcheck(lambda *t: mh.scaled_dot_product_attention(*t, is_causal=True)[0], (q, k, v))


# ---- TestAttnBias -------------------------------------------------------------------------------------------------

_BIAS_SHAPES = [(2, 2, 16, 16, 8), (2, 2, 16, 32, 8), (2, 2, 32, 16, 8), (1, 1, 23, 56, 15)]


def _bias_case(variant: str, shape, seed: int = 0):
    bsz, heads, L, S, d = shape
    g = torch.Generator().manual_seed(seed)
    q = torch.rand(bsz, heads, L, d, generator=g, dtype=torch.float64)
    k, v = (torch.rand(bsz, heads, S, d, generator=g, dtype=torch.float64) for _ in range(2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bias = (causal_upper_left if variant == "upper_left" else causal_lower_right)(L, S)
    return q, k, v, bias


@pytest.mark.parametrize("variant", ["upper_left", "lower_right"])
@pytest.mark.parametrize("shape", _BIAS_SHAPES, ids=str)
def test_causal_variants(variant, shape):
    # run_test of TestAttnBias: the bias against its materialised mask, outputs and gradients.
    q, k, v, bias = _bias_case(variant, shape)
    ours_in = [t.clone().requires_grad_(True) for t in (q, k, v)]
    ref_in = [t.clone().requires_grad_(True) for t in (q, k, v)]
    out, _ = mh.scaled_dot_product_attention(*ours_in, attn_mask=bias)
    ref = F.scaled_dot_product_attention(*ref_in, attn_mask=bias._materialize())
    torch.testing.assert_close(out, ref)
    grad = torch.randn_like(ref)
    out.backward(grad)
    ref.backward(grad)
    for a, b in zip(ours_in, ref_in, strict=True):
        torch.testing.assert_close(a.grad, b.grad)
    if variant == "lower_right" and shape[2] > shape[3]:  # difference 6: PyTorch's test skips this case
        assert bool((out[..., : shape[2] - shape[3], :] == 0).all())


@pytest.mark.parametrize("shape", _BIAS_SHAPES, ids=str)
def test_is_causal_equals_upper_left(shape):
    q, k, v, bias = _bias_case("upper_left", shape, seed=1)
    out_bias, _ = mh.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    out_flag, _ = mh.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(out_bias, out_flag)


def test_is_causal_and_causal_bias_fails():
    q, k, v, bias = _bias_case("upper_left", (2, 2, 16, 16, 8))
    with pytest.raises(ValueError, match="is_causal"):
        mh.scaled_dot_product_attention(q, k, v, attn_mask=bias, is_causal=True)


@pytest.mark.parametrize("variant", ["upper_left", "lower_right"])
@pytest.mark.parametrize("need_weights", [True, False])
def test_causal_variants_through_the_module(variant, need_weights, mha_pair):
    # Difference 6: the module reads a CausalBias by its meaning; nn.MultiheadAttention gets the same pattern as
    # its own boolean mask (True = blocked).
    ours, theirs = mha_pair(8, 2, seed=0)
    g = torch.Generator().manual_seed(1)
    x, mem = torch.randn(2, 5, 8, generator=g), torch.randn(2, 7, 8, generator=g)
    _, _, _, bias = _bias_case(variant, (1, 1, 5, 7, 8))
    out, _ = ours(x, mem, mem, attn_mask=bias, need_weights=need_weights)
    ref, _ = theirs(x, mem, mem, attn_mask=~bias._materialize(), need_weights=need_weights)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
