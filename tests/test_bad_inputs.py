"""Every bad input to the reference implementation gets a ValueError/TypeError that names the argument, the value
it got and what would work: never a NaN, never a bare shape error from deep inside torch.

One test per bad input; each asserts the exception type and, with a regular expression, the parts of the message
a learner needs (``match`` uses ``re.search``, so each pattern is a fragment that must appear).
"""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import mha_helpers as mh

MHA = mh.MultiHeadAttention
E, H, L, S, B = 8, 2, 4, 5, 3


def _mha(**kwargs) -> mh.MultiHeadAttention:
    return MHA(E, H, **kwargs)


def x_(*shape, dtype=torch.float32):
    return torch.randn(*shape, dtype=dtype)


def esc(text: str) -> str:
    return re.escape(text)


# ---- constructor --------------------------------------------------------------------------------------------


def test_embed_dim_not_divisible_by_num_heads_lists_valid_head_counts():
    with pytest.raises(
        ValueError, match=esc("embed_dim=10 is not divisible by num_heads=3; valid head counts: 1, 2, 5, 10")
    ):
        MHA(10, 3)


@pytest.mark.parametrize("arg", ["embed_dim", "num_heads", "kdim", "vdim"])
@pytest.mark.parametrize("value", [0, -4])
def test_non_positive_sizes(arg, value):
    kwargs = {"embed_dim": E, "num_heads": H, arg: value}
    with pytest.raises(ValueError, match=esc(f"{arg} must be a positive int, got {arg}={value}")):
        MHA(**kwargs)


@pytest.mark.parametrize("arg", ["embed_dim", "num_heads", "kdim", "vdim"])
@pytest.mark.parametrize("value", [8.0, True, "8"], ids=["float", "bool", "str"])
def test_non_integer_sizes(arg, value):
    kwargs = {"embed_dim": E, "num_heads": H, arg: value}
    with pytest.raises(
        TypeError, match=esc(f"{arg} must be a positive int, got {value!r} of type {type(value).__name__}")
    ):
        MHA(**kwargs)


@pytest.mark.parametrize("value", [1.0, 1.5, -0.1, float("nan")])
def test_dropout_outside_zero_one(value):
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\) .*got dropout=" + esc(str(value))):
        _mha(dropout=value)


@pytest.mark.parametrize("value", ["0.1", None, True, torch.tensor(0.1)], ids=["str", "None", "bool", "tensor"])
def test_dropout_not_a_number(value):
    with pytest.raises(TypeError, match=r"dropout must be a float in \[0, 1\), got .* of type " + type(value).__name__):
        _mha(dropout=value)


@pytest.mark.parametrize("arg", ["bias", "batch_first"])
def test_non_bool_flags_of_the_constructor(arg):
    with pytest.raises(TypeError, match=esc(f"{arg} must be True or False, got 1 of type int")):
        _mha(**{arg: 1})


# ---- forward: query / key / value ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["query", "key", "value"])
@pytest.mark.parametrize("shape", [(E,), (1, B, L, E)], ids=["1-D", "4-D"])
def test_wrong_rank(name, shape):
    args = {"query": x_(B, L, E), "key": x_(B, S, E), "value": x_(B, S, E)}
    args[name] = x_(*shape)
    pattern = esc(
        f"{name} must be 2-D or 3-D, i.e. unbatched (seq, features) or batched (batch, seq, features), "
    ) + esc(f"got a {len(shape)}-D tensor of shape {shape}")
    with pytest.raises(ValueError, match=pattern):
        _mha()(**args)


def test_wrong_rank_names_the_sequence_first_layout():
    with pytest.raises(ValueError, match=esc("batched (seq, batch, features)")):
        _mha(batch_first=False)(x_(E))


def test_batched_and_unbatched_mixed():
    with pytest.raises(
        ValueError, match=r"must all be batched \(3-D\) or all unbatched \(2-D\), got query \(3, 4, 8\), key \(5, 8\)"
    ):
        _mha()(x_(B, L, E), x_(S, E), x_(S, E))


