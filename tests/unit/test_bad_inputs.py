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
        ([[1, 2]], {}, ValueError, "lengths must be a non-empty 1-D list of ints, e.g. [3, 1, 2], got [[1, 2]]"),
        ([], {}, ValueError, "lengths must be a non-empty 1-D list of ints, e.g. [3, 1, 2], got []"),
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


# ---- the public helpers (issue 12): the same rule everywhere ----------------------------------------------------

COMMON_WORDS = (
    "the of and to a in is it you that he was for on are with as i his they be at one have this from or had by "
    "not word but what some we can out other were all there when up use your how said an each she which do their "
    "time if will way about many then them write would like so these her long make thing see him two has look "
    "more day could go come did number sound no most people my over know water than call first who may down side "
    "been now find any new work part take get place made live where after back little only round man year came "
    "show every good me give our under name very through just form sentence great think say help low line differ "
    "turn cause much mean before move right boy old too same tell does set three want air well also play small "
    "end put home read hand port large spell add even land here must big high such follow act why ask men change "
    "went light kind off need house picture try us again animal point mother world near build self earth father "
    "cat sat mat dog ran box any"
).split()


def test_toy_embeddings_give_different_words_different_vectors():
    words = sorted(set(COMMON_WORDS) | set(mh.SENTENCE))
    vectors = mh.toy_embeddings(words, d_model=8, positions=False)[0]  # (n, 8)
    distances = torch.cdist(vectors, vectors) + torch.eye(len(words)) * 1e9
    assert float(distances.min()) > 1e-3  # no two words share a vector (cat/him/men, and/big did)


def test_toy_embeddings_of_the_explorer_sentence_box_words_differ():
    x = mh.toy_embeddings("but any box not cat him men and big".split(), d_model=16, positions=False)[0]
    assert len({tuple(row.tolist()) for row in x}) == 9


@pytest.mark.parametrize(
    ("kwargs", "exc", "fragment"),
    [
        ({"tokens": "the cat"}, TypeError, "tokens must be a list of strings, e.g. ['the', 'cat'], got the single"),
        ({"tokens": None}, TypeError, "tokens must be a list of strings"),
        ({"tokens": ["a", 1]}, TypeError, "tokens must be a list of strings"),
        ({"tokens": []}, ValueError, "tokens is empty"),
        ({"seed": 1.5}, TypeError, "seed must be an int >= 0, got 1.5 of type float"),
        ({"seed": -1}, ValueError, "seed must be an int >= 0, got seed=-1"),
        ({"positions": torch.tensor([1, 0])}, TypeError, "positions must be True or False"),
        ({"d_model": 0}, ValueError, "d_model must be a positive int, got d_model=0"),
    ],
)
def test_toy_embeddings_bad_args(kwargs, exc, fragment):
    with pytest.raises(exc, match=esc(fragment)):
        mh.toy_embeddings(**{"tokens": ["a", "b"], **kwargs})


@pytest.fixture(scope="module")
def lookup_model():
    torch.manual_seed(0)
    return mh.TinyLookupModel()  # untrained is enough: these tests check arguments, not accuracy


@pytest.mark.parametrize(
    ("kwargs", "exc", "fragment"),
    [
        ({"start": 8}, ValueError, "start must be a position 1..7 (the model's seq_len is 8), got start=8"),
        ({"start": 100}, ValueError, "got start=100"),
        ({"start": 0}, ValueError, "start must be a positive int, got start=0"),
        ({"start": 2.0}, TypeError, "start must be a positive int, got 2.0 of type float"),
        ({"num_examples": 0}, ValueError, "num_examples must be a positive int, got num_examples=0"),
        ({"num_examples": "10"}, TypeError, "num_examples must be a positive int"),
        ({"heads_off": None}, TypeError, "heads_off must be a head number or a list of them, e.g. [0], got None"),
        ({"heads_off": [5]}, ValueError, "heads_off must be head numbers in 0..1, got heads_off=[5]"),
    ],
)
def test_lookup_accuracy_bad_args(lookup_model, kwargs, exc, fragment):
    with pytest.raises(exc, match=esc(fragment)):
        mh.lookup_accuracy(lookup_model, **{"num_examples": 10, **kwargs})


