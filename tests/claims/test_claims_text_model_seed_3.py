"""Notebook 14's claims, re-derived on a model trained with seed 3 at a reduced budget (see
``tests/text_model_seeds.py``; one file per seed so that the slow lane's workers share the training)."""

import pytest
from text_model_seeds import check_claims_over_training

pytestmark = pytest.mark.slow


def test_the_claims_hold_for_a_model_trained_with_seed_3():
    check_claims_over_training(seed=3)
