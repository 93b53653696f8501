"""Shared fixtures of every lane: the reference Multi-Head Attention's test pairs, and one headless Chromium.

The fixtures hand out small functions rather than objects, so that a parametrized test can build exactly the
pair of modules it needs:

* ``mha_pair(...)`` -> ``(ours, theirs)``: an ``mha_helpers.MultiHeadAttention`` and a
  ``torch.nn.MultiheadAttention`` holding the same weights, copied in the direction asked for;
* ``grads_by_torch_name(ours)`` -> ``{torch parameter name: gradient}``: our W_q/W_k/W_v/W_o gradients laid out
  the way PyTorch stores its parameters (packed ``in_proj_weight`` or separate ``q/k/v_proj_weight``), so the two
  modules' gradients can be compared name by name;
* ``qkv(L, S, ...)`` -> ``(q, k, v)``: random queries, keys and values for the attention functions' tests;
* ``chromium``: one headless Chromium for the session, shared by the browser lane (JupyterLab) and the site lane.
"""

from __future__ import annotations

import shutil

import pytest
import torch
from torch import nn

import mha_helpers as mh


def _randomise(module: nn.Module, generator: torch.Generator) -> None:
    """Give every parameter random values (PyTorch initialises biases to zero, which would hide bias bugs)."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * 0.3)


def _mha_pair(
    embed_dim: int = 8,
    num_heads: int = 2,
    *,
    bias: bool = True,
    kdim: int | None = None,
    vdim: int | None = None,
    batch_first: bool = True,
    direction: str = "from_torch",
    dropout: float = 0.0,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> tuple[mh.MultiHeadAttention, nn.MultiheadAttention]:
    """Two modules with the same random weights; ``direction`` says which one is built first and copied."""
    gen = torch.Generator().manual_seed(seed)
    kwargs = {"dropout": dropout, "bias": bias, "kdim": kdim, "vdim": vdim, "batch_first": batch_first, "dtype": dtype}
    if direction == "from_torch":
        theirs = nn.MultiheadAttention(embed_dim, num_heads, **kwargs)
        _randomise(theirs, gen)
        ours = mh.MultiHeadAttention.from_torch(theirs)
    elif direction == "to_torch":
        ours = mh.MultiHeadAttention(embed_dim, num_heads, **kwargs)
        _randomise(ours, gen)
        theirs = ours.to_torch()
    else:  # pragma: no cover - a typo in a test
        raise ValueError(f"direction must be 'from_torch' or 'to_torch', got {direction!r}")
    return ours, theirs


def _grads_by_torch_name(ours: mh.MultiHeadAttention) -> dict[str, torch.Tensor]:
    """Our parameters' gradients under the names nn.MultiheadAttention gives the same numbers."""
    projections = (ours.W_q, ours.W_k, ours.W_v)
    grads: dict[str, torch.Tensor] = {}
    if ours.kdim == ours.embed_dim and ours.vdim == ours.embed_dim:
        grads["in_proj_weight"] = torch.cat([lin.weight.grad for lin in projections])  # three (E, E) -> (3E, E)
    else:
        for name, lin in zip(("q_proj_weight", "k_proj_weight", "v_proj_weight"), projections, strict=True):
            grads[name] = lin.weight.grad
    grads["out_proj.weight"] = ours.W_o.weight.grad
    if ours.has_bias:
        grads["in_proj_bias"] = torch.cat([lin.bias.grad for lin in projections])  # three (E,) -> (3E,)
        grads["out_proj.bias"] = ours.W_o.bias.grad
    return grads


def _random_qkv(
    L: int,
    S: int,
    *,
    lead: tuple[int, ...] = (2, 3),
    kv_lead: tuple[int, ...] | None = None,
    d_k: int = 8,
    d_v: int | None = None,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    generator: torch.Generator | None = None,
    requires_grad: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``q (*lead, L, d_k)``, ``k (*kv_lead, S, d_k)``, ``v (*kv_lead, S, d_v)``, standard normal, drawn in float32 in
    that order from ``generator`` (or one seeded with ``seed``) and cast to ``dtype``. ``kv_lead`` defaults to ``lead``
    (grouped-query tests give K and V fewer heads); ``d_v`` to ``d_k``."""
    gen = generator if generator is not None else torch.Generator().manual_seed(seed)
    kv_lead = lead if kv_lead is None else kv_lead
    shapes = ((*lead, L, d_k), (*kv_lead, S, d_k), (*kv_lead, S, d_k if d_v is None else d_v))
    return tuple(torch.randn(shape, generator=gen).to(dtype).requires_grad_(requires_grad) for shape in shapes)


@pytest.fixture(scope="session")  # stateless builders: any scope is safe, and hypothesis needs a wide one
def mha_pair():
    return _mha_pair


@pytest.fixture(scope="session")
def qkv():
    return _random_qkv


@pytest.fixture(scope="session")
def grads_by_torch_name():
    return _grads_by_torch_name


@pytest.fixture(scope="module")
def single_thread():
    """Run a module's tiny-tensor tests on one thread: threads only add overhead at these sizes, and the machine's
    cores are shared (with two threads under load the parity grid took twice as long)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


#: Chromium's switches for a headless run with no network and no first-run chores (see ../shared/FINDINGS.md).
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]


def chromium_path() -> str | None:
    """Debian's chromium (or chromium-browser / google-chrome) on PATH, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="session")
def chromium():
    """Headless Chromium driven by Playwright, for the browser and site lanes. Those lanes are asked for by name
    (``-m browser``, ``-m site``), so a missing browser is a failure that says how to install it, never a skip."""
    executable = chromium_path()
    if executable is None:
        pytest.fail("the browser and site lanes need Chromium on PATH: on Debian/Ubuntu `apt-get install chromium` "
                    "(Playwright's own browser download is not used)", pytrace=False)
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        playwright.stop()