def test_lookup_accuracy_last_position_is_a_number(lookup_model):
    scores = mh.lookup_accuracy(lookup_model, num_examples=10, start=7)
    assert all(0.0 <= v <= 1.0 for v in scores.values())  # start=7 scores one position, never NaN


def _gqa(heads=4, kv_heads=2, L=3, S=3, d=4, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(1, heads, L, d, generator=g).to(dtype), torch.randn(1, kv_heads, S, d, generator=g).to(dtype),
            torch.randn(1, kv_heads, S, d, generator=g).to(dtype))


@pytest.mark.parametrize("scale", [0, 0.0, -1.0, float("nan"), float("inf")])
def test_gqa_bad_scale_value(scale):
    with pytest.raises(ValueError, match=esc(f"got scale={scale!r}")):
        mh.grouped_query_attention(*_gqa(), scale=scale)


def test_gqa_bad_scale_type():
    with pytest.raises(TypeError, match="scale must be a positive float or None"):
        mh.grouped_query_attention(*_gqa(), scale="0.5")


def test_gqa_zero_kv_heads_is_a_value_error_not_a_division_by_zero():
    q, k, v = _gqa(kv_heads=0)
    with pytest.raises(ValueError, match=esc("num_kv_heads=0")):
        mh.grouped_query_attention(q, k, v)


def test_gqa_dtype_mismatch():
    q, k, v = _gqa()
    with pytest.raises(TypeError, match=esc("key has dtype torch.float64 but query has torch.float32")):
        mh.grouped_query_attention(q, k.double(), v)


def test_gqa_mask_of_wrong_shape_and_int_mask():
    q, k, v = _gqa()
    with pytest.raises(ValueError, match=esc("attn_mask must be (L, S) = (3, 3)")):
        mh.grouped_query_attention(q, k, v, attn_mask=torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="attn_mask must be a bool or floating-point tensor"):
        mh.grouped_query_attention(q, k, v, attn_mask=torch.ones(3, 3, dtype=torch.long))


@pytest.mark.parametrize(
    ("module", "call"),
    [
        (lambda: mh.TransformerBlock(8, 2), lambda m, x: m(x)),
        (lambda: mh.GroupedQuerySelfAttention(8, 4, 2), lambda m, x: m(x)),
        (lambda: mh.GroupedQuerySelfAttention(8, 4, 2), lambda m, x: mh.decode_step_by_step(m, x, use_cache=True)),
    ],
    ids=["TransformerBlock", "GroupedQuerySelfAttention", "decode_step_by_step"],
)
def test_float64_input_to_a_float32_module_names_x_and_the_fix(module, call):
    with pytest.raises(TypeError, match=esc("x has dtype torch.float64 but the") + ".*" + esc("x.to(torch.float32)")):
        call(module(), torch.randn(1, 5, 8, dtype=torch.float64))


def test_transformer_block_float64_memory():
    block = mh.TransformerBlock(8, 2, memory_dim=6)
    with pytest.raises(TypeError, match=esc("memory has dtype torch.float64")):
        block(torch.randn(1, 3, 8), memory=torch.randn(1, 4, 6, dtype=torch.float64))


def test_gqa_layer_cache_of_the_wrong_type():
    with pytest.raises(TypeError, match="cache must be a KVCache"):
        mh.GroupedQuerySelfAttention(8, 4, 2)(torch.randn(1, 2, 8), cache=[])


def test_decode_step_by_step_bad_args():
    layer = mh.GroupedQuerySelfAttention(8, 4, 2)
    with pytest.raises(TypeError, match="layer must be a GroupedQuerySelfAttention, got MultiHeadAttention"):
        mh.decode_step_by_step(MHA(8, 2), torch.randn(1, 3, 8), use_cache=True)
    with pytest.raises(TypeError, match="use_cache must be True or False"):
        mh.decode_step_by_step(layer, torch.randn(1, 3, 8), use_cache="yes")
    with pytest.raises(ValueError, match="x has no tokens"):
        mh.decode_step_by_step(layer, torch.randn(1, 0, 8), use_cache=True)


LONG_SENTENCE = " ".join(f"w{i}" for i in range(40))