def test_mismatched_batch_sizes():
    with pytest.raises(
        ValueError,
        match=r"same batch size \(dim 0 of \(batch, seq, features\)\), got query \(3, 4, 8\), key \(2, 5, 8\)",
    ):
        _mha()(x_(B, L, E), x_(2, S, E), x_(2, S, E))


def test_mismatched_batch_sizes_sequence_first():
    with pytest.raises(ValueError, match=r"same batch size \(dim 1 of \(seq, batch, features\)\)"):
        _mha(batch_first=False)(x_(L, B, E), x_(S, 2, E), x_(S, 2, E))


@pytest.mark.parametrize("batched", [True, False])
def test_key_and_value_of_different_lengths(batched):
    lead = (B,) if batched else ()
    with pytest.raises(ValueError, match=r"key and value must have the same length S \(one value per key\), got key"):
        _mha()(x_(*lead, L, E), x_(*lead, S, E), x_(*lead, S + 1, E))


def test_key_and_value_of_different_lengths_sequence_first():
    with pytest.raises(ValueError, match=r"key and value must have the same length S"):
        _mha(batch_first=False)(x_(L, B, E), x_(S, B, E), x_(S + 1, B, E))


@pytest.mark.parametrize(
    ("name", "arg", "want"), [("query", "embed_dim", E), ("key", "kdim", 6), ("value", "vdim", 10)]
)
def test_feature_size_not_matching(name, arg, want):
    mha = _mha(kdim=6, vdim=10)
    args = {"query": x_(B, L, E), "key": x_(B, S, 6), "value": x_(B, S, 10)}
    args[name] = x_(*args[name].shape[:-1], 7)
    pattern = esc(f"{name} has 7 features") + ".*" + esc(f"expects {arg}={want}; build it with {arg}=7")
    with pytest.raises(ValueError, match=pattern):
        mha(**args)


@pytest.mark.parametrize("name", ["query", "key", "value"])
@pytest.mark.parametrize("dtype", [torch.int64, torch.bool])
def test_non_floating_inputs(name, dtype):
    args = {"query": x_(B, L, E), "key": x_(B, S, E), "value": x_(B, S, E)}
    args[name] = torch.ones(args[name].shape, dtype=dtype)
    with pytest.raises(
        TypeError,
        match=esc(f"{name} must be a floating-point tensor, got dtype {dtype}; convert it with {name}.float()"),
    ):
        _mha()(**args)


def test_input_that_is_not_a_tensor():
    with pytest.raises(TypeError, match="query must be a torch.Tensor, got list"):
        _mha()([[1.0] * E])


@pytest.mark.parametrize("name", ["query", "key", "value"])
def test_dtype_not_matching_the_parameters(name):
    args = {"query": x_(B, L, E), "key": x_(B, S, E), "value": x_(B, S, E)}
    args[name] = args[name].double()
    pattern = (
        esc(f"{name} has dtype torch.float64 but the module's parameters are torch.float32")
        + ".*"
        + esc(f"{name}.to(torch.float32)")
    )
    with pytest.raises(TypeError, match=pattern):
        _mha()(**args)


# ---- forward: masks and flags -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.bool, torch.float32])
def test_attn_mask_2d_of_wrong_shape(dtype):
    with pytest.raises(ValueError, match=esc("attn_mask has shape (4, 4), expected (L, S) = (4, 5) or 3-D (6, 4, 5)")):
        _mha()(x_(B, L, E), x_(B, S, E), attn_mask=torch.zeros(L, L, dtype=dtype))


def test_attn_mask_3d_of_wrong_shape():
    pattern = esc("attn_mask has shape (3, 4, 5), expected 3-D (6, 4, 5) = (batch * num_heads, L, S)")
    with pytest.raises(ValueError, match=pattern):
        _mha()(x_(B, L, E), x_(B, S, E), attn_mask=torch.zeros(B, L, S, dtype=torch.bool))


def test_attn_mask_3d_of_wrong_shape_unbatched():
    with pytest.raises(ValueError, match=esc("attn_mask has shape (6, 4, 5), expected 3-D (2, 4, 5)")):
        _mha()(x_(L, E), x_(S, E), attn_mask=torch.zeros(B * H, L, S, dtype=torch.bool))


