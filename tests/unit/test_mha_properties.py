"""What must hold for mha_helpers.MultiHeadAttention beyond equality with PyTorch on ordinary inputs.

* Fully masked query rows (every key blocked): no NaN anywhere (output, weights, gradients), zero weights, a zero
  attention result before W_o (so the output is W_o's bias), while PyTorch gives NaN there (shown for contrast).
* Dropout: in training it zeroes weights and scales the survivors by 1/(1-p); in eval it does nothing.
* Properties checked with hypothesis on random sizes: weight rows sum to 1, permuting the tokens permutes the
  output, and under a causal mask a later token never changes an earlier output.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import mha_helpers as mh

pytestmark = pytest.mark.usefixtures("single_thread")

E, H, L, S, B = 8, 2, 4, 5, 3


# ---- fully masked rows ----------------------------------------------------------------------------------

# Each case: keyword masks (nn.MultiheadAttention's convention), the (batch, query) rows they leave with no key in
# any head, and rows left with no key in some heads only (those still attend through the other heads)
# Batch item 1 is a sentence that is padding from end to end; query row 2 of attn_mask blocks every key.
_ALL_PADDING = torch.zeros(B, S, dtype=torch.bool)
_ALL_PADDING[1] = True
_ROW_BLOCKED = torch.zeros(L, S, dtype=torch.bool)
_ROW_BLOCKED[2] = True
_ROW_BLOCKED_3D = torch.zeros(B * H, L, S, dtype=torch.bool)
_ROW_BLOCKED_3D[0 * H : 1 * H, 3] = True  # batch item 0, query 3, every head
_ROW_BLOCKED_3D[2 * H + 1, 0] = True  # batch item 2, query 0, head 1 only: the other head still sees keys
DEAD_CASES = {
    "kpm_whole_sentence": ({"key_padding_mask": _ALL_PADDING}, [(1, q) for q in range(L)], []),
    "kpm_float_-inf_sentence": (
        {"key_padding_mask": torch.zeros(B, S).masked_fill(_ALL_PADDING, float("-inf"))},
        [(1, q) for q in range(L)],
        [],
    ),
    "attn_mask_row_all_true": ({"attn_mask": _ROW_BLOCKED}, [(b, 2) for b in range(B)], []),
    "attn_mask_float_-inf_row": (
        {"attn_mask": torch.zeros(L, S).masked_fill(_ROW_BLOCKED, float("-inf"))},
        [(b, 2) for b in range(B)],
        [],
    ),
    "attn_mask_3d_row": ({"attn_mask": _ROW_BLOCKED_3D}, [(0, 3)], [(2, 0)]),
    "attn_mask_and_kpm_together": (
        {"attn_mask": ~torch.eye(L, S, dtype=torch.bool), "key_padding_mask": torch.tensor([[True] + [False] * 4] * B)},
        [(b, 0) for b in range(B)],  # query 0 may only see key 0, which is padding
        [],
    ),
}


def _rows(pairs) -> torch.Tensor:
    """(batch, L) boolean: True at the given (batch, query) pairs."""
    rows = torch.zeros(B, L, dtype=torch.bool)
    for b, q in pairs:
        rows[b, q] = True
    return rows


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("case", DEAD_CASES)
def test_fully_masked_rows_give_no_nan_and_zero_attention(case, need_weights, mha_pair):
    masks, dead_rows, partly_dead_rows = DEAD_CASES[case]
    dead, partly_dead = _rows(dead_rows), _rows(partly_dead_rows)
    live = ~dead & ~partly_dead
    ours, theirs = mha_pair(E, H)
    gen = torch.Generator().manual_seed(1)
    query = torch.randn(B, L, E, generator=gen, requires_grad=True)
    key = torch.randn(B, S, E, generator=gen, requires_grad=True)
    value = torch.randn(B, S, E, generator=gen, requires_grad=True)
    before_w_o = []
    ours.W_o.register_forward_pre_hook(lambda _, args: before_w_o.append(args[0]))

    out, weights = ours(query, key, value, need_weights=need_weights, average_attn_weights=False, **masks)
    loss = out.sum() + (weights.sum() if need_weights else 0)
    loss.backward()

    assert torch.isfinite(out).all()
    for t in (query, key, value):
        assert torch.isfinite(t.grad).all()
    for name, p in ours.named_parameters():
        assert torch.isfinite(p.grad).all(), name
    heads = before_w_o[0]  # (batch, L, embed_dim): the merged attention result
    assert torch.all(heads[dead] == 0), "rows with no key must give a zero attention result"
    torch.testing.assert_close(out[dead], ours.W_o.bias.expand(int(dead.sum()), E), rtol=0, atol=0)
    if need_weights:
        assert torch.isfinite(weights).all()
        assert torch.all(weights.transpose(1, 2)[dead] == 0), "rows with no key must have zero weights"
        live_sums = weights.transpose(1, 2)[live].sum(-1)  # (rows, heads)
        torch.testing.assert_close(live_sums, torch.ones_like(live_sums), rtol=0, atol=1e-6)

    # Where a row does have keys, we still equal PyTorch (which gives NaN on the other rows).
    with torch.no_grad():
        expected, _ = theirs(query, key, value, need_weights=need_weights, **masks)
    torch.testing.assert_close(out[live], expected[live], rtol=0, atol=1e-5)


def test_a_row_dead_in_one_head_only_keeps_the_other_head(mha_pair):
    masks, _, _ = DEAD_CASES["attn_mask_3d_row"]
    ours, theirs = mha_pair(E, H)
    x = torch.randn(B, L, E)
    _, weights = ours(x, x[:, :1].expand(B, S, E).contiguous(), **masks, average_attn_weights=False)
    assert torch.all(weights[2, 1, 0] == 0)  # batch 2, head 1, query 0: every key blocked
    assert weights[2, 0, 0].sum().item() == pytest.approx(1.0)  # head 0 of the same query is untouched


@pytest.mark.parametrize("case", ["kpm_whole_sentence", "attn_mask_row_all_true", "attn_mask_float_-inf_row"])
def test_pytorch_gives_nan_on_those_rows(case, mha_pair):
    """For contrast: nn.MultiheadAttention's weights path (and its eval fast path) returns NaN on such rows."""
    masks, dead_rows, _ = DEAD_CASES[case]
    dead = _rows(dead_rows)
    live = ~dead
    _, theirs = mha_pair(E, H)
    x = torch.randn(B, S, E).requires_grad_()
    out, weights = theirs(x[:, :L], x, x, **masks)
    assert out[dead].isnan().all() and weights[dead].isnan().all()
    assert not out[live].isnan().any()
    out.sum().backward()
    assert theirs.in_proj_weight.grad.isnan().any(), "and the NaN reaches PyTorch's parameter gradients"
    theirs.eval()
    with torch.inference_mode():
        y = x.detach()[:, :S]
        fast, _ = theirs(y, y, y, key_padding_mask=_ALL_PADDING, need_weights=False)  # the native fast path
    assert fast[1].isnan().all()


