"""Notebook 12's helpers (``_mha_helpers/induction.py``) and checkers: shapes, the task's guarantees, bad inputs,
and bit-identical training at 1 and 2 threads. Short trainings only (a few steps); the claims about fully trained
models are in tests/claims/test_claims_induction.py.
"""

from __future__ import annotations

import pytest
import torch
from checker_support import assert_hint, assert_passes, run, stub

import mha_helpers as mh
from _mha_helpers.experiments import induction


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- the task ----------------------------------------------------------------------------------------------


def test_repeated_sequences_shape_dtype_and_repeatability():
    tokens = mh.repeated_sequences(5, 24, 20, generator=_gen(3))
    assert tokens.shape == (5, 24) and tokens.dtype == torch.long
    assert int(tokens.min()) >= 0 and int(tokens.max()) < 20
    assert torch.equal(tokens, mh.repeated_sequences(5, 24, 20, generator=_gen(3)))
    assert not torch.equal(tokens, mh.repeated_sequences(5, 24, 20, generator=_gen(4)))


def test_every_segment_is_said_twice_with_different_tokens():
    tokens = mh.repeated_sequences(200, 24, 20, generator=_gen(1))
    low, high = mh.PERIOD_RANGE
    lengths_seen = set()
    for row in tokens.tolist():
        i = 0
        while i < len(row):
            # the segment starting at i: its length is where its first token comes back
            n = next((k for k in range(low, high + 1) if i + k < len(row) and row[i + k] == row[i]), None)
            if n is None:  # the cut at seq_len: the rest is new tokens only
                assert len(set(row[i:])) == len(row[i:])
                break
            lengths_seen.add(n)
            second = row[i + n: i + 2 * n]
            assert second == row[i: i + len(second)], row  # the second copy repeats the first
            i += 2 * n
        counts = torch.bincount(torch.tensor(row), minlength=20)
        assert int(counts.max()) <= 2, row  # every token at most twice: the two copies
    assert lengths_seen == set(range(low, high + 1)), "segment lengths must vary over the whole range"


def test_occurrence_masks_on_the_example():
    example = mh.induction_example()  # segments 5, 3, 4, each twice
    assert example.shape == (1, 24)
    first, repeated = mh.occurrence_masks(example)
    assert first.shape == repeated.shape == (1, 23)
    assert not bool((first & repeated).any())
    # guesses: the targets 1-4, 10-12 and 16-19 (new tokens); copies: the second copies, after their first token
    assert int(first.sum()) == 4 + 3 + 4 and int(repeated.sum()) == 4 + 2 + 3
    assert mh.induction_letters(example)[:10] == mh.induction_letters(example)[:5] * 2


# ---- the model and the scores ------------------------------------------------------------------------------


def test_model_shapes_causality_and_rows():
    torch.manual_seed(0)
    model = mh.InductionModel()
    tokens = mh.repeated_sequences(3, generator=_gen())
    with torch.no_grad():
        logits, maps = model(tokens, return_weights=True)
        fast = model(tokens)  # the fused-kernel path gives the same logits
    assert logits.shape == (3, 24, 20)
    assert maps.shape == (3, 2, 4, 24, 24)  # (batch, layers, heads, L, L)
    assert torch.allclose(maps.sum(-1), torch.ones(3, 2, 4, 24), atol=1e-5)
    assert float(maps.triu(1).abs().max()) == 0.0  # causal: no weight on later keys
    assert torch.allclose(fast, logits, atol=1e-5)
    assert isinstance(model.layers[0], mh.MultiHeadAttention) and model.num_heads == 4


def test_scores_shapes_and_range():
    torch.manual_seed(0)
    model = mh.InductionModel(num_layers=3, num_heads=2, d_model=16)
    tokens = mh.induction_test_set(32)
    for fn in (mh.previous_token_scores, mh.induction_scores):
        scores = fn(model, tokens)
        assert scores.shape == (3, 2)
        assert bool(((scores >= 0) & (scores <= 1 + 1e-6)).all())


def test_scores_of_perfect_maps_are_one():
    tokens = mh.induction_example()
    L = tokens.shape[1]
    previous = torch.zeros(1, 1, 1, L, L)
    previous[0, 0, 0, 0, 0] = 1.0
    previous[0, 0, 0, torch.arange(1, L), torch.arange(L - 1)] = 1.0  # every query on key i-1
    assert float(induction.scores_from_maps(previous, tokens, "previous")) == pytest.approx(1.0)
    target = induction._targets(tokens, "induction").float()  # (L, L): the key after the earlier copy
    perfect = target / target.sum(-1, keepdim=True).clamp(min=1)
    assert float(induction.scores_from_maps(perfect[None, None, None], tokens, "induction")) == pytest.approx(1.0)
    uniform = torch.ones(L, L).tril() / torch.arange(1, L + 1)[:, None]
    assert float(induction.scores_from_maps(uniform[None, None, None], tokens, "induction")) < 0.3


