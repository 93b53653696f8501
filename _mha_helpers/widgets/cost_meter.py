"""Notebook 11's cost meter: sliders for ``num_kv_heads``, ``latent_dim`` and ``window``, and what each variant of one
attention layer then costs (``experiments/variant_costs.py``): a table of parameters and KV-cache bytes with a bar
per variant, which K/V head each query head reads, and the window's band.

Each piece of the meter depends on one or two sliders only (the GQA map on ``num_kv_heads``, the band on ``window``,
the MLA row on ``latent_dim`` ...). The live meter redraws only the pieces whose sliders moved, and its ``states()``
says which piece depends on which slider, so that a copy without a kernel stores each piece once per value of ITS
sliders (a few hundred small pieces instead of 4,096 whole meters).
"""

from __future__ import annotations

import html

import torch
from matplotlib.figure import Figure

from ..common import valid_head_counts
from ..experiments.variant_costs import variant_costs
from ..maths.sliding_window import sliding_window_mask
from ..validation import check_divisible, check_positive_int
from .base import LiveWidget, figure_png, html_output, image_output, vbox
from .states import Control, Picture, States, every_combination

_METER_COLORS = {"multi-head": "#8d99ae", "grouped-query": "#2a9d8f", "latent (MLA)": "#e76f51",
                 "sliding window": "#e9c46a"}
#: The table's cells: padded, numbers right-aligned (without padding, "144" and "144" read "144144").
_CELL = "padding:3px 10px;border-bottom:1px solid #ddd"
_NUMBER = f"{_CELL};text-align:right;font-variant-numeric:tabular-nums"


def _draw_gqa(ax, num_heads: int, num_kv_heads: int) -> None:
    """Which K/V head each query head reads: a (query head, K/V head) grid, filled where it reads."""
    import matplotlib.colors as mcolors

    group = num_heads // num_kv_heads
    reads = torch.zeros(num_heads, num_kv_heads)
    reads[torch.arange(num_heads), torch.arange(num_heads) // group] = 1  # query head h reads K/V head h // group
    ax.imshow(reads.numpy(), cmap=mcolors.ListedColormap(["#f4f4f4", "#2a9d8f"]), vmin=0, vmax=1, aspect="auto")
    ax.set_title(f"GQA: {num_heads} query heads share\n{num_kv_heads} K/V head(s)", fontsize=9)
    ax.set_xlabel("K/V head")
    ax.set_ylabel("query head")
    ax.set_xticks(range(num_kv_heads))
    ax.set_yticks(range(num_heads))


def _draw_window(ax, window: int, context: int) -> None:
    """The sliding window's band over ``context`` tokens."""
    import matplotlib.colors as mcolors

    band = sliding_window_mask(context, window).float()  # (context, context), 1 = may attend
    ax.imshow(band.numpy(), cmap=mcolors.ListedColormap(["#f4f4f4", "#e9c46a"]), vmin=0, vmax=1)
    ax.set_title(f"sliding window {window}: {int(band.sum())} of\n{context * (context + 1) // 2} causal pairs",
                 fontsize=9)
    ax.set_xlabel("key position")
    ax.set_ylabel("query position")


def _draw_meter(fig, rows: list[dict], num_heads: int, num_kv_heads: int, window: int, context: int) -> None:
    """Draw the meter's three panels into ``fig``: the K/V head each query head reads, the window, the bytes."""
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.0, 1.2, 1.6], "wspace": 0.45})
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.16, top=0.84)  # fixed margins: tight_layout is slow
    _draw_gqa(axes[0], num_heads, num_kv_heads)
    _draw_window(axes[1], window, context)
    names = [r["variant"] for r in rows]
    values = [r["cache bytes"] for r in rows]
    bars = axes[2].barh(names, values, color=[_METER_COLORS[n] for n in names])
    axes[2].invert_yaxis()
    axes[2].bar_label(bars, labels=[f"{v:,}" for v in values], fontsize=8, padding=2)
    axes[2].set_xlim(0, max(values) * 1.35)
    axes[2].set_xlabel(f"KV-cache bytes for {context} tokens (measured)")
    axes[2].set_title("cache per layer and sequence, float32", fontsize=9)
    axes[2].tick_params(axis="y", labelsize=8)


