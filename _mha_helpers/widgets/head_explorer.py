"""Notebook 06 (and 04's compact slider): the head explorer, a widget that re-splits ONE fixed, seeded module into
1, 2, 4, ... heads, and the per-head measures it shows (entropy, previous-token share).
"""

from __future__ import annotations

import html
import math
import time
import warnings
from collections.abc import Sequence

import torch
from matplotlib.figure import Figure

from ..common import SENTENCE, OneThread, toy_embeddings, valid_head_counts
from ..maths.mha import MultiHeadAttention
from ..validation import (
    check_bool,
    check_divisible,
    check_float_tensor,
    check_index,
    check_instance,
    check_like_parameters,
    check_positive_int,
    check_positive_number,
    check_seed,
    sized_by,
)
from .base import LiveWidget, html_output, image_output, text_colour_on, vbox
from .head_maps import HeadFigure, attention_entropy, previous_token_share
from .states import Control, Picture, States

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
    check_positive_int("d_model", d_model)
    check_seed("seed", seed)
    check_positive_number("gain", gain, example="2.5")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with sized_by("d_model", d_model):
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
    check_instance("module", module, MultiHeadAttention, "an mha_helpers.MultiHeadAttention")
    check_positive_int("num_heads", num_heads)
    check_divisible(module.embed_dim, num_heads)
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
    check_bool("causal", causal)
    view = resplit_heads(module, num_heads)  # checks module and num_heads
    check_float_tensor("x", x, ranks=(3,), layout="(batch, seq, embed_dim)")
    check_like_parameters("x", x, module.W_o.weight, "module")
    if x.shape[-1] != module.embed_dim or module.kdim != module.embed_dim or module.vdim != module.embed_dim:
        raise ValueError(f"x must be (batch, seq, embed_dim) = (batch, seq, {module.embed_dim}), got {tuple(x.shape)}")
    view.batch_first = True  # x is (batch, seq, embed_dim) here, whatever layout the module itself expects
    with torch.no_grad():
        _, weights = view(x, need_weights=True, average_attn_weights=False, is_causal=causal)
    return weights  # (batch, num_heads, seq, seq)


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
    check_seed("seed", seed)
    check_instance("module", module, MultiHeadAttention, "an mha_helpers.MultiHeadAttention", allow_none=True)
    if module is None:
        module = explorer_module(d_model, seed)
    elif module.kdim != module.embed_dim or module.vdim != module.embed_dim:
        raise ValueError(f"module must do self-attention (kdim = vdim = embed_dim), got {module}")
    check_positive_int("num_heads", num_heads)
    check_divisible(module.embed_dim, num_heads, d_name="d_model")
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
    header = "".join(f"<th scope='col' style='{cell}'>{t}</th>" for t in words)
    rows = [f"<tr><td></td>{header}</tr>"]
    for i, word in enumerate(words):
        tds = "".join(
            f"<td style='{cell};background:{to_hex(colours[i, j])};color:{text_colour_on(to_hex(colours[i, j]))}'>"
            f"{float(w[i, j]):.2f}</td>"
            for j in range(w.shape[1])
        )
        rows.append(f"<tr><th scope='row' style='{cell};text-align:right'>{word}</th>{tds}</tr>")
    return (f"<div style='font-size:12px'><b>{caption}</b><br>rows: query · columns: key"
            f"<table style='border-collapse:collapse;margin-top:4px'>{''.join(rows)}</table></div>")