def test_plot_head_explorer_says_when_it_cuts_the_sentence():
    import matplotlib.pyplot as plt

    with pytest.warns(UserWarning, match=r"the sentence has 40 words; the explorer shows only the first 12"):
        fig = mh.plot_head_explorer(sentence=LONG_SENTENCE, compact=True)
    plt.close(fig)


def test_head_explorer_shows_the_cut_in_its_readout():
    pytest.importorskip("ipywidgets")
    with pytest.warns(UserWarning, match="40 words"):
        explorer = mh.head_explorer(sentence=LONG_SENTENCE, compact=True)
    assert "the sentence has 40 words" in explorer.readout.value and len(explorer.tokens) == 12
    explorer.sentence.value = "the cat sat"  # a short sentence: the note goes away
    assert "words; the explorer shows only" not in explorer.readout.value
    explorer.sentence.value = LONG_SENTENCE + " more"
    assert "the sentence has 41 words" in explorer.readout.value


def test_explorer_sentence_of_the_right_length_is_not_cut():
    import warnings

    import matplotlib.pyplot as plt

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning at all for 12 words
        plt.close(mh.plot_head_explorer(sentence=" ".join(["a"] * 12), compact=True))


@pytest.mark.parametrize("tokens", [["$x$", "costs", "$5", "and", "$\\frac", "$$"], ["a$b", "$", "c", "d", "e", "f"]])
def test_dollar_tokens_are_drawn_literally(tokens):
    import matplotlib.pyplot as plt

    ax = mh.plot_attention(torch.full((6, 6), 1 / 6), tokens)
    ax.figure.canvas.draw()  # mathtext parsing happens here: "$5 ... $\frac" crashed
    assert [t.get_text() for t in ax.get_xticklabels()] == [t.replace("$", r"\$") for t in tokens]
    plt.close(ax.figure)
    fig = mh.plot_head_explorer(sentence=tokens, compact=False)
    fig.canvas.draw()
    plt.close(fig)


def test_dollar_tokens_in_the_live_explorer():
    pytest.importorskip("ipywidgets")
    explorer = mh.head_explorer(sentence="price $5 or $x$ now", compact=True)
    assert explorer.image.value[:4] == b"\x89PNG"  # drawn


def test_plot_attention_refuses_a_map_too_large_to_draw():
    import time

    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"1200 x 1200 map; plots draw at most 200 tokens a side"):
        mh.plot_attention(torch.full((1200, 1200), 1 / 1200))
    with pytest.raises(ValueError, match="at most 200 tokens"):
        mh.plot_heads(torch.full((2, 300, 300), 1 / 300))
    assert time.perf_counter() - start < 5  # it took minutes before
    from _mha_helpers.figures import PLOT_MAX_TOKENS

    assert PLOT_MAX_TOKENS == 200  # the limit plot_attention's docstring states


@pytest.mark.parametrize(
    ("kwargs", "exc", "fragment"),
    [
        ({"query_tokens": ["a"] * 5}, ValueError, "query_tokens has 5 labels but the map has 6 rows"),
        ({"key_tokens": ["a"] * 7}, ValueError, "key_tokens has 7 labels but the map has 6 columns"),
        ({"query_tokens": 3.0}, TypeError, "query_tokens must be a list of 6 strings"),
        ({"query_tokens": "abcdef"}, TypeError, "query_tokens must be a list of 6 strings"),
        ({"annot": "yes"}, TypeError, "annot must be True or False"),
        ({"vmin": "0"}, TypeError, "vmin must be a number or None"),
        ({"weights": torch.zeros(0, 0)}, ValueError, "weights is empty"),
        ({"weights": [[0.5, 0.5]]}, TypeError, "weights must be a torch.Tensor, got list"),
    ],
)
def test_plot_attention_bad_args(kwargs, exc, fragment):
    with pytest.raises(exc, match=esc(fragment)):
        mh.plot_attention(**{"weights": torch.full((6, 6), 1 / 6), **kwargs})


@pytest.mark.parametrize(
    ("kwargs", "exc", "fragment"),
    [
        ({"max_cols": 0}, ValueError, "max_cols must be a positive int, got max_cols=0"),
        ({"max_cols": torch.tensor([1, 2])}, TypeError, "max_cols must be a positive int"),
        ({"annot": None}, TypeError, "annot must be True or False"),
        ({"cbar": "yes"}, TypeError, "cbar must be True or False"),
        ({"weights": torch.ones(2, 4, 4, dtype=torch.long)}, TypeError, "weights must be a floating-point tensor"),
    ],
)
def test_plot_heads_bad_args(kwargs, exc, fragment):
    with pytest.raises(exc, match=esc(fragment)):
        mh.plot_heads(**{"weights": torch.full((2, 4, 4), 0.25), **kwargs})


