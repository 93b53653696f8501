"""mha_helpers.MultiHeadAttention IS torch.nn.MultiheadAttention: same outputs, weights and gradients.

The grid crosses every layout (batch-first, sequence-first, unbatched), Q/K/V sizes (self-attention, which takes
the fused path when need_weights=False; cross-attention; kdim/vdim != embed_dim), bias on/off, every mask kind
PyTorch accepts, the three need_weights/average_attn_weights combinations, and both directions of copying the
weights (``from_torch`` and ``to_torch``). Sizes are tiny (embed_dim 8, 2 heads, L=4, S=5, batch 3) so that the
whole grid runs in a few seconds. Masks never block key 0, so no query row is fully masked (PyTorch gives NaN
there; tests/unit/test_mha_properties.py covers those rows).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mha_helpers as mh

pytestmark = pytest.mark.usefixtures("single_thread")

ATOL = 1e-5  # float32; the bar
E, H, L, S, B = 8, 2, 4, 5, 3
KDIM, VDIM = 6, 10

LAYOUTS = ["batch_first", "seq_first", "unbatched"]
QKV = ["self", "cross", "cross_kdim_vdim"]
MASKS = [
    "none",
    "bool_2d",
    "float_2d",
    "bool_3d",
    "float_3d",
    "kpm_bool",
    "kpm_float",
    "bool_2d+kpm_bool",
    "float_3d+kpm_float",
    "causal_with_mask",
    "causal_alone",  # ours gets is_causal=True only; PyTorch (which demands it) also gets the mask
    "causal_alone+kpm_bool",
]
WEIGHTS = [(True, True), (True, False), (False, True)]  # (need_weights, average_attn_weights)
WEIGHT_IDS = ["weights_avg", "weights_per_head", "no_weights"]


def _close(actual: torch.Tensor, expected: torch.Tensor, what: str, atol: float = ATOL) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    if actual.numel() and bool((actual.detach() - expected.detach()).abs().max() <= atol):
        return  # the quick check; NaN anywhere fails it and falls through to the detailed report
    torch.testing.assert_close(actual, expected, rtol=0, atol=atol, msg=lambda m: f"{what}: {m}")


def _inputs(layout: str, qkv: str, gen: torch.Generator, dtype=torch.float32):
    """query, key, value in the layout asked for (self-attention: one tensor, so S = L)."""

    def shape(seq: int, features: int) -> tuple[int, ...]:
        return {"batch_first": (B, seq, features), "seq_first": (seq, B, features), "unbatched": (seq, features)}[
            layout
        ]

    query = torch.randn(shape(L, E), generator=gen, dtype=dtype)
    if qkv == "self":
        return query, query, query
    kdim, vdim = (KDIM, VDIM) if qkv == "cross_kdim_vdim" else (E, E)
    key = torch.randn(shape(S, kdim), generator=gen, dtype=dtype)
    value = torch.randn(shape(S, vdim), generator=gen, dtype=dtype)
    return query, key, value


def _masks(kind: str, n_keys: int, batched: bool, gen: torch.Generator) -> tuple[dict, dict]:
    """Keyword arguments for (PyTorch, ours). Key 0 is never blocked, so every query row keeps a key."""
    n_queries = L
    n = B * H if batched else H  # the first dim of a 3-D attn_mask

    def blocked(shape):  # bool, True = may NOT attend (nn.MultiheadAttention's convention)
        m = torch.rand(shape, generator=gen) < 0.4
        m[..., 0] = False
        return m

    def additive(shape):  # float, added to the scores: random values and some -inf
        return torch.randn(shape, generator=gen).masked_fill(blocked(shape), float("-inf"))

    kpm_shape = (B, n_keys) if batched else (n_keys,)
    make = {
        "bool_2d": lambda: {"attn_mask": blocked((n_queries, n_keys))},
        "float_2d": lambda: {"attn_mask": additive((n_queries, n_keys))},
        "bool_3d": lambda: {"attn_mask": blocked((n, n_queries, n_keys))},
        "float_3d": lambda: {"attn_mask": additive((n, n_queries, n_keys))},
        "kpm_bool": lambda: {"key_padding_mask": blocked(kpm_shape)},
        "kpm_float": lambda: {"key_padding_mask": additive(kpm_shape)},
    }
    theirs: dict = {}
    for part in kind.split("+"):
        if part == "none":
            pass
        elif part.startswith("causal"):
            theirs |= {"attn_mask": ~mh.causal_mask(n_queries, n_keys), "is_causal": True}
        else:
            theirs |= make[part]()
    ours = dict(theirs)
    if kind.startswith("causal_alone"):
        del ours["attn_mask"]
    return theirs, ours


def _run(module, query, key, value, need_weights, average, mask_kwargs, self_attention, gen):
    """Forward with fresh leaf inputs, backward through output AND weights; return (out, weights, input grads)."""
    if self_attention:
        x = query.clone().requires_grad_()
        leaves = (x,)
        args = (x, x, x)  # query is key is value: nn.MultiheadAttention's (and our) fused projection
    else:
        leaves = tuple(t.clone().requires_grad_() for t in (query, key, value))
        args = leaves
    out, weights = module(*args, need_weights=need_weights, average_attn_weights=average, **mask_kwargs)
    loss = (out * torch.randn(out.shape, generator=gen)).sum()  # a random upstream gradient, not just ones
    if weights is not None:
        loss = loss + (weights * torch.randn(weights.shape, generator=gen)).sum()
    loss.backward()
    return out, weights, [leaf.grad for leaf in leaves]


def _check_parity(layout, qkv, bias, mask, need_weights, average, direction, mha_pair, grads_by_torch_name):
    kdims = {"kdim": KDIM, "vdim": VDIM} if qkv == "cross_kdim_vdim" else {}
    ours, theirs = mha_pair(E, H, bias=bias, batch_first=layout != "seq_first", direction=direction, **kdims)
    gen = torch.Generator().manual_seed(1)
    query, key, value = _inputs(layout, qkv, gen)
    n_keys = L if qkv == "self" else S
    theirs_masks, ours_masks = _masks(mask, n_keys, batched=layout != "unbatched", gen=gen)

    seed = int(torch.randint(0, 2**31, (1,), generator=gen))
    self_attention = qkv == "self"
    out_t, w_t, grads_t = _run(
        theirs,
        query,
        key,
        value,
        need_weights,
        average,
        theirs_masks,
        self_attention,
        torch.Generator().manual_seed(seed),
    )
    out_o, w_o, grads_o = _run(
        ours, query, key, value, need_weights, average, ours_masks, self_attention, torch.Generator().manual_seed(seed)
    )

    assert not out_t.isnan().any(), "the grid's masks must leave every row a key (PyTorch gives NaN otherwise)"
    _close(out_o, out_t, "output")
    if need_weights:
        _close(w_o, w_t, "attention weights")
    else:
        assert w_o is None and w_t is None
    for name, g_o, g_t in zip(("query", "key", "value"), grads_o, grads_t, strict=False):
        _close(g_o, g_t, f"gradient w.r.t. {name}")
    ours_grads = grads_by_torch_name(ours)
    theirs_grads = {name: p.grad for name, p in theirs.named_parameters()}
    assert ours_grads.keys() == theirs_grads.keys()  # every parameter of PyTorch's module is compared
    for name, g_t in theirs_grads.items():
        _close(ours_grads[name], g_t, f"gradient w.r.t. {name}")


# The grid is factored in two, to stay small: how masks are applied does not depend on the bias or on the direction
# the weights were copied in, so every mask kind is crossed with every layout, Q/K/V kind and weights option (with
# bias, weights copied from PyTorch), and bias x copy direction is crossed with the same axes under one combined mask.


@pytest.mark.parametrize(("need_weights", "average"), WEIGHTS, ids=WEIGHT_IDS)
@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("qkv", QKV)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_parity_every_mask(layout, qkv, mask, need_weights, average, mha_pair, grads_by_torch_name):
    _check_parity(layout, qkv, True, mask, need_weights, average, "from_torch", mha_pair, grads_by_torch_name)


@pytest.mark.parametrize("direction", ["from_torch", "to_torch"])
@pytest.mark.parametrize(("need_weights", "average"), WEIGHTS, ids=WEIGHT_IDS)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("qkv", QKV)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_parity_bias_and_copy_direction(
    layout, qkv, bias, need_weights, average, direction, mha_pair, grads_by_torch_name
):
    mask = "bool_2d+kpm_bool"
    _check_parity(layout, qkv, bias, mask, need_weights, average, direction, mha_pair, grads_by_torch_name)


@pytest.mark.parametrize(("need_weights", "average"), WEIGHTS, ids=WEIGHT_IDS)
@pytest.mark.parametrize("mask", ["none", "bool_3d", "float_2d+kpm_float", "causal_alone+kpm_bool"])
@pytest.mark.parametrize("qkv", QKV)
def test_parity_unbatched_input_to_a_sequence_first_module(
    qkv, mask, need_weights, average, mha_pair, grads_by_torch_name
):
    """An unbatched (seq, features) input means the same whatever batch_first says."""
    kdims = {"kdim": KDIM, "vdim": VDIM} if qkv == "cross_kdim_vdim" else {}
    ours, theirs = mha_pair(E, H, batch_first=False, **kdims)
    gen = torch.Generator().manual_seed(5)
    query, key, value = _inputs("unbatched", qkv, gen)
    theirs_masks, ours_masks = _masks(mask, L if qkv == "self" else S, batched=False, gen=gen)
    out_t, w_t, grads_t = _run(
        theirs, query, key, value, need_weights, average, theirs_masks, qkv == "self", torch.Generator()
    )
    out_o, w_o, grads_o = _run(
        ours, query, key, value, need_weights, average, ours_masks, qkv == "self", torch.Generator()
    )
    _close(out_o, out_t, "output")
    if need_weights:
        _close(w_o, w_t, "weights")
    for g_o, g_t in zip(grads_o, grads_t, strict=True):
        _close(g_o, g_t, "input gradient")
    ours_grads = grads_by_torch_name(ours)
    for name, p in theirs.named_parameters():
        _close(ours_grads[name], p.grad, f"gradient w.r.t. {name}")


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_train_and_eval_mode_agree_with_torch_when_dropout_is_zero(mode, need_weights, mha_pair, grads_by_torch_name):
    ours, theirs = mha_pair(E, H, direction="from_torch")
    ours.train(mode == "train")
    theirs.train(mode == "train")
    gen = torch.Generator().manual_seed(2)
    query, key, value = _inputs("batch_first", "cross", gen)
    kpm = {"key_padding_mask": torch.tensor([[False] * 4 + [True]] * B)}
    out_t, w_t, grads_t = _run(theirs, query, key, value, need_weights, True, kpm, False, torch.Generator())
    out_o, w_o, grads_o = _run(ours, query, key, value, need_weights, True, kpm, False, torch.Generator())
    _close(out_o, out_t, "output")
    if need_weights:
        _close(w_o, w_t, "weights")
    for g_o, g_t in zip(grads_o, grads_t, strict=True):
        _close(g_o, g_t, "input gradient")
    ours.train()
    out_train, _ = ours(query, key, value, need_weights=need_weights, **kpm)
    _close(out_o, out_train, "eval vs train output with dropout=0")


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("mask", ["none", "kpm_bool", "bool_2d"])
def test_eval_inference_matches_torch_fast_path(mask, need_weights, mha_pair):
    """In eval mode without autograd PyTorch takes its native "fast path"; we still agree with it."""
    ours, theirs = mha_pair(E, H, direction="to_torch")
    ours.eval()
    theirs.eval()
    gen = torch.Generator().manual_seed(3)
    x, _, _ = _inputs("batch_first", "self", gen)
    theirs_masks, ours_masks = _masks(mask, L, True, gen)
    with torch.inference_mode():
        out_t, w_t = theirs(x, x, x, need_weights=need_weights, **theirs_masks)
        out_o, w_o = ours(x, x, x, need_weights=need_weights, **ours_masks)
    _close(out_o, out_t, "output")
    if need_weights:
        _close(w_o, w_t, "weights")


@pytest.mark.parametrize("qkv", QKV)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_float64_parity_is_tight(layout, qkv, mha_pair, grads_by_torch_name):
    """In float64 the two modules agree to ~1e-12: the float32 differences are rounding, not maths."""
    kdims = {"kdim": KDIM, "vdim": VDIM} if qkv == "cross_kdim_vdim" else {}
    ours, theirs = mha_pair(E, H, batch_first=layout != "seq_first", dtype=torch.float64, **kdims)
    gen = torch.Generator().manual_seed(4)
    query, key, value = _inputs(layout, qkv, gen, dtype=torch.float64)
    theirs_masks, ours_masks = _masks("float_3d+kpm_float", L if qkv == "self" else S, layout != "unbatched", gen)
    theirs_masks = {k: v.double() for k, v in theirs_masks.items()}  # PyTorch wants the mask in the input's dtype
    ours_masks = {k: v.double() for k, v in ours_masks.items()}
    out_t, w_t, grads_t = _run(theirs, query, key, value, True, False, theirs_masks, qkv == "self", torch.Generator())
    out_o, w_o, grads_o = _run(ours, query, key, value, True, False, ours_masks, qkv == "self", torch.Generator())
    _close(out_o, out_t, "output", atol=1e-12)
    _close(w_o, w_t, "weights", atol=1e-12)
    for g_o, g_t in zip(grads_o, grads_t, strict=True):
        _close(g_o, g_t, "input gradient", atol=1e-12)
    theirs_grads = {name: p.grad for name, p in theirs.named_parameters()}
    ours_grads = grads_by_torch_name(ours)
    for name, g_t in theirs_grads.items():
        _close(ours_grads[name], g_t, f"gradient w.r.t. {name}", atol=1e-12)


# ---- copying weights: from_torch / to_torch -----------------------------------------------------------


CONFIGS = [
    {},
    {"bias": False},
    {"kdim": KDIM, "vdim": VDIM},
    {"kdim": KDIM, "vdim": VDIM, "bias": False},
    {"kdim": E, "vdim": VDIM},
    {"batch_first": False, "dropout": 0.25},
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "default")
def test_round_trip_keeps_weights_sizes_dtype_and_mode(config, training, dtype):
    theirs = nn.MultiheadAttention(E, H, **{"batch_first": True, **config}, dtype=dtype)
    theirs.train(training)
    ours = mh.MultiHeadAttention.from_torch(theirs)
    back = ours.to_torch()
    for module in (ours, back):
        assert module.training is training
        assert module.embed_dim == E and module.num_heads == H
        assert module.kdim == theirs.kdim and module.vdim == theirs.vdim
        assert module.batch_first == theirs.batch_first and module.dropout == theirs.dropout
        assert all(p.dtype == dtype for p in module.parameters())
    assert back._qkv_same_embed_dim == theirs._qkv_same_embed_dim
    want = theirs.state_dict()
    got = back.state_dict()
    assert got.keys() == want.keys()
    for name in want:
        assert torch.equal(got[name], want[name]), name
    # and the other way round: ours -> torch -> ours
    again = mh.MultiHeadAttention.from_torch(back)
    for (name, p), q in zip(ours.named_parameters(), again.parameters(), strict=True):
        assert torch.equal(p, q), name


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "default")
def test_parameter_count_equals_torch(config):
    config = {k: v for k, v in config.items() if k in ("bias", "kdim", "vdim")}
    ours = mh.MultiHeadAttention(E, H, **config)
    theirs = nn.MultiheadAttention(E, H, **config)
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in theirs.parameters())
    assert len(list(ours.parameters())) == (8 if config.get("bias", True) else 4)  # W_q, W_k, W_v, W_o (+ biases)


def test_copies_are_independent_of_the_original():
    theirs = nn.MultiheadAttention(E, H, batch_first=True)
    ours = mh.MultiHeadAttention.from_torch(theirs)
    with torch.no_grad():
        theirs.in_proj_weight.add_(1.0)
    assert not torch.equal(ours.W_q.weight, theirs.in_proj_weight[:E])


def test_initialisation_follows_torch():
    """Biases start at zero and W_q/W_k/W_v are Xavier-uniform over the packed (3E, E) matrix, as in PyTorch."""
    torch.manual_seed(0)
    ours = mh.MultiHeadAttention(64, 4)
    bound = (6 / (64 + 3 * 64)) ** 0.5
    for lin in (ours.W_q, ours.W_k, ours.W_v):
        assert lin.weight.abs().max() <= bound
        assert lin.weight.abs().max() > 0.9 * bound  # really drawn with that bound, not a smaller one
    for lin in (ours.W_q, ours.W_k, ours.W_v, ours.W_o):
        assert torch.count_nonzero(lin.bias) == 0


# ---- the class docstring's "deliberate differences" and promises, one test each ------------------------


def test_batch_first_defaults_to_true():
    ours = mh.MultiHeadAttention(E, H)
    assert ours.batch_first is True
    assert nn.MultiheadAttention(E, H).batch_first is False  # the difference the docstring names
    theirs = ours.to_torch()
    x = torch.randn(B, L, E)
    _close(ours(x, x, x)[0], theirs(x, x, x)[0], "output for a (batch, seq, d_model) input")


def test_key_defaults_to_query_and_value_to_key(mha_pair):
    ours, theirs = mha_pair(E, H)
    x, y = torch.randn(B, L, E), torch.randn(B, S, E)
    expected_self, _ = theirs(x, x, x)
    _close(ours(x)[0], expected_self, "ours(x) as self-attention")
    _close(ours(x, y)[0], theirs(x, y, y)[0], "ours(x, y): value defaults to key")
    _close(ours(x, None, None, need_weights=False)[0], expected_self, "fused path with defaults")


@pytest.mark.parametrize("need_weights", [True, False])
def test_is_causal_alone_equals_the_explicit_causal_mask(need_weights):
    ours = mh.MultiHeadAttention(E, H)
    x = torch.randn(B, L, E)
    alone, w_alone = ours(x, is_causal=True, need_weights=need_weights)
    explicit, w_explicit = ours(x, attn_mask=~mh.causal_mask(L), need_weights=need_weights)
    _close(alone, explicit, "is_causal=True vs the explicit mask")
    if need_weights:
        _close(w_alone, w_explicit, "weights")
        assert torch.all(w_alone.triu(diagonal=1) == 0)  # nothing from the future
    with pytest.raises(RuntimeError):  # PyTorch, for contrast, refuses is_causal without the mask
        ours.to_torch()(x, x, x, is_causal=True, need_weights=need_weights)


@pytest.mark.parametrize("need_weights", [True, False])
def test_is_causal_with_a_mask_uses_the_mask(need_weights):
    """Given both, ours uses the mask (is_causal is a hint, as in PyTorch, which may act on either)."""
    ours = mh.MultiHeadAttention(E, H)
    x = torch.randn(B, L, E)
    window = torch.ones(L, L, dtype=torch.bool).triu(2) | torch.ones(L, L, dtype=torch.bool).tril(-2)  # |i-j|<=1
    both, _ = ours(x, attn_mask=window, is_causal=True, need_weights=need_weights)
    mask_only, _ = ours(x, attn_mask=window, need_weights=need_weights)
    _close(both, mask_only, "is_causal=True plus a mask vs the mask alone")


def test_need_weights_false_takes_the_fused_projection_and_torch_sdpa(monkeypatch):
    ours = mh.MultiHeadAttention(E, H)
    calls = {"sdpa": 0, "separate projections": 0}
    real_sdpa = F.scaled_dot_product_attention

    def counting_sdpa(*args, **kwargs):
        calls["sdpa"] += 1
        return real_sdpa(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counting_sdpa)
    for lin in (ours.W_q, ours.W_k, ours.W_v):
        lin.register_forward_hook(
            lambda *_: calls.__setitem__("separate projections", calls["separate projections"] + 1)
        )
    x = torch.randn(B, L, E)
    fast, w = ours(x, x, x, need_weights=False)
    assert w is None
    assert calls == {"sdpa": 1, "separate projections": 0}  # one packed matmul, PyTorch's kernel
    slow, _ = ours(x, x, x, need_weights=True)
    assert calls == {"sdpa": 1, "separate projections": 3}  # the readable path: three Linear layers, our softmax
    _close(fast, slow, "fused vs readable path")


def test_weight_shapes_are_torchs():
    ours = mh.MultiHeadAttention(E, H)
    x, y = torch.randn(B, L, E), torch.randn(B, S, E)
    assert ours(x, y, y)[1].shape == (B, L, S)
    assert ours(x, y, y, average_attn_weights=False)[1].shape == (B, H, L, S)
    assert ours(x[0], y[0], y[0])[1].shape == (L, S)
    assert ours(x[0], y[0], y[0], average_attn_weights=False)[1].shape == (H, L, S)
    assert ours(x[0], y[0], y[0], need_weights=False)[1] is None


def test_from_torch_keeps_device_and_repr():
    theirs = nn.MultiheadAttention(E, H, kdim=KDIM, vdim=VDIM, batch_first=True)
    ours = mh.MultiHeadAttention.from_torch(theirs)
    assert ours.W_o.weight.device == theirs.out_proj.weight.device
    assert "kdim=6, vdim=10" in repr(ours) and "head_dim=4" in repr(ours)
