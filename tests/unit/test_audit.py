"""mh.audit names the property an attention implementation breaks: every bug of the zoo is flagged (and its fix
passes), broken implementations the zoo does not hold are flagged with the right property, correct implementations
(ours and PyTorch's) get zero failures, and bad inputs to audit itself get a message that names the problem.

The second half (from "cannot be fooled") holds audit to its verdicts on implementations written the ways tutorials
write them (tests/unit/audit_cases.py): what it cannot read is never "ok", what is not attention is said to be so,
randomness is named first, and correct code raises no alarm in float64, float16 and bfloat16, nor with RoPE or ALiBi
declared by positions=True."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
import torch.nn.functional as F
from checker_support import run, stub
from torch import nn

import mha_helpers as mh
from _mha_helpers.lessons.audit import ABOUT, PROBES

# ---- the zoo ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(mh.BUG_ZOO))
def test_every_zoo_bug_is_flagged_and_its_fix_passes(name):
    bug = mh.BUG_ZOO[name]
    report = mh.audit(mh.broken_attention(name), causal=bug.causal)
    assert bug.flags in report.failed, f"{name}: expected {bug.flags} in {report.failed}\n{report}"
    fixed = mh.audit(mh.fixed_attention(name), causal=bug.causal)
    assert fixed.failed == [], f"{name}: the fix still fails {fixed.failed}\n{fixed}"
    assert fixed[bug.flags].status == "pass", f"{name}: the fix must be checked for {bug.flags}, not skipped"


@pytest.mark.parametrize("name", list(mh.BUG_ZOO))
def test_zoo_entries_are_complete(name):
    bug = mh.BUG_ZOO[name]
    assert bug.flags in mh.AUDIT_PROPERTIES
    assert bug.cites and all("/" in c and "#" in c for c in bug.cites), "cite owner/repo#N"
    assert bug.line in inspect.getsource(bug.broken), f"{name}: the broken line {bug.line!r} is not in its source"
    assert bug.line not in inspect.getsource(bug.fixed), f"{name}: the fix still contains {bug.line!r}"


def test_zoo_has_ten_bugs_and_a_gpt_style_module():
    assert len(mh.BUG_ZOO) >= 10
    gpt = mh.broken_attention("gpt_scale_by_n_embd")
    assert hasattr(gpt, "c_attn") and hasattr(gpt, "c_proj") and hasattr(gpt, "n_head")


def test_zoo_modules_have_fixed_weights_and_leave_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b = mh.broken_attention("repeat_not_interleave"), mh.fixed_attention("repeat_not_interleave")
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


# ---- correct implementations: zero failures ------------------------------------------------------------------


def _correct():
    torch.manual_seed(0)
    yield "mh.MultiHeadAttention(64, 4)", mh.MultiHeadAttention(64, 4), False
    yield "mh.MultiHeadAttention(64, 4) causal", mh.MultiHeadAttention(64, 4), True
    yield "mh.MultiHeadAttention(48, 3, bias=False)", mh.MultiHeadAttention(48, 3, bias=False), False
    yield "nn.MultiheadAttention(64, 4)", nn.MultiheadAttention(64, 4, batch_first=True), False
    yield "nn.MultiheadAttention(64, 4) causal", nn.MultiheadAttention(64, 4, batch_first=True), True
    yield "nn.MultiheadAttention(32, 8, bias=False)", nn.MultiheadAttention(32, 8, bias=False, batch_first=True), False
    yield "nn.MultiheadAttention eval", nn.MultiheadAttention(64, 4, batch_first=True, dropout=0.1).eval(), False
    yield "F.scaled_dot_product_attention", F.scaled_dot_product_attention, False
    yield "F.scaled_dot_product_attention causal", F.scaled_dot_product_attention, True
    yield "mh.online_softmax_attention", mh.online_softmax_attention, False
    yield "mh.online_softmax_attention causal", mh.online_softmax_attention, True
    yield "mh.scaled_dot_product_attention", mh.scaled_dot_product_attention, False
    yield "mh.scaled_dot_product_attention causal", mh.scaled_dot_product_attention, True
    yield "mh.GroupedQuerySelfAttention(64, 4, 2)", mh.GroupedQuerySelfAttention(64, 4, 2), True
    yield "mh.GroupedQuerySelfAttention(64, 4, 2) causal=False", mh.GroupedQuerySelfAttention(64, 4, 2), False
    yield "mh.GroupedQuerySelfAttention(64, 8, 1)", mh.GroupedQuerySelfAttention(64, 8, 1), True
    yield "mh.GroupedQuerySelfAttention(32, 4, 4)", mh.GroupedQuerySelfAttention(32, 4, 4), True


class HuggingFaceStyle(nn.Module):
    """q_proj/k_proj/v_proj/o_proj, hidden_size and num_attention_heads, a (B, S) key_padding_mask."""

    def __init__(self, hidden_size=48, num_attention_heads=6):
        super().__init__()
        self.hidden_size, self.num_attention_heads = hidden_size, num_attention_heads
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(hidden_size, hidden_size) for _ in range(4))

    def forward(self, x, key_padding_mask=None):
        B, L, _ = x.shape
        q, k, v = (p(x).view(B, L, self.num_attention_heads, -1).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))  # (B, H, L, hd)
        mask = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o_proj(out.transpose(1, 2).reshape(B, L, self.hidden_size)), None


class LlamaStyle(nn.Module):
    """wq/wk/wv/wo, dim and n_heads, causal, no biases, K/V heads shared (n_kv_heads)."""

    def __init__(self, dim=64, n_heads=8, n_kv_heads=2):
        super().__init__()
        self.dim, self.n_heads, self.n_kv_heads, self.head_dim = dim, n_heads, n_kv_heads, dim // n_heads
        self.wq = nn.Linear(dim, dim, bias=False)
        self.wk, self.wv = (nn.Linear(dim, n_kv_heads * self.head_dim, bias=False) for _ in range(2))
        self.wo = nn.Linear(dim, dim, bias=False)

    def forward(self, x):
        B, L, _ = x.shape
        q = self.wq(x).view(B, L, self.n_heads, self.head_dim).transpose(1, 2)
        k, v = (w(x).view(B, L, self.n_kv_heads, self.head_dim).transpose(1, 2) for w in (self.wk, self.wv))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return self.wo(out.transpose(1, 2).reshape(B, L, self.dim))


def einsum_attention(query, key, value, attn_mask=None, is_causal=False):
    scores = torch.einsum("bhld,bhsd->bhls", query, key) / math.sqrt(query.shape[-1])
    allowed = torch.ones(scores.shape[-2:], dtype=torch.bool).tril() if is_causal else None
    if attn_mask is not None:
        allowed = attn_mask if allowed is None else allowed & attn_mask
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.einsum("bhls,bhsd->bhld", torch.softmax(scores, dim=-1).nan_to_num(0.0), value)


def _more_correct():
    torch.manual_seed(2)
    yield "mh.MultiHeadAttention float64", mh.MultiHeadAttention(32, 4, dtype=torch.float64), False
    yield "nn.MultiheadAttention(48, 3), odd heads", nn.MultiheadAttention(48, 3, batch_first=True), False
    yield "Hugging Face style", HuggingFaceStyle(), False
    yield "Llama style, GQA", LlamaStyle(), True
    yield "einsum attention", einsum_attention, False
    yield "einsum attention causal", einsum_attention, True


CORRECT = list(_correct()) + list(_more_correct())


@pytest.mark.parametrize(("label", "impl", "causal"), CORRECT, ids=[c[0] for c in CORRECT])
def test_correct_implementations_have_zero_failures(label, impl, causal):
    report = mh.audit(impl, causal=causal)
    assert report.failed == [], f"false alarm on {label}:\n{report}"
    assert report.ok and report.verdict == "passed"
    assert report["deterministic"].status == "pass"
    if isinstance(impl, nn.Module):
        assert report.kind == "module"
        for name in ("rows_sum_to_one", "batch_independent", "matches_reference", "heads_split_correctly",
                     "scale_correct", "half_precision_safe"):
            assert report[name].status == "pass", f"{label}: {name} should be checked\n{report}"
    else:
        assert report.kind == "function"
        for name in ("rows_sum_to_one", "batch_independent", "matches_reference", "scale_correct"):
            assert report[name].status == "pass", f"{label}: {name} should be checked\n{report}"
    if isinstance(impl, mh.GroupedQuerySelfAttention):
        assert report.causal and report["cached_equals_full"].status == "pass"
    if isinstance(impl, (mh.MultiHeadAttention, nn.MultiheadAttention)) or impl is F.scaled_dot_product_attention:
        assert report["mask_respected"].status == "pass"
        assert report["fully_masked_rows_finite"].status == "pass"


# ---- broken implementations the zoo does not hold ------------------------------------------------------------


class _Heads(nn.Module):
    def __init__(self, d_model=32, num_heads=4, num_kv_heads=None):
        super().__init__()
        self.d_model, self.num_heads = d_model, num_heads
        self.num_kv_heads = num_kv_heads or num_heads
        self.head_dim = d_model // num_heads
        self.W_q = nn.Linear(d_model, d_model)
        self.W_k = nn.Linear(d_model, self.num_kv_heads * self.head_dim)
        self.W_v = nn.Linear(d_model, self.num_kv_heads * self.head_dim)
        self.W_o = nn.Linear(d_model, d_model)

    def heads(self, t, h):
        B, L, _ = t.shape
        return t.view(B, L, h, self.head_dim).transpose(1, 2)  # (B, L, h·hd) -> (B, h, L, hd)

    def merge(self, t):
        B, _, L, _ = t.shape
        return t.transpose(1, 2).reshape(B, L, self.d_model)


class KVRepeatedNotInterleaved(_Heads):
    def __init__(self):
        super().__init__(32, 4, 2)

    def forward(self, x):
        q = self.heads(self.W_q(x), 4)
        k, v = (self.heads(W(x), 2).repeat(1, 2, 1, 1) for W in (self.W_k, self.W_v))  # should be repeat_interleave
        return self.W_o(self.merge(F.scaled_dot_product_attention(q, k, v)))


class NoOutputProjection(_Heads):
    def forward(self, x):
        q, k, v = (self.heads(W(x), self.num_heads) for W in (self.W_q, self.W_k, self.W_v))
        return self.merge(F.scaled_dot_product_attention(q, k, v))  # W_o forgotten


class NoScale(_Heads):
    def forward(self, x):
        q, k, v = (self.heads(W(x), self.num_heads) for W in (self.W_q, self.W_k, self.W_v))
        return self.W_o(self.merge(F.scaled_dot_product_attention(q, k, v, scale=1.0)))


class MixesTheBatch(_Heads):
    def forward(self, x):
        q, k, v = (self.heads(W(x), self.num_heads) for W in (self.W_q, self.W_k, self.W_v))
        out = self.W_o(self.merge(F.scaled_dot_product_attention(q, k, v)))
        return out + 0.1 * out.mean(dim=0, keepdim=True)  # a "batch norm" inside attention


class MergeWithoutTranspose(_Heads):
    def forward(self, x):
        B, L, _ = x.shape
        q, k, v = (self.heads(W(x), self.num_heads) for W in (self.W_q, self.W_k, self.W_v))
        heads = F.scaled_dot_product_attention(q, k, v)  # (B, H, L, hd)
        return self.W_o(heads.reshape(B, L, self.d_model))  # transpose(1, 2) forgotten


class CausalOffByOne(_Heads):
    def forward(self, x):
        L = x.shape[1]
        q, k, v = (self.heads(W(x), self.num_heads) for W in (self.W_q, self.W_k, self.W_v))
        mask = torch.ones(L, L, dtype=torch.bool).tril(diagonal=1)  # sees the next token too
        return self.W_o(self.merge(F.scaled_dot_product_attention(q, k, v, attn_mask=mask)))


def ignores_the_mask(query, key, value, attn_mask=None):
    return F.scaled_dot_product_attention(query, key, value)


def causal_off_by_one(query, key, value, is_causal=False):
    L, S = query.shape[-2], key.shape[-2]
    mask = torch.ones(L, S, dtype=torch.bool).tril(diagonal=1) if is_causal else None
    return F.scaled_dot_product_attention(query, key, value, attn_mask=mask)


def adds_a_position_bias(query, key, value, attn_mask=None):
    L, S = query.shape[-2], key.shape[-2]
    bias = -0.5 * (torch.arange(L)[:, None] - torch.arange(S)[None, :]).abs().to(query.dtype)  # ALiBi-like
    if attn_mask is not None:
        bias = bias.masked_fill(~attn_mask, float("-inf"))
    return F.scaled_dot_product_attention(query, key, value, attn_mask=bias)


def float32_min_fill(query, key, value, attn_mask=None):
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, torch.finfo(torch.float32).min)  # too big for float16
    return torch.softmax(scores, dim=-1) @ value


def softmax_over_heads(query, key, value, attn_mask=None):
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    return torch.softmax(scores, dim=1).nan_to_num(0.0) @ value


def scale_by_head_dim(query, key, value, attn_mask=None):
    return F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask, scale=1.0 / query.shape[-1])


def _module(cls):
    torch.manual_seed(1)
    return cls()


NOT_IN_ZOO = [
    ("kv heads repeated, not interleaved", lambda: _module(KVRepeatedNotInterleaved), True, "heads_split_correctly"),
    ("no W_o", lambda: _module(NoOutputProjection), False, "matches_reference"),
    ("no scale", lambda: _module(NoScale), False, "scale_correct"),
    ("mean over the batch", lambda: _module(MixesTheBatch), False, "batch_independent"),
    ("merge without transpose", lambda: _module(MergeWithoutTranspose), False, "heads_split_correctly"),
    ("module causal off by one", lambda: _module(CausalOffByOne), True, "causal"),
    ("mask ignored", lambda: ignores_the_mask, False, "mask_respected"),
    ("function causal off by one", lambda: causal_off_by_one, True, "causal"),
    ("position bias", lambda: adds_a_position_bias, False, "permutation_equivariant"),
    ("float32 min in float16", lambda: float32_min_fill, False, "half_precision_safe"),
    ("softmax over the heads", lambda: softmax_over_heads, False, "heads_split_correctly"),
    ("scale 1/head_dim", lambda: scale_by_head_dim, False, "scale_correct"),
]


@pytest.mark.parametrize(("label", "build", "causal", "prop"), NOT_IN_ZOO, ids=[c[0] for c in NOT_IN_ZOO])
def test_broken_implementations_outside_the_zoo_are_flagged(label, build, causal, prop):
    report = mh.audit(build(), causal=causal)
    assert prop in report.failed, f"{label}: expected {prop} in {report.failed}\n{report}"


def test_scale_evidence_names_the_wrong_scale():
    report = mh.audit(mh.broken_attention("gpt_scale_by_n_embd"), causal=True)
    assert "1/√32 (d_model)" in report["scale_correct"].evidence
    assert "scale 1 (no scale)" in mh.audit(_module(NoScale))["scale_correct"].evidence


# ---- bad inputs to audit itself ----------------------------------------------------------------------------


def test_not_callable():
    with pytest.raises(TypeError, match="attention must be a function .* or an nn.Module, got int"):
        mh.audit(42)


def test_a_class_instead_of_an_instance():
    with pytest.raises(TypeError, match=r"got the class MultiHeadAttention.*MultiHeadAttention\(64, 4\)"):
        mh.audit(mh.MultiHeadAttention)


def test_causal_must_be_a_bool():
    with pytest.raises(TypeError, match="causal must be True or False"):
        mh.audit(F.scaled_dot_product_attention, causal="yes")


def test_wrong_signature():
    with pytest.raises(TypeError, match=r"must take \(query, key, value.*signature \(x\)"):
        mh.audit(lambda x: x)


def test_causal_needs_is_causal():
    with pytest.raises(TypeError, match="causal=True needs attention to accept is_causal"):
        mh.audit(ignores_the_mask, causal=True)


def test_an_implementation_that_raises():
    def broken(query, key, value, attn_mask=None):
        raise RuntimeError("shapes do not match")

    with pytest.raises(ValueError, match="audit could not run .*broken: .*raised RuntimeError: shapes do not match"):
        mh.audit(broken)


def test_a_module_that_raises_names_the_input():
    class Fails(nn.Module):
        def __init__(self):
            super().__init__()
            self.d_model = 16
            self.proj = nn.Linear(16, 16)

        def forward(self, x):
            return self.proj(x.transpose(0, 2))

    with pytest.raises(ValueError, match=r"module\(x\) with x of shape \(batch, seq, d_model\).*raised RuntimeError"):
        mh.audit(Fails())


@pytest.mark.parametrize(("result", "message"), [
    (lambda q, k, v: None, "returned NoneType"),
    (lambda q, k, v: q[..., :1], "returned shape"),
    (lambda q, k, v: (), "empty tuple"),
])
def test_wrong_return(result, message):
    with pytest.raises(ValueError, match=message):
        mh.audit(result)


# ---- the report ---------------------------------------------------------------------------------------------


def test_report_shows_as_a_table_and_as_text():
    report = mh.audit(mh.broken_attention("inverted_mask"))
    text = repr(report)
    assert text == str(report)
    assert "❌ fail mask_respected" in text and "✅ pass rows_sum_to_one" in text and "read: 03 §3" in text
    page = report._repr_html_()
    assert page.count("<tr>") == len(mh.AUDIT_PROPERTIES) + 1 and "usual cause" in page
    with pytest.raises(KeyError, match="not an audit property"):
        report["rows"]


def test_the_property_set_is_fixed():
    assert list(PROBES) == list(mh.AUDIT_PROPERTIES) == list(ABOUT)
    report = mh.audit(F.scaled_dot_product_attention)
    assert [r.property for r in report.rows] == list(mh.AUDIT_PROPERTIES)
    assert sorted(report.failed + report.passed + report.not_applicable) == sorted(mh.AUDIT_PROPERTIES)
    assert report.not_applicable == ["causal", "cached_equals_full"]


def test_audit_leaves_the_module_as_it_was():
    torch.manual_seed(3)
    m = mh.MultiHeadAttention(32, 4).train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    rng = torch.random.get_rng_state()
    mh.audit(m)
    assert m.training and all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert torch.equal(torch.random.get_rng_state(), rng)


def test_evidence_is_the_same_at_one_and_two_threads():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = [repr(mh.audit(mh.broken_attention(n), causal=b.causal)) for n, b in mh.BUG_ZOO.items()]
        torch.set_num_threads(2)
        two = [repr(mh.audit(mh.broken_attention(n), causal=b.causal)) for n, b in mh.BUG_ZOO.items()]
    finally:
        torch.set_num_threads(threads)
    assert one == two


def test_a_causal_module_audited_without_causal_is_recognised():
    report = mh.audit(mh.GroupedQuerySelfAttention(32, 4, 2))
    assert report.causal and any("the module is causal" in n for n in report.notes)
    assert report["permutation_equivariant"].status == "n/a"


def test_a_wrapper_is_read_through_its_inner_attention():
    """The weights of an nn.MultiheadAttention inside a wrapper are found (the old audit left those rows n/a)."""

    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.MultiheadAttention(16, 2, batch_first=True)

        def forward(self, x):
            return self.inner(x, x, x)

    torch.manual_seed(0)
    report = mh.audit(Plain())
    assert report.verdict == "passed", report
    assert any("weights read in .inner" in n for n in report.notes)
    for name in ("matches_reference", "heads_split_correctly", "scale_correct"):
        assert report[name].status == "pass", report
    for name in ("mask_respected", "fully_masked_rows_finite"):
        assert report[name].status == "n/a"


# ---- notebook 13's checkers ---------------------------------------------------------------------------------


def test_checker_13_1(capsys):
    passed, out = run(mh.check_fix_fill_value, stub, capsys)
    assert not passed and "not yet" in out
    passed, out = run(mh.check_fix_fill_value, mh.broken_attention("fill_minus_1e10"), capsys)
    assert not passed and "audit still fails half_precision_safe" in out and "65504" in out
    assert run(mh.check_fix_fill_value, mh.fixed_attention("fill_minus_1e10"), capsys)[0]
    no_mask = lambda query, key, value: F.scaled_dot_product_attention(query, key, value)  # noqa: E731
    passed, out = run(mh.check_fix_fill_value, no_mask, capsys)
    assert not passed and "mask_respected is no longer checked" in out


def test_checker_13_2(capsys):
    class NotYet(mh.ZooAttention):
        def forward(self, x, key_padding_mask=None):
            raise NotImplementedError("your code here")

    passed, out = run(mh.check_fix_padding_heads, NotYet, capsys)
    assert not passed and "not yet" in out
    passed, out = run(mh.check_fix_padding_heads, mh.BUG_ZOO["repeat_not_interleave"].broken, capsys)
    assert not passed and "mask_respected" in out and "repeat_interleave" in out
    assert run(mh.check_fix_padding_heads, mh.BUG_ZOO["repeat_not_interleave"].fixed, capsys)[0]
    passed, out = run(mh.check_fix_padding_heads, mh.fixed_attention("repeat_not_interleave"), capsys)
    assert not passed and "pass the class itself" in out


def test_checker_13_3(capsys):
    passed, out = run(mh.check_fix_gpt_block, mh.BUG_ZOO["gpt_scale_by_n_embd"].broken, capsys)
    assert not passed and "scale_correct: " in out and "1/√32 (d_model)" in out  # the telling row, not the reference
    assert run(mh.check_fix_gpt_block, mh.BUG_ZOO["gpt_scale_by_n_embd"].fixed, capsys)[0]


# ---- cannot be fooled: verdicts on implementations written the ways tutorials write them -------------------------

import audit_cases as C  # noqa: E402


@pytest.mark.parametrize(("bug", "prop"), [("softmax_dim", "rows_sum_to_one"), ("sqrt_d_model", "scale_correct"),
                                           ("unnormalised", "rows_sum_to_one")])
def test_query_key_value_out_is_read_and_its_bugs_are_named(bug, prop):
    """The most common naming in tutorials: once 8 of 11 rows were n/a and every bug passed."""
    report = mh.audit(C.build(C.QueryKeyValueOut, bug=bug))
    assert not report.ok and report.verdict == "failed", report
    assert prop in report.failed, report
    correct = mh.audit(C.build(C.QueryKeyValueOut))
    assert correct.verdict == "passed" and correct[prop].status == "pass", correct


def test_the_sqrt_d_model_bug_is_named_as_such():
    report = mh.audit(C.build(C.QueryKeyValueOut, bug="sqrt_d_model"))
    assert "1/√32 (d_model)" in report["scale_correct"].evidence
    assert "the weights do not sum to 1" in mh.audit(C.build(C.QueryKeyValueOut, bug="unnormalised"))["rows_sum_to_one"].evidence


NOT_ATTENTION = [
    ("nn.Linear(8, 8)", lambda: C.build(nn.Linear, 8, 8)),
    ("an MLP", C.mlp),
    ("nn.Identity()", nn.Identity),
    ("returns the values", lambda: (lambda query, key, value: value)),
    ("returns the queries", lambda: (lambda query, key, value, attn_mask=None: query)),
]


@pytest.mark.parametrize(("label", "build"), NOT_ATTENTION, ids=[c[0] for c in NOT_ATTENTION])
def test_what_is_not_attention_is_said_to_be_so(label, build):
    report = mh.audit(build())
    assert report.verdict == "not attention" and not report.ok, report
    assert report.failed == [] and report.passed == ["deterministic"]
    assert "nothing is mixed across tokens" in report.not_attention and "NOT ATTENTION" in repr(report)


def test_attention_across_the_batch_is_not_called_not_attention():
    """batch_first swapped mixes the sequences of the batch, not the tokens: it is broken attention."""
    report = mh.audit(mh.broken_attention("batch_first_swapped"))
    assert report.verdict == "failed" and "batch_independent" in report.failed
    assert any("attends across the batch" in n for n in report.notes)


@pytest.mark.parametrize("build", [lambda: C.build(C.DropoutInEval), lambda: C.build(C.DropoutInEvalNotCausal),
                                   lambda: (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, dropout_p=0.3))],
                         ids=["sdpa dropout_p not gated", "F.dropout(training=True)", "a function with dropout_p"])
def test_randomness_is_its_own_finding_and_the_only_one(build):
    rng = torch.random.get_rng_state()
    report = mh.audit(build())
    assert torch.equal(torch.random.get_rng_state(), rng), "audit must leave the caller's random state alone"
    assert report.verdict == "non-deterministic" and report.failed == ["deterministic"], report
    assert report.not_applicable == list(mh.AUDIT_PROPERTIES[1:])
    assert "outputs are random" in report["rows_sum_to_one"].evidence
    assert "dropout left on" in report["deterministic"].cause and "self.training" in report["deterministic"].cause
    assert "NON-DETERMINISTIC" in repr(report)


def test_unreadable_weights_are_never_ok_and_say_how_to_be_read():
    report = mh.audit(C.build(C.Unreadable))
    assert report.verdict == "incomplete" and not report.ok and report.failed == [], report
    assert report.checked * 2 < len(report.rows)
    (why,) = report.unreadable
    assert "W_q/W_k/W_v/W_o" in why and "q_proj" in why and "mh.audit(fn)" in why
    assert "could not read:" in repr(report) and "INCOMPLETE" in repr(report)


def test_more_heads_than_features_is_a_clear_verdict_not_a_crash():
    report = mh.audit(C.build(C.MoreHeadsThanFeatures))
    assert report.verdict == "incomplete", report
    assert "num_heads=16 is more than the 8 features" in report.unreadable[0]


def test_more_heads_than_features_that_crashes_its_own_forward_gets_an_error_naming_it():
    class Crashes(C.MoreHeadsThanFeatures):
        def forward(self, x):
            B, L, _ = x.shape
            q, k, v = (W(x).view(B, L, self.num_heads, self.d_model // self.num_heads).transpose(1, 2)
                       for W in (self.W_q, self.W_k, self.W_v))
            return self.W_o(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, L, self.d_model))

    with pytest.raises(ValueError, match=r"audit could not run .*raised RuntimeError.*note: num_heads=16 is more than"):
        mh.audit(C.build(Crashes))


def test_many_heads_wider_than_the_model_are_audited():
    """16 heads of 4 on d_model 8: W_o is not square, so the heads are read at W_o's input."""
    report = mh.audit(C.build(C.ManyNarrowHeads))
    assert report.verdict == "passed", report
    assert "the heads read before W_o" in report["heads_split_correctly"].evidence


