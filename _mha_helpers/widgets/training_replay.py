"""Notebook 12's training replay: a slider over the snapshots an :class:`InductionHistory` recorded while the model
trained (``experiments/induction.py``), showing every head's map on the example sequence at that step. Its
``states()`` (one per stored snapshot) lets the static site replay training without a kernel.
"""

from __future__ import annotations

from ..experiments.induction import InductionHistory, draw_map, induction_letters
from .base import LiveWidget, figure_png, html_output, image_output, vbox
from .states import Control, Picture, States


def _snapshot_figure(history: InductionHistory, index: int, fig=None):
    """Every head's map at snapshot ``index`` in one figure (layers as rows); reuses ``fig`` if given."""
    import matplotlib.pyplot as plt

    n_layers, n_heads = history.maps.shape[1:3]
    if fig is None:
        fig, _ = plt.subplots(n_layers, n_heads, figsize=(2.3 * n_heads, 2.5 * n_layers + 0.4), squeeze=False)
    labels = induction_letters(history.example)
    for k, ax in enumerate(fig.axes):
        ax.clear()
        layer, head = divmod(k, n_heads)
        draw_map(ax, history.maps[index, layer, head], labels, f"L{layer}.H{head}", ticks=False)
    fig.suptitle(f"step {history.steps[index]}: loss on repeated tokens {history.repeated_loss[index]:.2f}",
                 fontsize=10)
    fig.tight_layout()
    return fig


class TrainingReplay(LiveWidget):
    """A slider over the snapshots of an :class:`InductionHistory`: every head's map on the example sequence at
    that training step, with the step's losses and scores. Display it as a cell's last expression.

    Attributes (ipywidgets): ``slider`` (a SelectionSlider over the snapshot steps), ``readout`` (HTML),
    ``image`` (the figure as PNG), ``widget`` (the whole box).
    """

    def __init__(self, history: InductionHistory) -> None:
        import ipywidgets as widgets
        import matplotlib.pyplot as plt

        if not isinstance(history, InductionHistory) or not history.steps:
            raise TypeError("history must be the InductionHistory returned by train_induction_model")
        self.history = history
        self.slider = widgets.SelectionSlider(options=history.steps, value=history.steps[0], description="step",
                                              continuous_update=True, layout=widgets.Layout(width="480px"))
        self.slider.add_class("mha-replay-slider")
        self.readout = html_output("mha-replay-readout")
        self.image = image_output("mha-replay-figure")
        self.widget = vbox([self.slider, self.readout, self.image], "mha-training-replay")
        self._fig = _snapshot_figure(history, 0)
        plt.close(self._fig)  # drawn into the widget only, never shown as a figure of its own
        self.redraw()
        self.slider.observe(lambda change: self.redraw(), names="value")

    def redraw(self) -> None:
        h = self.history
        k = h.steps.index(self.slider.value)
        _snapshot_figure(h, k, self._fig)
        self.image.value = figure_png(self._fig, dpi=80)
        prev, ind = h.previous_token[k, 0], h.induction[k, -1]
        self.readout.value = (
            f"step {h.steps[k]}: loss on first occurrences {h.first_loss[k]:.2f}, on repeated tokens "
            f"{h.repeated_loss[k]:.2f} &nbsp;|&nbsp; best previous-token score in layer 0: {float(prev.max()):.2f} "
            f"(head {int(prev.argmax())}), best induction score in layer {h.maps.shape[1] - 1}: "
            f"{float(ind.max()):.2f} (head {int(ind.argmax())})")

    def __repr__(self) -> str:
        return f"TrainingReplay({len(self.history.steps)} snapshots, steps 0..{self.history.steps[-1]})"

    # ---- in words ----------------------------------------------------------------------------------------------

    def describe(self) -> str:
        """What the figure shows now, in words: the step, its loss and each head's two scores."""
        h = self.history
        k = h.steps.index(self.slider.value)
        n_layers, n_heads = h.maps.shape[1:3]
        letters = " ".join(induction_letters(h.example))
        last = n_layers - 1
        prev = ", ".join(f"H{i} {float(v):.2f}" for i, v in enumerate(h.previous_token[k, 0]))
        ind = ", ".join(f"H{i} {float(v):.2f}" for i, v in enumerate(h.induction[k, last]))
        return (f"Attention maps of all {n_layers * n_heads} heads ({n_layers} layers of {n_heads}, as rows) on the "
                f"example sequence {letters} at training step {h.steps[k]}, loss on repeated tokens "
                f"{h.repeated_loss[k]:.2f} (rows: query token, columns: key token, bright = more weight). "
                f"Previous-token scores in layer 0: {prev}. Induction scores in layer {last}: {ind}.")

    def status_line(self) -> str:
        """One line a screen reader announces after a move."""
        h = self.history
        k = h.steps.index(self.slider.value)
        prev, ind = h.previous_token[k, 0], h.induction[k, -1]
        return (f"Step {h.steps[k]}: loss on repeated tokens {h.repeated_loss[k]:.2f}; best previous-token score "
                f"{float(prev.max()):.2f} (head {int(prev.argmax())}), best induction score {float(ind.max()):.2f} "
                f"(head {int(ind.argmax())}).")

    # ---- every state, for a copy without a kernel (states.py) ---------------------------------------------------

    def states(self, max_states: int | None = None) -> States:
        """One state per stored snapshot, drawn by this replay (see ``widgets/states.py``): the read-out, the maps
        (with a text alternative) and a status line. ``max_states``: more snapshots than that are refused."""
        steps = list(self.history.steps)
        if max_states is not None and len(steps) > max_states:
            raise ValueError(f"the replay has {len(steps)} snapshots, more than max_states={max_states}: record "
                             "fewer (train_induction_model's snapshot_every)")
        start = self.slider.value

        def view(values: dict) -> dict:
            self.slider.value = values["step"]
            return {"readout": self.readout.value, "figure": Picture(bytes(self.image.value), self.describe()),
                    "status": self.status_line()}

        def restore() -> None:
            self.slider.value = start

        controls = [Control("step", "step", "slider", steps, start)]
        return States("training_replay", controls, [("readout", "html"), ("figure", "image"), ("status", "status")],
                      rows=[["step"], ["readout"], ["figure"]], combinations=[{"step": s} for s in steps],
                      view=view, restore=restore, css_class="mha-training-replay")
