"""The reference implementation runs on every device present: the CPU always, CUDA or Apple's MPS when available.

CI has only a CPU, so there these tests cover the CPU and the MHA_DEVICE switch; on a machine with a GPU the same
tests check our modules against PyTorch's on that GPU.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import mha_helpers as mh

DEVICES = ["cpu"]
if torch.cuda.is_available():
    DEVICES.append("cuda")
if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
    DEVICES.append("mps")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("need_weights", [True, False])
def test_mha_matches_torch_on_device(device, need_weights):
    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(16, 4, batch_first=True, device=device)
    ours = mh.MultiHeadAttention.from_torch(theirs)
    assert ours.W_q.weight.device.type == device
    x = torch.randn(2, 5, 16, device=device, requires_grad=True)
    pad = mh.padding_mask([5, 3]).to(device)
    out_t, w_t = theirs(x, x, x, key_padding_mask=pad, need_weights=need_weights)
    x_ours = x.detach().clone().requires_grad_(True)
    out_o, w_o = ours(x_ours, key_padding_mask=pad, need_weights=need_weights)
    assert out_o.device.type == device
    torch.testing.assert_close(out_o, out_t, atol=1e-5, rtol=1e-5)
    if need_weights:
        torch.testing.assert_close(w_o, w_t, atol=1e-5, rtol=1e-5)
    out_t.sum().backward()
    out_o.sum().backward()
    torch.testing.assert_close(x_ours.grad, x.grad, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_online_softmax_attention_on_device(device):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 37, 8, generator=g).to(device) for _ in range(3))
    for causal in (False, True):
        expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
        got = mh.online_softmax_attention(q, k, v, block_size=16, is_causal=causal)
        assert got.device.type == device
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_device_switch_defaults_to_cpu(monkeypatch):
    monkeypatch.delenv("MHA_DEVICE", raising=False)
    assert mh.get_device() == torch.device("cpu")
    monkeypatch.setenv("MHA_DEVICE", "auto")
    assert mh.get_device().type == DEVICES[-1]


def test_device_switch_rejects_what_is_not_there(monkeypatch):
    monkeypatch.setenv("MHA_DEVICE", "tpu")
    with pytest.raises(ValueError, match="MHA_DEVICE='tpu'.*cpu, cuda, mps or auto"):
        mh.get_device()
    if not torch.cuda.is_available():
        monkeypatch.setenv("MHA_DEVICE", "cuda")
        with pytest.raises(ValueError, match="torch.cuda.is_available\\(\\) is False; use MHA_DEVICE=cpu or auto"):
            mh.get_device()
