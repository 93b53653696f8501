"""The general claims of notebook 13 (the bug hunt), each re-derived over several seeds or configurations; the last
part holds the audit to what the notebook says it can and cannot see (sections 1, 7 and 8, Exercise 13.1)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mha_helpers as mh

SEEDS = range(5)


@pytest.mark.parametrize(("batch", "heads"), [(4, 4), (2, 2), (1, 4), (3, 5), (2, 4), (3, 1), (8, 8)])
def test_a_batch_1_S_mask_broadcasts_silently_only_when_batch_is_heads_or_1(batch, heads):
    """§4 H: broadcasting aligns shapes from the right, so (B, 1, S) meets (B, H, L, S) as (1, B, 1, S)."""
    scores = torch.zeros(batch, heads, 3, 5)
    mask = torch.ones(batch, 1, 5, dtype=torch.bool)
    try:
        silent = scores.masked_fill(~mask, float("-inf")).shape == scores.shape  # no error, nothing grew
    except RuntimeError:
        silent = False
    assert silent == (batch in (heads, 1))


@pytest.mark.parametrize("S", [2, 3, 5, 8, 13])
def test_is_causal_with_one_query_and_a_cache_sees_key_0_only(S):
    """§4 K: SDPA's is_causal is top-left aligned (pytorch/pytorch#108108)."""
    g = torch.Generator().manual_seed(S)
    q = torch.randn(1, 1, 1, 8, generator=g)
    k, v = torch.randn(1, 1, S, 8, generator=g), torch.randn(1, 1, S, 8, generator=g)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.allclose(out, v[:, :, :1])


@pytest.mark.parametrize("fill", [-1e5, -1e8, -1e10, -1e20, torch.finfo(torch.float32).min])
def test_float16_cannot_hold_big_fills_but_bfloat16_holds_most(fill):
    """§3 C, Exercise 13.1: float16's largest value is 65504; masked_fill refuses what does not fit."""
    assert torch.finfo(torch.float16).max == 65504
    mask = torch.tensor([True, False])
    with pytest.raises(RuntimeError, match="without overflow"):
        torch.zeros(2, dtype=torch.float16).masked_fill(mask, fill)
    if -fill <= torch.finfo(torch.bfloat16).max:  # bfloat16 has float32's range, minus the very top
        assert torch.zeros(2, dtype=torch.bfloat16).masked_fill(mask, fill)[0] < -6e4
    assert torch.zeros(2, dtype=torch.float16).masked_fill(mask, torch.finfo(torch.float16).min)[0] == -65504


@pytest.mark.parametrize(("batch", "heads"), [(2, 2), (3, 4), (4, 2), (1, 4), (4, 1), (5, 3)])
def test_flattened_heads_are_sequence_major_and_repeat_tiles_the_batch(batch, heads):
    """§4 G, Exercise 13.2: row b·H + h is sequence b; repeat_interleave matches it, repeat only when B or H is 1."""
    x = torch.arange(batch, dtype=torch.float32)[:, None, None, None].expand(batch, heads, 1, 1)  # value = its b
    rows = x.reshape(batch * heads)  # (B, H, 1, 1) -> (B·H,)
    mask = torch.arange(batch, dtype=torch.float32)[:, None]  # (B, 1): one "mask" per sequence, its b
    assert torch.equal(rows, mask.repeat_interleave(heads, dim=0).flatten())
    assert torch.equal(rows, mask.repeat(heads, 1).flatten()) == (batch == 1 or heads == 1)


@pytest.mark.parametrize(("L", "heads"), [(1, 4), (5, 1), (5, 4), (3, 2), (6, 3)])
def test_view_without_transpose_equals_the_split_only_for_one_token_or_one_head(L, heads):
    """§4 F: .view(B, H, L, hd) is the right split only when L == 1 or H == 1 (notebook 04 §2)."""
    x = torch.randn(2, L, heads * 4, generator=torch.Generator().manual_seed(L * heads))
    wrong = x.view(2, heads, L, 4)
    right = mh.split_heads(x, heads)
    assert torch.equal(wrong, right) == (L == 1 or heads == 1)