def test_a_head_count_under_no_usual_name_is_found_from_the_output():
    report = mh.audit(C.build(C.NoHeadCount))
    assert report.verdict == "passed" and report[("heads_split_correctly")].status == "pass", report
    assert any("4 heads is the one head count" in n for n in report.notes)


# The reviewer's broken implementations (notebooks-07-13 review, "mh.audit on my own implementations") and ours.
BROKEN = [
    ("mask after softmax", lambda: C.mask_after_softmax, False, "mask_respected"),
    ("mask after softmax, causal", lambda: C.mask_after_softmax, True, "mask_respected"),
    ("causal tril(diagonal=1)", lambda: C.causal_sees_next, True, "causal"),
    ("causal tril(diagonal=-1)", lambda: C.causal_never_itself, True, "rows_sum_to_one"),
    ("K Qᵀ", lambda: C.keys_times_queries, False, "permutation_equivariant"),
    ("scores * mask", lambda: C.scores_times_mask, False, "mask_respected"),
    ("scale 1/d_k", lambda: C.scale_one_over_d, False, "scale_correct"),
    ("merge feature-major", lambda: C.build(C.MergeFeatureMajor), False, "heads_split_correctly"),
    ("heads in reverse", lambda: C.build(C.HeadsReversed), False, "heads_split_correctly"),
    ("dropout in eval", lambda: C.build(C.DropoutInEval), False, "deterministic"),
    ("padding on the queries", lambda: C.build(C.PaddingOnQueries), False, "mask_respected"),
    ("GQA repeat", lambda: C.build(C.GQARepeat), False, "heads_split_correctly"),
    ("cache never read", lambda: C.build(C.CacheNeverRead), False, "cached_equals_full"),
    ("clamp_min(1e-30) in float16", lambda: C.renormalised_clamp_1e30, False, "half_precision_safe"),
]