# ---- dropout --------------------------------------------------------------------------------------------


def test_dropout_zeroes_weights_and_rescales_the_survivors(mha_pair):
    p = 0.5
    ours, _ = mha_pair(E, H, dropout=p)
    x = torch.randn(B, L, E)
    ours.eval()
    _, clean = ours(x, average_attn_weights=False)  # weights (batch, heads, L, L)
    ours.train()
    torch.manual_seed(0)
    out, dropped = ours(x, average_attn_weights=False)
    kept = dropped != 0
    assert 0 < int(kept.sum()) < kept.numel(), "with p=0.5 some weights are dropped and some survive"
    torch.testing.assert_close(dropped[kept], clean[kept] / (1 - p), rtol=1e-6, atol=1e-7)
    # and the output is built from exactly these dropped weights
    v = mh.split_heads(ours.W_v(x), H)  # (batch, heads, L, head_dim)
    expected = ours.W_o(mh.merge_heads(dropped @ v))
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("need_weights", [True, False])
def test_dropout_in_training_equals_pytorch_under_the_same_seed(need_weights, mha_pair):
    """Both modules draw the dropout mask from torch's generator in the same order, so equal seeds give equal masks."""
    ours, theirs = mha_pair(E, H, dropout=0.3)
    x = torch.randn(B, L, E)
    torch.manual_seed(7)
    expected, w_expected = theirs(x, x, x, need_weights=need_weights, average_attn_weights=False)
    torch.manual_seed(7)
    out, w = ours(x, x, x, need_weights=need_weights, average_attn_weights=False)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    if need_weights:
        torch.testing.assert_close(w, w_expected, rtol=0, atol=1e-5)
        assert (w == 0).any()


