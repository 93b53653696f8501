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


def _check_float_tensor(name: str, x: object, ranks: Sequence[int] | None = None) -> torch.Tensor:
    """Check that ``x`` is a floating-point tensor of one of the given ranks; return it."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor, got dtype {x.dtype}; convert it with {name}.float()"
        )
    if ranks is not None and x.dim() not in ranks:
        allowed = " or ".join(f"{r}-D" for r in ranks)
        raise ValueError(f"{name} must be {allowed}, got a {x.dim()}-D tensor of shape {tuple(x.shape)}")
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


def exercise_checker(title: str) -> Callable:
    """Decorator for checkers: the wrapped function returns None on success or a hint string on failure.

    The decorated checker prints ``✅ <title>: passed``, ``❌ <title>: <hint>`` or ``⏳ <title>: not yet ...`` and
    returns True only on success. Errors raised by the student's code become hints, never tracebacks.
    """

    def wrap(check: Callable[..., str | None]) -> Callable[..., bool]:
        @functools.wraps(check)
        def run(*args, **kwargs) -> bool:
            try:
                hint = check(*args, **kwargs)
            except _NotYet:
                print(f"⏳ {title}: not yet — replace the `raise NotImplementedError` with your code, then run again.")
                return False
            except Exception as exc:  # the student's code raised: report it as a hint
                print(f"❌ {title}: your function raised {type(exc).__name__}: {exc}")
                return False
            if hint:
                print(f"❌ {title}: {hint}")
                return False
            print(f"✅ {title}: passed")
            return True

        return run

    return wrap


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


# =====================================================================================================
# 4. Scaled dot-product attention (notebook 02)
# =====================================================================================================


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

    Difference from PyTorch, on purpose: a query row whose keys are all masked gets all-zero weights and a zero
    output (a plain softmax over only ``-inf`` gives NaN). ``dropout_p`` drops weights after the softmax (and
    rescales the rest by ``1/(1-p)``); pass it only in training.
    """
    _check_float_tensor("query", query)
    _check_float_tensor("key", key)
    _check_float_tensor("value", value)
    for name, t in (("query", query), ("key", key), ("value", value)):
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
    _check_bool("is_causal", is_causal)
    if is_causal and attn_mask is not None:
        raise ValueError("pass either attn_mask or is_causal=True, not both (as F.scaled_dot_product_attention)")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale <= 0):
        raise ValueError(f"scale must be a positive number or None (meaning 1/sqrt(d_k)), got scale={scale!r}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got dropout_p={dropout_p!r}")

    L, S, d_k = query.shape[-2], key.shape[-2], query.shape[-1]
    scale = 1.0 / math.sqrt(d_k) if scale is None else float(scale)

    scores = (query @ key.transpose(-2, -1)) * scale  # (..., L, d_k) @ (..., d_k, S) -> (..., L, S)

    if is_causal:
        attn_mask = causal_mask(L, S, device=query.device)  # (L, S), True = may attend
    if attn_mask is not None:
        _check_mask_dtype("attn_mask", attn_mask, query.dtype)
        try:
            torch.broadcast_shapes(attn_mask.shape, scores.shape)
        except RuntimeError:
            raise ValueError(
                f"attn_mask of shape {tuple(attn_mask.shape)} does not broadcast to the scores' shape "
                f"{tuple(scores.shape)} (..., L, S); a 2-D (L, S) = ({L}, {S}) mask always does"
            ) from None
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
    lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1 or lengths.numel() == 0 or lengths.is_floating_point() or lengths.dtype == torch.bool:
        raise TypeError(f"lengths must be a non-empty 1-D list of ints, got {lengths.tolist()!r}")
    if bool((lengths < 0).any()):
        raise ValueError(f"lengths must be >= 0, got {lengths.tolist()}")
    longest = int(lengths.max())
    max_len = longest if max_len is None else max_len
    _check_positive_int("max_len", max_len)
    if max_len < longest:
        raise ValueError(f"max_len={max_len} is shorter than the longest sentence ({longest})")
    return torch.arange(max_len)[None, :] >= lengths[:, None]  # (batch, max_len)


# =====================================================================================================
# 6. Splitting into heads (notebook 04)
# =====================================================================================================


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Cut the feature dimension into ``num_heads`` heads: ``(batch, seq, d_model) -> (batch, heads, seq, head_dim)``.

    ``view`` first splits d_model into (heads, head_dim) *in place of* the last dim, so each token keeps its own
    features; only then does ``transpose`` bring the heads forward. Reshaping straight to the target shape would
    mix features of different tokens (notebook 04 shows it).
    """
    _check_float_tensor("x", x, ranks=(3,))
    _check_positive_int("num_heads", num_heads)
    batch, seq, d_model = x.shape
    _check_divisible(d_model, num_heads, d_name="d_model")
    head_dim = d_model // num_heads
    x = x.view(batch, seq, num_heads, head_dim)  # (batch, seq, d_model) -> (batch, seq, heads, head_dim)
    return x.transpose(1, 2)  # -> (batch, heads, seq, head_dim)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`split_heads`: ``(batch, heads, seq, head_dim) -> (batch, seq, heads * head_dim)``."""
    _check_float_tensor("x", x, ranks=(4,))
    batch, num_heads, seq, head_dim = x.shape
    x = x.transpose(1, 2)  # (batch, heads, seq, head_dim) -> (batch, seq, heads, head_dim), not contiguous
    return x.reshape(batch, seq, num_heads * head_dim)  # copies into (batch, seq, d_model)


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
      * ``key`` and ``value`` default to ``query`` (self-attention);
      * ``is_causal=True`` alone builds the causal mask (PyTorch also demands ``attn_mask``); if a mask is also
        given, the given mask is used, as PyTorch does;
      * a query row whose keys are all masked gets zero weights and a zero attention result before the output
        projection (so its output is ``W_o``'s bias), never NaN; PyTorch returns NaN there;
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
            raise TypeError(f"module must be a torch.nn.MultiheadAttention, got {type(module).__name__}")
        if module.bias_k is not None or module.add_zero_attn:
            raise ValueError("add_bias_kv=True and add_zero_attn=True are not supported by MultiHeadAttention")
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
        _check_float_tensor("query", query, ranks=(2, 3))
        _check_float_tensor("key", key, ranks=(2, 3))
        _check_float_tensor("value", value, ranks=(2, 3))
        batched = query.dim() == 3
        if key.dim() != query.dim() or value.dim() != query.dim():
            raise ValueError(
                f"query, key and value must all be batched (3-D) or all unbatched (2-D), got query "
                f"{tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}"
            )
        layout = "(batch, seq, features)" if self.batch_first else "(seq, batch, features)"
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


# =====================================================================================================
# 8. Exploring heads: widgets (notebook 06)
# =====================================================================================================


# =====================================================================================================
# 9. MHA inside a Transformer (notebook 07)
# =====================================================================================================


# =====================================================================================================
# 10. What heads learn (notebook 08)
# =====================================================================================================


# =====================================================================================================
# 11. What heads cost (notebook 09)
# =====================================================================================================
