"""Notebook 06 (and 04's compact slider): the head explorer, a widget that re-splits ONE fixed, seeded module into
1, 2, 4, ... heads, and the per-head measures it shows (entropy, previous-token share).
"""

from __future__ import annotations

import html
import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from .common import (
    SENTENCE,
    _check_attention_weights,
    _check_bool,
    _check_divisible,
    _check_float_tensor,
    _check_int,
    _check_like_parameters,
    _check_positive_int,
    _OneThread,
    _plain_labels,
    _sized_by,
    toy_embeddings,
    valid_head_counts,
)
from .mha import MultiHeadAttention

if TYPE_CHECKING:  # type hints only: matplotlib is imported where a figure is drawn, not when the helpers load
    from matplotlib.figure import Figure

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
        with _sized_by("d_model", d_model):
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
    view = resplit_heads(module, num_heads)  # checks module and num_heads
    _check_float_tensor("x", x, ranks=(3,), layout="(batch, seq, embed_dim)")
    _check_like_parameters("x", x, module.W_o.weight, "module")
    if x.shape[-1] != module.embed_dim or module.kdim != module.embed_dim or module.vdim != module.embed_dim:
        raise ValueError(f"x must be (batch, seq, embed_dim) = (batch, seq, {module.embed_dim}), got {tuple(x.shape)}")
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
    _check_attention_weights(weights)
    if weights.dim() < 2:
        raise ValueError(f"weights must be (..., L, S) with at least 2 dims, got shape {tuple(weights.shape)}")
    per_query = -torch.special.xlogy(weights, weights).sum(dim=-1) / math.log(2)  # (..., L, S) -> (..., L)
    return per_query.mean(dim=-1).abs()  # (..., L) -> (...); abs() only turns -0.0 into 0.0


def previous_token_share(weights: torch.Tensor) -> torch.Tensor:
    """The share of attention a token puts on the token just before it, averaged over tokens: ``(..., L, S) -> (...)``.

    The mean of ``weights[..., i, i-1]`` over the queries ``i = 1 .. L-1`` (query 0 has no previous token):
    1.0 for a perfect "previous-token head", about ``1/S`` for uniform attention. Needs ``L >= 2``.
    """
    _check_attention_weights(weights)
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
        labels = _plain_labels(self.tokens)  # drawn literally: a "$" would start mathtext
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


def _explorer_tokens(sentence: str | Sequence[str]) -> tuple[list[str], str]:
    """The sentence's words (at most EXPLORER_MAX_TOKENS) and a note saying what was cut ("" if nothing was)."""
    if isinstance(sentence, str):
        tokens = sentence.split()
    elif isinstance(sentence, Sequence) and all(isinstance(t, str) for t in sentence):
        tokens = [t for t in sentence if t.strip()]
    else:
        shown = type(sentence).__name__ if not isinstance(sentence, Sequence) else repr(list(sentence))[:80]
        raise TypeError(f"sentence must be a string or a list of words, e.g. 'the cat sat on the mat', got {shown}")
    if not tokens:
        raise ValueError("sentence is empty: type at least one word, e.g. 'the cat sat on the mat'")
    note = (f"the sentence has {len(tokens)} words; the explorer shows only the first {EXPLORER_MAX_TOKENS} "
            f"(EXPLORER_MAX_TOKENS), up to {tokens[:EXPLORER_MAX_TOKENS][-1]!r}: larger maps are unreadable")
    return tokens[:EXPLORER_MAX_TOKENS], note if len(tokens) > EXPLORER_MAX_TOKENS else ""


def _explorer_headline(d_model: int, num_heads: int, params: int) -> str:
    head_dim = d_model // num_heads
    heads = "1 head" if num_heads == 1 else f"{num_heads} heads"
    return f"d_model = {d_model} cut into {heads} of head_dim = {head_dim} · {params:,} parameters for every head count"


def _explorer_setup(
    d_model: int, num_heads: int, sentence: str | Sequence[str], seed: int, module: MultiHeadAttention | None,
) -> tuple[MultiHeadAttention, list[str], str]:
    """Check the explorer's arguments; return the module to re-split, the sentence's words and a note on cutting."""
    _check_int("seed", seed, minimum=0)
    if module is None:
        module = explorer_module(d_model, seed)
    elif not isinstance(module, MultiHeadAttention):
        raise TypeError(f"module must be an mha_helpers.MultiHeadAttention, got {type(module).__name__}")
    elif module.kdim != module.embed_dim or module.vdim != module.embed_dim:
        raise ValueError(f"module must do self-attention (kdim = vdim = embed_dim), got {module}")
    _check_positive_int("num_heads", num_heads)
    _check_divisible(module.embed_dim, num_heads, d_name="d_model")
    tokens, note = _explorer_tokens(sentence)
    if note:  # never cut a sentence in silence
        warnings.warn(note, UserWarning, stacklevel=3)
    return module, tokens, note


def _weights_table_html(weights: torch.Tensor, tokens: Sequence[str], caption: str) -> str:
    """One head's map ``(L, L)`` as an HTML table: its weights written in cells coloured like the heatmaps."""
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
        note: str = "",
    ) -> None:
        import ipywidgets as widgets

        self.module, self.compact, self.seed, self.tokens, self.note = module, compact, seed, tokens, note
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
            tokens, self.note = _explorer_tokens(change["new"])
        except (TypeError, ValueError) as exc:
            self.readout.value = f"<b style='color:#b00'>{html.escape(str(exc))}</b>"
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
        text += f"<br><b style='color:#b35900'>⚠ {html.escape(self.note)}</b>" if self.note else ""  # a cut sentence
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
    module, tokens, note = _explorer_setup(d_model, num_heads, sentence, seed, module)
    return HeadExplorer(module, num_heads, tokens, causal, compact, seed, note=note)


def plot_head_explorer(
    d_model: int = 16,
    num_heads: int = 4,
    sentence: str | Sequence[str] = SENTENCE,
    causal: bool = False,
    compact: bool = False,
    enlarge: int = 0,
    seed: int = 0,
    module: MultiHeadAttention | None = None,
) -> Figure:
    """The head explorer's view frozen at one setting, as a plain matplotlib Figure (for static copies of a notebook).

    Same arguments and the same drawing as :func:`head_explorer`; ``enlarge`` picks the head drawn large with its
    weights written in (not drawn when ``compact``). Returns the Figure.
    """
    import matplotlib.pyplot as plt

    _check_bool("causal", causal)
    _check_bool("compact", compact)
    module, tokens, _ = _explorer_setup(d_model, num_heads, sentence, seed, module)
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