@pytest.mark.parametrize(("label", "build", "causal", "prop"), BROKEN, ids=[c[0] for c in BROKEN])
def test_the_reviewers_broken_implementations_are_named(label, build, causal, prop):
    report = mh.audit(build(), causal=causal)
    assert prop in report.failed and not report.ok, f"{label}: expected {prop} in {report.failed}\n{report}"


def test_a_query_that_sees_no_key_is_named():
    row = mh.audit(C.causal_never_itself, causal=True)["rows_sum_to_one"]
    assert "query 0 is 0, not v: it sees no key" in row.evidence, row.evidence
    assert "a query that sees no key" in row.cause and "tril(diagonal=-1)" in row.cause


def test_queries_and_keys_swapped_is_a_named_cause():
    row = mh.audit(C.keys_times_queries)["permutation_equivariant"]
    assert row.status == "fail" and "K Qᵀ" in row.cause


def test_the_review_fixes_to_the_texts():
    report = mh.audit(mh.broken_attention("inverted_mask"))
    assert "changing the blocked keys (k and v) changed the output" in report["mask_respected"].evidence
    assert report["cached_equals_full"].section.startswith("10 §2 Which keys may the new queries see?")
    assert report["cached_equals_full"].section == mh.BUG_ZOO["kv_cache_top_left"].section