@pytest.mark.parametrize("seed", SEEDS)
def test_softmax_over_the_queries_breaks_the_row_sums(seed):
    """§3 B: with softmax(dim=-2) a query's weights over the keys no longer sum to 1."""
    scores = torch.randn(4, 6, generator=torch.Generator().manual_seed(seed))
    assert not torch.allclose(torch.softmax(scores, dim=-2).sum(-1), torch.ones(4), atol=1e-3)
    assert torch.allclose(torch.softmax(scores, dim=-1).sum(-1), torch.ones(4))


@pytest.mark.parametrize("seed", SEEDS)
def test_nan_to_num_gives_what_sdpa_gives_for_a_query_with_no_key(seed):
    """§4 J: zero weights and a zero output for a fully masked row, as F.scaled_dot_product_attention (torch 2.13)."""
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(1, 2, 4, 8, generator=g) for _ in range(3))
    mask = torch.rand(4, 4, generator=g) > 0.3
    mask[:, 0] = True
    mask[2] = False  # query 2 sees nothing
    scores = (q @ k.transpose(-2, -1) / math.sqrt(8)).masked_fill(~mask, float("-inf"))
    assert torch.isnan(torch.softmax(scores, dim=-1)).any()
    ours = torch.softmax(scores, dim=-1).nan_to_num(0.0) @ v
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.allclose(ours, theirs, atol=1e-6) and torch.equal(theirs[:, :, 2], torch.zeros(1, 2, 8))


@pytest.mark.parametrize("seed", SEEDS)
def test_batch_first_false_on_batch_first_input_mixes_the_sequences(seed):
    """§4 I: nn.MultiheadAttention is sequence-first by default; fed (batch, seq, d), it attends across the batch."""
    torch.manual_seed(seed)
    m = nn.MultiheadAttention(16, 2)
    assert m.batch_first is False
    x = torch.randn(3, 5, 16)
    y = x.clone()
    y[1] += 1.0
    with torch.no_grad():
        assert not torch.allclose(m(x, x, x)[0][0], m(y, y, y)[0][0])


@pytest.mark.parametrize("seed", SEEDS)
def test_causal_attention_is_not_permutation_equivariant(seed):
    """§1: why audit skips the permutation row for causal attention."""
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(1, 1, 5, 8, generator=g) for _ in range(3))
    perm = torch.tensor([2, 0, 4, 1, 3])
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    permuted = F.scaled_dot_product_attention(q[:, :, perm], k[:, :, perm], v[:, :, perm], is_causal=True)
    assert not torch.allclose(permuted, out[:, :, perm])


@pytest.mark.parametrize(("scale", "factor"), [(0.1, 1.0), (0.354, 0.5), (1.0, 0.2), (0.05, 3.0), (0.25, 1.0)])
def test_the_scale_is_measured_whatever_the_weights_sum_to(scale, factor):
    """§3 E: scale_correct reads the scale from ratios of weights, so softmax(s·qk)·c gives s for any c."""
    def attention(query, key, value, attn_mask=None):
        return factor * torch.softmax(scale * query @ key.transpose(-2, -1), dim=-1) @ value

    evidence = mh.audit(attention)["scale_correct"].evidence
    assert f"scale {scale:.3g}" in evidence


@pytest.mark.parametrize("seed", SEEDS)
def test_the_top_left_decoder_is_right_without_a_cache(seed):
    """§4 K: with T = S (no cache) top-left and bottom-right alignment agree, so only the cached decoding is wrong."""
    torch.manual_seed(seed)
    broken = mh.BUG_ZOO["kv_cache_top_left"].broken()
    fixed = mh.BUG_ZOO["kv_cache_top_left"].fixed()
    fixed.load_state_dict(broken.state_dict())
    x = torch.randn(2, 6, 32)
    with torch.no_grad():
        assert torch.allclose(broken(x), fixed(x), atol=1e-6)


@pytest.mark.parametrize("heads", [2, 3, 4, 6, 8])
def test_audit_feeds_a_module_as_many_sequences_as_heads(heads):
    """§4 H: so that a (batch, 1, S) mask broadcasts silently, as in the reports."""
    torch.manual_seed(0)
    report = mh.audit(mh.MultiHeadAttention(heads * 4, heads))
    assert f"x ({heads}, 6, {heads * 4})" in report["batch_independent"].evidence