def test_attn_mask_4d():
    pattern = esc("attn_mask must be 2-D (L, S) or 3-D (batch * num_heads, L, S), got shape (3, 2, 4, 5)")
    with pytest.raises(ValueError, match=pattern):
        _mha()(x_(B, L, E), x_(B, S, E), attn_mask=torch.zeros(B, H, L, S, dtype=torch.bool))


@pytest.mark.parametrize("shape", [(B, L), (S, B), (B, S, 1)])
def test_key_padding_mask_of_wrong_shape(shape):
    pattern = esc(f"key_padding_mask has shape {shape}, expected (batch, S) = (3, 5) (True = padding)")
    with pytest.raises(ValueError, match=pattern):
        _mha()(x_(B, L, E), x_(B, S, E), key_padding_mask=torch.zeros(shape, dtype=torch.bool))


def test_key_padding_mask_of_wrong_shape_unbatched():
    with pytest.raises(ValueError, match=esc("key_padding_mask has shape (1, 5), expected (S,) = (5,)")):
        _mha()(x_(L, E), x_(S, E), key_padding_mask=torch.zeros(1, S, dtype=torch.bool))


@pytest.mark.parametrize("arg", ["attn_mask", "key_padding_mask"])
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8])
def test_integer_masks(arg, dtype):
    shape = (L, S) if arg == "attn_mask" else (B, S)
    pattern = esc(f"{arg} must be a bool or floating-point tensor, got dtype {dtype}; use {arg}.bool()")
    with pytest.raises(TypeError, match=pattern):
        _mha()(x_(B, L, E), x_(B, S, E), **{arg: torch.zeros(shape, dtype=dtype)})


@pytest.mark.parametrize("arg", ["attn_mask", "key_padding_mask"])
def test_mask_that_is_not_a_tensor(arg):
    with pytest.raises(TypeError, match=esc(f"{arg} must be a torch.Tensor (bool or float), got list")):
        _mha()(x_(B, L, E), x_(B, S, E), **{arg: [[0.0] * S] * L})


@pytest.mark.parametrize("arg", ["need_weights", "average_attn_weights", "is_causal"])
@pytest.mark.parametrize("value", [1, None, "yes"])
def test_non_bool_flags_of_forward(arg, value):
    pattern = esc(f"{arg} must be True or False, got {value!r} of type {type(value).__name__}")
    with pytest.raises(TypeError, match=pattern):
        _mha()(x_(B, L, E), **{arg: value})


# ---- scaled_dot_product_attention ---------------------------------------------------------------------------

Q, K, V = x_(2, L, 4), x_(2, S, 4), x_(2, S, 3)


def test_sdpa_mismatched_d_k():
    pattern = esc("query and key must have the same last dim d_k") + ".*" + esc("got query (2, 4, 4) and key (2, 5, 3)")
    with pytest.raises(ValueError, match=pattern):
        mh.scaled_dot_product_attention(Q, x_(2, S, 3), V)


def test_sdpa_key_value_length_mismatch():
    with pytest.raises(
        ValueError,
        match=esc(
            "key and value must have the same length S (one value per key), got key (2, 5, 4) and value (2, 6, 3)"
        ),
    ):
        mh.scaled_dot_product_attention(Q, K, x_(2, S + 1, 3))


def test_sdpa_leading_dims_that_do_not_broadcast():
    with pytest.raises(ValueError, match=esc("same leading dims") + ".*" + esc("got query (2, 4, 4), key (3, 5, 4)")):
        mh.scaled_dot_product_attention(Q, x_(3, S, 4), x_(3, S, 3))


def test_sdpa_dtype_mismatch():
    with pytest.raises(
        TypeError,
        match=esc("value has dtype torch.float64 but query has torch.float32; convert it with value.to(torch.float32)"),
    ):
        mh.scaled_dot_product_attention(Q, K, V.double())