def plot_variant_cost_meter(d_model: int = 64, num_heads: int = 8, num_kv_heads: int = 2, latent_dim: int = 16,
                            window: int = 8, context: int = 32) -> Figure:
    """The cost meter frozen at one setting, as a matplotlib Figure (the static copy of :func:`variant_cost_meter`)."""
    import matplotlib.pyplot as plt

    rows = variant_costs(d_model, num_heads, num_kv_heads, latent_dim, window, context)
    fig = plt.figure(figsize=(11, 3.4), dpi=100)
    _draw_meter(fig, rows, num_heads, num_kv_heads, window, context)
    return fig


def _row_html(row: dict, largest_cache: int) -> str:
    """One variant's row of the meter's table, with a bar as long as its cache (the multi-head cache is full width)."""
    share = 100 * row["cache bytes"] / largest_cache
    bar = (f"<span style='display:inline-block;vertical-align:middle;height:0.8em;width:{share:.1f}%;"
           f"max-width:100%;background:{_METER_COLORS[row['variant']]};border:1px solid #555'></span>")
    return (f"<tr><th scope='row' style='{_CELL};text-align:left'>{html.escape(row['variant'])}</th>"
            f"<td style='{_NUMBER}'>{row['parameters']:,}</td>"
            f"<td style='{_NUMBER}'>{html.escape(row['formula'])} = {row['bytes/token']:g}</td>"
            f"<td style='{_NUMBER}'>{row['measured bytes/token']:g}</td>"
            f"<td style='{_NUMBER}'>{row['cache bytes']:,}</td>"
            f"<td style='{_CELL};width:140px;text-align:left'>{bar}</td></tr>")


