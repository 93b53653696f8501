"""mha_helpers: everything the Multi-Head Attention notebooks share.

The module reads top to bottom in the order of the series:

  0. Setup: device, seeding, argument checks
  1. Toy data and figures (used by every notebook)
  2. Exercise checkers: the shared machinery
  3. Q/K/V projections (notebook 01)
  4. Scaled dot-product attention (notebook 02)
  5. Masking (notebook 03)
  6. Splitting into heads (notebook 04)
  7. Concatenation, output projection and the whole module (notebook 05)
  8. Exploring heads: widgets (notebook 06)
  9. MHA inside a Transformer (notebook 07)
 10. What heads learn (notebook 08)
 11. What heads cost (notebook 09)

Shapes use the names of the maths: ``batch``, ``seq`` (``L`` for queries, ``S`` for keys),
``d_model`` (= ``embed_dim``), ``num_heads`` and ``head_dim = d_model // num_heads``.
Every tensor in this series is batch-first, ``(batch, seq, d_model)``, unless a docstring says otherwise.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

# =====================================================================================================
# 0. Setup: device, seeding, argument checks
# =====================================================================================================


def get_device() -> torch.device:
    """The device the heavy cells use: the CPU unless the environment variable ``MHA_DEVICE`` says otherwise.

    ``MHA_DEVICE=cuda`` or ``MHA_DEVICE=mps`` picks that accelerator, ``MHA_DEVICE=auto`` picks CUDA, then
    Apple's MPS, then the CPU. The stored notebook outputs (which nbval compares) are made on the CPU.
    """
    wanted = os.environ.get("MHA_DEVICE", "cpu").strip().lower()
    if wanted == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if wanted not in {"cpu", "cuda", "mps"}:
        raise ValueError(f"MHA_DEVICE={wanted!r} is not a device this series knows; use cpu, cuda, mps or auto")
    if wanted == "cuda" and not torch.cuda.is_available():
        raise ValueError("MHA_DEVICE='cuda' but torch.cuda.is_available() is False; use MHA_DEVICE=cpu or auto")
    if wanted == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("MHA_DEVICE='mps' but Apple's MPS is not available here; use MHA_DEVICE=cpu or auto")
    return torch.device(wanted)


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python's, NumPy's (if present) and torch's random generators; return a fresh seeded ``torch.Generator``."""
    import random

    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:  # pragma: no cover - numpy comes with matplotlib
        pass
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def valid_head_counts(d_model: int) -> list[int]:
    """The head counts that split ``d_model`` evenly: the divisors of ``d_model``, smallest first."""
    _check_positive_int("d_model", d_model)
    return [h for h in range(1, d_model + 1) if d_model % h == 0]


class _OneThread:
    """``with _OneThread():`` runs the block on one CPU thread, then restores the thread count.

    Two uses: float sums then always add up in the same order, so a training run gives bit-identical numbers whatever
    OMP_NUM_THREADS says (notebook 08); and tiny tensor maths never waits on torch's second thread, which on a busy
    CPU can stall a 6 x 6 softmax for ~50 ms (the widgets of notebook 06).
    """

    def __enter__(self) -> None:
        self.before = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc) -> None:
        torch.set_num_threads(self.before)


def _check_positive_int(name: str, value: object) -> None:
    """Raise a TypeError/ValueError naming ``name`` unless ``value`` is a positive int (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int, got {value!r} of type {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive int, got {name}={value}")


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r} of type {type(value).__name__}")


def _check_divisible(d_model: int, num_heads: int, d_name: str = "embed_dim") -> None:
    if d_model % num_heads != 0:
        counts = ", ".join(str(h) for h in valid_head_counts(d_model))
        raise ValueError(
            f"{d_name}={d_model} is not divisible by num_heads={num_heads}; valid head counts: {counts}"
        )


def _check_float_tensor(
    name: str, x: object, ranks: Sequence[int] | None = None, layout: str | None = None
) -> torch.Tensor:
    """Check that ``x`` is a floating-point tensor of one of the given ranks; return it.

    ``layout`` (e.g. ``"(batch, seq, d_model)"``) is added to the message for a wrong rank, to say what would work.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor, got dtype {x.dtype}; convert it with {name}.float()"
        )
    if ranks is not None and x.dim() not in ranks:
        allowed = " or ".join(f"{r}-D" for r in ranks)
        shape_hint = f", i.e. {layout}" if layout else ""
        raise ValueError(f"{name} must be {allowed}{shape_hint}, got a {x.dim()}-D tensor of shape {tuple(x.shape)}")
    return x


def _check_mask_dtype(name: str, mask: torch.Tensor, float_dtype: torch.dtype) -> None:
    """A mask is boolean or floating point (added to the scores); integers are ambiguous and refused."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (bool or float), got {type(mask).__name__}")
    if mask.dtype == torch.bool:
        return
    if not mask.is_floating_point():
        raise TypeError(
            f"{name} must be a bool or floating-point tensor, got dtype {mask.dtype}; "
            f"use {name}.bool() for a boolean mask or {name}.to({float_dtype}) for an additive one"
        )


# =====================================================================================================
# 1. Toy data and figures
# =====================================================================================================

#: The short sentence most notebooks attend over.
SENTENCE: list[str] = ["the", "cat", "sat", "on", "the", "mat"]


def sinusoidal_positions(seq_len: int, d_model: int) -> torch.Tensor:
    """The fixed sine/cosine position encodings of Vaswani et al. (2017), section 3.5.

    Returns ``(seq_len, d_model)``: even columns ``sin(pos / 10000^(2i/d_model))``, odd columns the cosine.
    """
    _check_positive_int("seq_len", seq_len)
    _check_positive_int("d_model", d_model)
    position = torch.arange(seq_len, dtype=torch.float32)[:, None]  # (seq_len, 1)
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)  # (ceil(d/2),)
    angles = position * freq  # (seq_len, ceil(d_model/2))
    pe = torch.zeros(seq_len, d_model)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles[:, : d_model // 2])
    return pe


def toy_embeddings(
    tokens: Sequence[str] = SENTENCE, d_model: int = 8, seed: int = 0, positions: bool = True
) -> torch.Tensor:
    """Deterministic embeddings for a list of tokens: ``(1, seq, d_model)``.

    Each distinct word gets a fixed random vector (the same word always gets the same vector, whatever the
    sentence), scaled to unit variance per entry; ``positions=True`` adds the sinusoidal position encodings,
    so the two "the"s of the default sentence differ.
    """
    if isinstance(tokens, str) or not all(isinstance(t, str) for t in tokens) or len(tokens) == 0:
        raise TypeError(f"tokens must be a non-empty list of strings, got {tokens!r}")
    _check_positive_int("d_model", d_model)
    rows = []
    for token in tokens:
        # A generator seeded by the word itself (and the seed): stable across sentences and machines.
        word_seed = seed * 1_000_003 + sum((i + 1) * ord(c) for i, c in enumerate(token))
        g = torch.Generator().manual_seed(word_seed)
        rows.append(torch.randn(d_model, generator=g))
    x = torch.stack(rows)  # (seq, d_model)
    if positions:
        x = x + sinusoidal_positions(len(tokens), d_model)
    return x.unsqueeze(0)  # (1, seq, d_model)


def _as_numpy_2d(weights: torch.Tensor, name: str = "weights"):
    if not isinstance(weights, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(weights).__name__}")
    w = weights.detach().float().cpu()
    while w.dim() > 2 and w.shape[0] == 1:
        w = w[0]  # drop leading singleton batch/head dims
    if w.dim() != 2:
        raise ValueError(f"{name} must be a 2-D (query, key) map, got shape {tuple(weights.shape)}")
    return w.numpy()


def plot_attention(
    weights: torch.Tensor,
    query_tokens: Sequence[str] | None = None,
    key_tokens: Sequence[str] | None = None,
    title: str = "Attention weights",
    ax=None,
    annot: bool | None = None,
    vmin: float | None = 0.0,
    vmax: float | None = 1.0,
    cbar: bool = True,
    cmap: str = "viridis",
    fmt: str = ".2f",
):
    """Draw one attention map ``(L, S)`` (leading size-1 dims are dropped) as a labelled seaborn heatmap.

    Rows are queries (the token that is attending), columns are keys (the token attended to). ``annot`` defaults
    to writing the numbers in the cells when the map is at most 8 x 8. Pass ``vmin=vmax=None`` for raw scores.
    Returns the matplotlib ``Axes``.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    w = _as_numpy_2d(weights)
    L, S = w.shape
    query_tokens = list(query_tokens) if query_tokens is not None else [str(i) for i in range(L)]
    key_tokens = list(key_tokens) if key_tokens is not None else list(query_tokens) if S == L else None
    key_tokens = key_tokens if key_tokens is not None else [str(j) for j in range(S)]
    if len(query_tokens) != L or len(key_tokens) != S:
        raise ValueError(
            f"the map is {L} x {S} but got {len(query_tokens)} query tokens and {len(key_tokens)} key tokens"
        )
    if ax is None:
        _, ax = plt.subplots(figsize=(0.55 * S + 2.2, 0.5 * L + 1.4))
    if annot is None:
        annot = L <= 8 and S <= 8
    sns.heatmap(
        w, ax=ax, vmin=vmin, vmax=vmax, cmap=cmap, annot=annot, fmt=fmt, cbar=cbar, square=False,
        xticklabels=key_tokens, yticklabels=query_tokens, annot_kws={"fontsize": 8},
        linewidths=0.5, linecolor="white",
    )
    ax.set_title(title)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    ax.tick_params(axis="x", labelrotation=45)
    ax.tick_params(axis="y", labelrotation=0)
    return ax


def plot_heads(
    weights: torch.Tensor,
    query_tokens: Sequence[str] | None = None,
    key_tokens: Sequence[str] | None = None,
    title: str = "Attention weights per head",
    max_cols: int = 4,
    annot: bool = False,
):
    """Draw per-head maps ``(num_heads, L, S)`` (or ``(1, num_heads, L, S)``) side by side; returns the Figure.

    All heads share one colour scale from 0 to 1, so their maps can be compared by eye.
    """
    import matplotlib.pyplot as plt

    if not isinstance(weights, torch.Tensor):
        raise TypeError(f"weights must be a torch.Tensor, got {type(weights).__name__}")
    w = weights.detach()
    if w.dim() == 4 and w.shape[0] == 1:
        w = w[0]
    if w.dim() != 3:
        raise ValueError(f"weights must be (num_heads, L, S) or (1, num_heads, L, S), got {tuple(weights.shape)}")
    num_heads = w.shape[0]
    cols = min(max_cols, num_heads)
    rows = math.ceil(num_heads / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols + 0.6, 2.8 * rows + 0.6), squeeze=False)
    for h in range(rows * cols):
        ax = axes[h // cols][h % cols]
        if h >= num_heads:
            ax.axis("off")
            continue
        plot_attention(w[h], query_tokens, key_tokens, title=f"head {h}", ax=ax, annot=annot, cbar=False)
        if h % cols:
            ax.set_ylabel("")
        if h // cols != rows - 1 and h + cols < num_heads:
            ax.set_xlabel("")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# =====================================================================================================
# 2. Exercise checkers: the shared machinery
# =====================================================================================================
# A checker runs a student's function on hidden cases and prints one line: a pass, a specific hint, or a
# friendly "not yet" while the function is still the stub (``raise NotImplementedError`` or returning None).
# It never raises, so a notebook whose exercises are not done yet still runs top to bottom.


class _NotYet(Exception):
    """Raised inside a checker when the student's function is still the stub."""


def _call_student(fn: Callable, *args, **kwargs):
    """Call the student's function; turn the stub's NotImplementedError or a None result into ``_NotYet``."""
    try:
        result = fn(*args, **kwargs)
    except NotImplementedError as exc:
        raise _NotYet() from exc
    if result is None:
        raise _NotYet()
    return result


class CheckResult:
    """What a checker returns: truthy when the exercise passed. It shows nothing in a notebook (the checker has
    already printed its verdict), so an exercise cell ends with the one line a student needs to read."""

    def __init__(self, passed: bool) -> None:
        self.passed = passed

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return f"CheckResult(passed={self.passed})"

    def _ipython_display_(self) -> None:  # IPython calls this instead of printing the repr: show nothing
        pass


def exercise_checker(title: str) -> Callable:
    """Decorator for checkers: the wrapped function returns None on success or a hint string on failure.

    The decorated checker prints ``✅ <title>: passed``, ``❌ <title>: <hint>`` or ``⏳ <title>: not yet ...`` and
    returns a :class:`CheckResult`, truthy only on success. Errors raised by the student's code become hints, never
    tracebacks.
    """

    def wrap(check: Callable[..., str | None]) -> Callable[..., CheckResult]:
        @functools.wraps(check)
        def run(*args, **kwargs) -> CheckResult:
            try:
                hint = check(*args, **kwargs)
            except _NotYet:
                print(f"⏳ {title}: not yet — replace the `raise NotImplementedError` with your code, then run again.")
                return CheckResult(False)
            except Exception as exc:  # the student's code raised: report it as a hint
                print(f"❌ {title}: your function raised {type(exc).__name__}: {exc}")
                return CheckResult(False)
            if hint:
                print(f"❌ {title}: {hint}")
                return CheckResult(False)
            print(f"✅ {title}: passed")
            return CheckResult(True)

        return run

    return wrap


def _matches(got: object, expected: torch.Tensor, atol: float = 1e-5) -> bool:
    """True when ``got`` is a tensor of ``expected``'s shape with the same values (``atol``, ``rtol=1e-4``; NaN never matches)."""
    return (
        isinstance(got, torch.Tensor)
        and tuple(got.shape) == tuple(expected.shape)
        and bool(torch.allclose(got.detach().double().cpu(), expected.detach().double().cpu(), atol=atol, rtol=1e-4))
    )


def _shape_hint(name: str, got: object, expected: Sequence[int]) -> str | None:
    """A hint when ``got`` is not a tensor of shape ``expected``; None when it is."""
    if not isinstance(got, torch.Tensor):
        return f"{name} should be a torch.Tensor, got {type(got).__name__}"
    if tuple(got.shape) != tuple(expected):
        return f"{name} has shape {tuple(got.shape)}, expected {tuple(expected)}"
    return None


# =====================================================================================================
# 3. Q/K/V projections (notebook 01)
# =====================================================================================================


def plot_soft_lookup(
    query: torch.Tensor,
    keys: torch.Tensor,
    weights: torch.Tensor,
    key_names: Sequence[str],
    axis_labels: Sequence[str] = ("feature 0", "feature 1"),
    title: str = "A soft look-up",
    ax=None,
):
    """Draw a soft look-up in 2-D: the query and every key as arrows from the origin; returns the ``Axes``.

    ``query`` is ``(2,)``, ``keys`` is ``(S, 2)`` and ``weights`` is ``(S,)`` (the softmax of the dot products).
    Each key's arrow is labelled with its name and weight and drawn thicker the more weight it gets, so the
    figure shows which keys the query "finds".
    """
    import matplotlib.pyplot as plt

    q = _check_float_tensor("query", query, ranks=(1,)).detach().float().cpu()
    k = _check_float_tensor("keys", keys, ranks=(2,)).detach().float().cpu()
    w = _check_float_tensor("weights", weights, ranks=(1,)).detach().float().cpu()
    if q.shape[0] != 2 or k.shape[1] != 2:
        raise ValueError(f"plot_soft_lookup draws 2-D vectors: got query {tuple(q.shape)} and keys {tuple(k.shape)}")
    if w.shape[0] != k.shape[0] or len(key_names) != k.shape[0]:
        raise ValueError(
            f"need one weight and one name per key: got {k.shape[0]} keys, {w.shape[0]} weights, "
            f"{len(key_names)} key_names"
        )
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 4.2))
    reach = float(torch.cat([k.abs().flatten(), q.abs()]).max())

    def arrow(vec: torch.Tensor, label: str, color: str, lw: float, **text_kw) -> None:
        tip = (float(vec[0]), float(vec[1]))
        ax.annotate("", xy=tip, xytext=(0, 0), arrowprops={"arrowstyle": "-|>", "color": color, "lw": lw})
        # The label sits just beyond the tip, on the arrow's line, so labels of different arrows do not collide.
        ux, uy = (vec / vec.norm()).tolist() if float(vec.norm()) > 0 else (0.0, 1.0)
        ha = "left" if ux > 0.3 else "right" if ux < -0.3 else "center"
        va = "bottom" if uy > 0.3 else "top" if uy < -0.3 else "center"
        gap = 0.06 * reach
        ax.text(tip[0] + gap * ux, tip[1] + gap * uy, label, color=color, ha=ha, va=va, **text_kw)

    for vec, name, weight in zip(k, key_names, w, strict=True):
        arrow(vec, f"{name}\nw = {float(weight):.2f}", "tab:blue", 1 + 5 * float(weight), fontsize=9)
    arrow(q, "query", "tab:red", 2.5, fontsize=10, fontweight="bold")
    low = min(0.0, float(torch.cat([k.flatten(), q]).min())) - 0.25 * reach  # room for labels centred on x = 0
    ax.set_xlim(low, 1.55 * reach)  # room on the right for labels of arrows that point right
    ax.set_ylim(low, 1.35 * reach)
    ax.set_aspect("equal")
    ax.grid(True, alpha=0.3)
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(title)
    return ax


def _reference_project_qkv(
    x: torch.Tensor, W_q: torch.Tensor, W_k: torch.Tensor, W_v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Q, K, V = x W_qᵀ, x W_kᵀ, x W_vᵀ: ``(batch, seq, d_model) -> (batch, seq, d_out)`` each (no bias)."""
    return x @ W_q.T, x @ W_k.T, x @ W_v.T  # (batch, seq, d_model) @ (d_model, d_out) -> (batch, seq, d_out)


@exercise_checker("Exercise 1.1: project_qkv")
def check_project_qkv(fn: Callable) -> str | None:
    """Check ``fn(x, W_q, W_k, W_v) -> (Q, K, V)`` on hidden cases.

    ``x`` is ``(batch, seq, d_model)``; each weight is ``(d_out, d_model)``, stored the way ``nn.Linear`` stores
    its ``.weight`` (out_features, in_features); each of Q, K, V is ``(batch, seq, d_out)`` = ``x @ W.T``.
    Prints a pass, a specific hint, or "not yet" for the stub; returns True on a pass.
    """
    g = torch.Generator().manual_seed(101)
    # (batch, seq, d_model, d_out): square weights first (a missing transpose still runs there), then a
    # rectangular one (d_out != d_model), which only the right orientation can multiply.
    for batch, seq, d_model, d_out in ((2, 5, 6, 6), (1, 4, 8, 8), (3, 4, 8, 4)):
        x = torch.randn(batch, seq, d_model, generator=g)
        weights = [torch.randn(d_out, d_model, generator=g) for _ in range(3)]
        expected = _reference_project_qkv(x, *weights)
        try:
            got = _call_student(fn, x.clone(), *(w.clone() for w in weights))
        except RuntimeError as exc:
            if d_out == d_model:
                raise
            return (
                f"your function works for square weights but raised for W_q of shape ({d_out}, {d_model}) "
                f"(out_features, in_features), as nn.Linear stores it: use x @ W_q.T. The error was: {exc}"
            )
        if isinstance(got, torch.Tensor) or not isinstance(got, (tuple, list)) or len(got) != 3:
            return f"return three tensors, `return Q, K, V`; got {type(got).__name__}" + (
                f" of length {len(got)}" if isinstance(got, (tuple, list)) else ""
            )
        for name, out, want, w in zip("QKV", got, expected, weights, strict=True):
            hint = _shape_hint(name, out, want.shape)
            if hint:
                return hint + f" for x of shape {tuple(x.shape)}: each projection maps d_model={d_model} -> {d_out}"
            out = out.detach().float()  # compare values whatever the student's dtype or autograd state
            if torch.allclose(out, want, atol=1e-5):
                continue
            if torch.allclose(out, x @ w, atol=1e-5):
                return (
                    f"{name} equals x @ W_{name.lower()} without the transpose: nn.Linear stores its weight as "
                    f"(out_features, in_features), so the projection is x @ W_{name.lower()}.T"
                )
            for other, other_want in zip("QKV", expected, strict=True):
                if other != name and torch.allclose(out, other_want, atol=1e-5):
                    return (
                        f"your {name} equals x @ W_{other.lower()}.T: {name} must use its own matrix W_{name.lower()} "
                        f"(and return them in the order Q, K, V)"
                    )
            return f"{name} has the right shape but wrong values; expected x @ W_{name.lower()}.T"
    return None


def _reference_soft_lookup(
    query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """weights = softmax(keys · query) ``(S,)`` and result = weights @ values ``(d_v,)``."""
    scores = keys @ query  # (S, d) @ (d,) -> (S,)
    weights = torch.softmax(scores, dim=-1)  # (S,), sums to 1
    return weights, weights @ values  # (S,) @ (S, d_v) -> (d_v,)


@exercise_checker("Exercise 1.2: soft_lookup")
def check_soft_lookup(fn: Callable) -> str | None:
    """Check ``fn(query, keys, values) -> (weights, result)`` on hidden cases.

    ``query`` is ``(d,)``, ``keys`` is ``(S, d)``, ``values`` is ``(S, d_v)``; ``weights`` must be
    ``softmax(keys @ query)`` of shape ``(S,)`` (plain dot products, no scaling yet) and ``result`` the blend
    ``weights @ values`` of shape ``(d_v,)``. Prints a pass, a specific hint, or "not yet"; returns True on a pass.
    """
    g = torch.Generator().manual_seed(202)
    for d, S, d_v in ((2, 3, 2), (4, 5, 3), (3, 6, 1)):
        query = torch.randn(d, generator=g) * 1.5
        keys = torch.randn(S, d, generator=g) * 1.5
        values = torch.randn(S, d_v, generator=g)
        want_w, want_r = _reference_soft_lookup(query, keys, values)
        got = _call_student(fn, query.clone(), keys.clone(), values.clone())
        if isinstance(got, torch.Tensor) or not isinstance(got, (tuple, list)) or len(got) != 2:
            return f"return two tensors, `return weights, result`; got {type(got).__name__}" + (
                f" of length {len(got)}" if isinstance(got, (tuple, list)) else ""
            )
        weights, result = got
        hint = _shape_hint("weights", weights, (S,))
        if hint:
            return hint + f" (one weight per key; keys has shape {tuple(keys.shape)})"
        weights = weights.detach().float()  # compare values whatever the student's dtype or autograd state
        scores = keys @ query  # (S,)
        if not torch.allclose(weights, want_w, atol=1e-5):
            if torch.allclose(weights, scores, atol=1e-5):
                return (
                    "your weights are the raw scores keys @ query: pass them through torch.softmax so they sum to 1"
                )
            if torch.allclose(weights, torch.softmax(scores / math.sqrt(d), dim=-1), atol=1e-5):
                return (
                    "your weights are softmax(scores / √d): the √d scaling comes in notebook 02; "
                    "here use softmax(keys @ query)"
                )
            if torch.allclose(weights, F.one_hot(scores.argmax(), S).to(weights.dtype)):
                return (
                    "your weights are one-hot (1 for the best key, 0 elsewhere): that is the hard look-up; "
                    "use torch.softmax for the soft one"
                )
            if torch.allclose(weights, torch.softmax(-scores, dim=-1), atol=1e-5):
                return (
                    "your weights favour the keys LEAST like the query: use softmax(+scores), not softmax(-scores)"
                )
            if not torch.allclose(weights.sum(), torch.tensor(1.0), atol=1e-4):
                return f"your weights sum to {float(weights.sum()):.3g}, not 1: did you apply torch.softmax?"
            return (
                "your weights sum to 1 but differ from softmax(keys @ query): score each key by its dot product "
                "with the query"
            )
        if isinstance(result, torch.Tensor) and tuple(result.shape) == (S, d_v):
            return (
                f"result has shape {(S, d_v)}: you weighted each value but did not add them up; "
                f"the blend is one vector of shape ({d_v},), e.g. weights @ values"
            )
        hint = _shape_hint("result", result, (d_v,))
        if hint:
            return hint + " (one blended value)"
        result = result.detach().float()
        if not torch.allclose(result, want_r, atol=1e-5):
            if d_v == d and torch.allclose(result, weights @ keys, atol=1e-5):
                return "your result blends the keys: keys are only for matching, blend the values (weights @ values)"
            return "your weights are right but result is not weights @ values (the weighted sum of the values)"
    return None


# =====================================================================================================
# 4. Scaled dot-product attention (notebook 02)
# =====================================================================================================


def _check_qkv(query: object, key: object, value: object) -> None:
    """Checks every attention function shares: query ``(..., L, d_k)``, key ``(..., S, d_k)``, value ``(..., S, d_v)``,
    all floating point, of one dtype and on one device."""
    for name, t in (("query", query), ("key", key), ("value", value)):
        _check_float_tensor(name, t)
        if t.dim() < 2:
            raise ValueError(f"{name} must have at least 2 dims (..., seq, features), got shape {tuple(t.shape)}")
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(
            f"query and key must have the same last dim d_k to be compared by a dot product, "
            f"got query {tuple(query.shape)} and key {tuple(key.shape)}"
        )
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(
            f"key and value must have the same length S (one value per key), "
            f"got key {tuple(key.shape)} and value {tuple(value.shape)}"
        )
    for name, t in (("key", key), ("value", value)):
        if t.dtype != query.dtype:
            raise TypeError(
                f"{name} has dtype {t.dtype} but query has {query.dtype}; convert it with {name}.to({query.dtype})"
            )
        if t.device != query.device:
            raise ValueError(f"{name} is on {t.device} but query is on {query.device}; move it with {name}.to(query.device)")


def _check_scale(scale: object) -> None:
    """``scale`` is None (meaning 1/√d_k) or a positive, finite number."""
    if scale is None:
        return
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(
            f"scale must be a positive float or None (meaning 1/sqrt(d_k)), got {scale!r} of type {type(scale).__name__}"
        )
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive finite number or None (meaning 1/sqrt(d_k)), got scale={scale!r}")


def scaled_dot_product_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    *,
    dropout_p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(Q Kᵀ / √d_k + mask) V, written out step by step; returns ``(output, weights)``.

    Shapes follow ``torch.nn.functional.scaled_dot_product_attention``:
    query ``(..., L, d_k)``, key ``(..., S, d_k)``, value ``(..., S, d_v)`` (``...`` is e.g. ``(batch, heads)``)
    -> output ``(..., L, d_v)`` and weights ``(..., L, S)``.

    Mask conventions are also F.scaled_dot_product_attention's: a **boolean** ``attn_mask`` is True where a query
    MAY attend (the opposite of ``nn.MultiheadAttention``!); a **float** mask is added to the scores. It broadcasts
    to ``(..., L, S)``. ``is_causal=True`` lets query ``i`` see keys ``0..i`` (top-left aligned when L != S), and may
    not be combined with ``attn_mask``. ``scale`` defaults to ``1/√d_k``.

    A query row whose keys are all masked gets all-zero weights and a zero output, as F.scaled_dot_product_attention
    gives in torch 2.13 (a plain softmax over only ``-inf`` gives NaN). ``dropout_p`` drops weights after the
    softmax (and rescales the rest by ``1/(1-p)``); pass it only in training. Differences from PyTorch's function:
    it also returns the weights, and bad arguments raise a ValueError/TypeError that says what would work.
    """
    _check_qkv(query, key, value)
    try:  # the leading dims (e.g. batch, heads) must match or broadcast, as in a batched matrix multiply
        torch.broadcast_shapes(query.shape[:-2], key.shape[:-2], value.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"query, key and value must have the same leading dims (..., e.g. batch and heads) or dims of size 1, "
            f"got query {tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}"
        ) from None
    _check_bool("is_causal", is_causal)
    if is_causal and attn_mask is not None:
        raise ValueError(
            "pass either attn_mask or is_causal=True, not both (as F.scaled_dot_product_attention); for a causal mask "
            "combined with another one, pass attn_mask=causal_mask(L, S) & your_mask"
        )
    _check_scale(scale)
    if isinstance(dropout_p, bool) or not isinstance(dropout_p, (int, float)):
        raise TypeError(f"dropout_p must be a float in [0, 1), got {dropout_p!r} of type {type(dropout_p).__name__}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(
            f"dropout_p must be in [0, 1) (a probability; 1 would drop everything), got dropout_p={dropout_p!r}"
        )

    L, S, d_k = query.shape[-2], key.shape[-2], query.shape[-1]
    scale = 1.0 / math.sqrt(d_k) if scale is None else float(scale)

    scores = (query @ key.transpose(-2, -1)) * scale  # (..., L, d_k) @ (..., d_k, S) -> (..., L, S)

    if is_causal:
        attn_mask = causal_mask(L, S, device=query.device)  # (L, S), True = may attend
    if attn_mask is not None:
        _check_mask_dtype("attn_mask", attn_mask, query.dtype)
        try:  # the mask must broadcast TO the scores' shape, never grow it
            fits = torch.broadcast_shapes(attn_mask.shape, scores.shape) == scores.shape
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(
                f"attn_mask of shape {tuple(attn_mask.shape)} does not broadcast to the scores' shape "
                f"{tuple(scores.shape)} (..., L, S); a 2-D (L, S) = ({L}, {S}) mask always does"
            )
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))  # True = may attend, so block where False
        else:
            scores = scores + attn_mask.to(scores.dtype)  # additive: 0 keeps a score, -inf removes it

    # A row with every key blocked would be softmax([-inf, ..., -inf]) = 0/0 = NaN. Give it zeros instead:
    # replace its scores by 0 (any finite number would do), take the softmax, then zero the row.
    dead = torch.isneginf(scores).all(dim=-1, keepdim=True)  # (..., L, 1)
    any_dead = bool(dead.any())
    if any_dead:
        scores = scores.masked_fill(dead, 0.0)
    weights = torch.softmax(scores, dim=-1)  # (..., L, S); each live row sums to 1
    if any_dead:
        weights = weights.masked_fill(dead, 0.0)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    output = weights @ value  # (..., L, S) @ (..., S, d_v) -> (..., L, d_v)
    return output, weights