class HeadExplorer(LiveWidget):
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
        self._figures: dict[int, HeadFigure] = {}
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
        self.readout = html_output("mha-head-readout")
        # flex-start: keep the figure's own size (a box would stretch it to its full width and blur it)
        self.image = image_output("mha-head-figure", align_self="flex-start")
        self.table = html_output("mha-head-table")
        wrap = widgets.Layout(flex_flow="row wrap", align_items="center")
        if compact:
            children = [self.head_slider, self.readout, self.image]
        else:
            children = [widgets.HBox([self.head_slider, self.enlarge, self.causal, self.sentence], layout=wrap),
                        self.readout, widgets.HBox([self.image, self.table], layout=wrap)]
        self.widget = vbox(children, "mha-head-explorer")

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

    # ---- drawing --------------------------------------------------------------------------------------

    def figure_for(self, num_heads: int) -> HeadFigure:
        """The figure for ``num_heads`` heads and the current sentence: built on first use, then reused."""
        if num_heads not in self._figures:
            headline = _explorer_headline(self.d_model, num_heads, self.params)
            self._figures[num_heads] = HeadFigure(num_heads, self.tokens, headline, enlarged=False,
                                                   average=not self.compact, live=True)
        return self._figures[num_heads]

    def redraw(self) -> bytes:
        """Recompute the maps for the current controls and redraw; returns the PNG bytes shown."""

        start = time.perf_counter()
        num_heads, causal = self.head_slider.value, self.causal.value
        enlarge = min(self.enlarge.value, num_heads - 1)
        with OneThread():
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

    # ---- in words (a figure's text alternative, what a screen reader announces) ---------------------------

    def describe(self) -> str:
        """What the figure shows now, in words: the maps, each head's focus and previous-token share, the mask."""
        h = self.head_slider.value
        entropy = attention_entropy(self.weights)  # (num_heads,)
        prev = previous_token_share(self.weights) if len(self.tokens) > 1 else torch.zeros(h)  # (num_heads,)
        heads = "; ".join(f"head {i} {float(entropy[i]):.2f} bits, prev {float(prev[i]):.2f}" for i in range(h))
        words = " ".join(self.tokens)
        text = (f"{'One attention map' if h == 1 else f'{h} attention maps, one per head,'} of d_model {self.d_model} "
                f"cut into {h} head{'s' if h > 1 else ''} of head_dim {self.d_model // h}, on \u201c{words}\u201d "
                f"(rows: the query word, columns: the key word, bright = more weight). Per head: {heads}.")
        if not self.compact:
            enlarge = min(self.enlarge.value, h - 1)
            text += (f" Also drawn: head {enlarge} enlarged with its weights written in, and the map averaged over "
                     f"the heads. Causal mask {'on' if self.causal.value else 'off'}.")
        return text

    def status_line(self) -> str:
        """One line a screen reader announces after a move: what the widget now shows."""
        h = self.head_slider.value
        entropy = attention_entropy(self.weights)  # (num_heads,)
        text = (f"{h} head{'s' if h > 1 else ''} of head_dim {self.d_model // h}; most focused: head "
                f"{int(entropy.argmin())} ({float(entropy.min()):.2f} bits)")
        if not self.compact:
            text += (f"; head {min(self.enlarge.value, h - 1)} enlarged; causal mask "
                     f"{'on' if self.causal.value else 'off'}")
        return text + "."

    # ---- every state, for a copy without a kernel (states.py) -------------------------------------------

    def states(self, max_states: int | None = None) -> States:
        """Every state of this explorer, drawn by the explorer itself (see ``widgets/states.py``).

        Each valid head count; unless compact, also each head to enlarge and the causal mask off and on. With more
        than ``max_states`` combinations (d_model = 64: 127 heads to enlarge), head 0 only is enlarged. Shown: the
        figure (PNG), the read-out and, unless compact, the enlarged head's weight table. The sentence stays as it
        is (a copy cannot embed a new one).
        """
        start = (self.head_slider.value, self.enlarge.value, self.causal.value)
        heads = list(self.head_slider.options)
        controls = [Control("heads", "heads", "slider", heads, start[0])]
        slots = [("readout", "html"), ("figure", "image"), ("status", "status")]
        if self.compact:
            rows = [["heads"], ["readout"], ["figure"]]
            combinations = [{"heads": h} for h in heads]
        else:
            controls += [Control("enlarge", "enlarge head", "select", list(range(max(heads))), start[1]),
                         Control("causal", "causal mask", "checkbox", [False, True], start[2])]
            slots.append(("table", "html"))
            rows = [["heads", "enlarge", "causal"], ["readout"], ["figure", "table"]]
            combinations = [{"heads": h, "enlarge": e, "causal": c} for h in heads for c in (False, True)
                            for e in range(h)]
            if max_states is not None and len(combinations) > max_states:  # head 0 only: the rest still copied
                combinations = [{"heads": h, "causal": c} for h in heads for c in (False, True)]
                controls = [c for c in controls if c.name != "enlarge"]
                rows[0] = [n for n in rows[0] if n != "enlarge"]

        def view(values: dict) -> dict:
            self.head_slider.value = values["heads"]
            if not self.compact:
                self.causal.value = values["causal"]
                self.enlarge.value = values.get("enlarge", 0)
            if "could not redraw" in self.readout.value:
                raise RuntimeError(f"the explorer failed at {values}: {self.readout.value}")
            shown = {"readout": self.readout.value, "figure": Picture(bytes(self.image.value), self.describe()),
                     "status": self.status_line()}
            if not self.compact:
                shown["table"] = self.table.value
            return shown

        def restore() -> None:
            self.head_slider.value, self.enlarge.value, self.causal.value = start

        note = ("" if self.compact else f"The sentence is fixed here (\u201c{' '.join(self.tokens)}\u201d): in "
                "JupyterLab you can type your own.")
        return States("head_explorer", controls, slots, rows, combinations, view, restore, note=note,
                      css_class="mha-head-explorer")


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
    check_bool("causal", causal)
    check_bool("compact", compact)
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

    check_bool("causal", causal)
    check_bool("compact", compact)
    module, tokens, _ = _explorer_setup(d_model, num_heads, sentence, seed, module)
    check_index("enlarge", enlarge, num_heads, "a head index")
    d_model = module.embed_dim
    x = toy_embeddings(tokens, d_model, seed=seed)  # (1, seq, d_model)
    weights = head_attention_maps(module, x, num_heads, causal=causal)[0]  # (num_heads, seq, seq)
    headline = _explorer_headline(d_model, num_heads, sum(p.numel() for p in module.parameters()))
    size = HeadFigure.figsize(enlarged=not compact, average=not compact)
    # A static figure is read at leisure (and printed): a higher resolution than the live widget's 80 dpi,
    # where every redraw's PNG must stay small and fast.
    figure = HeadFigure(num_heads, tokens, headline, enlarged=not compact, average=not compact, live=False,
                         figure=plt.figure(figsize=size, dpi=110))
    figure.update(weights, enlarge, causal)
    return figure.fig