class VariantCostMeter(LiveWidget):
    """The widget returned by :func:`variant_cost_meter`; display it as a cell's last expression.

    Attributes (ipywidgets): ``kv_slider`` (num_kv_heads, the divisors of num_heads), ``latent_slider``
    (latent_dim), ``window_slider`` (window), ``readout`` (HTML: the settings and a table of parameters and bytes per
    token by formula and measured, with a bar per variant's cache), ``gqa_image`` (which K/V head each query head
    reads, PNG), ``window_image`` (the window's band, PNG), ``widget`` (the whole box); ``rows`` the last
    :func:`variant_costs`. A redraw draws again only the figure whose slider moved.
    """

    def __init__(self, d_model: int, num_heads: int, num_kv_heads: int, latent_dim: int, window: int,
                 context: int) -> None:
        import ipywidgets as widgets

        self.d_model, self.num_heads, self.context = d_model, num_heads, context
        self.rows: list[dict] = []
        self._pngs: dict[tuple[str, int], bytes] = {}  # this meter's figures, by (which, slider value)
        self._holding = False
        style, layout = {"description_width": "110px"}, widgets.Layout(width="380px")
        self.kv_slider = widgets.SelectionSlider(options=valid_head_counts(num_heads), value=num_kv_heads,
                                                 description="num_kv_heads", style=style, layout=layout)
        self.latent_slider = widgets.IntSlider(value=latent_dim, min=4, max=2 * d_model, step=4,
                                               description="latent_dim", style=style, layout=layout)
        self.window_slider = widgets.IntSlider(value=window, min=1, max=context, description="window",
                                               style=style, layout=layout)
        for slider, css in ((self.kv_slider, "mha-meter-kv"), (self.latent_slider, "mha-meter-latent"),
                            (self.window_slider, "mha-meter-window")):
            slider.add_class(css)
        self.readout = html_output("mha-meter-readout")
        self.gqa_image = image_output("mha-meter-gqa")
        self.window_image = image_output("mha-meter-band")
        for image in (self.gqa_image, self.window_image):
            image.add_class("mha-meter-figure")
        figures = widgets.HBox([self.gqa_image, self.window_image], layout=widgets.Layout(flex_flow="row wrap"))
        self.widget = vbox([widgets.HBox([self.kv_slider, self.latent_slider, self.window_slider],
                                         layout=widgets.Layout(flex_flow="row wrap")),
                            self.readout, figures], "mha-variant-meter")
        self.redraw()
        for slider in (self.kv_slider, self.latent_slider, self.window_slider):
            slider.observe(self._on_move, names="value")

    def __repr__(self) -> str:
        return (f"VariantCostMeter(d_model={self.d_model}, num_heads={self.num_heads}, "
                f"num_kv_heads={self.kv_slider.value}, latent_dim={self.latent_slider.value}, "
                f"window={self.window_slider.value}, context={self.context})")

    def _on_move(self, change: object) -> None:
        if not self._holding:
            self._safe_redraw()

    def set_values(self, num_kv_heads: int, latent_dim: int, window: int) -> None:
        """Move the three sliders at once, with one redraw."""
        self._holding = True
        try:
            self.kv_slider.value, self.latent_slider.value = num_kv_heads, latent_dim
            self.window_slider.value = window
        finally:
            self._holding = False
        self._safe_redraw()

    # ---- drawing ---------------------------------------------------------------------------------------------

    def _png(self, which: str, value: int) -> bytes:
        """The GQA map (``which="gqa"``, for ``num_kv_heads = value``) or the band (``"window"``), drawn once."""
        if (which, value) not in self._pngs:
            fig = Figure(figsize=(3.0, 2.9) if which == "gqa" else (3.3, 2.9), dpi=80)  # not pyplot's: never shown
            ax = fig.add_axes((0.2, 0.17, 0.75, 0.66) if which == "gqa" else (0.18, 0.17, 0.78, 0.66))
            if which == "gqa":
                _draw_gqa(ax, self.num_heads, value)
            else:
                _draw_window(ax, value, self.context)
            self._pngs[which, value] = figure_png(fig, pil_kwargs={"compress_level": 1})  # fast: redrawn live
        return self._pngs[which, value]

    def redraw(self) -> None:
        """Measure the four variants at the sliders' values; redraw the table and the figures whose slider moved."""
        kv, latent, window = self.kv_slider.value, self.latent_slider.value, self.window_slider.value
        self.rows = variant_costs(self.d_model, self.num_heads, kv, latent, window, self.context)
        for image, png in ((self.gqa_image, self._png("gqa", kv)), (self.window_image, self._png("window", window))):
            if image.value != png:
                image.value = png
        self.readout.value = "".join(self._readout_parts())

    def _readout_parts(self) -> list[str]:
        """The read-out in pieces, each depending on the sliders :meth:`states` names (``parts``)."""
        kv, latent, window = self.kv_slider.value, self.latent_slider.value, self.window_slider.value
        mha, gqa, mla, sliding = self.rows
        head = "".join(f"<th scope='col' style='{_CELL};text-align:{align}'>{name}</th>" for name, align in (
            ("variant", "left"), ("parameters", "right"), ("bytes/token (formula)", "right"),
            ("bytes/token (measured nbytes)", "right"), (f"cache for {self.context} tokens", "right"),
            ("cache, drawn to scale", "left")))
        largest = mha["cache bytes"]  # no variant caches more than multi-head attention
        return [
            f"<b>num_kv_heads = {kv}</b> · ", f"<b>latent_dim = {latent}</b> · ", f"<b>window = {window}</b>",
            f" (d_model {self.d_model}, {self.num_heads} heads of head_dim {self.d_model // self.num_heads}; "
            f"float32)<br><table class='mha-meter-table' style='border-collapse:collapse;font-size:12px;"
            f"margin-top:4px'><thead><tr>{head}</tr></thead><tbody>{_row_html(mha, largest)}",
            _row_html(gqa, largest), _row_html(mla, largest), _row_html(sliding, largest) + "</tbody></table>",
        ]

    # ---- in words ----------------------------------------------------------------------------------------------

    def _gqa_alt(self) -> str:
        kv, group = self.kv_slider.value, self.num_heads // self.kv_slider.value
        if group == 1:
            reads = "each query head reads its own K/V head (plain multi-head attention)"
        elif kv == 1:
            reads = "every query head reads the one K/V head (multi-query attention)"
        else:
            reads = "; ".join(f"query heads {g * group}\u2013{(g + 1) * group - 1} read K/V head {g}" for g in range(kv))
        return (f"Grid of {self.num_heads} query heads (rows) by {kv} K/V head{'s' if kv > 1 else ''} (columns), "
                f"filled where a query head reads a K/V head: {reads}.")

    def _window_alt(self) -> str:
        window, n = self.window_slider.value, self.context
        kept = int(sliding_window_mask(n, window).sum())
        sees = "only itself" if window == 1 else f"itself and up to {window - 1} keys before it"
        return (f"Sliding-window mask over {n} tokens with window {window}: a band along the diagonal, each query "
                f"position sees {sees}; {kept} of the {n * (n + 1) // 2} causal query\u2013key pairs are kept.")

    def _status_parts(self) -> list[str]:
        """What a screen reader hears after a move, in the same pieces as the sliders (``parts``)."""
        _, gqa, mla, sliding = self.rows
        return [f"Grouped-query: {self.num_heads} query heads share {self.kv_slider.value} K/V heads, "
                f"{gqa['bytes/token']:g} bytes per token. ",
                f"Latent: latent_dim {self.latent_slider.value}, {mla['bytes/token']:g} bytes per token. ",
                f"Sliding window {self.window_slider.value}: {sliding['bytes/token']:g} bytes per token."]

    # ---- every state, for a copy without a kernel (states.py) ---------------------------------------------------

    def states(self, max_states: int | None = None) -> States:
        """Every combination of the three sliders, each piece drawn by this meter (see ``widgets/states.py``).

        ``parts`` says which sliders each piece depends on: the GQA map and the GQA row on ``num_kv_heads``, the
        band on ``window``, the MLA row on ``latent_dim``, the sliding-window row on both ``num_kv_heads`` and
        ``window``, the rest on none. ``max_states`` does not apply: no piece has more than 128 values."""
        start = (self.kv_slider.value, self.latent_slider.value, self.window_slider.value)
        kv, latent, window = "num_kv_heads", "latent_dim", "window"
        controls = [Control(kv, kv, "slider", list(self.kv_slider.options), start[0]),
                    Control(latent, latent, "slider", list(range(4, 2 * self.d_model + 1, 4)), start[1]),
                    Control(window, window, "slider", list(range(1, self.context + 1)), start[2])]

        def view(values: dict) -> dict:
            self.set_values(values[kv], values[latent], values[window])
            if "could not redraw" in self.readout.value:
                raise RuntimeError(f"the meter failed at {values}: {self.readout.value}")
            return {"readout": self._readout_parts(), "gqa": Picture(bytes(self.gqa_image.value), self._gqa_alt()),
                    "window_map": Picture(bytes(self.window_image.value), self._window_alt()),
                    "status": self._status_parts()}

        parts = {"readout": [[kv], [latent], [window], [], [kv], [latent], [kv, window]], "gqa": [[kv]],
                 "window_map": [[window]], "status": [[kv], [latent], [kv, window]]}
        return States("cost_meter", controls, [("readout", "html"), ("gqa", "image"), ("window_map", "image"),
                                               ("status", "status")],
                      rows=[[kv, latent, window], ["readout"], ["gqa", "window_map"]],
                      combinations=every_combination(controls), view=view, restore=lambda: self.set_values(*start),
                      css_class="mha-variant-meter", parts=parts)


