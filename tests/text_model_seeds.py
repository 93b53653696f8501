"""Notebook 14's claims re-derived over training seeds at a reduced budget (the slow lane): a fresh model trained
with the maker's recipe (``tests/make_text_model.py``) for ``TRAIN_STEPS`` steps instead of 2,200, then:

* switching every head off costs at least 0.5 bits per character;
* the head that looks most at the previous character, and the head whose removal costs most, are both in layer 0;
* no head is an attention sink (its share on the first position stays below 0.1);
* no induction: the second copy of a random string costs within half a bit of the first.

At this budget no head yet puts 0.3 of its weight on the previous character, so the notebook's NAMED
previous-character heads are claims about the stored model (``tests/claims/test_claims_text_model.py``). Each seed
has its own test file, so that ``--dist loadfile`` gives the slow lane's two workers one training each: a run takes
about 190 s on one thread (2-core machine, 2026-12).
"""

from __future__ import annotations

import functools

import make_text_model as mk
import torch

import mha_helpers as mh

TRAIN_STEPS = 400


@functools.cache
def _data() -> dict:
    return mk.prepare_data()


def check_claims_over_training(seed: int) -> None:
    """Train with ``seed`` at ``TRAIN_STEPS`` steps and assert the claims of this module's docstring."""
    data = _data()
    recipe = {**mk.RECIPE, "steps": TRAIN_STEPS, "warmup": TRAIN_STEPS // 10, "eval_every": TRAIN_STEPS,
              "threads": torch.get_num_threads()}  # the lane's own setting (1 per xdist worker): never 2 per worker
    model = mk.train(data, mk.CONFIG, recipe, seed, say=lambda line: None)[0]
    heldout = data["heldout"]
    full, cost = mh.head_ablation(model, heldout)
    off = mh.masked_bits(model, heldout, torch.zeros(model.num_layers, model.num_heads))
    scores = mh.head_pattern_scores(model, heldout)
    repeat = mh.repeated_string_losses(model, num_strings=50, length=30, seed=seed)
    print(f"seed {seed}: every head off +{off - full:.2f} bits; previous share by layer "
          f"{[round(float(v), 2) for v in scores['previous'].max(dim=1).values]}; most needed head "
          f"{divmod(int(cost.flatten().argmax()), model.num_heads)}; first-position share max "
          f"{float(scores['first'].max()):.3f}; repeats {repeat['first']:.2f} -> {repeat['second']:.2f}")
    assert off - full >= 0.5
    assert int(scores["previous"].flatten().argmax()) // model.num_heads == 0  # the most previous-looking head
    assert int(cost.flatten().argmax()) // model.num_heads == 0  # and the most needed one: layer 0
    assert float(scores["first"].max()) < 0.1
    assert abs(repeat["first"] - repeat["second"]) < 0.5
