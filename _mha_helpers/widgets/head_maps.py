"""Per-head attention maps (notebook 06): what the explorer measures in each head (entropy, previous-token share)
and the figure it draws them in, one Agg figure per head count and sentence, drawn once; a redraw restores the cached background (axes, token labels) and draws only the maps, titles and numbers
("blitting"), then hands PNG bytes to the widget.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import torch

from ..common import plain_labels
from ..validation import check_attention_weights


def attention_entropy(weights: torch.Tensor) -> torch.Tensor:
    """How spread out attention is, in bits, averaged over the queries: ``(..., L, S) -> (...)``.

    For one query row ``p``: ``H(p) = -sum_j p_j log2 p_j`` (``0 log 0`` counts as 0, so masked keys are fine):
    0 bits when all attention is on one key, ``log2(S)`` bits when it is spread evenly over ``S`` keys.
    E.g. ``(batch, heads, L, S) -> (batch, heads)``: one number per head.
    """
    check_attention_weights(weights)
    if weights.dim() < 2:
        raise ValueError(f"weights must be (..., L, S) with at least 2 dims, got shape {tuple(weights.shape)}")
    per_query = -torch.special.xlogy(weights, weights).sum(dim=-1) / math.log(2)  # (..., L, S) -> (..., L)
    return per_query.mean(dim=-1).abs()  # (..., L) -> (...); abs() only turns -0.0 into 0.0


def previous_token_share(weights: torch.Tensor) -> torch.Tensor:
    """The share of attention a token puts on the token just before it, averaged over tokens: ``(..., L, S) -> (...)``.

    The mean of ``weights[..., i, i-1]`` over the queries ``i = 1 .. L-1`` (query 0 has no previous token):
    1.0 for a perfect "previous-token head", about ``1/S`` for uniform attention. Needs ``L >= 2``.
    """
    check_attention_weights(weights)
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


class HeadFigure:
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
        self.num_heads, self.tokens, self.live = num_heads, list(tokens), live
        if figure is None:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure

            figure = Figure(figsize=self.figsize(enlarged, average), dpi=80)
            FigureCanvasAgg(figure)
        self.fig = figure
        small = num_heads > 8 or len(self.tokens) > 8
        self.label_size, self.title_size = (6.5, 7) if small else (8, 8.5)
        self.number_lines = "{e:.2f} bits\nprev {p:.2f}" if small else "{e:.2f} bits, prev {p:.2f}"
        self.style = {"vmin": 0.0, "vmax": 1.0, "cmap": "viridis", "interpolation": "none", "aspect": "equal"}
        extra = int(enlarged) + int(average)  # panels right of the grid
        outer = figure.add_gridspec(1, 1 + extra, width_ratios=[7.0] + [2.5] * extra, left=0.055, right=0.935,
                                    bottom=0.15, top=0.83 if live else 0.74, wspace=0.1 + 0.08 * extra)
        self._draw_grid(outer[0], small)
        self.big_image = self.avg_image = self.big_title = self.avg_title = None
        self.cell_texts: list = []
        if enlarged:
            self._draw_enlarged(figure.add_subplot(outer[1]))
        if average:
            self._draw_average(figure.add_subplot(outer[1 + int(enlarged)]))
        self._draw_frame(headline)
        self._background = None

    def _blank(self) -> list[list[float]]:
        n = len(self.tokens)
        return [[0.0] * n for _ in range(n)]

    def _draw_grid(self, cell, small: bool) -> None:
        """One small map per head, with its title, its numbers and a (hidden) highlight box."""
        from matplotlib.patches import Rectangle

        rows, cols = _grid_shape(self.num_heads)
        grid = cell.subgridspec(rows, cols, wspace=0.1, hspace=0.95 if small else 0.7)
        self.head_images, self.head_numbers, self.highlights = [], [], []
        for h in range(rows * cols):
            ax = self.fig.add_subplot(grid[h // cols, h % cols])
            if h >= self.num_heads:
                ax.axis("off")
                continue
            self.head_images.append(ax.imshow(self._blank(), **self.style))
            last_row = h // cols == rows - 1 or h + cols >= self.num_heads
            self._label(ax, self.label_size, y=h % cols == 0, x=last_row)
            lines = 1 + self.number_lines.count("\n")
            self._above(ax, f"head {h}", self.title_size, 3 + 1.25 * self.title_size * lines, weight="bold")
            self.head_numbers.append(self._above(ax, "", self.title_size, 2))
            box = Rectangle((0, 0), 1, 1, transform=ax.transAxes, fill=False, edgecolor="#d62728", linewidth=3,
                            clip_on=False, visible=False)
            ax.add_patch(box)
            self.highlights.append(box)
        self.dynamic = [*self.head_images, *self.head_numbers, *self.highlights]

    def _draw_enlarged(self, ax) -> None:
        """The enlarged head, its weights written into the cells when there are at most 8 tokens."""
        n = len(self.tokens)
        self.big_image = ax.imshow(self._blank(), **self.style)
        self._label(ax, self.label_size, y=True, x=True)
        self.big_title = self._above(ax, "", self.title_size + 0.5, 3)
        if n <= 8:
            self.cell_texts = [ax.text(j, i, "", ha="center", va="center", fontsize=7 if n <= 6 else 6)
                               for i in range(n) for j in range(n)]
        self.dynamic += [self.big_image, self.big_title, *self.cell_texts]

    def _draw_average(self, ax) -> None:
        """The map averaged over the heads (live: a fixed title, part of the background; static: with its entropy)."""
        self.avg_image = ax.imshow(self._blank(), **self.style)
        self._label(ax, self.label_size, y=True, x=True)
        heads = "1 head" if self.num_heads == 1 else f"{self.num_heads} heads"
        self.avg_title = self._above(ax, f"average of {heads}", self.title_size + 0.5, 3)
        self.dynamic.append(self.avg_image)
        if not self.live:
            self.dynamic.append(self.avg_title)

    def _draw_frame(self, headline: str) -> None:
        """One colour bar as tall as the maps are drawn, the headline, the causal status and the reading key."""
        figure = self.fig
        for ax in figure.axes:
            ax.apply_aspect()  # equal aspect shrinks the maps inside their cells: measure where they really are
        low, high = min(ax.get_position().y0 for ax in figure.axes), max(ax.get_position().y1 for ax in figure.axes)
        bar = figure.colorbar(self.head_images[0], cax=figure.add_axes((0.948, low, 0.01, high - low)), ticks=[0, 0.5, 1])
        bar.ax.tick_params(labelsize=7, length=2)
        figure.suptitle(headline, fontsize=11)
        # The causal status is drawn only in the static figure (live, the checkbox and the read-out show it).
        self.status = figure.text(0.5, 0.885, "", ha="center", va="top", fontsize=9)
        figure.text(0.5, 0.012, "rows: query (attending) · columns: key (attended to) · colour: 0 = dark, 1 = bright",
                    ha="center", va="bottom", fontsize=8, color="#555555")

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
        labels = plain_labels(self.tokens)  # drawn literally: a "$" would start mathtext
        ax.set_xticks(range(n) if x else [], labels if x else [], rotation=60, fontsize=size)
        ax.set_yticks(range(n) if y else [], labels if y else [], fontsize=size)
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