def test_induction_score_needs_something_that_repeats():
    torch.manual_seed(0)
    model = mh.InductionModel()
    no_repeats = torch.arange(20)[None, :]  # 20 different tokens
    with pytest.raises(ValueError, match="nothing repeats"):
        mh.induction_scores(model, no_repeats)


def test_circuit_heads_and_ablation_table_shape():
    torch.manual_seed(0)
    model = mh.InductionModel()
    heads = mh.circuit_heads(model)
    assert set(heads) == {"previous", "induction"} and all(0 <= h < 4 for h in heads.values())
    table = mh.induction_ablation(model)
    assert len(table) == 1 + 2 * 4 and set(table[None]) == {"first", "repeated"}


# ---- bad inputs ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, error, words", [
    ({"batch": 0}, ValueError, "batch"),
    ({"batch": "4"}, TypeError, "batch"),
    ({"seq_len": 10}, ValueError, "seq_len must be at least 16"),
    ({"vocab_size": 12}, ValueError, "vocab_size must be at least"),
    ({"generator": 3}, TypeError, "generator"),
])
def test_repeated_sequences_bad_inputs(kwargs, error, words):
    args = {"batch": 2, "seq_len": 24, "vocab_size": 20, **kwargs}
    with pytest.raises(error, match=words):
        mh.repeated_sequences(**args)


def test_model_bad_tokens():
    torch.manual_seed(0)
    model = mh.InductionModel()
    with pytest.raises(TypeError, match="torch.long"):
        model(torch.zeros(2, 5))
    with pytest.raises(TypeError, match="tokens"):
        model([[1, 2, 3]])
    with pytest.raises(ValueError, match="0..19"):
        model(torch.full((1, 5), 20))
    with pytest.raises(ValueError, match="seq_len=24"):
        model(torch.zeros(1, 30, dtype=torch.long))
    with pytest.raises(ValueError, match="divisible"):
        mh.InductionModel(d_model=30, num_heads=4)


@pytest.mark.parametrize("kwargs, error, words", [
    ({"seed": -1}, ValueError, "seed"),
    ({"lr": 2.0}, ValueError, "lr"),
    ({"steps": 0}, ValueError, "steps"),
    ({"progress": "yes"}, TypeError, "progress"),
    ({"num_layers": 1.5}, TypeError, "num_layers"),
])
def test_train_bad_inputs(kwargs, error, words):
    with pytest.raises(error, match=words):
        mh.train_induction_model(**kwargs)


def test_heads_off_bad_pairs():
    torch.manual_seed(0)
    model = mh.InductionModel()
    with pytest.raises(ValueError, match="layer, head"):
        mh.occurrence_losses(model, [(2, 0)])
    with pytest.raises(TypeError, match="layer, head"):  # an int where a (layer, head) pair belongs
        mh.occurrence_losses(model, [0])
    with pytest.raises(ValueError, match="heads must be head numbers"):
        mh.occurrence_losses(model, [(0, 9)])


# ---- training: determinism, history -----------------------------------------------------------------

SHORT = {"steps": 6, "batch_size": 8, "d_model": 16, "num_heads": 2, "snapshot_every": 3, "progress": False}


def _train_at(threads: int, seed: int):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return mh.train_induction_model(seed=seed, **SHORT)
    finally:
        torch.set_num_threads(before)


