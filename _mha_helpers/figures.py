"""Figures of the first notebooks: labelled attention heatmaps (one map, several heads), 01's soft look-up picture
and 05's "which heads each output feature hears".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import nn

from .common import plain_labels
from .maths.attention import merge_heads
from .validation import (
    check_axes,
    check_bool,
    check_callable,
    check_float_tensor,
    check_has_values,
    check_instance,
    check_list,
    check_number,
    check_positive_int,
    check_str,
    check_tokens,
)

#: The largest map plot_attention / plot_heads draw: beyond it every label is unreadable and drawing takes minutes.
PLOT_MAX_TOKENS = 200


def _as_numpy_2d(weights: torch.Tensor, name: str = "weights"):
    check_instance(name, weights, torch.Tensor, "a torch.Tensor")
    if weights.is_complex():
        raise TypeError(f"{name} must hold real numbers, got dtype {weights.dtype}; draw {name}.abs() or {name}.real")
    check_has_values(name, weights)
    w = weights.detach().float().cpu()
    while w.dim() > 2 and w.shape[0] == 1:
        w = w[0]  # drop leading singleton batch/head dims
    if w.dim() != 2:
        raise ValueError(f"{name} must be a 2-D (query, key) map, got shape {tuple(weights.shape)}")
    _check_map_size(name, w.shape)
    return w.numpy()


def _check_map_size(name: str, shape: Sequence[int]) -> None:
    """Refuse maps too large to draw (a 1,200-token map took minutes and showed nothing readable) or empty."""
    if 0 in shape:
        raise ValueError(f"{name} is empty (shape {tuple(shape)}): there is nothing to draw")
    if max(shape[-2:]) > PLOT_MAX_TOKENS:
        L, S = shape[-2:]
        raise ValueError(
            f"{name} is a {L} x {S} map; plots draw at most {PLOT_MAX_TOKENS} tokens a side, "
            f"where labels are still readable: draw a slice, e.g. {name}[..., :{min(L, 40)}, :{min(S, 40)}]"
        )


def _token_labels(name: str, tokens: object, n: int) -> list[str] | None:
    """None, or ``n`` labels from a list of tokens (strings; numbers are shown as they print)."""
    if tokens is None:
        return None
    if isinstance(tokens, torch.Tensor):
        tokens = tokens.tolist()
    return check_list(name, tokens, (str, int, float), f"a list of {n} strings (one per row/column)")


def plot_attention(
    weights: torch.Tensor,
    query_tokens: Sequence[str] | None = None,
    key_tokens: Sequence[str] | None = None,
    title: str = "Attention weights",
    ax: Axes | None = None,
    annot: bool | None = None,
    vmin: float | None = 0.0,
    vmax: float | None = 1.0,
    cbar: bool = True,
    cmap: str = "viridis",
    fmt: str = ".2f",
) -> Axes:
    """Draw one attention map ``(L, S)`` (leading size-1 dims are dropped) as a labelled seaborn heatmap.

    Rows are queries (the token that is attending), columns are keys (the token attended to). ``annot`` defaults
    to writing the numbers in the cells when the map is at most 8 x 8. Pass ``vmin=vmax=None`` for raw scores.
    Tokens are drawn literally (a ``$`` is not mathtext). Maps larger than ``PLOT_MAX_TOKENS`` = 200 tokens a side
    raise a ValueError: draw a slice instead. Returns the matplotlib ``Axes``.
    """
    w = _as_numpy_2d(weights)
    L, S = w.shape
    query_tokens, key_tokens = _token_labels("query_tokens", query_tokens, L), _token_labels("key_tokens", key_tokens, S)
    if annot is not None:
        check_bool("annot", annot)
    check_bool("cbar", cbar)
    for option, value in (("vmin", vmin), ("vmax", vmax)):
        check_number(option, value, allow_none=True)
    for option, value in (("title", title), ("cmap", cmap), ("fmt", fmt)):
        check_str(option, value)
    check_axes("ax", ax)
    query_tokens = list(query_tokens) if query_tokens is not None else [str(i) for i in range(L)]
    key_tokens = list(key_tokens) if key_tokens is not None else list(query_tokens) if S == L else None
    key_tokens = key_tokens if key_tokens is not None else [str(j) for j in range(S)]
    for name, tokens, n, axis in (("query_tokens", query_tokens, L, "rows"), ("key_tokens", key_tokens, S, "columns")):
        if len(tokens) != n:
            raise ValueError(f"{name} has {len(tokens)} labels but the map has {n} {axis} (it is {L} x {S}): "
                             f"pass one label per {axis[:-1]}")
    import matplotlib.pyplot as plt  # after the checks: a bad argument is refused without importing seaborn
    import seaborn as sns

    if ax is None:
        _, ax = plt.subplots(figsize=(0.55 * S + 2.2, 0.5 * L + 1.4))
    if annot is None:
        annot = L <= 8 and S <= 8
    sns.heatmap(
        w, ax=ax, vmin=vmin, vmax=vmax, cmap=cmap, annot=annot, fmt=fmt, cbar=cbar, square=False,
        xticklabels=plain_labels(key_tokens), yticklabels=plain_labels(query_tokens), annot_kws={"fontsize": 8},
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
    cbar: bool = False,
) -> Figure:
    """Draw per-head maps ``(num_heads, L, S)`` (or ``(1, num_heads, L, S)``) side by side; returns the Figure.

    All heads share one colour scale from 0 to 1, so their maps can be compared by eye; ``cbar=True`` draws that scale
    once, as a colour bar right of the grid (off by default: it adds one Axes to the figure, and so to its repr).
    """
    check_float_tensor("weights", weights, ranks=(3, 4), layout="(num_heads, L, S) or (1, num_heads, L, S)")
    check_has_values("weights", weights)
    w = weights.detach()
    if w.dim() == 4 and w.shape[0] == 1:
        w = w[0]
    if w.dim() != 3:
        raise ValueError(f"weights must be (num_heads, L, S) or (1, num_heads, L, S), got {tuple(weights.shape)}")
    _check_map_size("weights", w.shape)
    check_positive_int("max_cols", max_cols)
    check_bool("annot", annot)
    check_bool("cbar", cbar)
    check_str("title", title)
    _token_labels("query_tokens", query_tokens, w.shape[-2])  # checked before any figure is made
    _token_labels("key_tokens", key_tokens, w.shape[-1])
    num_heads = w.shape[0]
    if num_heads > 64:
        raise ValueError(f"weights has {num_heads} heads; plot_heads draws at most 64 maps: pass weights[:64]")
    import matplotlib.pyplot as plt

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
    if not cbar:
        fig.tight_layout()
        return fig
    fig.tight_layout(rect=(0, 0, 1 - 1.05 / fig.get_figwidth(), 1))  # room on the right for the colour bar
    bar_axes = fig.add_axes((1 - 0.85 / fig.get_figwidth(), 0.15, 0.12 / fig.get_figwidth(), 0.7))
    fig.colorbar(axes[0][0].collections[0], cax=bar_axes, label="attention weight")  # every map's 0-1 scale
    return fig


def plot_soft_lookup(
    query: torch.Tensor,
    keys: torch.Tensor,
    weights: torch.Tensor,
    key_names: Sequence[str],
    axis_labels: Sequence[str] = ("feature 0", "feature 1"),
    title: str = "A soft look-up",
    ax: Axes | None = None,
) -> Axes:
    """Draw a soft look-up in 2-D: the query and every key as arrows from the origin; returns the ``Axes``.

    ``query`` is ``(2,)``, ``keys`` is ``(S, 2)`` and ``weights`` is ``(S,)`` (the softmax of the dot products).
    Each key's arrow is labelled with its name and weight and drawn thicker the more weight it gets, so the
    figure shows which keys the query "finds".
    """
    import matplotlib.pyplot as plt

    for name, t, rank in (("query", query, 1), ("keys", keys, 2), ("weights", weights, 1)):
        check_float_tensor(name, t, ranks=(rank,))
        check_has_values(name, t)
    q, k, w = (t.detach().float().cpu() for t in (query, keys, weights))
    if q.shape[0] != 2 or k.shape[1] != 2:
        raise ValueError(f"plot_soft_lookup draws 2-D vectors: got query {tuple(q.shape)} and keys {tuple(k.shape)}")
    check_tokens("key_names", key_names)
    check_tokens("axis_labels", axis_labels)
    if len(axis_labels) != 2:
        raise ValueError(f"axis_labels must be two strings (x, y), got {len(axis_labels)}: {list(axis_labels)!r}")
    check_str("title", title)
    check_axes("ax", ax)
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

    for vec, name, weight in zip(k, plain_labels(key_names), w, strict=True):
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


def head_influence(heads: torch.Tensor, mix: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """How much each output feature changes when one head is silenced: returns ``(d_model, num_heads)``.

    ``heads`` is the attention result ``(batch, heads, seq, head_dim)``; the output is ``mix(merge_heads(heads))``,
    ``(batch, seq, d_model)``, where ``mix`` is e.g. the output projection ``W_o`` (None: no mixing, the merged heads
    themselves). Entry ``[i, h]`` is the largest change of output feature ``i`` (over batch and tokens) when head
    ``h``'s result is set to zero.
    """
    check_float_tensor("heads", heads, ranks=(4,))
    if mix is None:
        mix = nn.Identity()
    check_callable("mix", mix, what="a function or module such as mha.W_o (or None)")
    with torch.no_grad():
        try:
            full = mix(merge_heads(heads))  # (batch, heads, seq, head_dim) -> (batch, seq, d_model)
        except RuntimeError as exc:  # e.g. a W_o of another width: say which shapes had to fit
            d_model = heads.shape[1] * heads.shape[3]
            raise ValueError(f"mix must take the merged heads (batch, seq, d_model={d_model}), e.g. the W_o of this "
                             f"attention; calling it failed: {exc}") from None
        columns = []
        for h in range(heads.shape[1]):
            silenced = heads.clone()
            silenced[:, h] = 0.0  # head h found nothing
            change = (mix(merge_heads(silenced)) - full).abs()  # (batch, seq, d_model)
            columns.append(change.amax(dim=(0, 1)))  # (d_model,)
    return torch.stack(columns, dim=1)  # (d_model, num_heads)


def plot_head_influence(influence: torch.Tensor, title: str = "Which heads each output feature hears", ax: Axes | None = None) -> Axes:
    """Draw :func:`head_influence`'s ``(d_model, num_heads)`` matrix as a labelled heatmap; returns the ``Axes``."""
    w = _as_numpy_2d(influence, "influence")
    check_str("title", title)
    check_axes("ax", ax)
    import matplotlib.pyplot as plt  # after the checks: a bad argument is refused without importing seaborn
    import seaborn as sns

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
