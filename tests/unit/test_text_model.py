"""Notebook 14's character model (_mha_helpers/text_model.py, text_corpus.py): the stored model loads, reads and
writes text, keeps its promises about head masks and attention maps, is as good on the held-out docstrings as its
log says (and at most 2.2 bits per character), needs its heads, and refuses bad arguments with an error that names
them. The model is loaded, never trained, here: tests/make_text_model.py trains it.
"""

from __future__ import annotations

import json
import string
import sysconfig
from pathlib import Path

import pytest
import torch

from _mha_helpers.experiments import text_corpus as tc
from _mha_helpers.experiments import text_model as tm

LOG = tm.TEXT_MODEL_PATH.with_name("text_model_log.json")


@pytest.fixture(scope="module")
def model() -> tm.TextModel:
    return tm.load_text_model()


@pytest.fixture(scope="module")
def heldout(model) -> str:
    return tc.heldout_text(model.vocab)


@pytest.fixture(scope="module")
def heldout_bits(model, heldout) -> float:
    return tm.bits_per_char(model, heldout)


@pytest.fixture(scope="module")
def log() -> dict:
    return json.loads(LOG.read_text(encoding="utf-8"))


def test_stored_file_is_small_half_precision_and_safe_to_load():
    assert tm.TEXT_MODEL_PATH.stat().st_size <= 5_000_000
    stored = torch.load(tm.TEXT_MODEL_PATH, map_location="cpu", weights_only=True)
    assert {t.dtype for t in stored["state_dict"].values()} == {torch.float16}


def test_loads_in_eval_mode_in_float32(model):
    assert not model.training
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert sum(p.numel() for p in model.parameters()) <= 2_500_000
    assert (model.num_layers, model.num_heads, model.context) == (4, 8, 128)
    assert model.vocab_size == len(model.vocab) and model.head_dim * model.num_heads == model.d_model
    assert tm.load_text_model() is not model  # no hidden cache: each call builds a new model


def test_vocabulary_covers_printable_ascii_and_round_trips(model, heldout):
    assert set(string.printable) - set("\t\r\x0b\x0c") <= set(model.vocab)  # backtick and $ included
    text = heldout[:300]
    ids = model.encode(text)
    assert ids.dtype == torch.long and ids.shape == (300,)
    assert model.decode(ids) == text and model.decode(ids.tolist()) == text


def test_logits_and_maps_have_the_promised_shapes(model):
    ids = torch.stack([model.encode("def f(x):\n    return x"), model.encode("The quick brown fox jumps!")[:22]])
    assert model(ids).shape == (2, 22, model.vocab_size)
    maps = model.attention_maps(ids)
    assert maps.shape == (2, model.num_layers, model.num_heads, 22, 22)
    assert torch.allclose(maps.sum(dim=-1), torch.ones(2, model.num_layers, model.num_heads, 22), atol=1e-5)
    assert float(maps.triu(diagonal=1).abs().max()) == 0.0  # causal: nothing looks ahead


def test_full_context_is_accepted(model):
    ids = torch.zeros(1, model.context, dtype=torch.long)
    assert model(ids).shape == (1, model.context, model.vocab_size)


def test_all_ones_head_mask_gives_exactly_the_logits_of_no_mask(model):
    ids = model.encode("Return the sum of a and b.\n\n    >>> add(2, 3)\n    5")[None]
    assert torch.equal(model(ids, head_mask=torch.ones(model.num_layers, model.num_heads)), model(ids))


def test_one_head_off_changes_the_logits_and_stays_causal(model):
    ids = model.encode("Return a new list containing all items from the iterable in ascending order.")[None]
    mask = torch.ones(model.num_layers, model.num_heads)
    mask[1, 3] = 0.0
    full, ablated = model(ids), model(ids, head_mask=mask)
    assert not torch.allclose(full, ablated)
    prefix = model(ids[:, :10], head_mask=mask)
    assert torch.allclose(prefix, ablated[:, :10], atol=1e-5)  # causal: position i depends on ids[:, :i + 1] only


def test_heldout_quality_matches_the_log_and_the_bar(heldout_bits, log):
    assert heldout_bits <= 2.2
    assert heldout_bits == pytest.approx(log["final"]["heldout_bits"], abs=0.01)
    assert log["final"]["heldout_bits_full"] <= 2.2
    assert heldout_bits < log["baselines"]["pydoc_topics"]["4-gram"] - 0.5
    assert heldout_bits < log["baselines"]["training_split"]["4-gram"]


def test_switching_every_head_off_costs_half_a_bit(model, heldout, heldout_bits):
    off = torch.zeros(model.num_layers, model.num_heads)
    assert tm.bits_per_char(model, heldout, head_mask=off) >= heldout_bits + 0.5


def test_bits_per_char_is_the_mean_of_token_losses_on_a_short_text(model, heldout):
    text = heldout[:1000]
    losses = tm.token_losses(model, text)
    assert losses.shape == (999,) and bool((losses >= 0).all())
    assert tm.bits_per_char(model, text, max_windows=None) == pytest.approx(float(losses.mean()), abs=1e-5)
    assert tm.bits_per_char(model, text) == pytest.approx(float(losses.mean()), abs=1e-5)  # 15 windows < 256: all


def test_repeated_string_losses_match_the_log(model, log):
    measured = tm.repeated_string_losses(model)
    assert measured["first"] == pytest.approx(log["final"]["repeated_strings"]["first"], abs=0.02)
    assert measured["second"] == pytest.approx(log["final"]["repeated_strings"]["second"], abs=0.02)
    ids = tm.repeated_strings(model, num_strings=3, length=5)
    assert ids.shape == (3, 10) and torch.equal(ids[:, :5], ids[:, 5:])
    assert all(len(set(row.tolist())) == 5 for row in ids[:, :5])  # distinct letters: the copy is unambiguous