@pytest.mark.parametrize("shape", [(4,), (1, 2, 2, 3, 4)])
def test_sdpa_wrong_rank(shape):
    if len(shape) == 1:
        with pytest.raises(
            ValueError, match=esc("query must have at least 2 dims (..., seq, features), got shape (4,)")
        ):
            mh.scaled_dot_product_attention(x_(*shape), K, V)
    else:  # 5-D is fine when the leading dims broadcast (as for torch's function)
        assert mh.scaled_dot_product_attention(x_(*shape), K, V)[0].shape == (1, 2, 2, 3, 3)


def test_sdpa_non_floating_input():
    with pytest.raises(TypeError, match=esc("key must be a floating-point tensor, got dtype torch.int64")):
        mh.scaled_dot_product_attention(Q, K.long(), V)


def test_sdpa_attn_mask_with_is_causal():
    pattern = (
        esc("pass either attn_mask or is_causal=True, not both") + ".*" + esc("attn_mask=causal_mask(L, S) & your_mask")
    )
    with pytest.raises(ValueError, match=pattern):
        mh.scaled_dot_product_attention(Q, K, V, attn_mask=torch.ones(L, S, dtype=torch.bool), is_causal=True)


@pytest.mark.parametrize("shape", [(L, L), (7, 2, L, S)], ids=["wrong (L, S)", "would grow the scores"])
def test_sdpa_attn_mask_that_does_not_broadcast(shape):
    pattern = (
        esc(f"attn_mask of shape {shape} does not broadcast to the scores' shape (2, 4, 5)")
        + ".*"
        + esc("a 2-D (L, S) = (4, 5) mask always does")
    )
    with pytest.raises(ValueError, match=pattern):
        mh.scaled_dot_product_attention(Q, K, V, attn_mask=torch.ones(shape, dtype=torch.bool))


def test_sdpa_integer_mask():
    with pytest.raises(
        TypeError, match=esc("attn_mask must be a bool or floating-point tensor, got dtype torch.int32")
    ):
        mh.scaled_dot_product_attention(Q, K, V, attn_mask=torch.ones(L, S, dtype=torch.int32))


@pytest.mark.parametrize("scale", [0, -1.0, float("nan"), float("inf")])
def test_sdpa_bad_scale_value(scale):
    pattern = esc(f"scale must be a positive finite number or None (meaning 1/sqrt(d_k)), got scale={scale!r}")
    with pytest.raises(ValueError, match=pattern):
        mh.scaled_dot_product_attention(Q, K, V, scale=scale)


@pytest.mark.parametrize("scale", ["1", True, torch.tensor(0.5)], ids=["str", "bool", "tensor"])
def test_sdpa_bad_scale_type(scale):
    with pytest.raises(
        TypeError, match=r"scale must be a positive float or None \(meaning 1/sqrt\(d_k\)\), got .* of type"
    ):
        mh.scaled_dot_product_attention(Q, K, V, scale=scale)


@pytest.mark.parametrize("dropout_p", [1.0, -0.5, float("nan")])
def test_sdpa_bad_dropout_value(dropout_p):
    with pytest.raises(ValueError, match=r"dropout_p must be in \[0, 1\) .*got dropout_p=" + esc(repr(dropout_p))):
        mh.scaled_dot_product_attention(Q, K, V, dropout_p=dropout_p)


@pytest.mark.parametrize("dropout_p", ["0.1", None, True], ids=["str", "None", "bool"])
def test_sdpa_bad_dropout_type(dropout_p):
    with pytest.raises(
        TypeError, match=r"dropout_p must be a float in \[0, 1\), got .* of type " + type(dropout_p).__name__
    ):
        mh.scaled_dot_product_attention(Q, K, V, dropout_p=dropout_p)


def test_sdpa_non_bool_is_causal():
    with pytest.raises(TypeError, match=esc("is_causal must be True or False, got 1 of type int")):
        mh.scaled_dot_product_attention(Q, K, V, is_causal=1)


# ---- split_heads / merge_heads ------------------------------------------------------------------------------


def test_split_heads_with_a_non_divisor():
    with pytest.raises(
        ValueError, match=esc("d_model=10 is not divisible by num_heads=3; valid head counts: 1, 2, 5, 10")
    ):
        mh.split_heads(x_(2, 3, 10), 3)