def test_plot_soft_lookup_key_names():
    q, k, w = torch.randn(2), torch.randn(3, 2), torch.full((3,), 1 / 3)
    with pytest.raises(TypeError, match="key_names must be a list of strings"):
        mh.plot_soft_lookup(q, k, w, key_names=None)
    with pytest.raises(ValueError, match="axis_labels must be two strings"):
        mh.plot_soft_lookup(q, k, w, key_names=["a", "b", "c"], axis_labels=("x",))


def test_head_influence_mix_must_be_callable():
    with pytest.raises(TypeError, match="mix must be a function or module such as mha.W_o"):
        mh.head_influence(torch.randn(1, 2, 3, 4), mix=torch.randn(8, 8))


@pytest.mark.parametrize("fn", [mh.attention_entropy, mh.previous_token_share])
@pytest.mark.parametrize("bad", [float("nan"), -0.5, 1.5])
def test_head_measures_refuse_non_probabilities(fn, bad):
    weights = torch.full((4, 4), 0.25)
    weights[1, 2] = bad
    with pytest.raises(ValueError, match="weights must be attention weights"):
        fn(weights)


def test_head_attention_maps_names_x():
    module = mh.explorer_module(16)
    with pytest.raises(TypeError, match=esc("x has dtype torch.float64 but the module's parameters")):
        mh.head_attention_maps(module, torch.randn(1, 4, 16, dtype=torch.float64), 2)
    with pytest.raises(ValueError, match=esc("x must be (batch, seq, embed_dim) = (batch, seq, 16)")):
        mh.head_attention_maps(module, torch.randn(1, 4, 8), 2)
    with pytest.raises(TypeError, match="module must be an mha_helpers.MultiHeadAttention, got Linear"):
        mh.head_attention_maps(nn.Linear(16, 16), torch.randn(1, 4, 16), 2)


@pytest.mark.parametrize("seed", [-1, 1.5, "0"])
def test_explorer_seed(seed):
    with pytest.raises((TypeError, ValueError), match="seed must be an int >= 0"):
        mh.plot_head_explorer(seed=seed)


@pytest.mark.parametrize(
    ("kwargs", "exc", "fragment"),
    [
        ({"sentences": "the cat"}, TypeError, "sentences must be a non-empty list of token lists"),
        ({"sentences": [["a"], "bc"]}, TypeError, "sentences[1] must be a list of strings"),
        ({"sentences": [["a"], []]}, ValueError, "sentences[1] is empty"),
        ({"d_model": -1}, ValueError, "d_model must be a positive int, got d_model=-1"),
        ({"seed": 0.5}, TypeError, "seed must be an int >= 0"),
        ({"pad": 0}, TypeError, "pad must be a string"),
    ],
)
def test_toy_batch_bad_args(kwargs, exc, fragment):
    with pytest.raises(exc, match=esc(fragment)):
        mh.toy_batch(**{"sentences": [["a", "b"], ["c"]], **kwargs})


def test_cost_helpers_bad_args():
    q = torch.randn(1, 2, 4, 8)
    with pytest.raises(TypeError, match="fn must be a function to call"):
        mh.median_seconds(q)
    with pytest.raises(ValueError, match="warmup must be an int >= 0, got warmup=-1"):
        mh.median_seconds(lambda: None, warmup=-1)
    with pytest.raises(TypeError, match="fn must be a function to call"):
        mh.count_matmul_flops(None)
    with pytest.raises(TypeError, match=esc("key has dtype torch.float64")):
        mh.sdpa_kernel_used(q, q.double(), q)
    with pytest.raises(ValueError, match="same leading dims"):
        mh.sdpa_kernel_used(q, torch.randn(3, 3, 4, 8), torch.randn(3, 3, 4, 8))
    with pytest.raises(TypeError, match="jobs must be a list of dicts"):
        mh.measure_peak_memory({"method": "sdpa"})


