"""Notebook 14's layer/head picker: two sliders choose one of the character model's heads
(``experiments/text_model.py``) and show its attention map on a sentence, with its pattern shares on that sentence
(``experiments/text_heads.py``). Its ``states()`` (one per head) lets the static site pick heads without a kernel.
"""

from __future__ import annotations

import html

from ..common import plain_labels
from ..experiments.text_corpus import check_text
from ..experiments.text_heads import PATTERNS, pattern_keys
from ..experiments.text_model import TextModel, check_model
from ..validation import check_int
from .base import LiveWidget, figure_png, html_output, image_output, vbox
from .states import Control, Picture, States, every_combination

#: The longest sentence the picker draws: one character per row and column must stay readable.
PICKER_MAX_CHARS = 64
#: The shares leave out the first characters of the sentence: with one or two keys, every pattern scores high.
PICKER_SKIP = 8


def visible(ch: str) -> str:
    """A character as a tick label: a space as ``␣``, a newline as ``⏎``."""
    return {" ": "␣", "\n": "⏎"}.get(ch, ch)


class TextHeadPicker(LiveWidget):
    """Sliders for ``layer`` and ``head``: that head's attention map on ``text`` (row = the character reading,
    column = the character read) and its share of weight on each pattern of ``PATTERNS`` on this text.

    Attributes (ipywidgets): ``layer`` and ``head`` (IntSliders), ``readout`` (HTML), ``image`` (the figure as
    PNG), ``widget`` (the whole box). ``maps`` holds every head's map, ``(layers, heads, T, T)``.
    """

    def __init__(self, model: TextModel, text: str, layer: int = 0, head: int = 0) -> None:
        import ipywidgets as widgets

        check_model(model)
        check_text("text", text, minimum=2)
        if len(text) > PICKER_MAX_CHARS:
            raise ValueError(f"text has {len(text)} characters; the picker draws at most {PICKER_MAX_CHARS} "
                             f"(pass a shorter sentence, e.g. text[:{PICKER_MAX_CHARS}])")
        check_int("layer", layer, minimum=0)
        check_int("head", head, minimum=0)
        if layer >= model.num_layers or head >= model.num_heads:
            raise ValueError(f"layer must be in 0..{model.num_layers - 1} and head in 0..{model.num_heads - 1}, got "
                             f"layer={layer}, head={head}")
        self.text, self.num_layers, self.num_heads = text, model.num_layers, model.num_heads
        ids = model.encode(text)[None]  # (1, T)
        self.maps = model.attention_maps(ids)[0]  # (1, layers, heads, T, T) -> (layers, heads, T, T)
        keys = pattern_keys(model, ids)  # {pattern: (1, T, T)}
        skip = min(PICKER_SKIP, len(text) - 1)  # the first characters have too few keys to say anything
        self.shares = {p: (self.maps * keys[p][0])[..., skip:, :].sum(-1).mean(-1) for p in PATTERNS}  # (layers, heads)
        self.layer = widgets.IntSlider(value=layer, min=0, max=model.num_layers - 1, description="layer")
        self.head = widgets.IntSlider(value=head, min=0, max=model.num_heads - 1, description="head")
        self.readout = html_output("mha-text-heads-readout")
        self.image = image_output("mha-text-heads-figure")
        self.widget = vbox([widgets.HBox([self.layer, self.head]), self.readout, self.image], "mha-text-heads")
        self.redraw()
        self.layer.observe(self._safe_redraw, names="value")
        self.head.observe(self._safe_redraw, names="value")

    def _shares(self) -> dict[str, float]:
        return {p: float(self.shares[p][self.layer.value, self.head.value]) for p in PATTERNS}

    def redraw(self) -> None:
        from matplotlib.figure import Figure

        layer, head = self.layer.value, self.head.value
        chars = [visible(ch) for ch in self.text]
        fig = Figure(figsize=(7.5, 6.8))
        ax = fig.add_subplot()
        image = ax.imshow(self.maps[layer, head].numpy(), vmin=0.0, vmax=1.0, cmap="viridis")
        ticks = range(len(chars))
        ax.set_xticks(ticks, plain_labels(chars), fontsize=7, fontfamily="monospace")
        ax.set_yticks(ticks, plain_labels(chars), fontsize=7, fontfamily="monospace")
        ax.set(xlabel="key: the character read", ylabel="query: the character reading",
               title=f"layer {layer}, head {head} on the sentence")
        fig.colorbar(image, ax=ax, label="attention weight", fraction=0.04)
        fig.tight_layout()
        self.image.value = figure_png(fig, dpi=90)
        shares = ", ".join(f"{p} {v:.2f}" for p, v in self._shares().items())
        self.readout.value = (f"<b>layer {layer}, head {head}</b>: share of its weight on {html.escape(shares)} "
                              f"(mean over the sentence's characters from the {PICKER_SKIP + 1}th on)")

    def __repr__(self) -> str:
        return f"TextHeadPicker({self.num_layers} layers x {self.num_heads} heads on {self.text!r})"

    def describe(self) -> str:
        """The figure in words: which head, on what, and where its weight goes."""
        layer, head = self.layer.value, self.head.value
        best = self.maps[layer, head].argmax(dim=-1).tolist()  # (T,): the key each query weighs most
        reads = "; ".join(f"{visible(self.text[q])} reads {visible(self.text[k])}" for q, k in enumerate(best[:12]))
        shares = ", ".join(f"{p} {v:.2f}" for p, v in self._shares().items())
        return (f"Attention map of layer {layer}, head {head} on the sentence {self.text!r} (rows: the character "
                f"reading, columns: the character read, bright = more weight). Shares: {shares}. Strongest key of "
                f"the first characters: {reads}.")

    def status_line(self) -> str:
        top = max(self._shares().items(), key=lambda item: item[1])
        return f"Layer {self.layer.value}, head {self.head.value}: largest share on {top[0]} ({top[1]:.2f})."

    def states(self, max_states: int | None = None) -> States:
        """One state per head (see ``widgets/states.py``): the read-out, the map with a text alternative and a
        status line. ``max_states``: a model with more heads than that is refused."""
        controls = [Control("layer", "layer", "slider", list(range(self.num_layers)), self.layer.value),
                    Control("head", "head", "slider", list(range(self.num_heads)), self.head.value)]
        combinations = every_combination(controls)
        if max_states is not None and len(combinations) > max_states:
            raise ValueError(f"the model has {len(combinations)} heads, more than max_states={max_states}")
        start = (self.layer.value, self.head.value)

        def view(values: dict) -> dict:
            self.layer.value, self.head.value = values["layer"], values["head"]
            return {"readout": self.readout.value, "figure": Picture(bytes(self.image.value), self.describe()),
                    "status": self.status_line()}

        def restore() -> None:
            self.layer.value, self.head.value = start

        return States("text_heads", controls, [("readout", "html"), ("figure", "image"), ("status", "status")],
                      rows=[["layer", "head"], ["readout"], ["figure"]], combinations=combinations, view=view,
                      restore=restore, css_class="mha-text-heads")


def text_head_picker(model: TextModel, text: str, layer: int = 0, head: int = 0) -> TextHeadPicker:
    """A :class:`TextHeadPicker` on ``text`` (display it as a cell's last expression)."""
    return TextHeadPicker(model, text, layer, head)