def variant_cost_meter(d_model: int = 64, num_heads: int = 8, num_kv_heads: int = 2, latent_dim: int = 16,
                       window: int = 8, context: int = 32) -> VariantCostMeter:
    """A widget with sliders for ``num_kv_heads``, ``latent_dim`` and ``window``: one layer's parameters and KV-cache
    bytes per token (formula and measured ``nbytes``) in four variants (:func:`variant_costs`), with a bar per
    variant's cache of ``context`` tokens, which K/V head each query head reads and the window's band.
    :func:`plot_variant_cost_meter` draws the same numbers as one static figure."""
    for name, value in (("d_model", d_model), ("num_heads", num_heads), ("num_kv_heads", num_kv_heads),
                        ("latent_dim", latent_dim), ("window", window), ("context", context)):
        check_positive_int(name, value)
    check_divisible(d_model, num_heads, d_name="d_model")
    if num_heads % num_kv_heads:
        raise ValueError(f"num_kv_heads={num_kv_heads} must divide num_heads={num_heads}")
    if window > context:
        raise ValueError(f"window={window} must be at most context={context} (the slider's range)")
    if latent_dim > 2 * d_model or latent_dim % 4:
        raise ValueError(f"latent_dim must be a multiple of 4 up to 2·d_model={2 * d_model}, got {latent_dim}")
    return VariantCostMeter(d_model, num_heads, num_kv_heads, latent_dim, window, context)