@pytest.mark.parametrize("need_weights", [True, False])
def test_dropout_does_nothing_in_eval_mode(need_weights, mha_pair):
    ours, theirs = mha_pair(E, H, dropout=0.5)
    ours.eval()
    theirs.eval()
    x = torch.randn(B, L, E)
    first, w_first = ours(x, x, x, need_weights=need_weights)
    second, _ = ours(x, x, x, need_weights=need_weights)
    assert torch.equal(first, second)
    expected, w_expected = theirs(x, x, x, need_weights=need_weights)
    torch.testing.assert_close(first, expected, rtol=0, atol=1e-5)
    if need_weights:
        torch.testing.assert_close(w_first, w_expected, rtol=0, atol=1e-5)
        assert (w_first > 0).all()


# ---- properties (hypothesis) ----------------------------------------------------------------------------

PROPERTY = settings(max_examples=25, deadline=None)
sizes = st.fixed_dictionaries(
    {
        "batch": st.integers(1, 3),
        "L": st.integers(1, 6),
        "S": st.integers(1, 6),
        "num_heads": st.sampled_from([1, 2, 4]),
        "head_dim": st.integers(1, 4),
        "seed": st.integers(0, 2**16),
    }
)


def _module(size) -> tuple[mh.MultiHeadAttention, torch.Generator]:
    torch.manual_seed(size["seed"])
    return mh.MultiHeadAttention(
        size["num_heads"] * size["head_dim"], size["num_heads"]
    ), torch.Generator().manual_seed(size["seed"])


@PROPERTY
@given(size=sizes, need_padding=st.booleans())
def test_weight_rows_sum_to_one(size, need_padding):
    mha, gen = _module(size)
    E_ = mha.embed_dim
    query = torch.randn(size["batch"], size["L"], E_, generator=gen)
    key = torch.randn(size["batch"], size["S"], E_, generator=gen)
    masks = {}
    if need_padding:  # every sentence keeps at least one real token
        lengths = torch.randint(1, size["S"] + 1, (size["batch"],), generator=gen)
        masks["key_padding_mask"] = mh.padding_mask(lengths, size["S"])
    for average in (True, False):
        _, weights = mha(query, key, **masks, average_attn_weights=average)
        assert (weights >= 0).all()
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]), rtol=0, atol=1e-5)
        if need_padding:  # padding gets no weight
            pad = masks["key_padding_mask"][:, None, :] if average else masks["key_padding_mask"][:, None, None, :]
            assert (weights.masked_select(pad.expand_as(weights)) == 0).all()


@PROPERTY
@given(size=sizes, need_weights=st.booleans())
def test_permuting_the_tokens_permutes_the_output(size, need_weights):
    mha, gen = _module(size)
    x = torch.randn(size["batch"], size["L"], mha.embed_dim, generator=gen)
    perm = torch.randperm(size["L"], generator=gen)
    out, w = mha(x, need_weights=need_weights)
    out_p, w_p = mha(x[:, perm], need_weights=need_weights)
    torch.testing.assert_close(out_p, out[:, perm], rtol=0, atol=1e-5)
    if need_weights:  # weights[i, j] -> weights[perm[i], perm[j]]
        torch.testing.assert_close(w_p, w[:, perm][:, :, perm], rtol=0, atol=1e-5)


@PROPERTY
@given(size=sizes, need_weights=st.booleans(), explicit=st.booleans(), data=st.data())
def test_a_later_token_never_changes_an_earlier_output_under_a_causal_mask(size, need_weights, explicit, data):
    mha, gen = _module(size)
    n = size["L"]
    j = data.draw(st.integers(0, n - 1), label="changed position")
    x = torch.randn(size["batch"], n, mha.embed_dim, generator=gen)
    changed = x.clone()
    changed[:, j] = torch.randn(size["batch"], mha.embed_dim, generator=gen) * 10
    mask = {"attn_mask": ~mh.causal_mask(n)} if explicit else {"is_causal": True}
    out, _ = mha(x, need_weights=need_weights, **mask)
    out_changed, _ = mha(changed, need_weights=need_weights, **mask)
    torch.testing.assert_close(out_changed[:, :j], out[:, :j], rtol=0, atol=1e-5)
    assert not torch.allclose(out_changed[:, j:], out[:, j:]), "the changed token itself must see the change"