# Correct implementations written the ways tutorials and libraries write them.
MORE_CORRECT = [
    ("einsum", lambda: C.einsum_attention, False),
    ("einsum causal", lambda: C.einsum_attention, True),
    ("renormalised", lambda: C.renormalised_attention, False),
    ("renormalised causal", lambda: C.renormalised_attention, True),
    ("loop over heads", lambda: C.build(C.LoopOverHeads), False),
    ("loop over heads causal", lambda: C.build(C.LoopOverHeads, causal=True), False),
    ("packed einsum, (out, weights)", lambda: C.build(C.PackedEinsum), False),
    ("cached, bottom-right", lambda: C.build(C.BottomRightCache), True),
    ("one head", lambda: C.build(mh.MultiHeadAttention, 16, 1), False),
    ("nn.MultiheadAttention dropout 0.2", lambda: C.build(nn.MultiheadAttention, 32, 4, dropout=0.2,
                                                          batch_first=True), False),
    ("nn.MultiheadAttention kdim, causal", lambda: C.build(nn.MultiheadAttention, 32, 4, kdim=32, vdim=32,
                                                           batch_first=True), True),
    ("mh.MultiHeadAttention train, dropout 0.3", lambda: C.build(mh.MultiHeadAttention, 32, 4, dropout=0.3).train(),
     False),
    ("query/key/value/out", lambda: C.build(C.QueryKeyValueOut), False),
    ("q_proj/.../out_proj", lambda: C.build(C.HuggingFaceOutProj), False),
    ("to_q/to_k/to_v/to_out", lambda: C.build(C.ToQKVOut), False),
    ("timm qkv + proj", lambda: C.build(C.TimmStyle), False),
    ("nanoGPT flash", lambda: C.build(C.NanoGPTFlash), True),
    ("Annotated Transformer", lambda: C.build(C.AnnotatedTransformer), False),
]


