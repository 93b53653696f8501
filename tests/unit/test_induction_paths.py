"""Notebook 12 §7's path-specific ablation (``_mha_helpers/experiments/induction_paths.py``): what each path cuts,
on small untrained models (the claims about trained models are in tests/claims/test_claims_induction.py)."""

from __future__ import annotations

import pytest
import torch

import mha_helpers as mh


def _model(num_layers: int = 2, seed: int = 0) -> mh.InductionModel:
    torch.manual_seed(seed)
    model = mh.InductionModel(num_layers=num_layers).eval()
    with torch.no_grad():
        for p in model.parameters():  # larger random weights than the default init: every path then matters
            p.mul_(1.5)
    return model


def _tokens() -> torch.Tensor:
    return mh.repeated_sequences(16, generator=torch.Generator().manual_seed(5))


def test_all_paths_at_once_is_switching_the_head_off():
    model, tokens = _model(), _tokens()
    with torch.no_grad():
        logits, maps = mh.path_ablated_forward(model, tokens, (0, 1), "all")
        with mh.heads_switched_off(model.layers[0], 1):
            expected, weights = model(tokens, return_weights=True)
    assert torch.allclose(logits, expected, atol=1e-4)
    assert torch.allclose(maps, weights[:, 1], atol=1e-4)  # layer 1's maps (batch, heads, L, L)
    cut = mh.path_ablation(model, (0, 1), "all", tokens=tokens)
    assert cut["repeated"] == pytest.approx(mh.occurrence_losses(model, [(0, 1)], tokens=tokens)["repeated"], abs=1e-5)


@pytest.mark.parametrize("path", ["queries", "keys", "values", "direct"])
def test_each_path_changes_the_output_and_only_the_maps_it_should(path):
    model, tokens = _model(), _tokens()
    with torch.no_grad():
        full_logits, full_maps = model(tokens, return_weights=True)
        logits, maps = mh.path_ablated_forward(model, tokens, (0, 2), path)
    assert not torch.allclose(logits, full_logits, atol=1e-4), "cutting one path must change the output"
    same_maps = torch.allclose(maps, full_maps[:, 1], atol=1e-4)  # fused and explicit kernels differ in float noise
    assert same_maps == (path in ("values", "direct")), "only queries and keys move layer 1's attention"


@pytest.mark.parametrize("path", mh.ABLATION_PATHS)
def test_a_head_that_writes_nothing_cuts_nothing(path):
    model, tokens = _model(), _tokens()
    attn = model.layers[0]
    with torch.no_grad():
        attn.W_o.weight[:, 0 * attn.head_dim:1 * attn.head_dim] = 0.0  # head 0 adds nothing to the stream
        logits, maps = mh.path_ablated_forward(model, tokens, (0, 0), path)
        assert torch.allclose(logits, model(tokens), atol=1e-5)


def test_three_layers_cut_the_input_of_the_next_layer_only():
    model, tokens = _model(num_layers=3), _tokens()
    result = mh.path_ablation(model, (1, 3), "keys", tokens=tokens)
    assert set(result) == {"first", "repeated", "induction"}
    assert result["induction"].shape == (model.num_heads,)
    with torch.no_grad():
        _, maps = mh.path_ablated_forward(model, tokens, (1, 3), "direct")
        assert torch.allclose(maps, model(tokens, return_weights=True)[1][:, 2], atol=1e-4)  # layer 2's maps


@pytest.mark.parametrize(
    "model, head, path, error, words",
    [
        ("not a model", (0, 1), "keys", TypeError, "InductionModel"),
        (None, [0, 1], "keys", TypeError, "(layer, head) pair"),
        (None, (0, True), "keys", TypeError, "(layer, head) pair"),
        (None, (1, 0), "keys", ValueError, "a later layer must read it"),
        (None, (0, 4), "keys", ValueError, "head in 0..3"),
        (None, (0, 1), "key", ValueError, "'keys'"),
    ],
)
def test_bad_inputs_get_clear_errors(model, head, path, error, words):
    with pytest.raises(error, match=None) as info:
        mh.path_ablation(_model() if model is None else model, head, path)
    assert words in str(info.value)