def test_plot_block_schedule_bad_args():
    with pytest.raises(TypeError, match="is_causal must be True or False"):
        mh.plot_block_schedule(8, 8, 4, 4, is_causal=torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="draws at most 64 x 64"):
        mh.plot_block_schedule(10**6, 10**6, 4, 4)


def test_nested_tensor_input_says_how_to_pad():
    nt = torch.nested.nested_tensor([torch.randn(2, 4), torch.randn(3, 4)], layout=torch.jagged)
    with pytest.raises(TypeError, match=esc("torch.nested.to_padded_tensor(query, 0.0)")):
        mh.scaled_dot_product_attention(nt, nt, nt)


def test_causal_bias_given_where_it_cannot_be_read():
    from torch.nn.attention.bias import causal_upper_left

    from _mha_helpers.validation import check_mask_dtype

    with pytest.raises(TypeError, match=r"CausalBias.*is_causal=True"):
        check_mask_dtype("attn_mask", causal_upper_left(3, 3), torch.float32)


# ---- mismatched devices and dtypes (the "meta" device stands in for a second device on a CPU-only machine) -----

META = torch.device("meta")


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: mh.scaled_dot_product_attention(Q, Q, Q, attn_mask=torch.ones(L, L, dtype=torch.bool, device=META)),
         "attn_mask is on meta but the inputs are on cpu"),
        (lambda: _mha()(x_(B, L, E), attn_mask=torch.ones(L, L, dtype=torch.bool, device=META)),
         "attn_mask is on meta"),
        (lambda: _mha()(x_(B, L, E), key_padding_mask=torch.ones(B, L, dtype=torch.bool, device=META)),
         "key_padding_mask is on meta"),
        (lambda: _mha()(x_(B, L, E), key_padding_mask=torch.ones(B, L, dtype=torch.bool, device=META),
                        need_weights=False), "key_padding_mask is on meta"),
        (lambda: mh.TransformerBlock(E, H)(x_(B, L, E), key_padding_mask=torch.ones(B, L, dtype=torch.bool,
                                                                                      device=META)),
         "key_padding_mask is on meta"),
        (lambda: mh.TransformerBlock(E, H)(torch.empty(B, L, E, device=META)), "x is on meta"),
        (lambda: mh.online_softmax_attention(Q, torch.empty(Q.shape, device=META), Q), "key is on meta"),
        (lambda: mh.head_attention_maps(mh.explorer_module(8), torch.empty(1, L, 8, device=META), 2), "x is on meta"),
        (lambda: mh.MultiHeadAttention(E, H, device="nowhere"), "device must be None, 'cpu', 'cuda', 'mps'"),
        (lambda: mh.KVCache(1, 2, 4, 8, device="nowhere"), "device must be None"),
    ],
)
def test_mismatched_devices(call, fragment):
    with pytest.raises(ValueError, match=esc(fragment)):
        call()


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: mh.MultiHeadAttention(E, H, dtype=torch.long), "dtype must be None or a floating-point torch.dtype"),
        (lambda: mh.KVCache(1, 2, 4, 8, dtype="float32"), "dtype must be None or a floating-point torch.dtype"),
        (lambda: mh.KVCache(1, 2, 4, 8).append(torch.randn(1, 2, 3, 4, dtype=torch.float64),
                                                torch.randn(1, 2, 3, 4, dtype=torch.float64)),
         "key is torch.float64 on cpu but the cache holds torch.float32 on cpu"),
        (lambda: mh.KVCache(1, 2, 4, 8).append(torch.empty(1, 2, 3, 4, device=META), torch.empty(1, 2, 3, 4)),
         "key is torch.float32 on meta but the cache holds torch.float32 on cpu"),
    ],
)
def test_mismatched_dtypes_and_bad_factory_arguments(call, fragment):
    with pytest.raises(TypeError, match=esc(fragment)):
        call()