@pytest.mark.parametrize(("label", "build", "causal"), MORE_CORRECT, ids=[c[0] for c in MORE_CORRECT])
def test_more_correct_implementations_pass_fully_audited(label, build, causal):
    impl = build()
    report = mh.audit(impl, causal=causal)
    assert report.verdict == "passed", f"{label}:\n{report}"
    assert not any("⚠️" in r.evidence for r in report.rows), report
    if isinstance(impl, nn.Module):
        for name in ("rows_sum_to_one", "matches_reference", "heads_split_correctly", "scale_correct"):
            assert report[name].status == "pass" or (name == "heads_split_correctly" and report[name].evidence
                                                     == "not applicable: one head: nothing to split"), report


DTYPES = [torch.float64, torch.float16, torch.bfloat16]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("label", "build", "causal"), [
    ("mh.MultiHeadAttention", lambda: C.build(mh.MultiHeadAttention, 32, 4), False),
    ("mh.MultiHeadAttention causal", lambda: C.build(mh.MultiHeadAttention, 32, 4), True),
    ("nn.MultiheadAttention", lambda: C.build(nn.MultiheadAttention, 32, 4, batch_first=True), False),
    ("GQA", lambda: C.build(mh.GroupedQuerySelfAttention, 32, 4, 2), True),
    ("timm", lambda: C.build(C.TimmStyle), False),
    ("nanoGPT", lambda: C.build(C.NanoGPTFlash), True),
], ids=["mh.MHA", "mh.MHA causal", "nn.MHA", "GQA", "timm", "nanoGPT"])
def test_correct_modules_raise_no_alarm_in_their_own_dtype(label, build, causal, dtype):
    report = mh.audit(build().to(dtype), causal=causal)
    assert report.verdict == "passed", f"{label} in {dtype}:\n{report}"
    assert report["matches_reference"].status == "pass"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_bugs_are_still_named_in_every_dtype(dtype):
    for bug in ("sqrt_d_model", "softmax_dim"):
        report = mh.audit(C.build(C.QueryKeyValueOut, bug=bug).to(dtype))
        assert report.verdict == "failed", report
    assert "scale_correct" in mh.audit(mh.broken_attention("gpt_scale_by_n_embd").to(dtype), causal=True).failed


