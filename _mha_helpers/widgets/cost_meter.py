"""Notebook 11's cost meter: sliders for ``num_kv_heads``, ``latent_dim`` and ``window``, and what each variant of one
attention layer then costs (``experiments/variant_costs.py``), drawn as which K/V head each query head reads, the
window's band and the KV cache in bytes.
"""

from __future__ import annotations

import torch
from matplotlib.figure import Figure

from ..common import valid_head_counts
from ..experiments.variant_costs import variant_costs
from ..maths.sliding_window import sliding_window_mask
from ..validation import check_divisible, check_positive_int
from .base import LiveWidget, figure_png, html_output, image_output, vbox

_METER_COLORS = {"multi-head": "#8d99ae", "grouped-query": "#2a9d8f", "latent (MLA)": "#e76f51",
                 "sliding window": "#e9c46a"}


def _draw_meter(fig, rows: list[dict], num_heads: int, num_kv_heads: int, window: int, context: int) -> None:
    """Draw the meter's three panels into ``fig``: the K/V head each query head reads, the window, the bytes."""
    import matplotlib.colors as mcolors

    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.0, 1.2, 1.6], "wspace": 0.45})
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.16, top=0.84)  # fixed margins: tight_layout is slow
    group = num_heads // num_kv_heads
    reads = torch.zeros(num_heads, num_kv_heads)
    reads[torch.arange(num_heads), torch.arange(num_heads) // group] = 1  # query head h reads K/V head h // group
    axes[0].imshow(reads.numpy(), cmap=mcolors.ListedColormap(["#f4f4f4", "#2a9d8f"]), vmin=0, vmax=1, aspect="auto")
    axes[0].set_title(f"GQA: {num_heads} query heads share\n{num_kv_heads} K/V head(s)", fontsize=9)
    axes[0].set_xlabel("K/V head")
    axes[0].set_ylabel("query head")
    axes[0].set_xticks(range(num_kv_heads))
    axes[0].set_yticks(range(num_heads))
    band = sliding_window_mask(context, window).float()  # (context, context), 1 = may attend
    axes[1].imshow(band.numpy(), cmap=mcolors.ListedColormap(["#f4f4f4", "#e9c46a"]), vmin=0, vmax=1)
    axes[1].set_title(f"sliding window {window}: {int(band.sum())} of\n{context * (context + 1) // 2} causal pairs",
                      fontsize=9)
    axes[1].set_xlabel("key position")
    axes[1].set_ylabel("query position")
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


def _meter_table_html(rows: list[dict], context: int) -> str:
    cells = "".join(
        f"<tr><td>{r['variant']}</td><td>{r['parameters']:,}</td><td>{r['formula']} = {r['bytes/token']:g}</td>"
        f"<td>{r['measured bytes/token']:g}</td><td>{r['cache bytes']:,}</td></tr>" for r in rows
    )
    return ("<table style='border-collapse:collapse;font-size:12px'><tr><th>variant</th><th>parameters</th>"
            "<th>bytes/token (formula)</th><th>bytes/token (measured nbytes)</th>"
            f"<th>cache for {context} tokens</th></tr>{cells}</table>")


class VariantCostMeter(LiveWidget):
    """The widget returned by :func:`variant_cost_meter`; display it as a cell's last expression.

    Attributes (ipywidgets): ``kv_slider`` (num_kv_heads, the divisors of num_heads), ``latent_slider``
    (latent_dim), ``window_slider`` (window), ``readout`` (HTML table: parameters and bytes per token by formula
    and measured), ``image`` (the figure, PNG), ``widget`` (the whole box); ``rows`` the last :func:`variant_costs`.
    """

    def __init__(self, d_model: int, num_heads: int, num_kv_heads: int, latent_dim: int, window: int,
                 context: int) -> None:
        import ipywidgets as widgets

        self.d_model, self.num_heads, self.context = d_model, num_heads, context
        self.rows: list[dict] = []
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
        self.image = image_output("mha-meter-figure")
        self.widget = vbox([widgets.HBox([self.kv_slider, self.latent_slider, self.window_slider],
                                         layout=widgets.Layout(flex_flow="row wrap")),
                            self.readout, self.image], "mha-variant-meter")
        self.redraw()
        for slider in (self.kv_slider, self.latent_slider, self.window_slider):
            slider.observe(self._safe_redraw, names="value")

    def __repr__(self) -> str:
        return (f"VariantCostMeter(d_model={self.d_model}, num_heads={self.num_heads}, "
                f"num_kv_heads={self.kv_slider.value}, latent_dim={self.latent_slider.value}, "
                f"window={self.window_slider.value}, context={self.context})")

    def redraw(self) -> bytes:
        """Measure the four variants at the sliders' values, redraw; returns the PNG bytes shown."""

        from matplotlib.figure import Figure

        kv, latent, window = self.kv_slider.value, self.latent_slider.value, self.window_slider.value
        self.rows = variant_costs(self.d_model, self.num_heads, kv, latent, window, self.context)
        fig = Figure(figsize=(11, 3.4), dpi=80)  # not pyplot's: nothing is left open, nothing shown twice
        _draw_meter(fig, self.rows, self.num_heads, kv, window, self.context)
        self.image.value = figure_png(fig, pil_kwargs={"compress_level": 1})  # fast: 3x quicker than the default
        self.readout.value = (f"<b>num_kv_heads = {kv}</b> · <b>latent_dim = {latent}</b> · <b>window = {window}</b>"
                              f" (d_model {self.d_model}, {self.num_heads} heads of head_dim "
                              f"{self.d_model // self.num_heads})<br>" + _meter_table_html(self.rows, self.context))
        return self.image.value


def variant_cost_meter(d_model: int = 64, num_heads: int = 8, num_kv_heads: int = 2, latent_dim: int = 16,
                       window: int = 8, context: int = 32) -> VariantCostMeter:
    """A widget with sliders for ``num_kv_heads``, ``latent_dim`` and ``window``: one layer's parameters and KV-cache
    bytes per token (formula and measured ``nbytes``) in four variants (:func:`variant_costs`), which K/V head each
    query head reads, the window's band, and the cache of ``context`` tokens. :func:`plot_variant_cost_meter` draws
    the same figure statically."""
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