# ---- notebook 02: exercise checkers -----------------------------------------------------------------


def _pair_hint(got: object, names: str) -> str | None:
    """A hint unless ``got`` is a tuple/list of two results (e.g. ``output, weights``)."""
    if isinstance(got, torch.Tensor) or not isinstance(got, (tuple, list)) or len(got) != 2:
        length = f" of length {len(got)}" if isinstance(got, (tuple, list)) else ""
        return f"return two tensors, `return {names}`; got {type(got).__name__}{length}"
    return None


@exercise_checker("Exercise 2.1: a softmax that does not overflow")
def check_softmax(fn: Callable[[torch.Tensor], torch.Tensor]) -> str | None:
    """Check ``fn(scores) -> weights``: the softmax over the last dim, ``(..., S) -> (..., S)``.

    It must also work for large scores (``exp(1000)`` is ``inf`` in float32). Prints a pass, a specific hint
    (wrong dim, overflow, one maximum for the whole tensor instead of one per row) or "not yet"; returns True on a pass.
    """
    g = torch.Generator().manual_seed(201)
    cases = [
        torch.randn(4, 6, generator=g) * 2,  # 4 rows of 6 scores: rows != columns, so a wrong dim shows
        torch.randn(2, 3, 5, generator=g) * 3,  # (batch, L, S): leading dims must be kept
        torch.tensor([[1000.0, 1001.0, 1002.0], [-3.0, 0.0, 3.0]]),  # exp(1000) = inf in float32
        torch.tensor([[1000.0, 1001.0, 1002.0], [-1000.0, -999.0, -998.0]]),  # rows far apart
    ]
    for scores in cases:
        expected = torch.softmax(scores, dim=-1)
        got = _call_student(fn, scores.clone())
        hint = _shape_hint("your weights", got, expected.shape)
        if hint:
            return hint + f" for scores of shape {tuple(scores.shape)}: softmax keeps the shape"
        bad_rows = ~torch.isfinite(got.detach()).all(dim=-1)  # (...,): rows with a NaN or inf
        if bool(bad_rows.any()):
            row_max = scores.max(dim=-1).values  # (...,)
            if bool((row_max[bad_rows] > 80).any()):
                return (
                    "NaN or inf for large scores such as [1000, 1001, 1002]: exp(1000) overflows to inf and "
                    "inf / inf = NaN. Subtract each row's maximum before exp: it does not change the result"
                )
            return (
                "NaN or inf in a row of ordinary scores when another row holds large ones: you subtracted ONE "
                "maximum for the whole tensor; subtract each row's own, scores.max(dim=-1, keepdim=True).values"
            )
        if _matches(got, expected):
            continue
        ones = torch.ones(expected.shape[:-1], dtype=torch.float64)
        if not torch.allclose(got.detach().double().sum(dim=-1), ones, atol=1e-4):
            if scores.dim() >= 2 and torch.allclose(got.detach().double().sum(dim=-2), torch.ones_like(
                    got.detach().double().sum(dim=-2)), atol=1e-4):
                return "softmax over the wrong dim: rows do not sum to 1 (your columns do); normalise over dim=-1"
            first = float(got.detach().double().sum(dim=-1).flatten()[0])
            return (
                f"rows do not sum to 1 (the first sums to {first:.3g}): divide exp(scores) by its row sum, "
                "taken with dim=-1, keepdim=True"
            )
        return "each row sums to 1 but the values differ from softmax: weight_j = exp(s_j) / Σ_k exp(s_k)"
    return None


@exercise_checker("Exercise 2.2: scaled dot-product attention")
def check_attention(fn: Callable) -> str | None:
    """Check ``fn(query, key, value) -> (output, weights)`` against :func:`scaled_dot_product_attention`.

    query ``(..., L, d_k)``, key ``(..., S, d_k)``, value ``(..., S, d_v)`` -> output ``(..., L, d_v)`` and
    weights ``(..., L, S)`` = softmax(Q Kᵀ / √d_k). Prints a pass, a specific hint (missing or wrong scale,
    softmax over the wrong dim, K Qᵀ instead of Q Kᵀ, ...) or "not yet"; returns True on a pass.
    """
    g = torch.Generator().manual_seed(202)
    # L, S, d_k and d_v all differ, so a swapped axis shows in a shape; the second case is (batch, heads, ...).
    for lead, L, S, d_k, d_v in (((2,), 3, 5, 16, 4), ((2, 3), 4, 6, 8, 5)):
        query = torch.randn(*lead, L, d_k, generator=g)
        key = torch.randn(*lead, S, d_k, generator=g)
        value = torch.randn(*lead, S, d_v, generator=g)
        want_out, want_w = scaled_dot_product_attention(query, key, value)
        got = _call_student(fn, query.clone(), key.clone(), value.clone())
        hint = _pair_hint(got, "output, weights")
        if hint:
            return hint
        output, weights = got
        if isinstance(weights, torch.Tensor) and tuple(weights.shape) == (*lead, S, L):
            return (
                f"weights have shape {tuple(weights.shape)} = (..., S, L); expected (..., L, S) = "
                f"{tuple(want_w.shape)}, one row per query: compute query @ key.transpose(-2, -1), not key @ queryᵀ"
            )
        hint = _shape_hint("weights", weights, want_w.shape)
        if hint:
            return hint + " = (..., L, S): one row per query, one column per key"
        w = weights.detach().double()
        if not torch.allclose(w.sum(dim=-1), torch.ones(w.shape[:-1], dtype=torch.float64), atol=1e-4):
            if torch.allclose(w.sum(dim=-2), torch.ones_like(w.sum(dim=-2)), atol=1e-4):
                return "softmax over the wrong dim: rows do not sum to 1 (your columns do); use softmax(scores, dim=-1)"
            return f"rows of weights do not sum to 1 (the first sums to {float(w.sum(dim=-1).flatten()[0]):.3g})"
        scores = query @ key.transpose(-2, -1)  # (..., L, d_k) @ (..., d_k, S) -> (..., L, S)
        for factor, wrong in (
            (1.0, "missing the 1/√d_k scale: your weights are softmax(Q Kᵀ); divide the scores by math.sqrt(d_k)"),
            (1.0 / d_k, "you divided the scores by d_k; divide by its square root, math.sqrt(d_k)"),
            (1.0 / math.sqrt(d_v), f"you scaled by √d_v (d_v={d_v}, the value width); d_k={d_k} is query.shape[-1]"),
            (math.sqrt(d_k), "you multiplied the scores by √d_k; divide by it instead"),
        ):
            if _matches(weights, torch.softmax(scores * factor, dim=-1)):
                return wrong
        if not _matches(weights, want_w):
            return "each row sums to 1 but the weights differ from softmax(Q Kᵀ / √d_k)"
        hint = _shape_hint("output", output, want_out.shape)
        if hint:
            return hint + " = (..., L, d_v): one output per query, as wide as a value"
        if not _matches(output, want_out):
            return "the weights are right but the output is not weights @ value"
    return None


# =====================================================================================================
# 5. Masking (notebook 03)
# =====================================================================================================


def causal_mask(seq_len: int, key_len: int | None = None, device: torch.device | str | None = None) -> torch.Tensor:
    """The causal ("look only at the past") mask in F.scaled_dot_product_attention's convention.

    Returns a boolean ``(seq_len, key_len)`` tensor (``key_len`` defaults to ``seq_len``) that is **True where
    query i MAY attend to key j**, i.e. j <= i (lower triangle, top-left aligned as torch's ``is_causal``).
    For ``nn.MultiheadAttention`` (True = blocked) pass ``~causal_mask(n)`` instead.
    """
    _check_positive_int("seq_len", seq_len)
    key_len = seq_len if key_len is None else key_len
    _check_positive_int("key_len", key_len)
    return torch.ones(seq_len, key_len, dtype=torch.bool, device=device).tril()


def padding_mask(lengths: Sequence[int] | torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """The key padding mask for sentences of the given lengths, in ``nn.MultiheadAttention``'s convention.

    Returns a boolean ``(batch, max_len)`` tensor that is **True at padding positions** (the keys no query may
    look at), as ``key_padding_mask`` expects. ``max_len`` defaults to the longest length.
    """
    given = lengths
    try:
        lengths = torch.as_tensor(lengths)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"lengths must be a non-empty 1-D list of ints, e.g. [3, 1, 2], got {given!r}") from None
    if lengths.dim() != 1 or lengths.numel() == 0 or lengths.dtype.is_floating_point or lengths.dtype.is_complex or (
        lengths.dtype == torch.bool
    ):
        raise TypeError(f"lengths must be a non-empty 1-D list of ints, e.g. [3, 1, 2], got {lengths.tolist()!r}")
    if bool((lengths < 0).any()):
        raise ValueError(f"lengths must be >= 0 (a number of real tokens), got {lengths.tolist()}")
    longest = int(lengths.max())
    if max_len is None:
        if longest == 0:
            raise ValueError(f"every length is 0 (lengths={lengths.tolist()}); pass max_len, the padded length")
        max_len = longest
    _check_positive_int("max_len", max_len)
    if max_len < longest:
        raise ValueError(
            f"max_len={max_len} is shorter than the longest sentence ({longest}); use max_len >= {longest} or None"
        )
    return torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]  # (batch, max_len)


# ---- notebook 03: exercise checkers -----------------------------------------------------------------


@exercise_checker("Exercise 3.1: causal_mask")
def check_causal_mask(fn: Callable[[int], torch.Tensor]) -> str | None:
    """Check ``fn(seq_len) -> mask``: a boolean ``(seq_len, seq_len)`` tensor, True where query i MAY attend to
    key j (j <= i), as :func:`causal_mask` and ``F.scaled_dot_product_attention`` want it.

    Prints a pass, a specific hint (wrong way round, upper vs lower triangle, diagonal missing, a float mask) or
    "not yet"; returns True on a pass.
    """
    for n in (5, 8, 1):
        want = causal_mask(n)  # (n, n), True = may attend
        got = _call_student(fn, n)
        hint = _shape_hint("your mask", got, (n, n))
        if hint:
            return hint + f" = (seq_len, seq_len) for seq_len={n}"
        if got.dtype != torch.bool:
            if got.is_floating_point() and torch.equal(got.detach(), want.to(got.dtype)):
                return (
                    "your mask is a float tensor of 1s and 0s: F.scaled_dot_product_attention ADDS a float mask to "
                    "the scores, so it would block nothing; return a boolean tensor (dtype=torch.bool)"
                )
            if got.is_floating_point() and torch.equal(torch.isneginf(got.detach()), ~want):
                return (
                    "you returned an additive float mask (0 = allowed, -inf = blocked): that works when added to "
                    "the scores, but this exercise asks for the boolean one, True where a query may attend"
                )
            return f"return a boolean tensor (dtype=torch.bool), got dtype {got.dtype}"
        if torch.equal(got, want):
            continue
        if torch.equal(got, ~want):
            return (
                "your mask is the wrong way round: True should mean MAY attend for F.scaled_dot_product_attention "
                "(nn.MultiheadAttention reads True as blocked, the opposite); negate it with ~"
            )
        if torch.equal(got, want.T):
            return (
                "upper vs lower triangle: your mask lets each token see the FUTURE; row i (the query) may see the "
                "columns j <= i, which is the lower triangle (torch.tril)"
            )
        if torch.equal(got, want.tril(-1)):
            return (
                "the diagonal is missing: each token may attend to itself (j <= i, not j < i); without it the first "
                "token has nothing at all to look at"
            )
        i, j = (int(t) for t in (got != want).nonzero()[0])
        return (
            f"your mask differs from the causal mask in {int((got != want).sum())} places, e.g. query {i}, key {j} "
            f"is {bool(got[i, j])} but should be {bool(want[i, j])} (True where j <= i)"
        )
    return None


@exercise_checker("Exercise 3.2: key_padding_mask -> attn_mask")
def check_padding_to_attn_mask(fn: Callable[[torch.Tensor], torch.Tensor]) -> str | None:
    """Check ``fn(key_padding_mask) -> attn_mask``: turn nn.MultiheadAttention's ``key_padding_mask``
    ``(batch, S)`` (True = padding, blocked) into a boolean mask for ``F.scaled_dot_product_attention`` that
    broadcasts against scores ``(batch, L, S)``: shape ``(batch, 1, S)``, True where a query MAY attend.

    Prints a pass, a specific hint (wrong way round, masking queries instead of keys, a shape that does not
    broadcast per sentence) or "not yet"; returns True on a pass.
    """
    for lengths, S in (([5, 2, 3], 5), ([4, 6, 1, 2], 6)):
        kpm = padding_mask(lengths, S)  # (batch, S), True = padding
        batch = len(lengths)
        want = ~kpm[:, None, :]  # (batch, S) -> (batch, 1, S), True = may attend
        got = _call_student(fn, kpm.clone())
        if not isinstance(got, torch.Tensor):
            return f"return a torch.Tensor, got {type(got).__name__}"
        if got.dtype != torch.bool:
            return f"return a boolean tensor (a float mask would be ADDED to the scores), got dtype {got.dtype}"
        shape = tuple(got.shape)
        if shape == (batch, S):
            return (
                f"your mask has shape {shape} = (batch, S): it lines up with the LAST two dims of the scores "
                "(L, S), so sentence b's mask would land on query b. Add a query dim, mask[:, None, :] -> "
                f"(batch, 1, S) = {tuple(want.shape)}, which broadcasts over every query"
            )
        if shape == (batch, S, 1):
            return (
                f"your mask has shape {shape} = (batch, S, 1): that blocks QUERIES (rows); padding must block KEYS "
                f"(columns): use mask[:, None, :] -> (batch, 1, S) = {tuple(want.shape)}"
            )
        hint = _shape_hint("your mask", got, want.shape)
        if hint:
            return hint + " = (batch, 1, S), so that it broadcasts against the scores (batch, L, S)"
        if torch.equal(got, want):
            continue
        if torch.equal(got, ~want):
            return (
                "your mask is the wrong way round: key_padding_mask is True at padding (blocked), but "
                "F.scaled_dot_product_attention's boolean mask is True where a query MAY attend; negate it with ~"
            )
        return f"right shape, wrong values: for lengths {lengths} key j of sentence b is allowed iff j < lengths[b]"
    return None


@exercise_checker("Exercise 3.3: masked attention without NaN")
def check_masked_attention(fn: Callable) -> str | None:
    """Check ``fn(query, key, value, mask) -> (output, weights)``: softmax(Q Kᵀ/√d_k) V with a boolean ``mask``
    (broadcastable to ``(..., L, S)``, True = MAY attend); a query whose keys are all masked gets zero weights and a
    zero output, never NaN (as :func:`scaled_dot_product_attention`).

    Prints a pass, a specific hint (NaN in fully masked rows, uniform weights from -1e9, mask the wrong way round,
    missing scale) or "not yet"; returns True on a pass.
    """
    g = torch.Generator().manual_seed(303)
    # Case 1: a left-padded batch under a causal mask; sentence 1 has 2 pads at the start, so its queries 0 and 1
    # (both padding) see no key at all. Case 2: (batch, heads) dims and a random mask with one dead row.
    L = 5
    real = torch.arange(L)[None, :] >= torch.tensor([0, 2])[:, None]  # (batch=2, S=L), True = a real token
    mask1 = causal_mask(L)[None] & real[:, None, :]  # (2, L, L), True = may attend
    mask2 = torch.rand(2, 3, 4, 6, generator=g) > 0.4  # (batch, heads, L, S)
    mask2[:, :, :, 0] = True
    mask2[1, 2, 3] = False  # one query with no key at all
    for mask, d_k, d_v in ((mask1, 8, 3), (mask2, 4, 2)):
        L, S = mask.shape[-2], mask.shape[-1]
        query = torch.randn(*mask.shape[:-2], L, d_k, generator=g) * 1.5
        key = torch.randn(*mask.shape[:-2], S, d_k, generator=g) * 1.5
        value = torch.randn(*mask.shape[:-2], S, d_v, generator=g)
        want_out, want_w = scaled_dot_product_attention(query, key, value, attn_mask=mask)
        got = _call_student(fn, query.clone(), key.clone(), value.clone(), mask.clone())
        hint = _pair_hint(got, "output, weights")
        if hint:
            return hint
        output, weights = got
        hint = _shape_hint("weights", weights, want_w.shape) or _shape_hint("output", output, want_out.shape)
        if hint:
            return hint
        w = weights.detach().double()
        dead = ~mask.any(dim=-1)  # (..., L): queries with no key to look at
        full = mask.all(dim=-1)  # (..., L): queries that may look at every key
        nan_rows = torch.isnan(w).any(dim=-1) | torch.isnan(output.detach()).any(dim=-1)  # (..., L)
        if bool(nan_rows.any()):
            if bool((nan_rows & dead).any()):
                idx = tuple(int(t) for t in (nan_rows & dead).nonzero()[0])
                return (
                    f"NaN in a row where every key is masked (query {idx[-1]} at batch index {idx[:-1]}): softmax over "
                    "only -inf is 0/0 = NaN. "
                    "Find such rows (e.g. ~mask.any(dim=-1, keepdim=True)) and give them zero weights and a zero output"
                )
            if bool((nan_rows <= full).all()):
                return (
                    "NaN in a row where every key is ALLOWED: is your mask the wrong way round? True means MAY "
                    "attend here (F.scaled_dot_product_attention's convention), so block where the mask is False"
                )
            return "NaN in your weights or output for rows that do have keys to attend to"
        blocked = w.masked_fill(mask, 0.0).sum(dim=-1)  # (..., L): weight put on masked keys
        some = ~dead & ~full  # rows with both allowed and blocked keys
        if bool(some.any()) and bool((blocked[some] > 0.99).all()):
            return (
                "your mask is the wrong way round: your weights go to the MASKED keys. True means MAY attend here "
                "(F.scaled_dot_product_attention's convention; nn.MultiheadAttention's is the opposite)"
            )
        if bool(dead.any()) and bool(torch.allclose(w[dead], torch.full_like(w[dead], 1.0 / S), atol=1e-4)):
            return (
                f"a fully masked row got uniform weights 1/S = {1 / S:.3g} instead of zeros: with -1e9 (or "
                "finfo.min) every score of that row is the same number, so softmax spreads evenly over keys it must "
                "not see. Give those rows zero weights"
            )
        if bool((w[dead].abs() > 1e-6).any()):
            return "a row whose keys are all masked must get zero weights (and a zero output)"
        if bool((blocked > 1e-6).any()):
            return "some weight goes to masked keys: set their scores to -inf before the softmax"
        if _matches(weights, scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=1.0)[1]):
            return "missing the 1/√d_k scale: divide the scores by math.sqrt(d_k) before masking and softmax"
        if not _matches(weights, want_w):
            return "masked keys get 0, but the other weights differ from softmax(Q Kᵀ / √d_k) over the allowed keys"
        if not _matches(output, want_out):
            if bool((output.detach()[dead].abs() > 1e-6).any()):
                return "the weights are right, but a fully masked row's output should be zeros"
            return "the weights are right but the output is not weights @ value"
    return None


# =====================================================================================================
# 6. Splitting into heads (notebook 04)
# =====================================================================================================


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Cut the feature dimension into ``num_heads`` heads: ``(batch, seq, d_model) -> (batch, heads, seq, head_dim)``.

    ``view`` first splits d_model into (heads, head_dim) *in place of* the last dim, so each token keeps its own
    features; only then does ``transpose`` bring the heads forward. Reshaping straight to the target shape would
    mix features of different tokens (notebook 04 shows it).
    """
    _check_float_tensor("x", x, ranks=(3,), layout="(batch, seq, d_model)")
    _check_positive_int("num_heads", num_heads)
    batch, seq, d_model = x.shape
    _check_divisible(d_model, num_heads, d_name="d_model")
    head_dim = d_model // num_heads
    x = x.view(batch, seq, num_heads, head_dim)  # (batch, seq, d_model) -> (batch, seq, heads, head_dim)
    return x.transpose(1, 2)  # -> (batch, heads, seq, head_dim)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`split_heads`: ``(batch, heads, seq, head_dim) -> (batch, seq, heads * head_dim)``."""
    _check_float_tensor("x", x, ranks=(4,), layout="(batch, heads, seq, head_dim)")
    batch, num_heads, seq, head_dim = x.shape
    x = x.transpose(1, 2)  # (batch, heads, seq, head_dim) -> (batch, seq, heads, head_dim), not contiguous
    return x.reshape(batch, seq, num_heads * head_dim)  # copies into (batch, seq, d_model)