@pytest.fixture
def float64_default():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


@pytest.mark.usefixtures("float64_default")
def test_float64_as_the_default_dtype_raises_no_alarm():
    torch.manual_seed(0)
    for impl, causal in ((mh.MultiHeadAttention(32, 4), False), (mh.MultiHeadAttention(32, 4), True),
                         (F.scaled_dot_product_attention, False), (C.einsum_attention, True),
                         (mh.GroupedQuerySelfAttention(32, 4, 2), True)):
        report = mh.audit(impl, causal=causal)
        assert report.verdict == "passed", report
        assert report["scale_correct"].status == "pass", report


@pytest.mark.usefixtures("float64_default")
@pytest.mark.parametrize("name", list(mh.BUG_ZOO))
def test_the_zoo_under_float64_as_the_default_dtype(name):
    bug = mh.BUG_ZOO[name]
    assert bug.flags in mh.audit(mh.broken_attention(name), causal=bug.causal).failed
    assert mh.audit(mh.fixed_attention(name), causal=bug.causal).verdict == "passed"


@pytest.mark.usefixtures("float64_default")
def test_notebook_13s_folded_solutions_pass_under_float64():
    from notebook_solutions import all_exercises, run_solution

    solved = [ex for ex in all_exercises() if ex.notebook.name.startswith("13_")]
    assert len(solved) == 3
    for ex in solved:
        results, printed = run_solution(ex)
        assert all(results), printed