@pytest.mark.parametrize("seed", SEEDS)
def test_with_as_many_sequences_as_heads_bugs_g_and_h_are_the_same_bug(seed):
    """§4 H: repeat(H, 1) over (B·H) rows and a (B, 1, S) mask on (B, H, L, S) both give head h sequence h's padding."""
    torch.manual_seed(seed)
    g = mh.BUG_ZOO["repeat_not_interleave"].broken()
    h = mh.BUG_ZOO["mask_missing_head_dim"].broken()
    h.load_state_dict(g.state_dict())
    x = torch.randn(4, 6, 32)
    kpm = torch.arange(6)[None, :] < torch.tensor([0, 1, 2, 3])[:, None]  # (4, 6), True = padding
    with torch.no_grad():
        assert torch.allclose(g(x, key_padding_mask=kpm), h(x, key_padding_mask=kpm), atol=1e-6)
    fixed = mh.BUG_ZOO["repeat_not_interleave"].fixed()
    fixed.load_state_dict(g.state_dict())
    with torch.no_grad():  # ... and both differ from the right answer
        assert not torch.allclose(g(x, key_padding_mask=kpm), fixed(x, key_padding_mask=kpm), atol=1e-3)


# ---- what the audit can and cannot see (§1, §7, §8, Exercise 13.1) ------------------------------------------------

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "unit"))
import audit_cases as C  # noqa: E402


def _seeded(cls, seed, *args, **kwargs):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(*args, **kwargs)


@pytest.mark.parametrize("seed", range(3))
def test_the_zoo_verdicts_hold_for_other_weights(seed):
    """§6: each bug is flagged at its property and each fix passes, whatever the weights (the reviewer's check)."""
    for name, bug in mh.BUG_ZOO.items():
        broken, fixed = (_seeded(b, seed) if isinstance(b, type) else b for b in (bug.broken, bug.fixed))
        assert bug.flags in mh.audit(broken, causal=bug.causal).failed, (name, seed)
        assert mh.audit(fixed, causal=bug.causal).verdict == "passed", (name, seed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("seed", range(3))
def test_no_false_alarm_on_correct_modules_in_several_styles_and_dtypes(seed, dtype):
    """§1: "no false alarm on the correct implementations tried here, written in a dozen styles" — per weight seed."""
    styles = [(mh.MultiHeadAttention, (32, 4), False), (C.QueryKeyValueOut, (), False),
              (C.HuggingFaceOutProj, (), False), (C.TimmStyle, (), False), (C.NanoGPTFlash, (), True),
              (C.LoopOverHeads, (), False), (C.ToQKVOut, (), False), (mh.GroupedQuerySelfAttention, (32, 4, 2), True)]
    for cls, args, causal in styles:
        report = mh.audit(_seeded(cls, seed, *args).to(dtype), causal=causal)
        assert report.verdict == "passed", f"{cls.__name__}, seed {seed}, {dtype}:\n{report}"


@pytest.mark.parametrize(("heads", "seed"), [(2, 0), (4, 1), (8, 2)])
def test_rope_fails_the_position_free_rows_unless_declared(heads, seed):
    """§8: undeclared, RoPE fails permutation_equivariant and matches_reference by design; declared, it passes."""
    module = _seeded(C.RoPEAttention, seed, 32, heads)
    assert mh.audit(module).failed == ["permutation_equivariant", "matches_reference"]
    assert mh.audit(module, positions=True).verdict == "passed"
    assert mh.audit(_seeded(C.RoPEAttention, seed, 32, heads, causal=True), positions=True).verdict == "passed"


@pytest.mark.parametrize("window", [5, 6, 8, 12])
def test_a_window_wider_than_the_probes_is_invisible_to_the_audit(window):
    """§8: audit's 5 tokens fit in any window of 5 or more, yet with 16 tokens the "causal" function is wrong."""
    def windowed(query, key, value, is_causal=False):
        return mh.sliding_window_attention(query, key, value, window=window)

    assert mh.audit(windowed, causal=True).verdict == "passed"
    q, k, v = (torch.randn(1, 2, 16, 8, generator=torch.Generator().manual_seed(window + i)) for i in range(3))
    assert not torch.allclose(windowed(q, k, v), F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-3)


def test_a_window_narrower_than_the_probes_is_seen():
    """§8's limit is the probe size: a window of 3 within 5 tokens fails matches_reference."""
    def windowed(query, key, value, is_causal=False):
        return mh.sliding_window_attention(query, key, value, window=3)

    assert "matches_reference" in mh.audit(windowed, causal=True).failed


@pytest.mark.parametrize("seed", SEEDS)
def test_detached_weights_pass_the_audit_but_stop_the_gradient(seed):
    """§8: the audit runs forward passes only; weights detached from the graph leave W_q and W_k without gradient."""
    class DetachedWeights(mh.ZooAttention):
        def forward(self, x):
            q, k, v = (self.split(W(x)) for W in (self.W_q, self.W_k, self.W_v))
            weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.head_dim), dim=-1).detach()
            return self.W_o(self.merge(weights @ v))

    module = _seeded(DetachedWeights, seed)
    assert mh.audit(module).verdict == "passed"
    module(torch.randn(2, 6, 32)).sum().backward()
    assert module.W_q.weight.grad is None and module.W_k.weight.grad is None and module.W_v.weight.grad is not None