def test_training_files_leave_out_the_heldout_modules():
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = {p.relative_to(stdlib).as_posix() for p in tc.stdlib_source_files()}
    assert {"os.py", "email/message.py", "importlib/__init__.py"} <= files
    assert {"json/__init__.py", "_collections_abc.py", "importlib/metadata/_functools.py"}.isdisjoint(files)
    parts = {Path(part).stem.lstrip("_") for f in files for part in f.split("/")}
    assert parts.isdisjoint(tc.HELDOUT_MODULES)
    assert not any(f.startswith(("test/", "idlelib/", "tkinter/", "lib2to3/", "pydoc_data/")) for f in files)


def test_heldout_text_is_deterministic_and_in_the_vocabulary(model):
    docs = tc.heldout_docstrings(model.vocab)
    assert docs == tc.heldout_docstrings(model.vocab) and len(docs) == len(set(docs)) > 500
    assert set("".join(docs)) <= set(model.vocab)
    report = tc.heldout_report(model.vocab)
    assert report["docstrings"] - report["skipped_docstrings"] == len(docs)
    assert len(tc.heldout_docstrings()) == report["docstrings"]


def test_unigram_baseline_by_hand():
    # p(b) = (count 2 + 1) / (4 characters + 2 in the vocabulary) = 1/2: one bit.
    assert tc.ngram_bits_per_char("ab", 1, train_text="abab", vocab="ab") == pytest.approx(1.0)
    assert tc.ngram_bits_per_char("abab", 2, train_text="ababab", vocab="ab") < 0.5  # b always follows a


def _bad_calls(model):
    ids = model.encode("hello")[None]
    L, H = model.num_layers, model.num_heads
    return [
        ("ids", TypeError, lambda: model("hello")),
        ("ids", TypeError, lambda: model(ids.int())),
        ("ids", TypeError, lambda: model(ids.float())),
        ("ids", ValueError, lambda: model(ids[0])),
        ("ids", ValueError, lambda: model(ids[:, :0])),
        ("ids", ValueError, lambda: model(torch.full((1, 3), model.vocab_size))),
        ("ids", ValueError, lambda: model(torch.full((1, 3), -1))),
        ("at most context=128", ValueError, lambda: model(torch.zeros(1, 300, dtype=torch.long))),
        ("head_mask", TypeError, lambda: model(ids, head_mask=[[1.0] * H] * L)),
        ("head_mask", TypeError, lambda: model(ids, head_mask=torch.ones(L, H, dtype=torch.bool))),
        ("head_mask", TypeError, lambda: model(ids, head_mask=torch.ones(L, H, dtype=torch.long))),
        ("head_mask", ValueError, lambda: model(ids, head_mask=torch.ones(H, L))),
        ("head_mask", ValueError, lambda: model(ids, head_mask=torch.ones(H))),
        ("head_mask", ValueError, lambda: model(ids, head_mask=torch.full((L, H), float("nan")))),
        ("head_mask", ValueError, lambda: model.attention_maps(ids, head_mask=torch.ones(L, H + 1))),
        ("text", TypeError, lambda: model.encode(123)),
        ("text", ValueError, lambda: model.encode("")),
        ("'─' (U+2500) at position 2", ValueError, lambda: model.encode("ab─c")),
        ("ids", ValueError, lambda: model.decode(torch.tensor([model.vocab_size]))),
        ("ids", TypeError, lambda: model.decode("abc")),
        ("ids", TypeError, lambda: model.decode(ids)),
        ("text", TypeError, lambda: tm.bits_per_char(model, 5)),
        ("text", ValueError, lambda: tm.bits_per_char(model, "")),
        ("position 1", ValueError, lambda: tm.bits_per_char(model, "a─b")),
        ("model", TypeError, lambda: tm.bits_per_char("model", "abc")),
        ("max_windows", ValueError, lambda: tm.bits_per_char(model, "abc", max_windows=1)),
        ("max_windows", TypeError, lambda: tm.bits_per_char(model, "abc", max_windows=2.5)),
        ("head_mask", ValueError, lambda: tm.bits_per_char(model, "abc", head_mask=torch.ones(2, 2))),
        ("length", ValueError, lambda: tm.repeated_string_losses(model, length=100)),
        ("num_strings", ValueError, lambda: tm.repeated_string_losses(model, num_strings=0)),
        ("seed", TypeError, lambda: tm.repeated_strings(model, seed="0")),
        ("path", TypeError, lambda: tm.load_text_model(123)),
        ("vocab", ValueError, lambda: tm.TextModel("ba")),
        ("vocab", TypeError, lambda: tm.TextModel(list("ab"))),
        ("num_heads=3", ValueError, lambda: tm.TextModel("ab", num_heads=3)),
        ("dropout", ValueError, lambda: tm.TextModel("ab", dropout=1.5)),
        ("dropout", TypeError, lambda: tm.TextModel("ab", dropout="0.1")),
        ("vocab", TypeError, lambda: tc.heldout_docstrings(vocab=5)),
        ("n=0", ValueError, lambda: tc.ngram_bits_per_char("abc", 0, train_text="abc")),
        ("train_text", ValueError, lambda: tc.ngram_bits_per_char("abc", 2, train_text="")),
    ]


def test_bad_arguments_raise_errors_that_name_them(model):
    for name, error, call in _bad_calls(model):
        with pytest.raises(error) as caught:
            call()
        assert name in str(caught.value), f"{error.__name__} for {name!r} said: {caught.value}"


def test_a_missing_file_says_where_the_stored_model_is(tmp_path):
    with pytest.raises(FileNotFoundError, match="make_text_model.py"):
        tm.load_text_model(tmp_path / "none.pt")