POSITION_AWARE = [
    ("RoPE module", lambda: C.build(C.RoPEAttention), False, "RoPE: interleaved pairs"),
    ("RoPE module causal", lambda: C.build(C.RoPEAttention, causal=True), True, "RoPE: interleaved pairs"),
    ("RoPE module, halves", lambda: C.build(C.RoPEAttention, halves=True), False, "RoPE: halves"),
    ("RoPE function causal", lambda: C.rope_attention, True, "RoPE: interleaved pairs"),
    ("ALiBi function", lambda: C.alibi_attention, False, "ALiBi: -m·|i - j|"),
    ("ALiBi function causal", lambda: C.alibi_attention, True, "ALiBi: -m·|i - j|"),
]


@pytest.mark.parametrize(("label", "build", "causal", "scheme"), POSITION_AWARE, ids=[c[0] for c in POSITION_AWARE])
def test_position_aware_attention_declared_is_audited_against_its_scheme(label, build, causal, scheme):
    report = mh.audit(build(), causal=causal, positions=True)
    assert report.verdict == "passed", f"{label}:\n{report}"
    assert report["matches_reference"].status == "pass" and scheme in report["matches_reference"].evidence
    assert "positions=True" in report["permutation_equivariant"].evidence or causal
    assert report["scale_correct"].status == "n/a" and "positions=True" in report["scale_correct"].evidence


@pytest.mark.parametrize(("label", "build", "causal", "scheme"), POSITION_AWARE, ids=[c[0] for c in POSITION_AWARE])
def test_position_aware_attention_undeclared_fails_with_a_cause_that_names_positions(label, build, causal, scheme):
    report = mh.audit(build(), causal=causal)
    assert "matches_reference" in report.failed and "positions=True" in report["matches_reference"].cause


def test_an_unknown_position_scheme_is_not_applicable_never_a_false_alarm():
    def learned_bias(query, key, value, attn_mask=None, is_causal=False):
        L = query.shape[-2]
        bias = 0.3 * torch.cos(torch.arange(L)[:, None] * 0.7 + torch.arange(L)[None, :])  # some relative scheme
        allowed = torch.ones(L, L, dtype=torch.bool).tril() if is_causal else torch.ones(L, L, dtype=torch.bool)
        if attn_mask is not None:
            allowed = allowed & attn_mask
        scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1]) + bias.to(query.dtype)
        return torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1).nan_to_num(0.0) @ value

    for causal in (False, True):
        report = mh.audit(learned_bias, causal=causal, positions=True)
        assert report.failed == [] and report["matches_reference"].status == "n/a", report
        assert "none of the position schemes" in report["matches_reference"].evidence


def test_positions_must_be_a_bool():
    with pytest.raises(TypeError, match="positions must be True or False"):
        mh.audit(F.scaled_dot_product_attention, positions="rope")


def test_the_verdicts_and_ok():
    assert set(_VERDICTS) == {"passed", "failed", "incomplete", "not attention", "non-deterministic"}
    assert mh.audit(F.scaled_dot_product_attention).verdict == "passed"
    assert "10 of 12 properties checked, all passed" in repr(mh.audit(F.scaled_dot_product_attention))