# ---- notebook 04: exercise checkers -----------------------------------------------------------------


def _split_heads_cases() -> list[tuple[torch.Tensor, int]]:
    """Hidden inputs ``(x, num_heads)``: seq, heads and head_dim differ in each, so a swapped axis always shows."""
    g = torch.Generator().manual_seed(404)
    sizes = ((2, 5, 12, 3), (1, 7, 8, 2), (3, 4, 30, 5))  # (batch, seq, d_model, num_heads)
    return [(torch.randn(b, s, d, generator=g), h) for b, s, d, h in sizes]


@exercise_checker("Exercise 4.1: split_heads")
def check_split_heads(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> str | None:
    """Check ``fn(x, num_heads)``: ``(batch, seq, d_model) -> (batch, heads, seq, head_dim)``, as :func:`split_heads`.

    Prints a pass, a specific hint (transpose missing, axes swapped, tokens scrambled by a direct reshape,
    features interleaved) or "not yet" for the stub; returns True on success.
    """
    for x, num_heads in _split_heads_cases():
        batch, seq, d_model = x.shape
        head_dim = d_model // num_heads
        expected = split_heads(x, num_heads)  # (batch, heads, seq, head_dim)
        got = _call_student(fn, x.clone(), num_heads)
        if not isinstance(got, torch.Tensor):
            return f"return a torch.Tensor, got {type(got).__name__}"
        shape = tuple(got.shape)
        if shape == (batch, seq, num_heads, head_dim):
            return (
                f"your output has shape {shape} = (batch, seq, heads, head_dim): the view is right, now bring the "
                f"heads in front of the tokens with .transpose(1, 2) to get {tuple(expected.shape)}"
            )
        if shape == (batch, num_heads, head_dim, seq):
            return (
                f"axes swapped: your output has shape {shape} = (batch, heads, head_dim, seq), expected "
                f"(batch, heads, seq, head_dim) = {tuple(expected.shape)}; after the view to (batch, seq, heads, "
                "head_dim) swap axes 1 and 2 only"
            )
        hint = _shape_hint("your output", got, expected.shape)
        if hint:
            return f"{hint} = (batch, heads, seq, head_dim) for x of shape {tuple(x.shape)} and num_heads={num_heads}"
        if _matches(got, x.reshape(batch, num_heads, seq, head_dim)):
            return (
                "you reshaped straight to (batch, heads, seq, head_dim): tokens are scrambled (head 0's rows are the "
                "first tokens' features, cut in pieces) — view to (batch, seq, heads, head_dim) first, then "
                "transpose(1, 2)"
            )
        if _matches(got, x.reshape(batch, seq, head_dim, num_heads).permute(0, 3, 1, 2)):
            return (
                f"features interleaved: your head h gets features h, h + {num_heads}, h + {2 * num_heads}, ...; "
                "each head owns a block of head_dim consecutive features: view to (batch, seq, heads, head_dim)"
            )
        if not _matches(got, expected):
            bad = ((got.detach().float() - expected).abs() > 1e-5).any(dim=0).any(dim=-1)  # (heads, seq)
            h, t = (int(i) for i in bad.nonzero()[0])
            return (
                f"right shape, wrong values: e.g. head {h}, token {t} should hold features "
                f"{h * head_dim}..{(h + 1) * head_dim - 1} of token {t}, i.e. x[:, {t}, {h * head_dim}:{(h + 1) * head_dim}]"
            )
    return None


@exercise_checker("Exercise 4.2: one head's block of W_q")
def check_head_weight(fn: Callable[[torch.Tensor, int, int], torch.Tensor]) -> str | None:
    """Check ``fn(weight, head, num_heads)``: the ``(head_dim, d_model)`` block of an ``nn.Linear`` weight that is
    head ``head``'s own small projection, i.e. rows ``head * head_dim`` to ``(head + 1) * head_dim - 1`` of the
    ``(d_model, d_model)`` = ``(out_features, in_features)`` weight. Prints a pass, a hint or "not yet".
    """
    g = torch.Generator().manual_seed(405)
    for d_model, num_heads, head in ((12, 3, 1), (8, 2, 0), (12, 4, 3)):
        weight = torch.randn(d_model, d_model, generator=g)  # (out_features, in_features)
        head_dim = d_model // num_heads
        rows = slice(head * head_dim, (head + 1) * head_dim)
        expected = weight[rows]  # (head_dim, d_model)
        got = _call_student(fn, weight.clone(), head, num_heads)
        if _matches(got, weight[:, rows]) or _matches(got, weight[:, rows].T):
            return (
                "you took a block of columns: nn.Linear's weight has shape (out_features, in_features) and computes "
                "x @ weight.T, so a head, which owns a block of OUTPUT features, owns a block of ROWS"
            )
        if _matches(got, weight[head::num_heads]):
            return (
                f"you took rows head, head + {num_heads}, head + {2 * num_heads}, ...; a head owns a block of head_dim "
                "CONSECUTIVE rows, "
                "weight[head * head_dim : (head + 1) * head_dim]"
            )
        hint = _shape_hint("your block", got, expected.shape)
        if hint:
            return f"{hint} = (head_dim, d_model) for a ({d_model}, {d_model}) weight and num_heads={num_heads}"
        if not _matches(got, expected):
            for other in range(num_heads):
                if _matches(got, weight[other * head_dim : (other + 1) * head_dim]):
                    return f"you returned head {other}'s rows for head={head}: head h owns rows h*head_dim ... (h+1)*head_dim - 1"
            return f"right shape, wrong values: for head={head}, num_heads={num_heads} expected weight[{rows.start}:{rows.stop}]"
    return None


# =====================================================================================================
# 7. Concatenation, output projection and the whole module (notebook 05)
# =====================================================================================================


class MultiHeadAttention(nn.Module):
    """Multi-Head Attention with the semantics of ``torch.nn.MultiheadAttention``, built from readable steps.

    ``MultiHeadAttention(embed_dim, num_heads, dropout=0.0, bias=True, kdim=None, vdim=None, batch_first=True)``

    Parameters (the maths' names; the same count as PyTorch's module):
      ``W_q: Linear(embed_dim -> embed_dim)``, ``W_k: Linear(kdim -> embed_dim)``, ``W_v: Linear(vdim -> embed_dim)``
      and the output projection ``W_o: Linear(embed_dim -> embed_dim)``; ``head_dim = embed_dim // num_heads``.

    ``forward(query, key=None, value=None, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False) -> (output, weights or None)``

    Shapes (batch-first): query ``(batch, L, embed_dim)``, key ``(batch, S, kdim)``, value ``(batch, S, vdim)``;
    unbatched ``(L, embed_dim)`` etc. also work. Output ``(batch, L, embed_dim)``; weights ``(batch, L, S)``
    averaged over heads, or ``(batch, num_heads, L, S)`` with ``average_attn_weights=False``.

    Masks use **nn.MultiheadAttention's** conventions: a boolean mask is True where attention is NOT allowed; a float
    mask is added to the scores. ``attn_mask`` is ``(L, S)`` or ``(batch * num_heads, L, S)``; ``key_padding_mask`` is
    ``(batch, S)`` (True = padding). Dropout (p=``dropout``) acts on the attention weights in training mode only.

    Deliberate differences from ``torch.nn.MultiheadAttention``:
      * ``batch_first`` defaults to True (the series works in ``(batch, seq, d_model)``);
      * ``key`` defaults to ``query`` and ``value`` to ``key`` (so ``mha(x)`` is self-attention);
      * ``is_causal=True`` alone builds the causal mask (PyTorch also demands ``attn_mask``). If a mask is also
        given, this module uses that mask; PyTorch treats ``is_causal`` as a promise that the mask IS the causal
        mask and may use either, so only pass both when they agree;
      * a query row whose keys are all masked gets zero weights and a zero attention result before the output
        projection (so its output is ``W_o``'s bias), never NaN; PyTorch returns NaN there with
        ``need_weights=True`` and on its eval-mode fast path;
      * bad arguments raise a ValueError/TypeError that names the argument and what would work.
    ``add_bias_kv`` and ``add_zero_attn`` are not supported.

    With ``need_weights=False`` the forward uses one fused Q/K/V matrix multiply (self-attention with
    kdim = vdim = embed_dim) and ``torch.nn.functional.scaled_dot_product_attention``, so it is as fast as PyTorch.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _check_positive_int("embed_dim", embed_dim)
        _check_positive_int("num_heads", num_heads)
        _check_divisible(embed_dim, num_heads)
        if kdim is not None:
            _check_positive_int("kdim", kdim)
        if vdim is not None:
            _check_positive_int("vdim", vdim)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
            raise TypeError(f"dropout must be a float in [0, 1), got {dropout!r} of type {type(dropout).__name__}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1) (a probability; 1 would drop everything), got dropout={dropout}")
        _check_bool("bias", bias)
        _check_bool("batch_first", batch_first)

        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.kdim = embed_dim if kdim is None else kdim
        self.vdim = embed_dim if vdim is None else vdim
        self.dropout = float(dropout)
        self.batch_first = batch_first
        self.has_bias = bias

        factory = {"device": device, "dtype": dtype}
        self.W_q = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)  # d_model -> num_heads * head_dim
        self.W_k = nn.Linear(self.kdim, embed_dim, bias=bias, **factory)  # kdim    -> num_heads * head_dim
        self.W_v = nn.Linear(self.vdim, embed_dim, bias=bias, **factory)  # vdim    -> num_heads * head_dim
        self.W_o = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)  # concatenated heads -> d_model
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        # The same initialisation as nn.MultiheadAttention: Xavier-uniform over the packed (3*E, E) in-projection
        # (so each of W_q, W_k, W_v is drawn with that bound), zero biases, and nn.Linear's default for W_o's weight.
        E = self.embed_dim
        if self.kdim == E and self.vdim == E:
            packed = torch.empty(3 * E, E, device=self.W_q.weight.device, dtype=self.W_q.weight.dtype)
            nn.init.xavier_uniform_(packed)
            with torch.no_grad():
                for part, lin in zip(packed.chunk(3), (self.W_q, self.W_k, self.W_v), strict=True):
                    lin.weight.copy_(part)
        else:
            for lin in (self.W_q, self.W_k, self.W_v):
                nn.init.xavier_uniform_(lin.weight)
        if self.has_bias:
            for lin in (self.W_q, self.W_k, self.W_v, self.W_o):
                nn.init.zeros_(lin.bias)

    def extra_repr(self) -> str:
        extra = f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, head_dim={self.head_dim}"
        if self.kdim != self.embed_dim or self.vdim != self.embed_dim:
            extra += f", kdim={self.kdim}, vdim={self.vdim}"
        return extra + f", dropout={self.dropout}, bias={self.has_bias}, batch_first={self.batch_first}"

    # ---- conversion to and from PyTorch's module -------------------------------------------------------

    @classmethod
    def from_torch(cls, module: nn.MultiheadAttention) -> MultiHeadAttention:
        """A copy of an ``nn.MultiheadAttention`` (same weights, sizes, dropout, batch_first, device and dtype)."""
        if not isinstance(module, nn.MultiheadAttention):
            raise TypeError(
                f"module must be a torch.nn.MultiheadAttention, got {type(module).__name__}; to copy one of ours, "
                f"use copy.deepcopy(module)"
            )
        for option, used in (("add_bias_kv", module.bias_k is not None), ("add_zero_attn", module.add_zero_attn)):
            if used:
                raise ValueError(
                    f"module was built with {option}=True, which MultiHeadAttention does not support; "
                    f"build the nn.MultiheadAttention with {option}=False"
                )
        ref = module.out_proj.weight
        bias = module.out_proj.bias is not None
        new = cls(
            module.embed_dim, module.num_heads, dropout=module.dropout, bias=bias, kdim=module.kdim,
            vdim=module.vdim, batch_first=module.batch_first, device=ref.device, dtype=ref.dtype,
        )
        E = module.embed_dim
        with torch.no_grad():
            if module._qkv_same_embed_dim:
                w_q, w_k, w_v = module.in_proj_weight.chunk(3)  # (3E, E) -> three (E, E)
            else:
                w_q, w_k, w_v = module.q_proj_weight, module.k_proj_weight, module.v_proj_weight
            for lin, w in zip((new.W_q, new.W_k, new.W_v), (w_q, w_k, w_v), strict=True):
                lin.weight.copy_(w)
            new.W_o.weight.copy_(module.out_proj.weight)
            if bias:
                for i, lin in enumerate((new.W_q, new.W_k, new.W_v)):
                    lin.bias.copy_(module.in_proj_bias[i * E : (i + 1) * E])
                new.W_o.bias.copy_(module.out_proj.bias)
        new.train(module.training)
        return new

    def to_torch(self) -> nn.MultiheadAttention:
        """An ``nn.MultiheadAttention`` with this module's weights, sizes, dropout, batch_first, device and dtype."""
        ref = self.W_o.weight
        module = nn.MultiheadAttention(
            self.embed_dim, self.num_heads, dropout=self.dropout, bias=self.has_bias, kdim=self.kdim,
            vdim=self.vdim, batch_first=self.batch_first, device=ref.device, dtype=ref.dtype,
        )
        with torch.no_grad():
            if module._qkv_same_embed_dim:
                module.in_proj_weight.copy_(torch.cat([self.W_q.weight, self.W_k.weight, self.W_v.weight]))
            else:
                module.q_proj_weight.copy_(self.W_q.weight)
                module.k_proj_weight.copy_(self.W_k.weight)
                module.v_proj_weight.copy_(self.W_v.weight)
            module.out_proj.weight.copy_(self.W_o.weight)
            if self.has_bias:
                module.in_proj_bias.copy_(torch.cat([self.W_q.bias, self.W_k.bias, self.W_v.bias]))
                module.out_proj.bias.copy_(self.W_o.bias)
        module.train(self.training)
        return module

    # ---- the forward pass -----------------------------------------------------------------------------

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from ``query`` over ``key``/``value``; see the class docstring for shapes and masks."""
        key = query if key is None else key
        value = key if value is None else value
        query, key, value, batched = self._check_inputs(query, key, value)
        for name, flag in (("need_weights", need_weights), ("average_attn_weights", average_attn_weights),
                           ("is_causal", is_causal)):
            _check_bool(name, flag)

        self_attention = query is key and key is value
        if not batched:  # (L, E) -> (1, L, E): one code path for both
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
        elif not self.batch_first:  # (L, batch, E) -> (batch, L, E); transpose is a view, no copy
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        batch, L, S = query.shape[0], query.shape[1], key.shape[1]

        bias = self._additive_mask(attn_mask, key_padding_mask, is_causal, batch, L, S, batched, query.dtype)

        # 1. Project: (batch, seq, dim) -> (batch, seq, embed_dim) for Q, K and V.
        q, k, v = self._project(query, key, value, fused=self_attention and not need_weights)
        # 2. Split: (batch, seq, embed_dim) -> (batch, heads, seq, head_dim).
        q, k, v = (split_heads(t, self.num_heads) for t in (q, k, v))
        dropout_p = self.dropout if self.training else 0.0

        if need_weights:
            # 3. Attend, every step in plain sight: (batch, heads, L, head_dim) -> (batch, heads, L, head_dim).
            heads, weights = scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p)
        else:
            heads = self._fast_attention(q, k, v, bias, dropout_p)
            weights = None

        # 4. Merge: (batch, heads, L, head_dim) -> (batch, L, embed_dim); 5. mix the heads with W_o.
        output = self.W_o(merge_heads(heads))  # (batch, L, embed_dim)

        if not batched:
            output = output.squeeze(0)  # (L, E)
        elif not self.batch_first:
            output = output.transpose(0, 1)  # (L, batch, E)
        if weights is not None:
            if average_attn_weights:
                weights = weights.mean(dim=1)  # (batch, heads, L, S) -> (batch, L, S)
            if not batched:
                weights = weights.squeeze(0)  # (L, S) or (heads, L, S)
        return output, weights

    def _project(self, query, key, value, fused: bool):
        """Q/K/V projections ``(batch, seq, dim) -> (batch, seq, embed_dim)``; one matmul when ``fused``."""
        if fused:
            w = torch.cat([self.W_q.weight, self.W_k.weight, self.W_v.weight])  # (3E, E)
            b = torch.cat([self.W_q.bias, self.W_k.bias, self.W_v.bias]) if self.has_bias else None  # (3E,)
            qkv = F.linear(query, w, b)  # (batch, L, 3E)
            return qkv.chunk(3, dim=-1)  # three views (batch, L, E)
        return self.W_q(query), self.W_k(key), self.W_v(value)

    @staticmethod
    def _fast_attention(q, k, v, bias, dropout_p):
        """PyTorch's fused kernel ``(batch, heads, L, head_dim) -> (batch, heads, L, head_dim)``, rows fully masked -> 0."""
        if bias is None:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        dead = torch.isneginf(bias).all(dim=-1, keepdim=True)  # (.., L, 1): rows with no key to look at
        if bool(dead.any()):
            bias = bias.masked_fill(dead, 0.0)  # keep the kernel away from 0/0 ...
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p)
            return out.masked_fill(dead, 0.0)  # ... then zero those rows, as the weights path does
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p)

    def _check_inputs(self, query, key, value):
        """Validate query/key/value; return them with a flag: batched (3-D) or not (2-D)."""
        layout = "(batch, seq, features)" if self.batch_first else "(seq, batch, features)"
        for name, t in (("query", query), ("key", key), ("value", value)):
            _check_float_tensor(name, t, ranks=(2, 3), layout=f"unbatched (seq, features) or batched {layout}")
        batched = query.dim() == 3
        if key.dim() != query.dim() or value.dim() != query.dim():
            raise ValueError(
                f"query, key and value must all be batched (3-D) or all unbatched (2-D), got query "
                f"{tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}"
            )
        b_axis = 0 if self.batch_first else 1
        if batched and not (query.shape[b_axis] == key.shape[b_axis] == value.shape[b_axis]):
            raise ValueError(
                f"query, key and value must have the same batch size (dim {b_axis} of {layout}), got "
                f"query {tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}"
            )
        s_axis = -2 if not batched or self.batch_first else 0
        if key.shape[s_axis] != value.shape[s_axis]:
            raise ValueError(
                f"key and value must have the same length S (one value per key), got key {tuple(key.shape)} "
                f"and value {tuple(value.shape)}"
            )
        for name, t, want, arg in (("query", query, self.embed_dim, "embed_dim"), ("key", key, self.kdim, "kdim"),
                                   ("value", value, self.vdim, "vdim")):
            if t.shape[-1] != want:
                raise ValueError(
                    f"{name} has {t.shape[-1]} features (last dim of shape {tuple(t.shape)}) but the module expects "
                    f"{arg}={want}; build it with {arg}={t.shape[-1]} or project the input first"
                )
            if t.dtype != self.W_o.weight.dtype:
                raise TypeError(
                    f"{name} has dtype {t.dtype} but the module's parameters are {self.W_o.weight.dtype}; "
                    f"convert one of them, e.g. {name}.to({self.W_o.weight.dtype})"
                )
            if t.device != self.W_o.weight.device:
                raise ValueError(
                    f"{name} is on {t.device} but the module's parameters are on {self.W_o.weight.device}; "
                    f"move one of them, e.g. {name}.to('{self.W_o.weight.device}')"
                )
        return query, key, value, batched

    def _additive_mask(self, attn_mask, key_padding_mask, is_causal, batch, L, S, batched, dtype):
        """Turn nn.MultiheadAttention's masks into one float mask to add to the scores.

        Returns None (no mask) or a tensor broadcastable to ``(batch, heads, L, S)``: 0 where attention is allowed,
        -inf where it is not (bool masks), plus any float mask's values.
        """
        H = self.num_heads
        if attn_mask is None and is_causal:
            attn_mask = ~causal_mask(L, S, device=self.W_o.weight.device)  # True = blocked, as this module reads it
        bias = None
        if attn_mask is not None:
            _check_mask_dtype("attn_mask", attn_mask, dtype)
            n = batch * H if batched else H
            if attn_mask.dim() == 2:
                if tuple(attn_mask.shape) != (L, S):
                    raise ValueError(
                        f"attn_mask has shape {tuple(attn_mask.shape)}, expected (L, S) = ({L}, {S}) "
                        f"or 3-D ({n}, {L}, {S}) = (batch * num_heads, L, S)"
                    )
                m = attn_mask.view(1, 1, L, S)  # (L, S) -> (1, 1, L, S), the same for every batch and head
            elif attn_mask.dim() == 3:
                if tuple(attn_mask.shape) != (n, L, S):
                    raise ValueError(
                        f"attn_mask has shape {tuple(attn_mask.shape)}, expected 3-D ({n}, {L}, {S}) = "
                        f"(batch * num_heads, L, S) or 2-D ({L}, {S}) = (L, S)"
                    )
                m = attn_mask.view(batch, H, L, S)  # (batch * heads, L, S) -> (batch, heads, L, S)
            else:
                raise ValueError(
                    f"attn_mask must be 2-D (L, S) or 3-D (batch * num_heads, L, S), got shape {tuple(attn_mask.shape)}"
                )
            bias = _to_additive(m, dtype)
        if key_padding_mask is not None:
            _check_mask_dtype("key_padding_mask", key_padding_mask, dtype)
            want = (batch, S) if batched else (S,)
            if tuple(key_padding_mask.shape) != want:
                raise ValueError(
                    f"key_padding_mask has shape {tuple(key_padding_mask.shape)}, expected "
                    f"{'(batch, S)' if batched else '(S,)'} = {want} (True = padding)"
                )
            kpm = _to_additive(key_padding_mask.view(batch, 1, 1, S), dtype)  # (batch, S) -> (batch, 1, 1, S)
            bias = kpm if bias is None else bias + kpm
        return bias


def _to_additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """nn.MultiheadAttention's mask -> additive float mask: bool True (blocked) -> -inf, False -> 0; floats as they are."""
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
    return mask.to(dtype)


# ---- notebook 05: what W_o does, and exercise checkers ----------------------------------------------