def test_split_heads_wrong_rank():
    with pytest.raises(
        ValueError, match=esc("x must be 3-D, i.e. (batch, seq, d_model), got a 2-D tensor of shape (3, 10)")
    ):
        mh.split_heads(x_(3, 10), 2)


@pytest.mark.parametrize(("num_heads", "exc"), [(0, ValueError), (2.0, TypeError)])
def test_split_heads_bad_num_heads(num_heads, exc):
    with pytest.raises(exc, match="num_heads must be a positive int"):
        mh.split_heads(x_(2, 3, 10), num_heads)


def test_merge_heads_wrong_rank():
    with pytest.raises(ValueError, match=esc("x must be 4-D, i.e. (batch, heads, seq, head_dim), got a 3-D tensor")):
        mh.merge_heads(x_(2, 3, 10))


# ---- causal_mask / padding_mask -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "exc", "message"),
    [
        ((0,), ValueError, "seq_len must be a positive int, got seq_len=0"),
        ((3.0,), TypeError, "seq_len must be a positive int, got 3.0 of type float"),
        ((3, -1), ValueError, "key_len must be a positive int, got key_len=-1"),
        ((3, True), TypeError, "key_len must be a positive int, got True of type bool"),
    ],
)
def test_causal_mask_bad_args(args, exc, message):
    with pytest.raises(exc, match=esc(message)):
        mh.causal_mask(*args)


@pytest.mark.parametrize(
    ("lengths", "kwargs", "exc", "message"),
    [
        ([1.5, 2], {}, TypeError, "lengths must be a non-empty 1-D list of ints, e.g. [3, 1, 2], got [1.5, 2.0]"),
        ([[1, 2]], {}, TypeError, "lengths must be a non-empty 1-D list of ints, e.g. [3, 1, 2], got [[1, 2]]"),
        ([], {}, TypeError, "lengths must be a non-empty 1-D list of ints, e.g. [3, 1, 2], got []"),
        (["a"], {}, TypeError, "lengths must be a non-empty 1-D list of ints, e.g. [3, 1, 2], got ['a']"),
        ([True, False], {}, TypeError, "got [True, False]"),
        ([-1, 2], {}, ValueError, "lengths must be >= 0 (a number of real tokens), got [-1, 2]"),
        (
            [3, 2],
            {"max_len": 2},
            ValueError,
            "max_len=2 is shorter than the longest sentence (3); use max_len >= 3 or None",
        ),
        ([3, 2], {"max_len": 0}, ValueError, "max_len must be a positive int, got max_len=0"),
        ([3, 2], {"max_len": 4.0}, TypeError, "max_len must be a positive int, got 4.0 of type float"),
        ([0, 0], {}, ValueError, "every length is 0 (lengths=[0, 0]); pass max_len"),
    ],
)
def test_padding_mask_bad_args(lengths, kwargs, exc, message):
    with pytest.raises(exc, match=esc(message)):
        mh.padding_mask(lengths, **kwargs)


# ---- from_torch ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["add_bias_kv", "add_zero_attn"])
def test_from_torch_unsupported_options(option):
    module = nn.MultiheadAttention(E, H, **{option: True})
    pattern = esc(f"module was built with {option}=True, which MultiHeadAttention does not support; ") + esc(
        f"build the nn.MultiheadAttention with {option}=False"
    )
    with pytest.raises(ValueError, match=pattern):
        MHA.from_torch(module)


@pytest.mark.parametrize("module", [nn.Linear(E, E), MHA(E, H)], ids=["Linear", "ours"])
def test_from_torch_of_something_else(module):
    pattern = esc(f"module must be a torch.nn.MultiheadAttention, got {type(module).__name__}")
    with pytest.raises(TypeError, match=pattern):
        MHA.from_torch(module)


# ---- never a NaN: inputs that are legal but extreme ---------------------------------------------------------


def test_every_key_padded_is_not_an_error_and_not_nan():
    out, weights = _mha()(x_(B, L, E), key_padding_mask=torch.ones(B, L, dtype=torch.bool))
    assert torch.isfinite(out).all() and torch.all(weights == 0)