from _mha_helpers.lessons.audit import VERDICTS as _VERDICTS  # noqa: E402


def test_checker_13_1_rejects_a_fill_that_real_scores_can_beat(capsys):
    def with_fill(fill):
        def attention_c(query, key, value, attn_mask=None):
            scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
            if attn_mask is not None:
                scores = scores.masked_fill(~attn_mask, fill)
            return torch.softmax(scores, dim=-1).nan_to_num(0.0) @ value
        return attention_c

    for fill in (-1e4, -65504.0):
        passed, out = run(mh.check_fix_fill_value, with_fill(fill), capsys)
        assert not passed and "-2.5e5" in out and "torch.finfo(scores.dtype).min" in out, out
    assert run(mh.check_fix_fill_value, with_fill(float("-inf")), capsys)[0]


def test_checker_13_names_randomness_and_unreadable_modules(capsys):
    class Dropped(mh.ZooAttention):
        def forward(self, x, key_padding_mask=None):
            q, k, v = (self.split(W(x)) for W in (self.W_q, self.W_k, self.W_v))
            mask = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]
            return self.W_o(self.merge(F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.1)))

    passed, out = run(mh.check_fix_padding_heads, Dropped, capsys)
    assert not passed and "dropout left on" in out, out


@pytest.mark.parametrize(("label", "build", "why"), [
    ("mh.TransformerBlock", lambda: C.build(mh.TransformerBlock, 32, 4), "audit .self_attn itself"),
    ("nn.TransformerEncoderLayer", lambda: C.build(nn.TransformerEncoderLayer, 32, 4, batch_first=True),
     "audit .self_attn itself"),
    ("nn.MultiheadAttention add_zero_attn", lambda: C.build(nn.MultiheadAttention, 32, 4, add_zero_attn=True,
                                                            batch_first=True), "extra keys"),
    ("nn.MultiheadAttention add_bias_kv", lambda: C.build(nn.MultiheadAttention, 32, 4, add_bias_kv=True,
                                                          batch_first=True), "extra keys"),
])
def test_more_than_plain_attention_is_incomplete_never_a_false_alarm(label, build, why):
    """A block around an attention, or extra keys: the weights are found, but the reference would not fit."""
    report = mh.audit(build())
    assert report.verdict == "incomplete" and report.failed == [], f"{label}:\n{report}"
    assert why in report.unreadable[0]


def test_an_output_that_is_nan_on_every_call_is_not_called_random():
    """NaN == NaN is False: the determinism check must not read a NaN row as randomness."""
    def never_itself(query, key, value, is_causal=False):
        scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
        if is_causal:
            L, S = scores.shape[-2:]
            scores = scores.masked_fill(~torch.ones(L, S, dtype=torch.bool).tril(-1), float("-inf"))
        return torch.softmax(scores, dim=-1) @ value  # query 0 sees nothing: 0/0 = NaN

    report = mh.audit(never_itself, causal=True)
    assert report.verdict == "failed" and report["deterministic"].status == "pass", report
    assert "the output of query 0 is NaN, not v: it sees no key" in report["rows_sum_to_one"].evidence


def test_randomness_on_the_masked_path_only_is_found():
    class RandomWhenMasked(mh.ZooAttention):
        def forward(self, x, key_padding_mask=None):
            q, k, v = (self.split(W(x)) for W in (self.W_q, self.W_k, self.W_v))
            mask = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]
            p = 0.0 if mask is None else 0.2  # dropout only where a mask is given
            return self.W_o(self.merge(F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)))

    report = mh.audit(C.build(RandomWhenMasked))
    assert report.verdict == "non-deterministic" and "with a key_padding_mask" in report["deterministic"].evidence


def test_state_kept_between_calls_is_named_among_the_causes():
    class Remembers(mh.ZooAttention):
        def forward(self, x):
            q, k, v = (self.split(W(x)) for W in (self.W_q, self.W_k, self.W_v))
            if getattr(self, "past", None) is not None and self.past[0].shape == k.shape:
                k, v = k + 0.5 * self.past[0], v + 0.5 * self.past[1]  # leaks the previous call into this one
            self.past = (k, v)
            return self.W_o(self.merge(F.scaled_dot_product_attention(q, k, v)))

    report = mh.audit(C.build(Remembers))
    assert report.verdict == "non-deterministic" and "state kept from one call to the next" in report[
        "deterministic"].cause


def test_an_unknown_position_scheme_on_a_module_is_incomplete_with_a_reason_in_the_headline():
    class LearnedRelativeBias(mh.ZooAttention):  # T5-like: a learned bias per head and offset
        def __init__(self):
            super().__init__()
            self.rel = nn.Parameter(0.5 * torch.randn(4, 11))

        def forward(self, x):
            L = x.shape[1]
            q, k, v = (self.split(W(x)) for W in (self.W_q, self.W_k, self.W_v))
            offset = (torch.arange(L)[None, :] - torch.arange(L)[:, None]).clamp(-5, 5) + 5  # (L, S) in 0..10
            return self.W_o(self.merge(F.scaled_dot_product_attention(q, k, v, attn_mask=self.rel[:, offset])))

    module = C.build(LearnedRelativeBias)
    report = mh.audit(module, positions=True)
    assert report.failed == [] and report.verdict == "incomplete" and report.unreadable == [], report
    assert "too few apply to call it passed" in repr(report)
    assert mh.audit(module).failed == ["permutation_equivariant", "matches_reference"]