def head_influence(heads: torch.Tensor, mix: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """How much each output feature changes when one head is silenced: returns ``(d_model, num_heads)``.

    ``heads`` is the attention result ``(batch, heads, seq, head_dim)``; the output is ``mix(merge_heads(heads))``,
    ``(batch, seq, d_model)``, where ``mix`` is e.g. the output projection ``W_o`` (None: no mixing, the merged heads
    themselves). Entry ``[i, h]`` is the largest change of output feature ``i`` (over batch and tokens) when head
    ``h``'s result is set to zero.
    """
    _check_float_tensor("heads", heads, ranks=(4,))
    if mix is None:
        mix = nn.Identity()
    with torch.no_grad():
        full = mix(merge_heads(heads))  # (batch, heads, seq, head_dim) -> (batch, seq, d_model)
        columns = []
        for h in range(heads.shape[1]):
            silenced = heads.clone()
            silenced[:, h] = 0.0  # head h found nothing
            change = (mix(merge_heads(silenced)) - full).abs()  # (batch, seq, d_model)
            columns.append(change.amax(dim=(0, 1)))  # (d_model,)
    return torch.stack(columns, dim=1)  # (d_model, num_heads)


def plot_head_influence(influence: torch.Tensor, title: str = "Which heads each output feature hears", ax=None):
    """Draw :func:`head_influence`'s ``(d_model, num_heads)`` matrix as a labelled heatmap; returns the ``Axes``."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    w = _as_numpy_2d(influence, "influence")
    d_model, num_heads = w.shape
    if ax is None:
        _, ax = plt.subplots(figsize=(0.8 * num_heads + 2.4, 0.38 * d_model + 1.4))
    sns.heatmap(
        w, ax=ax, vmin=0.0, cmap="viridis", annot=d_model <= 16, fmt=".2f", annot_kws={"fontsize": 8},
        xticklabels=[f"head {h}" for h in range(num_heads)], yticklabels=[str(i) for i in range(d_model)],
        linewidths=0.5, linecolor="white", cbar_kws={"label": "largest |change|"},
    )
    ax.set_title(title)
    ax.set_xlabel("head set to zero")
    ax.set_ylabel("output feature")
    ax.tick_params(axis="y", labelrotation=0)
    return ax


_VIEW_HINT = (
    "view on a non-contiguous tensor: after transpose(1, 2) a token's features are no longer next to each other in "
    "memory, so .view cannot merge them — use .reshape(...) (it copies when it must) or .contiguous().view(...)"
)


def _merge_heads_cases() -> list[torch.Tensor]:
    """Hidden inputs ``(batch, heads, seq, head_dim)``: fresh (contiguous) tensors, as attention returns them."""
    g = torch.Generator().manual_seed(505)
    sizes = ((2, 3, 5, 4), (1, 2, 7, 3), (3, 4, 6, 5))  # (batch, heads, seq, head_dim), all different
    return [torch.randn(*size, generator=g) for size in sizes]


@exercise_checker("Exercise 5.1: merge_heads")
def check_merge_heads(fn: Callable[[torch.Tensor], torch.Tensor]) -> str | None:
    """Check ``fn(x)``: ``(batch, heads, seq, head_dim) -> (batch, seq, heads * head_dim)``, as :func:`merge_heads`.

    Prints a pass, a specific hint (transpose forgotten, view on a non-contiguous tensor, heads not merged, features
    interleaved) or "not yet" for the stub; returns True on success.
    """
    for x in _merge_heads_cases():
        batch, num_heads, seq, head_dim = x.shape
        d_model = num_heads * head_dim
        expected = merge_heads(x)  # (batch, seq, d_model)
        try:
            got = _call_student(fn, x.clone())
        except RuntimeError as exc:
            if "view size is not compatible" in str(exc):
                return _VIEW_HINT
            raise
        if not isinstance(got, torch.Tensor):
            return f"return a torch.Tensor, got {type(got).__name__}"
        if tuple(got.shape) == (batch, seq, num_heads, head_dim):
            return (
                f"your output has shape {tuple(got.shape)} = (batch, seq, heads, head_dim): you transposed back, now "
                f"merge the last two axes with .reshape(batch, seq, heads * head_dim) to get {tuple(expected.shape)}"
            )
        hint = _shape_hint("your output", got, expected.shape)
        if hint:
            return f"{hint} = (batch, seq, heads * head_dim) for x of shape {tuple(x.shape)}"
        if _matches(got, x.reshape(batch, seq, d_model)):
            return (
                "forgot to transpose back: reshaping (batch, heads, seq, head_dim) straight to (batch, seq, d_model) "
                "scrambles the tokens — .transpose(1, 2) to (batch, seq, heads, head_dim) first, then reshape"
            )
        if _matches(got, x.permute(0, 2, 3, 1).reshape(batch, seq, d_model)):
            return (
                "features interleaved: you put head_dim before heads (e.g. permute(0, 2, 3, 1)), so the heads' "
                "features alternate; transpose(1, 2) keeps each head's head_dim features together"
            )
        if not _matches(got, expected):
            return "right shape, wrong values: output[:, t, h*head_dim:(h+1)*head_dim] should be x[:, h, t, :]"
    return None


def _mha_forward_variant(
    x: torch.Tensor,
    W_q: nn.Module,
    W_k: nn.Module,
    W_v: nn.Module,
    W_o: nn.Module,
    num_heads: int,
    *,
    scale: float | None = None,
    softmax_dim: int = -1,
    scrambled_split: bool = False,
    scrambled_merge: bool = False,
    use_W_o: bool = True,
) -> torch.Tensor:
    """The MHA forward ``(batch, seq, d_model) -> (batch, seq, d_model)``, or one of its typical mistakes (keywords)."""
    batch, seq, d_model = x.shape
    head_dim = d_model // num_heads
    q, k, v = W_q(x), W_k(x), W_v(x)  # (batch, seq, d_model) each
    if scrambled_split:
        q, k, v = (t.reshape(batch, num_heads, seq, head_dim) for t in (q, k, v))  # wrong: tokens mixed
    else:
        q, k, v = (split_heads(t, num_heads) for t in (q, k, v))  # (batch, heads, seq, head_dim)
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale  # (batch, heads, seq, seq)
    heads = torch.softmax(scores, dim=softmax_dim) @ v  # (batch, heads, seq, head_dim)
    if scrambled_merge:
        merged = heads.reshape(batch, seq, d_model)  # wrong: no transpose back
    else:
        merged = merge_heads(heads)  # (batch, seq, d_model)
    return W_o(merged) if use_W_o else merged


def _random_linear(d_in: int, d_out: int, g: torch.Generator) -> nn.Linear:
    """An nn.Linear with seeded random weights and biases, leaving torch's global random state alone."""
    lin = nn.utils.skip_init(nn.Linear, d_in, d_out)  # no initialisation, so the global RNG is not used
    with torch.no_grad():
        lin.weight.copy_(torch.randn(d_out, d_in, generator=g) / math.sqrt(d_in))
        lin.bias.copy_(torch.randn(d_out, generator=g) * 0.1)
    return lin


@exercise_checker("Exercise 5.2: the whole multi-head attention forward")
def check_mha_forward(fn: Callable[..., torch.Tensor]) -> str | None:
    """Check ``fn(x, W_q, W_k, W_v, W_o, num_heads) -> (batch, seq, d_model)``: project, split, attend, merge, W_o.

    ``W_q`` ... ``W_o`` are ``nn.Linear(d_model, d_model)`` modules; no mask, no dropout. The reference is
    :class:`MultiHeadAttention` with the same weights. Prints a pass, a hint naming the step that went wrong, or
    "not yet" for the stub.
    """
    g = torch.Generator().manual_seed(506)
    mistakes = (
        ({"use_W_o": False}, "you returned the merged heads: apply the output projection W_o last"),
        ({"scale": 1.0}, "the 1/sqrt(head_dim) scale is missing: divide the scores Q Kᵀ by sqrt(head_dim)"),
        (None, "you scaled by 1/sqrt(d_model); each head's dot products have head_dim terms: use 1/sqrt(head_dim)"),
        ({"softmax_dim": -2}, "softmax over the wrong axis: each query's row (the last axis, over keys) must sum to 1"),
        ({"scrambled_split": True}, "tokens scrambled in the split: view to (batch, seq, heads, head_dim), then "
                                    "transpose(1, 2) — not a reshape straight to (batch, heads, seq, head_dim)"),
        ({"scrambled_merge": True}, "tokens scrambled in the merge: transpose(1, 2) back to (batch, seq, heads, "
                                    "head_dim) before reshaping to (batch, seq, d_model)"),
    )
    for batch, seq, d_model, num_heads in ((2, 5, 12, 3), (1, 7, 8, 2)):
        x = torch.randn(batch, seq, d_model, generator=g)
        W_q, W_k, W_v, W_o = (_random_linear(d_model, d_model, g) for _ in range(4))
        with torch.no_grad():
            expected = _mha_forward_variant(x, W_q, W_k, W_v, W_o, num_heads)
            try:
                got = _call_student(fn, x.clone(), W_q, W_k, W_v, W_o, num_heads)
            except RuntimeError as exc:
                if "view size is not compatible" in str(exc):
                    return _VIEW_HINT
                raise
        if isinstance(got, tuple):
            return "return only the output tensor (batch, seq, d_model), not a tuple"
        if not isinstance(got, torch.Tensor):
            return f"return a torch.Tensor, got {type(got).__name__}"
        head_dim = d_model // num_heads
        if tuple(got.shape) == (batch, num_heads, seq, head_dim):
            return (
                f"your output has shape {tuple(got.shape)} = (batch, heads, seq, head_dim): merge the heads "
                "(transpose(1, 2), reshape to (batch, seq, d_model)) and apply W_o"
            )
        hint = _shape_hint("your output", got, expected.shape)
        if hint:
            return f"{hint} = (batch, seq, d_model)"
        if _matches(got, expected, atol=1e-4):
            continue
        with torch.no_grad():
            for kwargs, why in mistakes:
                kwargs = {"scale": 1.0 / math.sqrt(d_model)} if kwargs is None else kwargs
                if _matches(got, _mha_forward_variant(x, W_q, W_k, W_v, W_o, num_heads, **kwargs), atol=1e-4):
                    return why
        diff = float((got.detach().float() - expected).abs().max())
        return f"right shape, wrong values (largest difference {diff:.3g}); check each step's shape against the notebook"
    return None


# =====================================================================================================
# 8. Exploring heads: widgets (notebook 06)
# =====================================================================================================
# The head explorer re-splits ONE fixed, seeded module: moving the head-count slider never draws new weights, it
# only changes how the d_model output columns of W_q and W_k are grouped into heads. Drawing: one Agg figure per
# head count, built once; a redraw restores the cached background (axes, token labels) and draws only what
# changed (the maps, titles, numbers) on top ("blitting"), then sends PNG bytes to an ipywidgets.Image.

#: The longest sentence the explorer draws; longer ones are cut (the maps would be unreadable).
EXPLORER_MAX_TOKENS = 12


def explorer_module(d_model: int = 16, seed: int = 0, gain: float = 2.5) -> MultiHeadAttention:
    """The seeded module the head explorer re-splits: ``MultiHeadAttention(d_model, num_heads=1)`` in eval mode.

    Its weights are PyTorch's initialisation (as ``nn.MultiheadAttention``'s) drawn from ``seed``, except that
    ``W_q`` and ``W_k`` are multiplied by ``gain`` (the attention scores by ``gain**2``): an untrained module with
    ``gain=1`` attends almost uniformly, so every head's map is close to a flat ``1/seq`` and the heads look alike
    (notebook 06 prints that). The weights are still random, and the same for every head count.
    The random draw happens under a forked random state: it does not change the notebook's own random numbers.
    """
    _check_positive_int("d_model", d_model)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int >= 0, got {seed!r} of type {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be an int >= 0, got seed={seed}")
    if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not gain > 0:
        raise ValueError(f"gain must be a positive number, got gain={gain!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = MultiHeadAttention(d_model, 1)
    with torch.no_grad():
        module.W_q.weight.mul_(gain)
        module.W_k.weight.mul_(gain)
    return module.eval()


def resplit_heads(module: MultiHeadAttention, num_heads: int) -> MultiHeadAttention:
    """The same module cut into ``num_heads`` heads; it SHARES ``W_q``, ``W_k``, ``W_v`` and ``W_o`` with ``module``.

    Nothing is copied or drawn again: ``resplit_heads(m, 8).W_q.weight is m.W_q.weight`` is True. Only ``num_heads``
    and ``head_dim = embed_dim // num_heads`` change, that is, how the ``embed_dim`` output columns of each
    projection are grouped: head ``h`` uses columns ``h*head_dim`` to ``(h+1)*head_dim - 1`` of Q, K and V. So the
    parameter count is the same for every head count; what changes is which products ``q·k`` are summed and
    normalised together in one softmax.
    """
    if not isinstance(module, MultiHeadAttention):
        raise TypeError(f"module must be an mha_helpers.MultiHeadAttention, got {type(module).__name__}")
    _check_positive_int("num_heads", num_heads)
    _check_divisible(module.embed_dim, num_heads)
    ref = module.W_o.weight
    # Built on the "meta" device: placeholder layers with no storage and no random draw ...
    new = MultiHeadAttention(
        module.embed_dim, num_heads, dropout=module.dropout, bias=module.has_bias, kdim=module.kdim,
        vdim=module.vdim, batch_first=module.batch_first, device="meta", dtype=ref.dtype,
    )
    # ... replaced by the original layers: the very same Parameter objects, not copies.
    new.W_q, new.W_k, new.W_v, new.W_o = module.W_q, module.W_k, module.W_v, module.W_o
    new.training = module.training
    return new


def head_attention_maps(
    module: MultiHeadAttention, x: torch.Tensor, num_heads: int, causal: bool = False
) -> torch.Tensor:
    """Self-attention weights of ``module`` re-split into ``num_heads`` heads (see :func:`resplit_heads`).

    ``x``: ``(batch, seq, embed_dim)`` -> weights ``(batch, num_heads, seq, seq)``; ``causal=True`` lets each token
    look only at itself and earlier tokens. No gradients are tracked.
    """
    _check_bool("causal", causal)
    _check_float_tensor("x", x, ranks=(3,))
    view = resplit_heads(module, num_heads)
    view.batch_first = True  # x is (batch, seq, embed_dim) here, whatever layout the module itself expects
    with torch.no_grad():
        _, weights = view(x, need_weights=True, average_attn_weights=False, is_causal=causal)
    return weights  # (batch, num_heads, seq, seq)


def attention_entropy(weights: torch.Tensor) -> torch.Tensor:
    """How spread out attention is, in bits, averaged over the queries: ``(..., L, S) -> (...)``.

    For one query row ``p``: ``H(p) = -sum_j p_j log2 p_j`` (``0 log 0`` counts as 0, so masked keys are fine):
    0 bits when all attention is on one key, ``log2(S)`` bits when it is spread evenly over ``S`` keys.
    E.g. ``(batch, heads, L, S) -> (batch, heads)``: one number per head.
    """
    _check_float_tensor("weights", weights)
    if weights.dim() < 2:
        raise ValueError(f"weights must be (..., L, S) with at least 2 dims, got shape {tuple(weights.shape)}")
    per_query = -torch.special.xlogy(weights, weights).sum(dim=-1) / math.log(2)  # (..., L, S) -> (..., L)
    return per_query.mean(dim=-1).abs()  # (..., L) -> (...); abs() only turns -0.0 into 0.0


def previous_token_share(weights: torch.Tensor) -> torch.Tensor:
    """The share of attention a token puts on the token just before it, averaged over tokens: ``(..., L, S) -> (...)``.

    The mean of ``weights[..., i, i-1]`` over the queries ``i = 1 .. L-1`` (query 0 has no previous token):
    1.0 for a perfect "previous-token head", about ``1/S`` for uniform attention. Needs ``L >= 2``.
    """
    _check_float_tensor("weights", weights)
    if weights.dim() < 2 or weights.shape[-2] < 2 or weights.shape[-1] < weights.shape[-2] - 1:
        raise ValueError(
            f"weights must be (..., L, S) with L >= 2 queries and S >= L - 1 keys, got shape {tuple(weights.shape)}"
        )
    below = weights.diagonal(offset=-1, dim1=-2, dim2=-1)  # (..., L-1): weights[..., i, i-1] for i = 1..L-1
    return below.mean(dim=-1)  # (...)


#: Unhinted text renders about 40 % faster at the explorer's size and looks the same.
_FAST_TEXT = {"text.hinting": "no_hinting"}


def _grid_shape(num_heads: int) -> tuple[int, int]:
    """Rows and columns of the per-head grid: one row up to 4 heads, two rows up to 16, then rows of 8."""
    rows = 1 if num_heads <= 4 else 2 if num_heads <= 16 else math.ceil(num_heads / 8)
    return rows, math.ceil(num_heads / rows)


class _HeadFigure:
    """The figure for ONE head count and ONE sentence: a grid of per-head maps, then (optional) the enlarged head
    with its weights written in, then (optional) the map averaged over the heads.

    Built once. ``live=True`` (the widget's figure, on its own Agg canvas): what never changes for this head count
    and sentence (axes, token labels, titles) is drawn once into a cached background; :meth:`update` sets only the
    maps, the per-head numbers and the highlight, and :meth:`png` draws those on top of the background
    ("blitting"). ``live=False``: a normal figure with every number in it, drawn on ``figure`` (e.g. a pyplot
    figure, for a static copy of the explorer).
    """

    def __init__(
        self, num_heads: int, tokens: Sequence[str], headline: str, enlarged: bool, average: bool, live: bool,
        figure=None,
    ) -> None:
        from matplotlib.patches import Rectangle

        self.num_heads, self.tokens, self.live = num_heads, list(tokens), live
        n = len(self.tokens)
        if figure is None:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure

            figure = Figure(figsize=self.figsize(enlarged, average), dpi=80)
            FigureCanvasAgg(figure)
        self.fig = figure
        rows, cols = _grid_shape(num_heads)
        small = num_heads > 8 or n > 8
        label_size, title_size = (6.5, 7) if small else (8, 8.5)
        extra = int(enlarged) + int(average)  # panels right of the grid
        outer = figure.add_gridspec(1, 1 + extra, width_ratios=[7.0] + [2.5] * extra, left=0.055, right=0.99,
                                    bottom=0.15, top=0.83 if live else 0.74, wspace=0.1 + 0.08 * extra)
        grid = outer[0].subgridspec(rows, cols, wspace=0.1, hspace=0.95 if small else 0.7)
        blank = [[0.0] * n for _ in range(n)]
        style = {"vmin": 0.0, "vmax": 1.0, "cmap": "viridis", "interpolation": "none", "aspect": "equal"}
        self.number_lines = "{e:.2f} bits\nprev {p:.2f}" if small else "{e:.2f} bits, prev {p:.2f}"
        self.head_images, self.head_numbers, self.highlights = [], [], []
        for h in range(rows * cols):
            ax = figure.add_subplot(grid[h // cols, h % cols])
            if h >= num_heads:
                ax.axis("off")
                continue
            self.head_images.append(ax.imshow(blank, **style))
            last_row = h // cols == rows - 1 or h + cols >= num_heads
            self._label(ax, label_size, y=h % cols == 0, x=last_row)
            lines = 1 + self.number_lines.count("\n")
            self._above(ax, f"head {h}", title_size, 3 + 1.25 * title_size * lines, weight="bold")
            self.head_numbers.append(self._above(ax, "", title_size, 2))
            box = Rectangle((0, 0), 1, 1, transform=ax.transAxes, fill=False, edgecolor="#d62728", linewidth=3,
                            clip_on=False, visible=False)
            ax.add_patch(box)
            self.highlights.append(box)
        self.dynamic = [*self.head_images, *self.head_numbers, *self.highlights]
        self.big_image = self.avg_image = self.big_title = self.avg_title = None
        self.cell_texts: list = []
        panel = 1
        if enlarged:
            ax = figure.add_subplot(outer[panel])
            panel += 1
            self.big_image = ax.imshow(blank, **style)
            self._label(ax, label_size, y=True, x=True)
            self.big_title = self._above(ax, "", title_size + 0.5, 3)
            if n <= 8:  # write the weights into the cells
                self.cell_texts = [ax.text(j, i, "", ha="center", va="center", fontsize=7 if n <= 6 else 6)
                                   for i in range(n) for j in range(n)]
            self.dynamic += [self.big_image, self.big_title, *self.cell_texts]
        if average:
            ax = figure.add_subplot(outer[panel])
            self.avg_image = ax.imshow(blank, **style)
            self._label(ax, label_size, y=True, x=True)
            heads = "1 head" if num_heads == 1 else f"{num_heads} heads"
            # Live: a fixed title (part of the background); static: with the averaged map's entropy.
            self.avg_title = self._above(ax, f"average of {heads}", title_size + 0.5, 3)
            self.dynamic.append(self.avg_image)
            if not live:
                self.dynamic.append(self.avg_title)
        figure.suptitle(headline, fontsize=11)
        # The causal status is drawn only in the static figure (live, the checkbox and the read-out show it).
        self.status = figure.text(0.5, 0.885, "", ha="center", va="top", fontsize=9)
        figure.text(0.5, 0.012, "rows: query (attending) · columns: key (attended to) · colour: 0 = dark, 1 = bright",
                    ha="center", va="bottom", fontsize=8, color="#555555")
        self._background = None

    @staticmethod
    def figsize(enlarged: bool, average: bool) -> tuple[float, float]:
        return (7.5 + 2.7 * (int(enlarged) + int(average)), 4.4)

    @staticmethod
    def _above(ax, text: str, size: float, points: float, **kwargs):
        # A text centred ``points`` above the axes. Axes.set_title would re-compute its position at every draw
        # (slow, and wrong for a title drawn on its own, as blitting does).
        return ax.annotate(text, (0.5, 1.0), xycoords="axes fraction", xytext=(0, points), textcoords="offset points",
                           ha="center", va="bottom", fontsize=size, **kwargs)

    def _label(self, ax, size: float, x: bool, y: bool) -> None:
        # Token labels on the outer edges of the grid only; no ticks at all elsewhere (ticks are slow to draw).
        n = len(self.tokens)
        ax.set_xticks(range(n) if x else [], self.tokens if x else [], rotation=60, fontsize=size)
        ax.set_yticks(range(n) if y else [], self.tokens if y else [], fontsize=size)
        ax.tick_params(length=0, pad=1.5)

    def update(self, weights: torch.Tensor, enlarge: int, causal: bool) -> None:
        """Set the maps from ``weights`` ``(num_heads, L, L)``; highlight (and enlarge) head ``enlarge``."""
        w = weights.detach().float().cpu()
        entropy = attention_entropy(w).tolist()  # (num_heads,)
        prev = previous_token_share(w).tolist() if w.shape[-1] > 1 else [0.0] * self.num_heads  # (num_heads,)
        for h, (image, numbers, box) in enumerate(zip(self.head_images, self.head_numbers, self.highlights,
                                                      strict=True)):
            image.set_data(w[h].numpy())
            numbers.set_text(self.number_lines.format(e=entropy[h], p=prev[h]))
            box.set_visible(h == enlarge and self.num_heads > 1 and self.avg_image is not None)
        if self.big_image is not None:
            big = w[enlarge]  # (L, L)
            self.big_image.set_data(big.numpy())
            self.big_title.set_text(f"head {enlarge} enlarged: {entropy[enlarge]:.2f} bits, prev {prev[enlarge]:.2f}")
            n = big.shape[0]
            for k, text in enumerate(self.cell_texts):
                value = float(big[k // n, k % n])
                text.set_text(f"{value:.2f}".lstrip("0") if value < 0.995 else "1")  # ".37": fits a small cell
                text.set_color("black" if value > 0.6 else "white")
        if self.avg_image is not None:
            average = w.mean(dim=0)  # (num_heads, L, L) -> (L, L)
            self.avg_image.set_data(average.numpy())
            if not self.live:
                heads = "1 head" if self.num_heads == 1 else f"{self.num_heads} heads"
                self.avg_title.set_text(f"average of {heads}: {attention_entropy(average).item():.2f} bits")
        if not self.live:
            self.status.set_text(f"causal mask {'on: each token sees only itself and earlier ones' if causal else 'off'}")

    def prepare(self) -> None:
        """Draw and keep the background of a live figure: everything except the dynamic artists."""
        import matplotlib

        if self._background is not None:
            return
        visible = [a.get_visible() for a in self.dynamic]
        for a in self.dynamic:
            a.set_visible(False)
        with matplotlib.rc_context(_FAST_TEXT):
            self.fig.canvas.draw()
        self._background = self.fig.canvas.copy_from_bbox(self.fig.bbox)
        for a, v in zip(self.dynamic, visible, strict=True):
            a.set_visible(v)

    def png(self) -> bytes:
        """Render a live figure to PNG bytes: the background once, then only the dynamic artists on top of it."""
        import io

        import matplotlib
        import numpy as np
        from PIL import Image as PILImage

        canvas = self.fig.canvas
        self.prepare()
        with matplotlib.rc_context(_FAST_TEXT):
            canvas.restore_region(self._background)
            for a in self.dynamic:
                if a.get_visible():
                    self.fig.draw_artist(a)
        buffer = io.BytesIO()
        rgb = PILImage.fromarray(np.asarray(canvas.buffer_rgba())).convert("RGB")  # (height, width, 3)
        rgb.save(buffer, format="png", compress_level=1)  # level 1: 3x faster than the default, a little larger
        return buffer.getvalue()


def _explorer_tokens(sentence: str | Sequence[str]) -> list[str]:
    if isinstance(sentence, str):
        tokens = sentence.split()
    elif isinstance(sentence, Sequence) and all(isinstance(t, str) for t in sentence):
        tokens = [t for t in sentence if t.strip()]
    else:
        raise TypeError(f"sentence must be a string or a list of words, got {sentence!r}")
    if not tokens:
        raise ValueError("sentence is empty: type at least one word, e.g. 'the cat sat on the mat'")
    return tokens[:EXPLORER_MAX_TOKENS]


def _explorer_headline(d_model: int, num_heads: int, params: int) -> str:
    head_dim = d_model // num_heads
    heads = "1 head" if num_heads == 1 else f"{num_heads} heads"
    return f"d_model = {d_model} cut into {heads} of head_dim = {head_dim} · {params:,} parameters for every head count"


def _explorer_setup(
    d_model: int, num_heads: int, sentence: str | Sequence[str], seed: int, module: MultiHeadAttention | None,
) -> tuple[MultiHeadAttention, list[str]]:
    """Check the explorer's arguments; return the module to re-split and the sentence's words."""
    if module is None:
        module = explorer_module(d_model, seed)
    elif not isinstance(module, MultiHeadAttention):
        raise TypeError(f"module must be an mha_helpers.MultiHeadAttention, got {type(module).__name__}")
    elif module.kdim != module.embed_dim or module.vdim != module.embed_dim:
        raise ValueError(f"module must do self-attention (kdim = vdim = embed_dim), got {module}")
    _check_positive_int("num_heads", num_heads)
    _check_divisible(module.embed_dim, num_heads, d_name="d_model")
    return module, _explorer_tokens(sentence)


def _weights_table_html(weights: torch.Tensor, tokens: Sequence[str], caption: str) -> str:
    """One head's map ``(L, L)`` as an HTML table: its weights written in cells coloured like the heatmaps."""
    import html

    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    w = weights.detach().float().cpu()
    colours = colormaps["viridis"](w.clamp(0, 1).numpy())  # (L, L, 4) RGBA
    words = [html.escape(t) for t in tokens]
    cell = "padding:2px 5px;text-align:center;font:12px monospace"
    header = "".join(f"<th style='{cell}'>{t}</th>" for t in words)
    rows = [f"<tr><th></th>{header}</tr>"]
    for i, word in enumerate(words):
        tds = "".join(
            f"<td style='{cell};background:{to_hex(colours[i, j])};color:{'black' if w[i, j] > 0.6 else 'white'}'>"
            f"{float(w[i, j]):.2f}</td>"
            for j in range(w.shape[1])
        )
        rows.append(f"<tr><th style='{cell};text-align:right'>{word}</th>{tds}</tr>")
    return (f"<div style='font-size:12px'><b>{caption}</b><br>rows: query · columns: key"
            f"<table style='border-collapse:collapse;margin-top:4px'>{''.join(rows)}</table></div>")


class HeadExplorer:
    """The interactive head explorer returned by :func:`head_explorer`; display it as a cell's last expression.

    Attributes (ipywidgets): ``head_slider`` (a SelectionSlider over the valid head counts), ``enlarge`` (which
    head to enlarge), ``causal`` (checkbox), ``sentence`` (text box), ``readout`` (HTML: head_dim, parameter count,
    the most focused and most previous-token-like heads), ``image`` (the figure, PNG bytes), ``table`` (HTML: the
    enlarged head's weights), ``widget`` (the whole box). ``module`` is the one module being re-split; ``weights``
    the current maps ``(num_heads, seq, seq)``; ``last_redraw_ms`` how long the last redraw took in the kernel.
    """

    def __init__(
        self, module: MultiHeadAttention, num_heads: int, tokens: list[str], causal: bool, compact: bool, seed: int,
    ) -> None:
        import ipywidgets as widgets

        self.module, self.compact, self.seed, self.tokens = module, compact, seed, tokens
        self.d_model = module.embed_dim
        self.params = sum(p.numel() for p in module.parameters())
        self._figures: dict[int, _HeadFigure] = {}
        self._x = toy_embeddings(tokens, self.d_model, seed=seed)  # (1, seq, d_model)
        self.weights = torch.empty(0)
        self.last_redraw_ms = float("nan")
        self._updating = False

        self.head_slider = widgets.SelectionSlider(
            options=valid_head_counts(self.d_model), value=num_heads, description="heads", continuous_update=True,
            layout=widgets.Layout(width="320px"),
        )
        self.head_slider.add_class("mha-head-slider")
        self.enlarge = widgets.Dropdown(options=list(range(num_heads)), value=0, description="enlarge head",
                                        style={"description_width": "initial"}, layout=widgets.Layout(width="150px"))
        self.causal = widgets.Checkbox(value=causal, description="causal mask", indent=False,
                                       layout=widgets.Layout(width="110px"))
        self.sentence = widgets.Text(value=" ".join(tokens), description="sentence", continuous_update=False,
                                     layout=widgets.Layout(width="340px"))
        self.readout = widgets.HTML()
        self.readout.add_class("mha-head-readout")
        # flex-start: keep the figure's own size (a box would stretch it to its full width and blur it)
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%", height="auto",
                                                                       align_self="flex-start"))
        self.image.add_class("mha-head-figure")
        self.table = widgets.HTML()
        self.table.add_class("mha-head-table")
        wrap = widgets.Layout(flex_flow="row wrap", align_items="center")
        if compact:
            children = [self.head_slider, self.readout, self.image]
        else:
            children = [widgets.HBox([self.head_slider, self.enlarge, self.causal, self.sentence], layout=wrap),
                        self.readout, widgets.HBox([self.image, self.table], layout=wrap)]
        self.widget = widgets.VBox(children)
        self.widget.add_class("mha-head-explorer")

        self.redraw()
        # Build the other head counts' figures now (about a second in all), so that the first move of the slider to
        # them is as fast as every later one. Figures for more than 16 heads are built when first shown.
        for h in self.head_slider.options:
            if h <= 16:
                self.figure_for(h).prepare()
        self.head_slider.observe(self._on_head_count, names="value")
        self.enlarge.observe(self._on_change, names="value")
        self.causal.observe(self._on_change, names="value")
        self.sentence.observe(self._on_sentence, names="value")

    # ---- display --------------------------------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.widget._repr_mimebundle_(**kwargs)  # the widget view, for JupyterLab
        bundle["text/plain"] = repr(self)  # a short, stable text instead of the widgets' long repr
        return bundle

    def __repr__(self) -> str:
        h = self.head_slider.value
        kind = "compact, " if self.compact else ""
        return (f"HeadExplorer({kind}d_model={self.d_model}, num_heads={h}, head_dim={self.d_model // h}, "
                f"params={self.params}, tokens={len(self.tokens)}, causal={self.causal.value})")

    # ---- reacting to the controls ---------------------------------------------------------------------

    def _on_head_count(self, change) -> None:
        num_heads = change["new"]
        self._updating = True  # new options fire the dropdown's observer: one redraw is enough
        try:
            keep = self.enlarge.value if self.enlarge.value < num_heads else 0
            self.enlarge.options = list(range(num_heads))
            self.enlarge.value = keep
        finally:
            self._updating = False
        self._safe_redraw()

    def _on_change(self, change) -> None:
        if not self._updating:
            self._safe_redraw()

    def _on_sentence(self, change) -> None:
        try:
            tokens = _explorer_tokens(change["new"])
        except (TypeError, ValueError) as exc:
            self.readout.value = f"<b style='color:#b00'>{exc}</b>"
            return
        self.tokens = tokens
        self._x = toy_embeddings(tokens, self.d_model, seed=self.seed)  # (1, seq, d_model)
        self._figures.clear()  # the words are part of each figure's background: build the figures again
        self._safe_redraw()

    def _safe_redraw(self) -> None:
        try:
            self.redraw()
        except Exception as exc:  # an observer's exception would vanish into a log: show it instead
            self.readout.value = f"<b style='color:#b00'>could not redraw: {type(exc).__name__}: {exc}</b>"

    # ---- drawing --------------------------------------------------------------------------------------

    def figure_for(self, num_heads: int) -> _HeadFigure:
        """The figure for ``num_heads`` heads and the current sentence: built on first use, then reused."""
        if num_heads not in self._figures:
            headline = _explorer_headline(self.d_model, num_heads, self.params)
            self._figures[num_heads] = _HeadFigure(num_heads, self.tokens, headline, enlarged=False,
                                                   average=not self.compact, live=True)
        return self._figures[num_heads]

    def redraw(self) -> bytes:
        """Recompute the maps for the current controls and redraw; returns the PNG bytes shown."""
        import time

        start = time.perf_counter()
        num_heads, causal = self.head_slider.value, self.causal.value
        enlarge = min(self.enlarge.value, num_heads - 1)
        with _OneThread():
            self.weights = head_attention_maps(self.module, self._x, num_heads, causal=causal)[0]  # (heads, L, L)
        figure = self.figure_for(num_heads)
        figure.update(self.weights, enlarge, causal)
        png = figure.png()
        self.image.value = png
        self.readout.value = self._readout_html(num_heads, causal)
        if not self.compact:
            entropy = attention_entropy(self.weights[enlarge]).item()
            prev = previous_token_share(self.weights[enlarge]).item() if len(self.tokens) > 1 else 0.0
            caption = f"head {enlarge} of {num_heads}, enlarged: {entropy:.2f} bits, prev {prev:.2f}"
            self.table.value = _weights_table_html(self.weights[enlarge], self.tokens, caption)
        self.last_redraw_ms = (time.perf_counter() - start) * 1000.0
        return png

    def _readout_html(self, num_heads: int, causal: bool) -> str:
        text = (f"<b>num_heads = {num_heads}</b> · <b>head_dim = {self.d_model // num_heads}</b> "
                f"(= d_model {self.d_model} / {num_heads}) · parameters: <b>{self.params:,}</b>, "
                f"the same for every head count")
        if not self.compact and len(self.tokens) > 1:
            entropy = attention_entropy(self.weights)  # (num_heads,)
            prev = previous_token_share(self.weights)  # (num_heads,)
            n = len(self.tokens)
            # Uniform attention over the keys a query may see: log2(n) bits, or log2(i + 1) for query i when causal.
            flat = sum(math.log2(i + 1) for i in range(n)) / n if causal else math.log2(n)
            text += (f"<br>most focused: head {int(entropy.argmin())} ({float(entropy.min()):.2f} bits; uniform "
                     f"attention would be {flat:.2f} bits) · most previous-token-like: head "
                     f"{int(prev.argmax())} (prev {float(prev.max()):.2f})")
        return text


def head_explorer(
    d_model: int = 16,
    num_heads: int = 4,
    sentence: str | Sequence[str] = SENTENCE,
    causal: bool = False,
    compact: bool = False,
    seed: int = 0,
    module: MultiHeadAttention | None = None,
) -> HeadExplorer:
    """An interactive view of ONE multi-head attention module cut into different numbers of heads.

    The slider offers only the valid head counts (the divisors of ``d_model``). Moving it does not create new
    weights: ``W_q`` and ``W_k`` are the same ``(d_model, d_model)`` matrices for every head count (see
    :func:`resplit_heads`); only how their ``d_model`` output columns are cut into heads changes. With
    ``d_model=16`` and 8 heads, head 0 compares the tokens' query and key features 0-1, head 1 features 2-3, and so
    on, each in its own softmax; with 1 head, one softmax compares all 16 features at once. So the parameter count
    never changes, but the maps do.

    Shown: one heatmap per head, titled with its entropy in bits (low = focused) and ``prev``, its share of
    attention on the previous token; head_dim and the parameter count. Unless ``compact``: also the map averaged
    over the heads, the enlarged head's weights as a table, and controls for the enlarged head, the causal mask and
    the sentence (``compact=True`` keeps only the slider, the read-out and the per-head maps).
    ``module`` defaults to :func:`explorer_module` ``(d_model, seed)``; pass your own ``MultiHeadAttention``
    (self-attention, ``kdim = vdim = embed_dim``) to explore it instead (``d_model`` is then its ``embed_dim``).
    Words are embedded with :func:`toy_embeddings` ``(words, d_model, seed)``; at most ``EXPLORER_MAX_TOKENS``.
    Display the returned :class:`HeadExplorer` as a cell's last expression; :func:`plot_head_explorer` draws the
    same figure as a plain matplotlib figure.
    """
    _check_bool("causal", causal)
    _check_bool("compact", compact)
    module, tokens = _explorer_setup(d_model, num_heads, sentence, seed, module)
    return HeadExplorer(module, num_heads, tokens, causal, compact, seed)


def plot_head_explorer(
    d_model: int = 16,
    num_heads: int = 4,
    sentence: str | Sequence[str] = SENTENCE,
    causal: bool = False,
    compact: bool = False,
    enlarge: int = 0,
    seed: int = 0,
    module: MultiHeadAttention | None = None,
):
    """The head explorer's view frozen at one setting, as a plain matplotlib Figure (for static copies of a notebook).

    Same arguments and the same drawing as :func:`head_explorer`; ``enlarge`` picks the head drawn large with its
    weights written in (not drawn when ``compact``). Returns the Figure.
    """
    import matplotlib.pyplot as plt

    _check_bool("causal", causal)
    _check_bool("compact", compact)
    module, tokens = _explorer_setup(d_model, num_heads, sentence, seed, module)
    if isinstance(enlarge, bool) or not isinstance(enlarge, int) or not 0 <= enlarge < num_heads:
        raise ValueError(f"enlarge must be a head index 0..{num_heads - 1}, got enlarge={enlarge!r}")
    d_model = module.embed_dim
    x = toy_embeddings(tokens, d_model, seed=seed)  # (1, seq, d_model)
    weights = head_attention_maps(module, x, num_heads, causal=causal)[0]  # (num_heads, seq, seq)
    headline = _explorer_headline(d_model, num_heads, sum(p.numel() for p in module.parameters()))
    size = _HeadFigure.figsize(enlarged=not compact, average=not compact)
    # A static figure is read at leisure (and printed): a higher resolution than the live widget's 80 dpi,
    # where every redraw's PNG must stay small and fast.
    figure = _HeadFigure(num_heads, tokens, headline, enlarged=not compact, average=not compact, live=False,
                         figure=plt.figure(figsize=size, dpi=110))
    figure.update(weights, enlarge, causal)
    return figure.fig


# ---- exercises of notebook 06 --------------------------------------------------------------------------


@exercise_checker("Exercise 6.1: head_dim for every valid head count")
def check_head_dims(fn: Callable[[int], dict]) -> str | None:
    """Check ``fn(d_model) -> {num_heads: head_dim}`` for every valid head count of ``d_model``."""
    for d_model in (12, 16, 7, 1, 30):
        got = _call_student(fn, d_model)
        want = {h: d_model // h for h in valid_head_counts(d_model)}
        if not isinstance(got, dict):
            return f"fn({d_model}) should return a dict {{num_heads: head_dim}}, got {type(got).__name__}"
        bad = sorted(h for h in got if not isinstance(h, int) or isinstance(h, bool) or h not in want)
        if bad:
            return (f"fn({d_model}) has num_heads={bad[0]!r}, which does not divide d_model={d_model}; "
                    f"only the divisors are valid: {list(want)}")
        missing = [h for h in want if h not in got]
        if missing:
            return (f"fn({d_model}) leaves out num_heads={missing[0]}: every divisor of d_model is a valid head count "
                    f"(1 and d_model itself included), so expected the keys {list(want)}")
        for h, head_dim in want.items():
            value = got[h]
            if isinstance(value, float):
                return (f"fn({d_model})[{h}] is the float {value!r}; head_dim is a whole number of features: "
                        f"use d_model // num_heads")
            if value != head_dim:
                hint = " (that is num_heads * d_model?)" if value == h * d_model else ""
                return f"fn({d_model})[{h}] = {value!r}, expected head_dim = d_model // num_heads = {head_dim}{hint}"
    return None


def _random_maps(generator: torch.Generator, heads: int, L: int, causal: bool) -> torch.Tensor:
    """Random attention maps ``(heads, L, L)`` whose rows sum to 1 (zeros above the diagonal when ``causal``)."""
    scores = torch.randn(heads, L, L, generator=generator) * 2.0  # (heads, L, L)
    if causal:
        scores = scores.masked_fill(~causal_mask(L), float("-inf"))
    return torch.softmax(scores, dim=-1)


@exercise_checker("Exercise 6.2: the entropy of each head")
def check_head_entropy(fn: Callable[[torch.Tensor], torch.Tensor]) -> str | None:
    """Check ``fn(weights (heads, L, S)) -> (heads,)``: each head's entropy in bits, averaged over its queries."""
    g = torch.Generator().manual_seed(6002)
    cases = [_random_maps(g, 4, 6, causal=False), _random_maps(g, 3, 5, causal=True),
             torch.eye(5).expand(2, 5, 5).clone(), torch.full((2, 4, 4), 0.25)]
    for weights in cases:
        heads, L, _ = weights.shape
        want = attention_entropy(weights)  # (heads,)
        got = _call_student(fn, weights.clone())
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (heads, L):
            return (f"your result has shape {tuple(got.shape)}: one entropy per query row; average the rows "
                    f"(over dim -1 of your result) to get one number per head, shape ({heads},)")
        hint = _shape_hint("your result", got, (heads,))
        if hint:
            return hint
        got = got.detach().float()
        if torch.isnan(got).any():
            return ("your result contains NaN: a weight of 0 (a causal mask makes many) gives 0 * log(0) = 0 * -inf "
                    "= NaN; count 0·log 0 as 0, e.g. with torch.special.xlogy(p, p)")
        if torch.allclose(got, want, atol=1e-4):
            continue
        if torch.allclose(got, want * math.log(2), atol=1e-4):
            return "these are nats (natural log); this series measures entropy in bits: use torch.log2, or divide by math.log(2)"
        if torch.allclose(got, -want, atol=1e-4):
            return "the sign is flipped: entropy is -sum(p * log2(p)), which is never negative"
        if torch.allclose(got, want * L, atol=1e-4):
            return "you summed the entropies of the query rows; take their mean instead"
        return f"for maps of shape {tuple(weights.shape)} expected {want} (bits per head), got {got}"
    return None


@exercise_checker("Exercise 6.3: how much each head looks at the previous token")
def check_previous_token_share(fn: Callable[[torch.Tensor], torch.Tensor]) -> str | None:
    """Check ``fn(weights (heads, L, L)) -> (heads,)``: the mean of ``weights[h, i, i-1]`` over ``i = 1 .. L-1``."""
    g = torch.Generator().manual_seed(6003)
    shift = torch.diag(torch.ones(4), diagonal=-1)  # (5, 5): ones just below the diagonal
    shift[0, 0] = 1.0  # the first token has no previous token: it looks at itself
    cases = [_random_maps(g, 4, 6, causal=False), _random_maps(g, 3, 7, causal=True), shift.expand(2, 5, 5).clone()]
    for weights in cases:
        heads, L, _ = weights.shape
        want = previous_token_share(weights)  # (heads,)
        got = _call_student(fn, weights.clone())
        hint = _shape_hint("your result", got, (heads,))
        if hint:
            if isinstance(got, torch.Tensor) and tuple(got.shape) in {(heads, L - 1), (heads, L)}:
                hint += ": that is one number per query; average them to get one number per head"
            return hint
        got = got.detach().float()
        if torch.allclose(got, want, atol=1e-5):
            continue
        diagonal = weights.diagonal(dim1=-2, dim2=-1)  # (heads, L): each token's attention to itself
        above = weights.diagonal(offset=1, dim1=-2, dim2=-1)  # (heads, L-1): attention to the NEXT token
        if torch.allclose(got, diagonal.mean(-1), atol=1e-5):
            return ("you measured how much each token attends to ITSELF (the diagonal); the previous token is one "
                    "column to the left: weights[h, i, i-1], i.e. .diagonal(offset=-1, dim1=-2, dim2=-1)")
        if torch.allclose(got, above.mean(-1), atol=1e-5):
            return ("you measured attention to the NEXT token (above the diagonal, offset=+1); the previous token is "
                    "below it: offset=-1")
        if torch.allclose(got, want * (L - 1) / L, atol=1e-5) or torch.allclose(
            got, (want * (L - 1) + weights[:, 0, -1]) / L, atol=1e-5
        ):
            return (f"you averaged over all {L} queries, but query 0 has no previous token: average over the "
                    f"{L - 1} queries 1..{L - 1} only")
        if torch.allclose(got, want * (L - 1), atol=1e-5):
            return "you summed over the queries; take the mean instead"
        return f"for maps of shape {tuple(weights.shape)} expected {want}, got {got}"
    return None


# =====================================================================================================
# 9. MHA inside a Transformer (notebook 07)
# =====================================================================================================


class TransformerBlock(nn.Module):
    """One Transformer layer built around :class:`MultiHeadAttention`: attention, then an MLP, each wrapped in a
    residual connection and a LayerNorm.

    ``TransformerBlock(d_model, num_heads, d_ff=4 * d_model, memory_dim=None, dropout=0.0, norm_first=True)``

    * ``norm_first=True`` (pre-norm, the default): ``x = x + SelfAttn(LN(x))``, then ``x = x + MLP(LN(x))``. The
      residual path stays a clean sum, which lets deep stacks train without a learning-rate warm-up (Xiong et al.,
      2020, "On Layer Normalization in the Transformer Architecture"); GPT-2 and most later models use it.
    * ``norm_first=False`` (post-norm, as in Vaswani et al., 2017, section 3.1): ``x = LN(x + SelfAttn(x))``, then
      ``x = LN(x + MLP(x))``.
    * ``memory_dim`` given: a decoder block with a cross-attention sub-layer between the two (queries from ``x``,
      keys and values from ``memory``, whose width ``memory_dim`` may differ from ``d_model``: the module's
      ``kdim = vdim = memory_dim``).

    ``forward(x, memory=None, key_padding_mask=None, memory_key_padding_mask=None, is_causal=False,
    return_weights=False)``: ``x (batch, L, d_model)``, ``memory (batch, S, memory_dim)``; masks in
    ``nn.MultiheadAttention``'s convention (``key_padding_mask (batch, L)`` and ``memory_key_padding_mask
    (batch, S)``, True = padding). Returns ``(batch, L, d_model)``; with ``return_weights=True`` also a dict of
    per-head attention maps: ``"self" (batch, heads, L, L)`` and, in a decoder block, ``"cross" (batch, heads, L, S)``.
    The MLP is ``Linear(d_model, d_ff) -> ReLU -> Linear(d_ff, d_model)``, as in the paper (section 3.3).
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_ff: int | None = None,
        memory_dim: int | None = None,
        dropout: float = 0.0,
        norm_first: bool = True,
    ) -> None:
        super().__init__()
        _check_positive_int("d_model", d_model)
        d_ff = 4 * d_model if d_ff is None else d_ff
        _check_positive_int("d_ff", d_ff)
        if memory_dim is not None:
            _check_positive_int("memory_dim", memory_dim)
        _check_bool("norm_first", norm_first)
        self.d_model, self.d_ff, self.memory_dim, self.norm_first = d_model, d_ff, memory_dim, norm_first
        # MultiHeadAttention checks num_heads (a positive divisor of d_model) and dropout.
        # Sub-modules in the order the data meets them (pre-norm): norm, attention, [norm, cross-attention], norm, MLP.
        self.norm1 = nn.LayerNorm(d_model)
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout)
        self.cross_attn = None
        if memory_dim is not None:
            self.norm_cross = nn.LayerNorm(d_model)
            self.cross_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout, kdim=memory_dim, vdim=memory_dim)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, d_ff), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model)
        )  # (..., d_model) -> (..., d_ff) -> (..., d_model), position by position
        self.drop = nn.Dropout(dropout)  # on each sub-layer's output, before it joins the residual

    @property
    def num_heads(self) -> int:
        return self.self_attn.num_heads

    def extra_repr(self) -> str:
        kind = "decoder (self + cross)" if self.cross_attn is not None else "self-attention only"
        return f"d_model={self.d_model}, d_ff={self.d_ff}, {'pre-norm' if self.norm_first else 'post-norm'}, {kind}"

    def _sublayer(self, x: torch.Tensor, norm: nn.LayerNorm, fn: Callable[[torch.Tensor], torch.Tensor]):
        """One residual sub-layer ``(batch, L, d_model) -> (batch, L, d_model)``, pre- or post-norm."""
        if self.norm_first:
            return x + self.drop(fn(norm(x)))
        return norm(x + self.drop(fn(x)))

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        memory_key_padding_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        return_weights: bool = False,
    ):
        _check_float_tensor("x", x, ranks=(3,))
        if x.shape[-1] != self.d_model:
            raise ValueError(f"x has {x.shape[-1]} features (shape {tuple(x.shape)}) but the block has "
                             f"d_model={self.d_model}; x must be (batch, L, {self.d_model})")
        _check_bool("is_causal", is_causal)
        _check_bool("return_weights", return_weights)
        if self.cross_attn is None and (memory is not None or memory_key_padding_mask is not None):
            raise ValueError("this block has no cross-attention, so it takes no memory; build it with "
                             "TransformerBlock(..., memory_dim=<the memory's width>) to make a decoder block")
        if self.cross_attn is not None:
            if memory is None:
                raise ValueError(f"this is a decoder block (memory_dim={self.memory_dim}): pass memory, the "
                                 f"encoder's output of shape (batch, S, {self.memory_dim})")
            _check_float_tensor("memory", memory, ranks=(3,))
        weights: dict[str, torch.Tensor] = {}

        def self_attention(h):  # (batch, L, d_model) -> (batch, L, d_model)
            out, w = self.self_attn(h, key_padding_mask=key_padding_mask, is_causal=is_causal,
                                    need_weights=return_weights, average_attn_weights=False)
            weights["self"] = w  # (batch, heads, L, L) or None
            return out

        def cross_attention(h):  # queries (batch, L, d_model), keys/values (batch, S, memory_dim) -> (batch, L, d_model)
            out, w = self.cross_attn(h, memory, memory, key_padding_mask=memory_key_padding_mask,
                                     need_weights=return_weights, average_attn_weights=False)
            weights["cross"] = w  # (batch, heads, L, S) or None
            return out

        x = self._sublayer(x, self.norm1, self_attention)
        if self.cross_attn is not None:
            x = self._sublayer(x, self.norm_cross, cross_attention)
        x = self._sublayer(x, self.norm2, self.mlp)
        return (x, weights) if return_weights else x

    def to_torch(self) -> nn.TransformerEncoderLayer:
        """An ``nn.TransformerEncoderLayer`` (ReLU, ``batch_first=True``, same ``norm_first`` and dropout) holding
        this block's weights. Only for blocks without cross-attention (PyTorch's decoder layer has no ``kdim``)."""
        if self.cross_attn is not None:
            raise ValueError("to_torch() converts encoder blocks only; this block has cross-attention "
                             "(memory_dim is set), which nn.TransformerEncoderLayer does not have")
        ref = self.norm1.weight
        layer = nn.TransformerEncoderLayer(
            self.d_model, self.num_heads, dim_feedforward=self.d_ff, dropout=self.self_attn.dropout,
            activation="relu", batch_first=True, norm_first=self.norm_first, device=ref.device, dtype=ref.dtype,
        )
        layer.self_attn.load_state_dict(self.self_attn.to_torch().state_dict())
        layer.linear1.load_state_dict(self.mlp[0].state_dict())
        layer.linear2.load_state_dict(self.mlp[3].state_dict())
        layer.norm1.load_state_dict(self.norm1.state_dict())
        layer.norm2.load_state_dict(self.norm2.state_dict())
        layer.train(self.training)
        return layer


def toy_batch(
    sentences: Sequence[Sequence[str]], d_model: int = 8, seed: int = 0, pad: str = "<pad>"
) -> tuple[torch.Tensor, torch.Tensor, list[list[str]]]:
    """A padded batch of toy sentences: ``(x, key_padding_mask, padded_tokens)``.

    ``x`` is ``(batch, max_len, d_model)``: each sentence's :func:`toy_embeddings` (words + positions), zeros at the
    padding; ``key_padding_mask`` is ``(batch, max_len)``, True at padding (:func:`padding_mask`); ``padded_tokens``
    are the sentences filled up with ``pad``, ready to label attention maps.
    """
    if isinstance(sentences, str) or len(sentences) == 0 or any(isinstance(s, str) or len(s) == 0 for s in sentences):
        raise TypeError(f"sentences must be a non-empty list of non-empty token lists, got {sentences!r}")
    lengths = [len(s) for s in sentences]
    longest = max(lengths)
    x = torch.zeros(len(sentences), longest, d_model)  # (batch, max_len, d_model), zeros = padding
    for b, sentence in enumerate(sentences):
        x[b, : len(sentence)] = toy_embeddings(list(sentence), d_model=d_model, seed=seed)[0]  # (len, d_model)
    padded = [list(s) + [pad] * (longest - len(s)) for s in sentences]
    return x, padding_mask(lengths), padded


# ---- notebook 07: exercise checkers ---------------------------------------------------------------------


def _pre_norm_variants(x, norm, sublayer) -> dict[str, torch.Tensor]:
    """The right pre-norm residual sub-layer and its typical mistakes, each ``(batch, L, d) -> (batch, L, d)``."""
    return {
        "right": x + sublayer(norm(x)),
        "post-norm": norm(x + sublayer(x)),
        "no residual": sublayer(norm(x)),
        "norm after": x + norm(sublayer(x)),
        "no norm": x + sublayer(x),
    }


@exercise_checker("Exercise 7.1: a pre-norm residual sub-layer")
def check_pre_norm_sublayer(fn: Callable[..., torch.Tensor]) -> str | None:
    """Check ``fn(x, norm, sublayer) -> x + sublayer(norm(x))`` on hidden cases (``x (batch, L, d_model)``, ``norm`` a
    LayerNorm with random scale and shift, ``sublayer`` a random Linear). Hints name post-norm, a missing residual,
    the norm in the wrong place, or a missing norm."""
    g = torch.Generator().manual_seed(701)
    hints = {
        "post-norm": "that is post-norm, LN(x + sublayer(x)) (the 2017 paper's order); pre-norm normalises the "
                     "sub-layer's INPUT and adds the result to the untouched x: x + sublayer(norm(x))",
        "no residual": "the residual connection is missing: add x back, x + sublayer(norm(x))",
        "norm after": "the norm is in the wrong place: it goes before the sub-layer, x + sublayer(norm(x))",
        "no norm": "the LayerNorm is missing: the sub-layer should see norm(x), not x",
    }
    for batch, L, d in ((2, 5, 8), (1, 3, 6)):
        x = torch.randn(batch, L, d, generator=g) * 3 + 1  # far from normalised, so a missing norm shows
        norm = nn.LayerNorm(d)  # its initialisation uses no randomness
        sublayer = _random_linear(d, d, g)  # seeded, so torch's global random state is left alone
        with torch.no_grad():
            norm.weight.copy_(1.0 + 0.5 * torch.randn(d, generator=g))
            norm.bias.copy_(0.5 * torch.randn(d, generator=g))
            variants = _pre_norm_variants(x, norm, sublayer)
            got = _call_student(fn, x.clone(), norm, sublayer)
        hint = _shape_hint("your output", got, x.shape)
        if hint:
            return f"{hint}: a residual sub-layer keeps the shape (batch, L, d_model)"
        if _matches(got, variants["right"]):
            continue
        for name, expected in variants.items():
            if name != "right" and _matches(got, expected):
                return hints[name]
        return "right shape, wrong values: compute h = norm(x), then return x + sublayer(h)"
    return None


def _causal_padding_mask(lengths: Sequence[int], seq_len: int) -> torch.Tensor:
    """Reference for exercise 7.2: ``(batch, seq_len, seq_len)`` bool, True where query i may NOT look at key j."""
    future = ~causal_mask(seq_len)  # (L, L): True above the diagonal (j > i)
    padded = padding_mask(lengths, seq_len)  # (batch, L): True at padding
    return future[None, :, :] | padded[:, None, :]  # (1, L, L) | (batch, 1, L) -> (batch, L, L)


@exercise_checker("Exercise 7.2: one mask for causal attention over a padded batch")
def check_causal_padding_mask(fn: Callable[[Sequence[int], int], torch.Tensor]) -> str | None:
    """Check ``fn(lengths, seq_len) -> (batch, seq_len, seq_len)`` bool, True where query i may NOT attend to key j
    (nn.MultiheadAttention's convention): j is in i's future, or j is padding. Hints name the usual mistakes."""
    for lengths, seq_len in (([4, 2, 3], 4), ([5, 1], 6)):
        expected = _causal_padding_mask(lengths, seq_len)
        got = _call_student(fn, list(lengths), seq_len)
        if not isinstance(got, torch.Tensor):
            return f"return a torch.Tensor, got {type(got).__name__}"
        if got.dtype != torch.bool:
            return f"return a boolean mask (True = blocked), got dtype {got.dtype}; comparisons like >= give bools"
        if tuple(got.shape) == (seq_len, seq_len):
            return (f"your mask has shape {tuple(got.shape)}: each sentence has its own padding, so the mask needs a "
                    f"batch axis, (batch, L, L) = {tuple(expected.shape)}")
        hint = _shape_hint("your mask", got, expected.shape)
        if hint:
            return f"{hint} = (batch, L, L)"
        if torch.equal(got, expected):
            continue
        if torch.equal(got, ~expected):
            return ("your mask is the wrong way round: here True means BLOCKED (nn.MultiheadAttention's convention), "
                    "so True goes to future keys and to padding")
        if torch.equal(got, expected.transpose(1, 2)):
            return "rows and columns swapped: row i is the query, column j the key; block the keys j > i"
        future = (~causal_mask(seq_len)).expand_as(expected)
        if torch.equal(got, future):
            return "only the causal part: also block the keys that are padding (padding_mask(lengths, seq_len))"
        if torch.equal(got, padding_mask(lengths, seq_len)[:, None, :].expand_as(expected)):
            return "only the padding part: also block every key j > i (the future), e.g. with ~mh.causal_mask(L)"
        return "right shape, wrong entries: block (True) where key j > query i OR key j is padding"
    return None


# =====================================================================================================
# 10. What heads learn (notebook 08)
# =====================================================================================================

# ---- the task: two look-ups per position ------------------------------------------------------------
# A sequence of random letters. At every position i >= 1 the model must answer two questions at once:
# "which token came just before me?" (position i-1) and "which token opened the sequence?" (position 0).

#: The two look-ups of the task, in the order of the targets' last axis.
LOOKUP_PATTERNS: tuple[str, str] = ("previous", "first")

#: The value F.cross_entropy ignores: the target of position 0, which has no previous token.
IGNORE_INDEX: int = -100


def lookup_letters(vocab_size: int = 8) -> list[str]:
    """The token names ``["A", "B", ...]`` of the two-look-up task (``vocab_size`` at most 26)."""
    _check_positive_int("vocab_size", vocab_size)
    if vocab_size > 26:
        raise ValueError(f"vocab_size must be at most 26 (one letter per token), got vocab_size={vocab_size}")
    return [chr(ord("A") + t) for t in range(vocab_size)]


def two_lookup_targets(tokens: torch.Tensor) -> torch.Tensor:
    """The answers of the two-look-up task for a batch of token ids: ``(batch, seq)`` -> ``(batch, seq, 2)``.

    ``targets[b, i, 0]`` is the previous token ``tokens[b, i-1]`` and ``targets[b, i, 1]`` the first token
    ``tokens[b, 0]``; position 0 has no previous token, so both its targets are ``IGNORE_INDEX`` (-100), which
    ``F.cross_entropy`` skips.
    """
    if not isinstance(tokens, torch.Tensor) or tokens.dtype != torch.long or tokens.dim() != 2:
        got = f"{tokens.dtype} tensor of shape {tuple(tokens.shape)}" if isinstance(tokens, torch.Tensor) else type(
            tokens).__name__
        raise TypeError(f"tokens must be a (batch, seq) tensor of token ids (torch.long), got {got}")
    if tokens.shape[1] < 2:
        raise ValueError(f"tokens must have at least 2 positions (seq >= 2), got shape {tuple(tokens.shape)}")
    previous = torch.full_like(tokens, IGNORE_INDEX)  # (batch, seq)
    previous[:, 1:] = tokens[:, :-1]  # position i gets token i-1
    first = tokens[:, :1].expand_as(tokens).clone()  # (batch, 1) -> (batch, seq): token 0 everywhere
    first[:, 0] = IGNORE_INDEX
    return torch.stack([previous, first], dim=-1)  # 2 x (batch, seq) -> (batch, seq, 2)


def make_two_lookup_batch(
    batch_size: int, seq_len: int = 8, vocab_size: int = 8, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random sequences and their answers: ``tokens (batch, seq)`` (uniform ids < ``vocab_size``) and
    ``targets (batch, seq, 2)`` from :func:`two_lookup_targets`. Pass a seeded ``generator`` for repeatable data."""
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("seq_len", seq_len)
    _check_positive_int("vocab_size", vocab_size)
    if seq_len < 3:
        raise ValueError(f"seq_len must be at least 3 (so 'previous' and 'first' can differ), got seq_len={seq_len}")
    if vocab_size < 2:
        raise ValueError(f"vocab_size must be at least 2, got vocab_size={vocab_size}")
    tokens = torch.randint(0, vocab_size, (batch_size, seq_len), generator=generator)  # (batch, seq)
    return tokens, two_lookup_targets(tokens)


# ---- the tiny model -------------------------------------------------------------------------------


class TinyLookupModel(nn.Module):
    """Token embedding + learned positions -> ONE ``MultiHeadAttention`` layer -> a linear read-out.

    ``forward(tokens (batch, seq)) -> logits (batch, seq, 2, vocab_size)``: for every position one score per letter
    for each of the two look-ups (``LOOKUP_PATTERNS``). There is no residual connection and no MLP on purpose:
    whatever the read-out knows about other positions came through the attention heads, so switching a head off
    shows what it carried. ``return_weights=True`` also returns the per-head attention ``(batch, heads, seq, seq)``.
    The parameter count does not depend on ``num_heads`` (only the split of ``d_model`` does).
    """

    def __init__(self, vocab_size: int = 8, seq_len: int = 8, d_model: int = 8, num_heads: int = 2) -> None:
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("seq_len", seq_len), ("d_model", d_model),
                            ("num_heads", num_heads)):
            _check_positive_int(name, value)
        self.vocab_size, self.seq_len = vocab_size, seq_len
        self.token_emb = nn.Embedding(vocab_size, d_model)  # id -> (d_model,)
        self.pos_emb = nn.Embedding(seq_len, d_model)  # position -> (d_model,), learned
        self.attn = MultiHeadAttention(d_model, num_heads)  # checks that num_heads divides d_model
        self.readout = nn.Linear(d_model, len(LOOKUP_PATTERNS) * vocab_size)  # d_model -> 2 * vocab

    @property
    def num_heads(self) -> int:
        return self.attn.num_heads

    def forward(self, tokens: torch.Tensor, return_weights: bool = False):
        if not isinstance(tokens, torch.Tensor) or tokens.dtype != torch.long or tokens.dim() != 2:
            got = f"{tokens.dtype} of shape {tuple(tokens.shape)}" if isinstance(tokens, torch.Tensor) else type(
                tokens).__name__
            raise TypeError(f"tokens must be a (batch, seq) torch.long tensor of token ids, got {got}")
        _check_bool("return_weights", return_weights)
        batch, seq = tokens.shape
        if seq > self.seq_len:
            raise ValueError(f"tokens has {seq} positions but the model learned only seq_len={self.seq_len}")
        if bool((tokens < 0).any()) or bool((tokens >= self.vocab_size).any()):
            raise ValueError(f"token ids must be in 0..{self.vocab_size - 1}, got ids from {int(tokens.min())} "
                             f"to {int(tokens.max())}")
        positions = torch.arange(seq, device=tokens.device)  # (seq,)
        x = self.token_emb(tokens) + self.pos_emb(positions)  # (batch, seq, d_model) + (seq, d_model)
        out, weights = self.attn(x, need_weights=return_weights, average_attn_weights=False)  # (batch, seq, d_model)
        logits = self.readout(out)  # (batch, seq, 2 * vocab)
        logits = logits.view(batch, seq, len(LOOKUP_PATTERNS), self.vocab_size)  # -> (batch, seq, 2, vocab)
        return (logits, weights) if return_weights else logits


class heads_switched_off:  # lower-case: used like a function, `with mh.heads_switched_off(attn, [0]):`
    """``with heads_switched_off(attn, heads):`` inside the block, ``attn`` works as if those heads found nothing.

    ``attn`` is a :class:`MultiHeadAttention`, ``heads`` a head number or a list of them. A forward pre-hook on
    ``attn.W_o`` zeroes those heads' slices of the concatenated head outputs ``(batch, seq, num_heads * head_dim)``
    just before the output projection mixes them; the hook is removed when the block ends.
    """

    def __init__(self, attn: MultiHeadAttention, heads: int | Sequence[int]) -> None:
        if not isinstance(attn, MultiHeadAttention):
            raise TypeError(f"attn must be an mha_helpers.MultiHeadAttention, got {type(attn).__name__}")
        heads = [heads] if isinstance(heads, int) and not isinstance(heads, bool) else list(heads)
        for h in heads:
            if isinstance(h, bool) or not isinstance(h, int) or not 0 <= h < attn.num_heads:
                raise ValueError(f"heads must be head numbers in 0..{attn.num_heads - 1}, got {h!r}")
        self.attn, self.heads, self.handle = attn, heads, None

    def __enter__(self) -> heads_switched_off:
        attn = self.attn
        keep = torch.ones(attn.num_heads, 1, device=attn.W_o.weight.device, dtype=attn.W_o.weight.dtype)  # (heads, 1)
        keep[self.heads] = 0.0

        def zero_heads(module, args):
            (merged,) = args  # (batch, seq, num_heads * head_dim)
            split = merged.unflatten(-1, (attn.num_heads, attn.head_dim))  # -> (batch, seq, heads, head_dim)
            return ((split * keep).flatten(-2),)  # switched-off heads -> 0; (batch, seq, heads * head_dim)

        self.handle = attn.W_o.register_forward_pre_hook(zero_heads)
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()


def _lookup_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over both look-ups: logits ``(batch, seq, 2, vocab)``, targets ``(batch, seq, 2)``."""
    return F.cross_entropy(logits.flatten(0, 2), targets.flatten(), ignore_index=IGNORE_INDEX)  # (B*seq*2, vocab)


#: Finished training runs of :func:`train_lookup_model`, by their arguments: ``(state_dict, losses)``.
_TRAINED_LOOKUP_RUNS: dict[tuple, tuple[dict[str, torch.Tensor], list[float]]] = {}


def train_lookup_model(
    num_heads: int,
    d_model: int = 8,
    seed: int = 0,
    steps: int = 150,
    batch_size: int = 64,
    lr: float = 0.03,
    seq_len: int = 8,
    vocab_size: int = 8,
    progress: bool = True,
) -> tuple[TinyLookupModel, list[float]]:
    """Train a :class:`TinyLookupModel` on fresh random batches of the two-look-up task; returns ``(model, losses)``.

    Adam, ``steps`` steps of ``batch_size`` new sequences each (so nothing can be memorised). Everything random
    comes from ``seed`` (the weights from ``torch.manual_seed(seed)`` inside a forked RNG, so the caller's random
    state is left alone; the data from its own generator), and training runs on one CPU thread, so the same seed
    gives bit-identical results on every run and at any ``OMP_NUM_THREADS``. ``progress`` shows a tqdm bar.
    The model comes back in eval mode; ``losses`` holds the loss of every step.

    Because a run is fully determined by its arguments, finished runs are remembered for the session: asking again
    with the same arguments returns a fresh copy of the same trained model at once (the sweep reuses the runs of
    the notebook's first comparison this way).
    """
    _check_positive_int("num_heads", num_heads)
    _check_positive_int("d_model", d_model)
    _check_positive_int("steps", steps)
    _check_positive_int("batch_size", batch_size)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got seed={seed!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < 1:
        raise ValueError(f"lr must be a learning rate between 0 and 1, e.g. 0.03, got lr={lr!r}")
    if d_model % num_heads:
        raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}; valid head counts: "
                         f"{', '.join(map(str, valid_head_counts(d_model)))}")
    make_two_lookup_batch(1, seq_len, vocab_size, torch.Generator())  # checks seq_len and vocab_size first
    _check_bool("progress", progress)
    from tqdm.auto import tqdm

    key = (num_heads, d_model, seed, steps, batch_size, float(lr), seq_len, vocab_size)
    if key in _TRAINED_LOOKUP_RUNS:
        state, losses = _TRAINED_LOOKUP_RUNS[key]
        with torch.random.fork_rng(devices=[]):  # building the model draws random weights: keep the caller's RNG
            model = TinyLookupModel(vocab_size, seq_len, d_model, num_heads)
        model.load_state_dict(state)
        return model.eval(), list(losses)

    data = torch.Generator().manual_seed(10_000 + seed)
    losses: list[float] = []
    with _OneThread(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TinyLookupModel(vocab_size, seq_len, d_model, num_heads)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, foreach=True)
        bar = tqdm(range(steps), desc=f"{num_heads} head{'s' if num_heads > 1 else ''}", disable=not progress,
                   leave=True)
        for step in bar:
            tokens, targets = make_two_lookup_batch(batch_size, seq_len, vocab_size, generator=data)
            loss = _lookup_loss(model(tokens), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if step % 20 == 0 or step == steps - 1:
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
    _TRAINED_LOOKUP_RUNS[key] = ({k: v.detach().clone() for k, v in model.state_dict().items()}, list(losses))
    return model.eval(), losses


def lookup_test_set(num_examples: int = 2000, seq_len: int = 8, vocab_size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed test sequences every evaluation uses: ``tokens (n, seq)``, ``targets (n, seq, 2)`` (seed 12345,
    which no training run uses)."""
    return make_two_lookup_batch(num_examples, seq_len, vocab_size, generator=torch.Generator().manual_seed(12345))


def lookup_accuracy(
    model: TinyLookupModel, heads_off: Sequence[int] = (), num_examples: int = 2000, start: int = 2
) -> dict[str, float]:
    """Accuracy on the fixed test set: ``{"previous": ..., "first": ..., "both": ...}``, each a fraction in [0, 1].

    Scored at positions ``start..seq-1`` (default 2: at position 1 the previous token IS the first token, so one
    look-up would answer both). ``"both"`` counts a position as right only when both look-ups are right.
    ``heads_off`` switches those heads off (see :func:`heads_switched_off`) for the measurement.
    """
    if not isinstance(model, TinyLookupModel):
        raise TypeError(f"model must be a TinyLookupModel, got {type(model).__name__}")
    tokens, targets = lookup_test_set(num_examples, model.seq_len, model.vocab_size)
    with _OneThread(), torch.no_grad(), heads_switched_off(model.attn, heads_off):
        predicted = model(tokens).argmax(dim=-1)  # (n, seq, 2, vocab) -> (n, seq, 2)
    right = (predicted == targets)[:, start:]  # (n, seq - start, 2)
    return {
        LOOKUP_PATTERNS[0]: right[..., 0].float().mean().item(),
        LOOKUP_PATTERNS[1]: right[..., 1].float().mean().item(),
        "both": right.all(dim=-1).float().mean().item(),
    }


def lookup_attention(model: TinyLookupModel, tokens: torch.Tensor) -> torch.Tensor:
    """The trained model's per-head attention for some sequences: ``(batch, seq)`` -> ``(batch, heads, seq, seq)``."""
    with _OneThread(), torch.no_grad():
        _, weights = model(tokens, return_weights=True)
    return weights


def attention_shares(weights: torch.Tensor, start: int = 2) -> torch.Tensor:
    """How much of each head's attention lands where each look-up needs it: ``(batch, heads, L, S)`` -> ``(heads, 2)``.

    Column 0: the mean weight query ``i`` gives key ``i-1`` (the previous token); column 1: the mean weight it gives
    key 0 (the first token). Averaged over the batch and the queries ``i >= start`` (default 2: from there on the two
    look-ups point at different positions). 1.0 means the head looks only there.
    """
    _check_float_tensor("weights", weights, ranks=(4,))
    L = weights.shape[-2]
    if not 1 <= start < L:
        raise ValueError(f"start must be in 1..{L - 1} (a query with a previous token), got start={start}")
    queries = torch.arange(start, L, device=weights.device)  # (n_q,)
    previous = weights[:, :, queries, queries - 1]  # (batch, heads, n_q): w[b, h, i, i-1]
    first = weights[:, :, queries, 0]  # (batch, heads, n_q): w[b, h, i, 0]
    return torch.stack([previous.mean(dim=(0, 2)), first.mean(dim=(0, 2))], dim=-1)  # (heads, 2)


def ablation_table(model: TinyLookupModel, num_examples: int = 2000) -> dict[str, dict[str, float]]:
    """Accuracy with every head on (key ``"none"``) and with each head switched off in turn (keys ``"head 0"``, ...).

    Each value is :func:`lookup_accuracy`'s dict ``{"previous", "first", "both"}``.
    """
    table = {"none": lookup_accuracy(model, (), num_examples)}
    for h in range(model.num_heads):
        table[f"head {h}"] = lookup_accuracy(model, (h,), num_examples)
    return table


def head_count_sweep(
    d_model: int = 8, seeds: Sequence[int] = (0, 1, 2, 3, 4), progress: bool = True, **train_kwargs
) -> dict[int, list[dict[str, float]]]:
    """Train one model per (head count, seed) at fixed ``d_model``; head counts are every divisor of ``d_model``.

    Returns ``{num_heads: [lookup_accuracy(...) for each seed]}``. The models have the same parameter count and the
    same computation (only the split of d_model into heads changes), as in Vaswani et al. (2017), Table 3 rows (A).
    ``train_kwargs`` go to :func:`train_lookup_model`; one tqdm bar counts the runs.
    """
    from tqdm.auto import tqdm

    seeds = list(seeds)
    runs = [(h, s) for h in valid_head_counts(d_model) for s in seeds]
    results: dict[int, list[dict[str, float]]] = {h: [] for h in valid_head_counts(d_model)}
    for h, s in tqdm(runs, desc=f"sweep at d_model={d_model}", disable=not progress):
        model, _ = train_lookup_model(h, d_model=d_model, seed=s, progress=False, **train_kwargs)
        results[h].append(lookup_accuracy(model))
    return results


def sweep_summary(results: dict[int, list[dict[str, float]]], key: str = "both") -> list[dict[str, float]]:
    """One row per head count: ``num_heads``, ``mean``, ``min``, ``max`` of ``key`` accuracy over the seeds."""
    rows = []
    for h, runs in results.items():
        values = torch.tensor([r[key] for r in runs], dtype=torch.float64)
        rows.append({"num_heads": h, "mean": float(values.mean()), "min": float(values.min()),
                     "max": float(values.max())})
    return rows


def plot_lookup_heads(
    weights: torch.Tensor, labels: Sequence[str], title: str = "What each head looks at", annot: bool = True
):
    """Per-head maps ``(num_heads, L, L)`` (or ``(1, num_heads, L, L)``) of a :class:`TinyLookupModel`, with the cells
    each look-up needs outlined: key ``i-1`` for "previous" (red, solid) and key 0 for "first" (blue, dashed),
    for the queries ``i >= 2``. Each head's title gives its :func:`attention_shares` on the sequences drawn (pass
    one sequence, ``(1, heads, L, L)``, for a readable map). Returns the Figure."""
    from matplotlib.patches import Patch, Rectangle

    w = weights.detach()
    if w.dim() == 4 and w.shape[0] == 1:
        w = w[0]
    _check_float_tensor("weights", w, ranks=(3,))
    num_heads, L, _ = w.shape
    shares = attention_shares(w.unsqueeze(0))  # (heads, 2)
    fig = plot_heads(w, labels, title=title, annot=annot)
    cols = min(4, num_heads)
    fig.set_size_inches(4.6 * cols + 0.4, 4.4 * math.ceil(num_heads / cols) + 0.9)
    for h in range(num_heads):
        ax = fig.axes[h]
        for i in range(2, L):  # cell (row i, column j) spans x in [j, j+1], y in [i, i+1]
            ax.add_patch(Rectangle((i - 1, i), 1, 1, fill=False, edgecolor="red", lw=2.2))
            ax.add_patch(Rectangle((0.04, i + 0.04), 0.92, 0.92, fill=False, edgecolor="deepskyblue", lw=2.2, ls="--"))
        ax.set_title(f"head {h}, on this example: {shares[h, 0]:.0%} on previous, {shares[h, 1]:.0%} on first",
                     fontsize=10)
    fig.legend(
        handles=[Patch(fill=False, edgecolor="red", lw=2, label="where 'previous' must look: key i-1"),
                 Patch(fill=False, edgecolor="deepskyblue", lw=2, ls="--", label="where 'first' must look: key 0")],
        loc="lower center", ncol=2 if num_heads > 1 else 1, fontsize=9, frameon=False,
    )
    fig.tight_layout(rect=(0, 0.05 if num_heads > 1 else 0.09, 1, 1))
    return fig


def plot_head_sweep(results: dict[int, list[dict[str, float]]], d_model: int | None = None, ax=None):
    """Accuracy against the number of heads, from :func:`head_count_sweep`'s results: "both look-ups right" as the
    mean with min-max bars and every seed as a dot; each look-up's mean as a thin line; the 1-in-8 guessing level.
    Returns the ``Axes``."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 5.2))
    heads = list(results)
    n_seeds = len(results[heads[0]])
    xs = list(range(len(heads)))  # evenly spaced, labelled with the head counts
    for key, style in (("previous", {"ls": "--", "color": "tab:orange"}), ("first", {"ls": ":", "color": "tab:green"})):
        means = [sum(r[key] for r in results[h]) / len(results[h]) for h in heads]
        ax.plot(xs, [100 * m for m in means], marker=".", label=f"'{key}' right (mean)", **style)
    rows = sweep_summary(results)
    means = [100 * r["mean"] for r in rows]
    lower = [100 * (r["mean"] - r["min"]) for r in rows]
    upper = [100 * (r["max"] - r["mean"]) for r in rows]
    ax.errorbar(xs, means, yerr=[lower, upper], color="tab:blue", marker="o", capsize=5, lw=2,
                label=f"both right: mean, min–max over {n_seeds} seeds")
    for x, h in zip(xs, heads, strict=True):
        runs = results[h]
        offsets = [0.12 + 0.04 * (k - (len(runs) - 1) / 2) for k in range(len(runs))]  # beside the bar, spread out
        ax.scatter([x + o for o in offsets], [100 * r["both"] for r in runs], color="tab:blue", s=14, alpha=0.6,
                   zorder=3, label="both right: one seed" if x == 0 else None)
    ax.axhline(100 / 8, color="grey", lw=1, ls="-.", label="guessing one look-up: 1 in 8")
    d_model = d_model if d_model is not None else heads[-1]
    ax.set_xticks(xs, [f"{h}\n(head_dim {d_model // h})" for h in heads])
    ax.set_xlim(-0.4, len(heads) - 0.6)
    ax.set_xlabel(f"number of heads at d_model = {d_model}")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title("Same model size, different number of heads")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    ax.figure.tight_layout()
    return ax


# ---- notebook 08: exercise checkers ---------------------------------------------------------------------


@exercise_checker("Exercise 8.1: the answers of the two-look-up task")
def check_lookup_targets(fn: Callable[[torch.Tensor], torch.Tensor]) -> str | None:
    """Check ``fn(tokens (batch, seq)) -> targets (batch, seq, 2)`` against :func:`two_lookup_targets`."""
    g = torch.Generator().manual_seed(801)
    for batch, seq in ((3, 6), (2, 9)):
        tokens = torch.randint(0, 8, (batch, seq), generator=g)
        expected = two_lookup_targets(tokens)
        got = _call_student(fn, tokens.clone())
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (2, batch, seq):
            return (f"your targets have shape {tuple(got.shape)} = (2, batch, seq): stack the two answers on the "
                    f"LAST axis, torch.stack([previous, first], dim=-1) -> {tuple(expected.shape)}")
        hint = _shape_hint("your targets", got, expected.shape)
        if hint:
            return f"{hint} = (batch, seq, 2)"
        if got.dtype != torch.long:
            return f"targets are token ids: return a torch.long tensor, got {got.dtype}"
        if torch.equal(got, expected):
            continue
        if torch.equal(got[:, 1:], expected[:, 1:]):
            return (f"positions 1.. are right, but position 0 has no previous token: set both its targets to "
                    f"IGNORE_INDEX = {IGNORE_INDEX} (got {got[0, 0].tolist()})")
        if torch.equal(got[:, 1:], expected[:, 1:].flip(-1)):
            return "the two answers are swapped: [..., 0] is the previous token, [..., 1] the first token"
        if torch.equal(got[:, 1:, 0], tokens[:, 1:]):
            return "[..., 0] holds each position's own token: it should be the token one position earlier, i-1"
        if seq > 1 and torch.equal(got[:, :-1, 0], tokens[:, 1:]):
            return "[..., 0] holds the NEXT token (i+1); the task asks for the previous one, tokens[:, i-1]"
        return "right shape, wrong values: targets[b, i] should be (tokens[b, i-1], tokens[b, 0]) for i >= 1"
    return None


@exercise_checker("Exercise 8.2: each head's share of attention on the previous token")
def check_previous_share(fn: Callable[[torch.Tensor], torch.Tensor]) -> str | None:
    """Check ``fn(weights (batch, heads, L, L)) -> (heads,)``: the mean weight query i gives key i-1, over the batch
    and the queries i = 2 .. L-1 (column 0 of :func:`attention_shares`)."""
    g = torch.Generator().manual_seed(802)
    for batch, heads, L in ((3, 2, 6), (2, 4, 8)):
        weights = torch.softmax(torch.randn(batch, heads, L, L, generator=g) * 2, dim=-1)  # rows sum to 1
        expected = attention_shares(weights)[:, 0]  # (heads,)
        got = _call_student(fn, weights.clone())
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (batch,):
            return f"your result has shape {tuple(got.shape)} = (batch,): average over the batch and the queries, keep one number per head"
        hint = _shape_hint("your result", got, expected.shape)
        if hint:
            return f"{hint} = (heads,): one share per head"
        if _matches(got, expected):
            continue
        i = torch.arange(L)
        wrong = {
            "the diagonal (each token's weight on itself, key i); the previous token is key i-1":
                weights[:, :, i, i].mean(dim=(0, 2)),
            "the next token (key i+1); the previous token is key i-1, one column LEFT of the diagonal":
                weights[:, :, i[:-1], i[:-1] + 1].mean(dim=(0, 2)),
            "the queries from i = 1: start at i = 2 (at i = 1 the previous token is also the first token)":
                weights[:, :, i[1:], i[1:] - 1].mean(dim=(0, 2)),
        }
        for why, value in wrong.items():
            if _matches(got, value):
                return f"you averaged {why}"
        return "right shape, wrong values: average weights[b, h, i, i-1] over b and i = 2 .. L-1, for each head h"
    return None


def _switch_off_reference(merged: torch.Tensor, num_heads: int, head: int) -> torch.Tensor:
    """Exercise 8.3's answer: zero head ``head``'s slice of ``(batch, seq, d_model)`` (a copy)."""
    head_dim = merged.shape[-1] // num_heads
    out = merged.clone()
    out[..., head * head_dim : (head + 1) * head_dim] = 0.0
    return out


@exercise_checker("Exercise 8.3: switch one head off")
def check_switch_off_head(fn: Callable[[torch.Tensor, int, int], torch.Tensor]) -> str | None:
    """Check ``fn(merged (batch, seq, d_model), num_heads, head) -> (batch, seq, d_model)``: a copy of the
    concatenated head outputs with head ``head``'s ``head_dim`` features set to zero (what :func:`heads_switched_off`
    does just before W_o). The input must not change."""
    g = torch.Generator().manual_seed(803)
    for batch, seq, num_heads, head_dim, head in ((1, 3, 4, 3, 2), (2, 5, 2, 4, 1), (2, 4, 4, 2, 0)):
        merged = torch.randn(batch, seq, num_heads * head_dim, generator=g)
        original = merged.clone()
        expected = _switch_off_reference(merged, num_heads, head)
        got = _call_student(fn, merged, num_heads, head)
        hint = _shape_hint("your result", got, expected.shape)
        if hint:
            return f"{hint}: switching a head off keeps the shape (batch, seq, d_model)"
        if not torch.equal(merged, original):
            return "your function changed its input in place: clone it first (merged.clone()), then zero the slice"
        if _matches(got, expected):
            continue
        interleaved = merged.clone().view(batch, seq, head_dim, num_heads)
        interleaved[..., head] = 0.0  # wrong: treats the features as (head_dim, heads)
        if _matches(got, interleaved.view(batch, seq, -1)):
            return ("you zeroed every num_heads-th feature: a head's features are contiguous, "
                    "merged[..., head * head_dim : (head + 1) * head_dim]")
        for other in range(num_heads):
            if other != head and _matches(got, _switch_off_reference(merged, num_heads, other)):
                return (f"you switched off head {other} instead of head {head}: head h owns the features "
                        f"h*head_dim .. (h+1)*head_dim - 1")
        only = torch.zeros_like(merged)
        only[..., head * head_dim : (head + 1) * head_dim] = merged[..., head * head_dim : (head + 1) * head_dim]
        if _matches(got, only):
            return "you kept ONLY that head and zeroed the others; switch off just head `head`"
        return "right shape, wrong values: zero merged[..., head * head_dim : (head + 1) * head_dim] in a copy"
    return None


# =====================================================================================================
# 11. What heads cost (notebook 09)
# =====================================================================================================
# What attention costs, counted and measured; a FlashAttention-style attention in plain PyTorch (forward AND
# backward over blocks, never the L x S matrix); fewer K/V heads (multi-query / grouped-query attention) and the
# KV cache of step-by-step decoding. Sources: online softmax, Milakov & Gimelshein (2018); FlashAttention, Dao et al.
# (2022) and FlashAttention-2, Dao (2023); MQA, Shazeer (2019); GQA, Ainslie et al. (2023).


def attention_flops(batch: int, seq_len: int, d_model: int, num_heads: int) -> dict[str, int]:
    """Count the work of one multi-head self-attention forward pass, ``(batch, seq_len, d_model)`` in and out.

    Matrix products count 2 FLOPs per multiply-add (as ``torch.utils.flop_counter.FlopCounterMode`` does):

    * ``"Q/K/V projections"``: 3 x 2·batch·L·d_model²
    * ``"scores Q·Kᵀ"``: num_heads x 2·batch·L·L·head_dim = 2·batch·L²·d_model
    * ``"weights·V"``: the same, 2·batch·L²·d_model
    * ``"output projection"``: 2·batch·L·d_model²
    * ``"total matmul FLOPs"``: the sum of the four; ``num_heads`` cancels out of every term.

    and, not FLOPs of a matrix product but what does grow with the number of heads:

    * ``"attention-map entries"``: batch·num_heads·L² scores, each of which goes through the softmax
      (max, subtract, exp, sum, divide) and, when the weights are kept, takes memory.
    """
    for name, value in (("batch", batch), ("seq_len", seq_len), ("d_model", d_model), ("num_heads", num_heads)):
        _check_positive_int(name, value)
    _check_divisible(d_model, num_heads, d_name="d_model")
    head_dim = d_model // num_heads
    counts = {
        "Q/K/V projections": 3 * 2 * batch * seq_len * d_model * d_model,
        "scores Q·Kᵀ": num_heads * 2 * batch * seq_len * seq_len * head_dim,
        "weights·V": num_heads * 2 * batch * seq_len * seq_len * head_dim,
        "output projection": 2 * batch * seq_len * d_model * d_model,
    }
    counts["total matmul FLOPs"] = sum(counts.values())
    counts["attention-map entries"] = batch * num_heads * seq_len * seq_len
    return counts


def count_matmul_flops(fn: Callable[[], object]) -> int:
    """Run ``fn()`` once under ``torch.utils.flop_counter.FlopCounterMode`` and return the FLOPs it counted.

    The counter knows matrix products (``mm``, ``bmm``, ``addmm``, ``baddbmm``, ...) and some fused attention
    kernels; elementwise work such as the softmax counts 0.
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def attention_map_bytes(batch: int, num_heads: int, seq_len: int, key_len: int | None = None,
                        bytes_per_value: int = 4) -> int:
    """Bytes of the attention weights ``(batch, num_heads, L, S)``: batch·num_heads·L·S·bytes_per_value."""
    key_len = seq_len if key_len is None else key_len
    for name, value in (("batch", batch), ("num_heads", num_heads), ("seq_len", seq_len), ("key_len", key_len),
                        ("bytes_per_value", bytes_per_value)):
        _check_positive_int(name, value)
    return batch * num_heads * seq_len * key_len * bytes_per_value


def median_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """The median wall-clock time of ``fn()`` over ``repeats`` runs, after ``warmup`` runs (CUDA is synchronised)."""
    import time

    _check_positive_int("repeats", repeats)
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


# ----- The online softmax and a FlashAttention-style attention -------------------------------------------------


def _causal_block_hidden(i0: int, i1: int, j0: int, j1: int, device: torch.device) -> torch.Tensor:
    """``(i1-i0, j1-j0)`` bool, True where key j is AFTER query i (j > i): what causal attention hides in a block."""
    rows = torch.arange(i0, i1, device=device)[:, None]  # (bq, 1) query positions
    cols = torch.arange(j0, j1, device=device)[None, :]  # (1, bk) key positions
    return cols > rows  # (bq, bk)


def _flash_forward(q, k, v, block_k: int, block_q: int, is_causal: bool, scale: float):
    """Blocked forward on 3-D tensors: q ``(N, L, d_k)``, k ``(N, S, d_k)``, v ``(N, S, d_v)``.

    Returns the output ``(N, L, d_v)`` and the log-sum-exp of each row's scores ``(N, L, 1)``, which is all the
    backward pass needs to rebuild any block of probabilities: P = exp(scores - lse).
    """
    N, L, _ = q.shape
    S, d_v = k.shape[1], v.shape[2]
    q = q * scale  # (N, L, d_k): the scale folded into Q once, instead of into every block of scores
    k_t = k.transpose(1, 2)  # (N, S, d_k) -> (N, d_k, S), a view; bmm reads its column blocks directly
    out = torch.empty(N, L, d_v, dtype=q.dtype, device=q.device)
    lse = torch.empty(N, L, 1, dtype=q.dtype, device=q.device)
    scores_buf = torch.empty(N * min(block_q, L) * min(block_k, S), dtype=q.dtype, device=q.device)
    for i0 in range(0, L, block_q):
        i1 = min(i0 + block_q, L)
        q_i = q[:, i0:i1]  # (N, bq, d_k)
        # Causal: query i sees keys 0..i, so this query block needs keys up to i1 - 1 only; later blocks are skipped.
        s_end = min(S, i1) if is_causal else S
        row_max = row_sum = acc = None
        for j0 in range(0, s_end, block_k):
            j1 = min(j0 + block_k, s_end)
            scores = scores_buf[: N * (i1 - i0) * (j1 - j0)].view(N, i1 - i0, j1 - j0)  # a (N, bq, bk) view
            torch.bmm(q_i, k_t[:, :, j0:j1], out=scores)  # (N, bq, d_k) @ (N, d_k, bk) -> (N, bq, bk)
            if is_causal and j1 - 1 > i0:  # the block crosses the diagonal: hide the keys after each query
                scores.masked_fill_(_causal_block_hidden(i0, i1, j0, j1, q.device), float("-inf"))
            block_max = scores.amax(dim=-1, keepdim=True)  # (N, bq, 1)
            # Key 0 is in the first block and every query sees it, so row_max is finite from the first block on.
            new_max = block_max if row_max is None else torch.maximum(row_max, block_max)
            probs = scores.sub_(new_max).exp_()  # exp(s - m) in place: every entry in [0, 1]
            if acc is None:
                row_sum = probs.sum(dim=-1, keepdim=True)  # (N, bq, 1)
                acc = torch.bmm(probs, v[:, j0:j1])  # (N, bq, bk) @ (N, bk, d_v) -> (N, bq, d_v)
            else:
                correction = (row_max - new_max).exp_()  # exp(m_old - m_new) <= 1: re-base the old sums
                row_sum.mul_(correction).add_(probs.sum(dim=-1, keepdim=True))
                acc.mul_(correction).baddbmm_(probs, v[:, j0:j1])  # acc = acc * c + probs @ v_j
            row_max = new_max
        out[:, i0:i1] = acc.div_(row_sum)  # the softmax's denominator, applied once at the end
        lse[:, i0:i1] = row_max + row_sum.log()  # log Σ_j exp(s_ij), per row
    return out, lse


def _flash_backward(grad_out, q, k, v, out, lse, block_k: int, block_q: int, is_causal: bool, scale: float,
                    needs: tuple[bool, bool, bool]):
    """Blocked backward: recomputes each block's probabilities from ``lse`` instead of having stored them.

    With P = softmax(Q Kᵀ · scale) and O = P V, for each block:  dV += Pᵀ dO,  dP = dO Vᵀ,
    dS = P ∘ (dP - D) with D = rowsum(dO ∘ O),  dQ += scale · dS K,  dK += scale · dSᵀ Q.
    """
    N, L, d_k = q.shape
    S = k.shape[1]
    grad_out = grad_out.contiguous()
    delta = (grad_out * out).sum(dim=-1, keepdim=True)  # (N, L, 1): D_i = Σ_j P_ij dP_ij = dO_i · O_i
    q_scaled = q * scale  # (N, L, d_k)
    v_t = v.transpose(1, 2)  # (N, S, d_v) -> (N, d_v, S), a view
    k_t = k.transpose(1, 2)  # (N, S, d_k) -> (N, d_k, S), a view
    dq = torch.zeros_like(q) if needs[0] else None
    dk = torch.empty_like(k) if needs[1] else None
    dv = torch.empty_like(v) if needs[2] else None
    buf_size = N * min(block_q, L) * min(block_k, S)
    probs_buf = torch.empty(buf_size, dtype=q.dtype, device=q.device)
    dp_buf = torch.empty(buf_size, dtype=q.dtype, device=q.device)
    for j0 in range(0, S, block_k):
        j1 = min(j0 + block_k, S)
        dk_j = torch.zeros(N, j1 - j0, d_k, dtype=q.dtype, device=q.device)
        dv_j = torch.zeros(N, j1 - j0, v.shape[2], dtype=q.dtype, device=q.device)
        # Causal: queries before j0 see none of these keys; start at the query block that holds position j0.
        first = (j0 // block_q) * block_q if is_causal else 0
        for i0 in range(first, L, block_q):
            i1 = min(i0 + block_q, L)
            shape = (N, i1 - i0, j1 - j0)
            probs = probs_buf[: math.prod(shape)].view(shape)
            torch.bmm(q_scaled[:, i0:i1], k_t[:, :, j0:j1], out=probs)  # scores (N, bq, bk)
            if is_causal and j1 - 1 > i0:
                probs.masked_fill_(_causal_block_hidden(i0, i1, j0, j1, q.device), float("-inf"))
            probs.sub_(lse[:, i0:i1]).exp_()  # P = exp(s - lse): the softmax, rebuilt block by block
            g_i = grad_out[:, i0:i1]  # (N, bq, d_v)
            if needs[2]:
                dv_j.baddbmm_(probs.transpose(1, 2), g_i)  # (N, bk, bq) @ (N, bq, d_v) -> (N, bk, d_v)
            if needs[0] or needs[1]:
                dp = dp_buf[: math.prod(shape)].view(shape)
                torch.bmm(g_i, v_t[:, :, j0:j1], out=dp)  # dP = dO Vᵀ: (N, bq, d_v) @ (N, d_v, bk)
                ds = dp.sub_(delta[:, i0:i1]).mul_(probs)  # dS = P ∘ (dP - D), the softmax's backward
                if needs[0]:
                    dq[:, i0:i1].baddbmm_(ds, k[:, j0:j1])  # (N, bq, bk) @ (N, bk, d_k); scaled once at the end
                if needs[1]:
                    dk_j.baddbmm_(ds.transpose(1, 2), q_scaled[:, i0:i1])  # (N, bk, bq) @ (N, bq, d_k)
        if needs[1]:
            dk[:, j0:j1] = dk_j
        if needs[2]:
            dv[:, j0:j1] = dv_j
    if needs[0]:
        dq.mul_(scale)
    return dq, dk, dv


class _OnlineSoftmaxAttention(torch.autograd.Function):
    """Autograd for :func:`online_softmax_attention`: saves q, k, v, the output and one log-sum-exp per row."""

    @staticmethod
    def forward(ctx, q, k, v, block_k: int, block_q: int, is_causal: bool, scale: float):
        out, lse = _flash_forward(q, k, v, block_k, block_q, is_causal, scale)
        ctx.save_for_backward(q, k, v, out, lse)  # O(L·d) in all: no L x S tensor is kept
        ctx.config = (block_k, block_q, is_causal, scale)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = _flash_backward(grad_out, q, k, v, out, lse, *ctx.config, needs=tuple(ctx.needs_input_grad[:3]))
        return dq, dk, dv, None, None, None, None


def online_softmax_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    block_size: int = 1024,
    is_causal: bool = False,
    scale: float | None = None,
    *,
    query_block_size: int = 1024,
) -> torch.Tensor:
    """softmax(Q Kᵀ · scale) V over blocks of keys, FlashAttention-style: the L x S matrix never exists.

    Shapes and conventions of ``torch.nn.functional.scaled_dot_product_attention``: query ``(..., L, d_k)``,
    key ``(..., S, d_k)``, value ``(..., S, d_v)`` with the same leading dims ``...`` (e.g. ``(batch, heads)``)
    -> output ``(..., L, d_v)``. Only the output is returned: the weights are never formed. ``is_causal=True``
    lets query i see keys 0..i (top-left aligned, as torch's; with L > S the queries i >= S see every key), and
    skips the blocks above the diagonal. ``scale`` defaults to 1/√d_k.

    How: queries are cut into blocks of ``query_block_size`` rows and keys into blocks of ``block_size``; for each
    query block, a running max m, a running sum l and an output accumulator walk over the key blocks (when m grows,
    the old l and accumulator are multiplied by exp(m_old - m_new)). Temporaries are ``(..., query_block_size,
    block_size)``, so memory is linear in the sequence length: 4 MiB per (batch, head) pair at the default 1024 x 1024
    in float32 (pass smaller blocks when batch x heads is large). Large blocks keep the Python loop short and every
    PyTorch operation big, which is what makes this plain-PyTorch version fast.

    Backward is its own (``torch.autograd.Function``): it saves q, k, v, the output and one log-sum-exp per row, and
    recomputes each block's probabilities, so training memory is linear too. float16/bfloat16 inputs are computed
    in float32 and returned in their dtype. Works on any device (CPU, CUDA, ...).
    """
    _check_qkv(query, key, value)
    _check_positive_int("block_size", block_size)
    _check_positive_int("query_block_size", query_block_size)
    _check_bool("is_causal", is_causal)
    _check_scale(scale)
    if not (query.shape[:-2] == key.shape[:-2] == value.shape[:-2]):
        raise ValueError(
            f"query, key and value must have the same leading dims (...), e.g. (batch, heads), got query "
            f"{tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}; for fewer K/V heads use "
            f"grouped_query_attention"
        )
    if key.shape[-2] == 0:
        raise ValueError(f"key has no positions (S=0, shape {tuple(key.shape)}): there is nothing to attend to")

    lead, (L, d_k), (S, d_v) = query.shape[:-2], query.shape[-2:], value.shape[-2:]
    scale = 1.0 / math.sqrt(d_k) if scale is None else float(scale)
    work = torch.float32 if query.dtype in (torch.float16, torch.bfloat16) else query.dtype
    N = math.prod(lead)  # the product of the leading dims, e.g. batch * heads
    q = query.reshape(N, L, d_k).to(work)  # (..., L, d_k) -> (N, L, d_k)
    k = key.reshape(N, S, d_k).to(work)  # (..., S, d_k) -> (N, S, d_k)
    v = value.reshape(N, S, d_v).to(work)  # (..., S, d_v) -> (N, S, d_v)
    out = _OnlineSoftmaxAttention.apply(q, k, v, block_size, query_block_size, is_causal, scale)  # (N, L, d_v)
    return out.to(query.dtype).view(*lead, L, d_v)  # (N, L, d_v) -> (..., L, d_v)


def online_softmax_steps(x: torch.Tensor, block_size: int) -> list[dict[str, object]]:
    """The online softmax of a 1-D vector, one block at a time, for printing.

    Returns one dict per block: ``"block"`` (its values), ``"block max"``, ``"running max"`` m, ``"rescale"``
    exp(m_old - m_new) applied to the old sum, and ``"running sum"`` l = Σ exp(x_j - m) over the blocks so far.
    The softmax is then ``exp(x - m) / l`` with the final m and l.
    """
    _check_float_tensor("x", x, ranks=(1,))
    _check_positive_int("block_size", block_size)
    steps, m, total = [], float("-inf"), 0.0
    for start in range(0, x.numel(), block_size):
        block = x[start:start + block_size]
        new_m = max(m, float(block.max()))
        rescale = math.exp(m - new_m)  # exp(-inf) = 0 before the first block
        total = total * rescale + float(torch.exp(block - new_m).sum())
        steps.append({"block": block, "block max": float(block.max()), "running max": new_m, "rescale": rescale,
                      "running sum": total})
        m = new_m
    return steps


class _QuietStderr:
    """Silence the process's stderr (file descriptor 2) for a moment: torch's profiler prints start/stop lines there."""

    def __enter__(self):
        import sys

        sys.stderr.flush()
        self._saved = os.dup(2)
        self._null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(self._null, 2)
        return self

    def __exit__(self, *exc):
        os.dup2(self._saved, 2)
        os.close(self._saved)
        os.close(self._null)
        return False


def sdpa_kernel_used(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, **kwargs) -> str:
    """Which kernel ``F.scaled_dot_product_attention(query, key, value, **kwargs)`` runs, seen by ``torch.profiler``.

    Returns the name of the ATen operator that did the work, e.g. ``"_scaled_dot_product_flash_attention_for_cpu"``
    (PyTorch's flash kernel on the CPU) or ``"_scaled_dot_product_attention_math"`` (the plain "math" version, which
    forms the whole weight matrix, as notebook 02 does).
    """
    from torch.profiler import ProfilerActivity, profile

    with _QuietStderr(), profile(activities=[ProfilerActivity.CPU]) as prof:
        F.scaled_dot_product_attention(query, key, value, **kwargs)
    names = [e.name.removeprefix("aten::") for e in prof.events()]
    kernels = [n for n in names if n.startswith("_scaled_dot_product") and "backward" not in n]
    return kernels[0] if kernels else "none of the fused kernels: " + ", ".join(sorted(set(names))[:5])


def plot_block_schedule(seq_len: int, key_len: int, block_size: int, query_block_size: int, is_causal: bool = True,
                        ax=None):
    """Draw which (query block, key block) tiles :func:`online_softmax_attention` computes; returns the Axes.

    Tiles below the diagonal are computed whole, tiles that cross it are computed and then masked, tiles above it
    (causal only) are skipped: never multiplied, never stored.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    for name, value in (("seq_len", seq_len), ("key_len", key_len), ("block_size", block_size),
                        ("query_block_size", query_block_size)):
        _check_positive_int(name, value)
    rows = math.ceil(seq_len / query_block_size)
    cols = math.ceil(key_len / block_size)
    kind = torch.zeros(rows, cols)  # 0 skipped, 1 masked, 2 computed whole
    for r in range(rows):
        i0, i1 = r * query_block_size, min((r + 1) * query_block_size, seq_len)
        for c in range(cols):
            j0, j1 = c * block_size, min((c + 1) * block_size, key_len)
            if not is_causal or j1 - 1 <= i0:
                kind[r, c] = 2
            elif j0 <= i1 - 1:
                kind[r, c] = 1
    if ax is None:
        _, ax = plt.subplots(figsize=(0.45 * cols + 2.6, 0.45 * rows + 1.4))
    cmap = ListedColormap(["#f0f0f0", "#f4a261", "#2a9d8f"])
    ax.imshow(kind.numpy(), cmap=cmap, vmin=0, vmax=2, aspect="auto",
              extent=(0, key_len, seq_len, 0), interpolation="nearest")
    for c in range(1, cols):
        ax.axvline(c * block_size, color="white", lw=1)
    for r in range(1, rows):
        ax.axhline(r * query_block_size, color="white", lw=1)
    ax.set_xlabel(f"key position (blocks of {block_size})")
    ax.set_ylabel(f"query position (blocks of {query_block_size})")
    done = int((kind > 0).sum())
    ax.set_title(f"{'causal' if is_causal else 'full'} attention: {done} of {rows * cols} tiles computed")
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color="#2a9d8f", label="computed"), Patch(color="#f4a261", label="computed, then masked"),
                       Patch(color="#f0f0f0", label="skipped")], loc="upper right", fontsize=8, framealpha=0.9)
    return ax


# ----- Fewer K/V heads: multi-query and grouped-query attention, and the KV cache --------------------------------


def _check_gqa_heads(num_heads: int, num_kv_heads: int) -> None:
    if num_heads % num_kv_heads != 0:
        counts = ", ".join(str(h) for h in valid_head_counts(num_heads))
        raise ValueError(
            f"num_heads={num_heads} is not divisible by num_kv_heads={num_kv_heads}: every K/V head must serve the "
            f"same number of query heads; valid kv-head counts: {counts}"
        )


def grouped_query_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """Attention where groups of query heads share one K/V head (GQA; MQA when there is one K/V head).

    query ``(batch, num_heads, L, head_dim)``; key, value ``(batch, num_kv_heads, S, head_dim)`` with
    ``num_heads % num_kv_heads == 0`` -> output ``(batch, num_heads, L, head_dim)``. Query head h reads K/V head
    ``h // (num_heads // num_kv_heads)``: the grouping of ``key.repeat_interleave(num_heads // num_kv_heads, dim=1)``
    and of ``F.scaled_dot_product_attention(..., enable_gqa=True)``. K and V are never copied: the query heads of a
    group are stacked along the sequence axis and attend to their shared K/V head in one call.

    ``attn_mask``: an ``(L, S)`` mask in F.scaled_dot_product_attention's convention (bool True = may attend, or
    float added to the scores); ``is_causal`` is top-left aligned as there; pass one of them at most.
    """
    for name, t in (("query", query), ("key", key), ("value", value)):
        _check_float_tensor(name, t, ranks=(4,))
    batch, num_heads, L, head_dim = query.shape
    if key.shape != value.shape:
        raise ValueError(f"key and value must have the same shape, got key {tuple(key.shape)}, value {tuple(value.shape)}")
    if key.shape[0] != batch or key.shape[3] != head_dim:
        raise ValueError(
            f"key/value must be (batch, num_kv_heads, S, head_dim) = ({batch}, num_kv_heads, S, {head_dim}) to match "
            f"query {tuple(query.shape)}, got {tuple(key.shape)}"
        )
    num_kv_heads, S = key.shape[1], key.shape[2]
    _check_gqa_heads(num_heads, num_kv_heads)
    _check_bool("is_causal", is_causal)
    if is_causal and attn_mask is not None:
        raise ValueError("pass either attn_mask or is_causal=True, not both (as F.scaled_dot_product_attention)")
    if is_causal:
        attn_mask = causal_mask(L, S, device=query.device)  # (L, S), True = may attend
    if attn_mask is not None:
        _check_mask_dtype("attn_mask", attn_mask, query.dtype)
        if tuple(attn_mask.shape) != (L, S):
            raise ValueError(f"attn_mask must be (L, S) = ({L}, {S}), got shape {tuple(attn_mask.shape)}")
    group = num_heads // num_kv_heads
    q = query.reshape(batch, num_kv_heads, group * L, head_dim)  # (batch, H, L, hd) -> (batch, H_kv, group·L, hd)
    if attn_mask is not None:
        attn_mask = attn_mask.repeat(group, 1)  # (L, S) -> (group·L, S): the same rows for every head of a group
    out = F.scaled_dot_product_attention(q, key, value, attn_mask=attn_mask, scale=scale)  # (batch, H_kv, group·L, hd)
    return out.reshape(batch, num_heads, L, head_dim)  # (batch, H_kv, group·L, hd) -> (batch, H, L, hd)


def kv_cache_bytes_per_token(num_layers: int, num_kv_heads: int, head_dim: int, bytes_per_value: int = 2) -> int:
    """Bytes a KV cache stores per token (per sequence): 2 (K and V) · num_layers · num_kv_heads · head_dim · bytes.

    ``bytes_per_value`` is 2 for float16/bfloat16, 4 for float32. The number of QUERY heads does not appear.
    """
    for name, value in (("num_layers", num_layers), ("num_kv_heads", num_kv_heads), ("head_dim", head_dim),
                        ("bytes_per_value", bytes_per_value)):
        _check_positive_int(name, value)
    return 2 * num_layers * num_kv_heads * head_dim * bytes_per_value


class KVCache:
    """The keys and values of the tokens seen so far, for one attention layer, filled left to right.

    ``KVCache(batch, num_kv_heads, head_dim, max_len, dtype=torch.float32, device=None)`` preallocates
    ``keys`` and ``values`` of shape ``(batch, num_kv_heads, max_len, head_dim)``; ``len(cache)`` is the number of
    positions filled. ``append(k, v)`` stores new positions ``(batch, num_kv_heads, T, head_dim)`` and returns views
    of everything cached, ``(batch, num_kv_heads, len(cache), head_dim)``. ``nbytes`` is what the filled part takes.
    """

    def __init__(self, batch: int, num_kv_heads: int, head_dim: int, max_len: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> None:
        for name, value in (("batch", batch), ("num_kv_heads", num_kv_heads), ("head_dim", head_dim),
                            ("max_len", max_len)):
            _check_positive_int(name, value)
        shape = (batch, num_kv_heads, max_len, head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self.max_len = max_len
        self.length = 0

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        b, h, _, d = self.keys.shape
        return f"KVCache(batch={b}, num_kv_heads={h}, head_dim={d}, filled {self.length}/{self.max_len})"

    @property
    def nbytes(self) -> int:
        """Bytes of the filled positions: 2 · batch · num_kv_heads · len(cache) · head_dim · element size."""
        b, h, _, d = self.keys.shape
        return 2 * b * h * self.length * d * self.keys.element_size()

    def append(self, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``key``, ``value`` ``(batch, num_kv_heads, T, head_dim)``; return all cached keys and values."""
        want = tuple(self.keys.shape[:2]) + (self.keys.shape[3],)
        for name, t in (("key", key), ("value", value)):
            _check_float_tensor(name, t, ranks=(4,))
            if (t.shape[0], t.shape[1], t.shape[3]) != want:
                raise ValueError(
                    f"{name} must be (batch, num_kv_heads, T, head_dim) = ({want[0]}, {want[1]}, T, {want[2]}), "
                    f"got {tuple(t.shape)}"
                )
        T = key.shape[2]
        if value.shape[2] != T:
            raise ValueError(f"key and value must add the same number of positions, got {T} and {value.shape[2]}")
        if self.length + T > self.max_len:
            raise ValueError(f"the cache holds max_len={self.max_len} positions; {self.length} + {T} do not fit")
        self.keys[:, :, self.length:self.length + T] = key
        self.values[:, :, self.length:self.length + T] = value
        self.length += T
        return self.keys[:, :, : self.length], self.values[:, :, : self.length]  # views, no copy


class GroupedQuerySelfAttention(nn.Module):
    """Causal self-attention with ``num_kv_heads`` K/V heads shared by ``num_heads`` query heads (no biases).

    ``W_q: d_model -> num_heads·head_dim``, ``W_k, W_v: d_model -> num_kv_heads·head_dim``,
    ``W_o: d_model -> d_model``. ``num_kv_heads == num_heads`` is ordinary multi-head attention, 1 is multi-query.

    ``forward(x, cache=None)``: x ``(batch, T, d_model)`` -> ``(batch, T, d_model)``. Without a cache, x is the whole
    sequence (causal attention). With a :class:`KVCache`, x holds only the NEW tokens: their keys and values are
    appended to the cache and their queries attend to everything cached (the causal mask aligned to the end).
    """

    def __init__(self, d_model: int, num_heads: int, num_kv_heads: int) -> None:
        super().__init__()
        for name, value in (("d_model", d_model), ("num_heads", num_heads), ("num_kv_heads", num_kv_heads)):
            _check_positive_int(name, value)
        _check_divisible(d_model, num_heads, d_name="d_model")
        _check_gqa_heads(num_heads, num_kv_heads)
        self.d_model, self.num_heads, self.num_kv_heads = d_model, num_heads, num_kv_heads
        self.head_dim = d_model // num_heads
        self.W_q = nn.Linear(d_model, d_model, bias=False)
        self.W_k = nn.Linear(d_model, num_kv_heads * self.head_dim, bias=False)
        self.W_v = nn.Linear(d_model, num_kv_heads * self.head_dim, bias=False)
        self.W_o = nn.Linear(d_model, d_model, bias=False)

    def new_cache(self, batch: int, max_len: int) -> KVCache:
        """An empty :class:`KVCache` for this layer's K/V heads, on its device and dtype."""
        w = self.W_k.weight
        return KVCache(batch, self.num_kv_heads, self.head_dim, max_len, dtype=w.dtype, device=w.device)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """x ``(batch, T, d_model)`` -> ``(batch, T, d_model)``; with ``cache``, x holds only the new tokens."""
        _check_float_tensor("x", x, ranks=(3,))
        batch, T, features = x.shape
        if features != self.d_model:
            raise ValueError(f"x has {features} features (shape {tuple(x.shape)}) but the layer has d_model={self.d_model}")
        hd = self.head_dim
        q = self.W_q(x).view(batch, T, self.num_heads, hd).transpose(1, 2)  # (batch, T, d) -> (batch, H, T, hd)
        k = self.W_k(x).view(batch, T, self.num_kv_heads, hd).transpose(1, 2)  # -> (batch, H_kv, T, hd)
        v = self.W_v(x).view(batch, T, self.num_kv_heads, hd).transpose(1, 2)  # -> (batch, H_kv, T, hd)
        if cache is None:
            heads = grouped_query_attention(q, k, v, is_causal=True)  # (batch, H, T, hd)
        else:
            past = len(cache)
            k, v = cache.append(k, v)  # (batch, H_kv, past + T, hd): the old keys and values are not recomputed
            # New token t (position past + t) may see keys 0..past + t: causal, aligned to the END of the cache.
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)  # (T, past + T)
            heads = grouped_query_attention(q, k, v, attn_mask=None if T == 1 else mask)  # one token sees all
        out = heads.transpose(1, 2).reshape(batch, T, self.d_model)  # (batch, H, T, hd) -> (batch, T, d_model)
        return self.W_o(out)


def decode_step_by_step(layer: GroupedQuerySelfAttention, x: torch.Tensor, use_cache: bool) -> torch.Tensor:
    """Outputs of ``layer`` for ``x`` ``(batch, T, d_model)`` computed one token at a time, as generation does.

    ``use_cache=False`` recomputes the whole prefix at every step (K and V of all earlier tokens again);
    ``use_cache=True`` keeps them in a :class:`KVCache` and computes only the new token's. Both return
    ``(batch, T, d_model)``, equal to ``layer(x)``.
    """
    _check_float_tensor("x", x, ranks=(3,))
    batch, T, _ = x.shape
    outputs = []
    cache = layer.new_cache(batch, T) if use_cache else None
    for t in range(T):
        if use_cache:
            outputs.append(layer(x[:, t:t + 1], cache=cache))  # (batch, 1, d_model)
        else:
            outputs.append(layer(x[:, : t + 1])[:, -1:])  # the whole prefix again, keep the last position
    return torch.cat(outputs, dim=1)  # (batch, T, d_model)


# ----- Measuring peak memory --------------------------------------------------------------------------------------
# Peak memory is MEASURED in a fresh Python process (nothing else allocated there): on Linux the kernel's high-water
# mark of resident memory (VmHWM in /proc/self/status), reset before each measurement (/proc/self/clear_refs); glibc is
# told to hand large blocks straight back to the system (MALLOC_MMAP_THRESHOLD_), so freed tensors leave the count.
# Elsewhere each measurement gets its own process (ru_maxrss). On CUDA: torch.cuda.max_memory_allocated.

MEMORY_METHODS = ("naive", "online", "sdpa", "mha_weights", "mha_fast")


def _proc_status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # the kernel reports kB
    raise RuntimeError(f"{field} not found in /proc/self/status")


def _run_memory_job(job: dict, device: torch.device):
    """Build the inputs of one job and return a function that runs it once (forward, or forward + backward)."""
    g = torch.Generator(device="cpu").manual_seed(0)
    batch, heads, seq, head_dim = job["batch"], job["heads"], job["seq"], job["head_dim"]
    backward, is_causal = job.get("backward", False), job.get("is_causal", False)
    method = job["method"]
    if method.startswith("mha"):
        d_model = heads * head_dim
        layer = MultiHeadAttention(d_model, heads, device=device)
        x = torch.randn(batch, seq, d_model, generator=g).to(device).requires_grad_(backward)

        def call():
            out, _ = layer(x, x, x, need_weights=method == "mha_weights", average_attn_weights=False,
                           is_causal=is_causal, attn_mask=~causal_mask(seq, device=device) if is_causal else None)
            return out
    else:
        q, k, v = (torch.randn(batch, heads, seq, head_dim, generator=g).to(device).requires_grad_(backward)
                   for _ in range(3))

        def call():
            if method == "naive":
                return scaled_dot_product_attention(q, k, v, is_causal=is_causal)[0]
            if method == "online":
                return online_softmax_attention(q, k, v, block_size=job.get("block_size", 1024), is_causal=is_causal)
            return F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)

    def run():
        if backward:
            call().sum().backward()
        else:
            with torch.no_grad():
                call()
    return run


def _measure_in_this_process(job: dict, device: torch.device, reset: bool) -> float:
    """Peak bytes above the starting point while the job runs once (after a small warm-up of the same method)."""
    import resource

    torch.set_num_threads(job.get("threads", torch.get_num_threads()))
    _run_memory_job({**job, "seq": min(job["seq"], 64)}, device)()  # warm-up: lazy initialisation, thread pools
    run = _run_memory_job(job, device)  # (the previous job's tensors are gone: nothing refers to them any more)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        run()
        torch.cuda.synchronize()
        return float(torch.cuda.max_memory_allocated() - before)
    if reset:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the high-water mark to the current resident size
        before = _proc_status_bytes("VmRSS")
        run()
        return float(_proc_status_bytes("VmHWM") - before)
    unit = 1 if os.uname().sysname == "Darwin" else 1024  # ru_maxrss: bytes on macOS, kB on Linux
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run()
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * unit


def _memory_worker() -> None:
    """Entry point of the measuring subprocess: reads {"jobs": [...], "device": ..., "reset": ...} from stdin."""
    import json
    import sys

    request = json.load(sys.stdin)
    device = torch.device(request["device"])
    results = [_measure_in_this_process(job, device, request["reset"]) for job in request["jobs"]]
    print(json.dumps(results))


def measure_peak_memory(jobs: Sequence[dict], device: torch.device | str = "cpu", fresh_process_each: bool = False,
                        timeout: float = 600.0) -> list[float]:
    """Measure the peak memory (MiB above the starting point) of attention calls, each run once in a fresh process.

    Each job is a dict: ``method`` (one of :data:`MEMORY_METHODS`: "naive" = :func:`scaled_dot_product_attention`,
    "online" = :func:`online_softmax_attention`, "sdpa" = ``F.scaled_dot_product_attention``, "mha_weights" /
    "mha_fast" = :class:`MultiHeadAttention` with ``need_weights`` True / False), ``batch``, ``heads``, ``seq``,
    ``head_dim`` (d_model = heads·head_dim for the mha methods), and optionally ``backward`` (forward + backward),
    ``is_causal``, ``block_size``, ``threads``. The inputs (and, for mha, the weights) are allocated before the
    measurement starts; the output, the saved tensors and the gradients count.

    On Linux all jobs share one fresh process and the peak is reset between them; ``fresh_process_each=True`` (and
    any system without /proc/self/clear_refs) starts one process per job. On CUDA the allocator's peak is used.
    """
    import json
    import subprocess
    import sys

    jobs = [dict(job) for job in jobs]
    for job in jobs:
        if job.get("method") not in MEMORY_METHODS:
            raise ValueError(f"job {job!r}: method must be one of {', '.join(MEMORY_METHODS)}")
        for name in ("batch", "heads", "seq", "head_dim"):
            _check_positive_int(name, job.get(name))
        job.setdefault("threads", torch.get_num_threads())
    device = torch.device(device)
    can_reset = os.path.exists("/proc/self/clear_refs") and os.access("/proc/self/clear_refs", os.W_OK)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}
    batches = [[job] for job in jobs] if fresh_process_each or not can_reset else [jobs]
    results: list[float] = []
    for batch_jobs in batches:
        request = json.dumps({"jobs": batch_jobs, "device": str(device), "reset": can_reset})
        done = subprocess.run(
            [sys.executable, "-c", "import mha_helpers; mha_helpers._memory_worker()"], input=request,
            capture_output=True, text=True, timeout=timeout, env=env,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        )
        if done.returncode != 0:
            raise RuntimeError(f"the measuring process failed:\n{done.stderr[-2000:]}")
        results.extend(b / 2**20 for b in json.loads(done.stdout.strip().splitlines()[-1]))
    return results


# ----- Exercise checkers (notebook 09) ---------------------------------------------------------------------------


@exercise_checker("Exercise 9.1: the online softmax")
def check_online_softmax(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> str | None:
    """Check ``fn(x, block_size)``: the softmax of a 1-D ``x``, read block by block with a running max and sum."""
    cases = [
        (torch.tensor([0.5, 1.0, 2.0, 3.0, 4.0, 5.0]), 2, "a vector whose max grows from block to block"),
        (torch.tensor([1000.0, 998.0, 1001.0, 990.0, 1003.0, 1002.0]), 3, "scores as large as 1000"),
        (torch.linspace(-2.0, 3.0, 7), 3, "7 values in blocks of 3 (the last block is shorter)"),
        (torch.randn(10, generator=torch.Generator().manual_seed(9)) * 3, 1, "blocks of one value"),
        (torch.randn(5, generator=torch.Generator().manual_seed(5)), 8, "one block larger than the vector"),
    ]
    for x, block_size, what in cases:
        got = _call_student(fn, x.clone(), block_size)
        hint = _shape_hint("your output", got, x.shape)
        if hint:
            return f"{hint} (for {what})"
        expected = torch.softmax(x, dim=0)
        got = got.detach().to(expected.dtype)
        if not bool(torch.isfinite(got).all()):
            return (f"your output has inf or NaN for {what}: exp(1000) overflows float32; subtract the running max "
                    f"before exp (exp(x - m) is at most 1)")
        total = float(got.sum())
        if abs(total - 1.0) > 1e-4:
            return (f"your output sums to {total:.3g}, not 1, for {what}: when the running max grows from m_old to "
                    f"m_new, multiply the old running sum by exp(old_max - new_max) before adding the new block")
        if not torch.allclose(got, expected, atol=1e-5):
            return f"your output differs from torch.softmax(x, dim=0) for {what}: expected {expected}, got {got}"
    return None


@exercise_checker("Exercise 9.2: KV-cache bytes")
def check_kv_cache_bytes(fn: Callable[..., int]) -> str | None:
    """Check ``fn(num_layers, num_heads, num_kv_heads, head_dim, seq_len, batch, bytes_per_value)`` -> bytes."""
    cases = [(32, 32, 8, 128, 4096, 1, 2), (2, 8, 1, 64, 100, 3, 4), (4, 6, 6, 16, 10, 2, 2)]
    for num_layers, num_heads, num_kv_heads, head_dim, seq_len, batch, bpv in cases:
        got = _call_student(fn, num_layers, num_heads, num_kv_heads, head_dim, seq_len, batch, bpv)
        expected = 2 * num_layers * num_kv_heads * head_dim * seq_len * batch * bpv
        args = (f"num_layers={num_layers}, num_heads={num_heads}, num_kv_heads={num_kv_heads}, "
                f"head_dim={head_dim}, seq_len={seq_len}, batch={batch}, bytes_per_value={bpv}")
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            return f"return a number of bytes (an int), got {type(got).__name__}"
        if got == expected:
            continue
        if got * 2 == expected:
            return f"half of the expected {expected:,} for {args}: the cache stores the keys AND the values"
        if num_heads != num_kv_heads and got * num_kv_heads == expected * num_heads:
            return (f"you counted num_heads ({num_heads}) heads for {args}: only the num_kv_heads={num_kv_heads} "
                    f"K/V heads are cached; query heads share them")
        if got * bpv == expected:
            return f"that is a number of values, not bytes, for {args}: multiply by bytes_per_value={bpv}"
        if batch != 1 and got * batch == expected:
            return f"every sequence of the batch has its own cache: multiply by batch={batch} ({args})"
        return f"expected {expected:,} bytes for {args}, got {got:,}"
    return None