def test_training_is_bit_identical_at_one_and_two_threads():
    m1, h1 = _train_at(1, seed=5)
    m2, h2 = _train_at(2, seed=5)
    for (name, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert h1.train_loss == h2.train_loss and h1.repeated_loss == h2.repeated_loss
    assert torch.equal(h1.maps, h2.maps)
    m3, _ = _train_at(1, seed=6)
    assert not torch.equal(m1.unembed.weight, m3.unembed.weight)


def test_history_records_every_snapshot_and_leaves_the_callers_rng_alone():
    torch.manual_seed(42)
    state = torch.get_rng_state()
    model, history = mh.train_induction_model(seed=1, **SHORT)
    assert torch.equal(torch.get_rng_state(), state)
    assert history.steps == [0, 3, 6] and len(history.train_loss) == 6
    assert history.previous_token.shape == history.induction.shape == (3, 2, 2)
    assert history.maps.shape == (3, 2, 2, 24, 24) and history.example.shape == (1, 24)
    assert not model.training


def test_a_run_depends_only_on_its_arguments_not_on_earlier_calls():
    model, history = mh.train_induction_model(seed=2, **SHORT)
    with torch.no_grad():
        model.unembed.weight.zero_()  # what a student may do to the model they got back ...
    history.steps.append(99)
    again, history_again = mh.train_induction_model(seed=2, **SHORT)  # ... changes nothing for the next call
    assert float(again.unembed.weight.detach().abs().sum()) > 0 and 99 not in history_again.steps
    assert history_again.train_loss == history.train_loss


def test_figures_and_replay_build(monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model, history = mh.train_induction_model(seed=0, **SHORT)
    mh.plot_occurrence_losses(history, history)
    mh.plot_head_scores(history)
    mh.plot_circuit_maps(model)
    mh.plot_snapshot_strip(history, steps=[0, 6])
    with pytest.raises(ValueError, match="no snapshot"):
        mh.plot_snapshot_strip(history, steps=[5])
    replay = mh.TrainingReplay(history)
    first = replay.image.value
    replay.slider.value = 6
    assert replay.image.value != first and "step 6" in replay.readout.value
    assert repr(replay) == "TrainingReplay(3 snapshots, steps 0..6)"
    states = replay.states()  # one per snapshot, for the site: what the replay itself shows, in words too
    assert [c.options for c in states.controls] == [[0, 3, 6]] and states.start == {"step": 6}
    shown = states.view({"step": 3})
    assert shown["readout"] == replay.readout.value and shown["figure"].png == bytes(replay.image.value)
    assert "training step 3" in shown["figure"].alt and shown["status"].startswith("Step 3: loss on repeated")
    states.restore()
    assert replay.slider.value == 6
    with pytest.raises(ValueError, match="more than max_states=2"):
        replay.states(max_states=2)
    plt.close("all")


# ---- checkers ---------------------------------------------------------------------------------------------------


def _previous_reference(weights):
    i = torch.arange(1, weights.shape[-1])
    return weights[:, :, i, i - 1].mean(dim=(0, 2))


def _induction_reference(weights, tokens):
    L = tokens.shape[1]
    prev = torch.full_like(tokens, -1)
    prev[:, 1:] = tokens[:, :-1]
    target = (prev[:, None, :] == tokens[:, :, None]) & torch.ones(L, L, dtype=torch.bool).tril()
    has = target.any(dim=-1)
    share = (weights * target[:, None]).sum(dim=-1)
    return (share * has[:, None]).sum(dim=(0, 2)) / has.sum()


def test_previous_token_score_checker(capsys):
    assert_passes(mh.check_previous_token_score, _previous_reference, capsys)
    diagonal = lambda w: w.diagonal(dim1=-2, dim2=-1).mean(dim=(0, 2))  # noqa: E731
    assert_hint(mh.check_previous_token_score, diagonal, "diagonal", capsys)
    assert_hint(mh.check_previous_token_score, lambda w: _previous_reference(w)[None], "shape", capsys)
    passed, out = run(mh.check_previous_token_score, stub, capsys)
    assert not passed and out.startswith("⏳")


def test_induction_score_checker(capsys):
    assert_passes(mh.check_induction_score, _induction_reference, capsys)

    def duplicate(weights, tokens):  # the weight on the earlier copy of the token itself
        L = tokens.shape[1]
        same = (tokens[:, :, None] == tokens[:, None, :]) & torch.ones(L, L, dtype=torch.bool).tril(-1)
        has = same.any(-1)
        return ((weights * same[:, None]).sum(-1) * has[:, None]).sum(dim=(0, 2)) / has.sum()

    assert_hint(mh.check_induction_score, duplicate, "PREVIOUS token", capsys)

    def every_query(weights, tokens):
        L = tokens.shape[1]
        prev = torch.cat([torch.full_like(tokens[:, :1], -1), tokens[:, :-1]], dim=1)
        target = (prev[:, None, :] == tokens[:, :, None]) & torch.ones(L, L, dtype=torch.bool).tril()
        return (weights * target[:, None]).sum(-1).mean(dim=(0, 2))

    assert_hint(mh.check_induction_score, every_query, "only over the queries", capsys)


def test_head_to_switch_off_checker(capsys):
    assert_passes(mh.check_head_to_switch_off, lambda s: int(s[0].argmax()), capsys)
    assert_passes(mh.check_head_to_switch_off, lambda s: s[0].argmax(), capsys)  # a 0-d tensor is fine
    assert_hint(mh.check_head_to_switch_off, lambda s: int(s.argmax()) % s.shape[1], "layer 1", capsys)
    assert_hint(mh.check_head_to_switch_off, lambda s: int(s[0].argmin()), "LOWEST", capsys)
    assert_hint(mh.check_head_to_switch_off, lambda s: 1.5, "an int", capsys)