@pytest.mark.parametrize(("p", "seed"), [(0.05, 0), (0.1, 1), (0.3, 2), (0.5, 3)])
def test_dropout_left_on_is_named_first_whatever_its_rate(p, seed):
    """§7: randomness is its own verdict, and no other row is judged (it once failed 7 rows with wrong causes)."""
    report = mh.audit(_seeded(C.DropoutInEval, seed, dropout=p))
    assert report.verdict == "non-deterministic" and report.failed == ["deterministic"]


@pytest.mark.parametrize("fill", [-1e4, -65504.0])
def test_a_fill_float16_can_hold_passes_the_audit_but_loses_to_low_scores(fill):
    """Exercise 13.1: -1e4 fits in float16, so the audit passes it; scores near -2.5e5 then lose to the fill."""
    def attention_c(query, key, value, attn_mask=None):
        scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, fill)
        return torch.softmax(scores, dim=-1) @ value

    assert mh.audit(attention_c).verdict == "passed"
    q = torch.full((1, 1, 5, 8), 300.0)
    v = torch.randn(1, 1, 5, 8, generator=torch.Generator().manual_seed(13))
    mask = torch.ones(5, 5, dtype=torch.bool)
    mask[:, [1, 3]] = False
    out = attention_c(q, -q, v, attn_mask=mask)
    assert torch.allclose(out, v[:, :, [1, 3]].mean(-2, keepdim=True).expand_as(v), atol=1e-4)  # all blocked keys


@pytest.mark.parametrize("seed", range(3))
def test_qk_norm_fails_only_the_reference_row_by_design(seed):
    """§8: a variant with a step the reference does not have (QK-norm) fails matches_reference, nothing else."""
    class QKNorm(mh.ZooAttention):
        def __init__(self):
            super().__init__()
            self.q_norm, self.k_norm = nn.LayerNorm(self.head_dim), nn.LayerNorm(self.head_dim)

        def forward(self, x):
            q, k, v = (self.split(W(x)) for W in (self.W_q, self.W_k, self.W_v))  # (B, H, L, hd)
            return self.W_o(self.merge(F.scaled_dot_product_attention(self.q_norm(q), self.k_norm(k), v)))

    report = mh.audit(_seeded(QKNorm, seed))
    assert report.failed == ["matches_reference"] and report["scale_correct"].status == "n/a"


@pytest.mark.parametrize("seed", range(3))
def test_a_transformer_block_is_incomplete_and_its_attention_passes(seed):
    """§8: a module that does more than attention is "incomplete"; the attention inside it is audited in full."""
    block = _seeded(mh.TransformerBlock, seed, 32, 4)
    report = mh.audit(block)
    assert report.verdict == "incomplete" and "audit .self_attn itself" in report.unreadable[0]
    assert mh.audit(block.self_attn).verdict == "passed"