def test_head_influence_with_a_mix_of_the_wrong_width():
    with pytest.raises(ValueError, match=esc("mix must take the merged heads (batch, seq, d_model=8)")):
        mh.head_influence(torch.randn(1, 2, 3, 4), mix=nn.Linear(3, 3))


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: mh.MultiHeadAttention(10**6, 2), "embed_dim=1000000, kdim=1000000, vdim=1000000 would need"),
        (lambda: mh.GroupedQuerySelfAttention(10**6, 4, 2), "d_model=1000000, num_kv_heads=2 would need"),
        (lambda: mh.TransformerBlock(10**6, 2), "d_model=1000000, d_ff=4000000 would need"),
        (lambda: mh.TransformerBlock(8, 2, d_ff=10**12), "d_model=8, d_ff=1000000000000 would need"),
        (lambda: mh.explorer_module(10**6), "d_model=1000000 needs more memory"),
    ],
)
def test_sizes_too_large_to_allocate_name_the_size(build, fragment):
    with pytest.raises(ValueError, match=esc(fragment)):
        build()


@pytest.mark.parametrize("need_weights", [True, False])
def test_a_float_mask_with_nan_is_refused_not_propagated(need_weights):
    mask = torch.zeros(L, L)
    mask[1, 2] = float("nan")
    with pytest.raises(ValueError, match="attn_mask holds NaN"):
        _mha()(x_(B, L, E), attn_mask=mask, need_weights=need_weights)
    with pytest.raises(ValueError, match="attn_mask holds NaN"):
        mh.scaled_dot_product_attention(x_(1, L, 4), x_(1, L, 4), x_(1, L, 4), attn_mask=mask)


@pytest.mark.parametrize(
    ("kwargs", "exc", "fragment"),
    [
        ({"memory_key_padding_mask": "x"}, TypeError, "memory_key_padding_mask must be a torch.Tensor"),
        ({"memory_key_padding_mask": torch.zeros(1, 4, dtype=torch.bool)}, ValueError,
         "memory_key_padding_mask must be (batch, S) = (1, 3)"),
        ({"memory_key_padding_mask": torch.zeros(1, 3, dtype=torch.long)}, TypeError,
         "memory_key_padding_mask must be a bool or floating-point tensor"),
        ({"memory": torch.randn(1, 0, 6)}, ValueError, "memory must be (batch, S, memory_dim) = (1, S >= 1, 6)"),
        ({"memory": torch.randn(2, 3, 6)}, ValueError, "memory must be (batch, S, memory_dim) = (1, S >= 1, 6)"),
        ({"x": torch.randn(1, 0, 8)}, ValueError, "x must be (batch, L, 8) with L >= 1"),
    ],
)
def test_decoder_block_names_memory_arguments(kwargs, exc, fragment):
    block = mh.TransformerBlock(8, 2, memory_dim=6)
    with pytest.raises(exc, match=esc(fragment)):
        block(**{"x": torch.randn(1, 4, 8), "memory": torch.randn(1, 3, 6), **kwargs})


def test_gqa_layer_with_no_tokens():
    with pytest.raises(ValueError, match=esc("x has no tokens (shape (1, 0, 8))")):
        mh.GroupedQuerySelfAttention(8, 4, 2)(torch.randn(1, 0, 8))


# ---- notebook 08's analysis helpers: the rest of lookup.py ---------------------------------------------------------


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: mh.sweep_summary(None), TypeError, "results must be head_count_sweep's dict"),
        (lambda: mh.sweep_summary({}), ValueError, "results is empty"),
        (lambda: mh.sweep_summary({1: [{"both": 1.0}]}, key="x"), ValueError, "key must be one of"),
        (lambda: mh.plot_head_sweep({}), ValueError, "results is empty"),
        (lambda: mh.lookup_test_set("x"), TypeError, "num_examples must be a positive int"),
        (lambda: mh.lookup_attention(None, torch.zeros(1, 8, dtype=torch.long)), TypeError, "model must be a TinyLookupModel"),
        (lambda: mh.attention_shares(torch.rand(1, 1, 8, 8), start=1.5), TypeError, "start must be a positive int"),
    ],
)
def test_lookup_analysis_helpers_name_the_bad_argument(call, error, words):
    with pytest.raises(error, match=words):
        call()


@pytest.mark.parametrize("heads", [None, True, 1.5, "0"])
def test_heads_switched_off_refuses_what_is_not_a_head_list(heads):
    with pytest.raises(TypeError, match="heads must be a head number or a list"):
        with mh.heads_switched_off(mh.MultiHeadAttention(8, 2), heads):
            pass
