"""Notebook 10's mask editor: an ``L x S`` grid of toggles (query i -> key j), the attention weights under the mask,
its fully masked rows and the mask in the three forms PyTorch takes (``maths/inference.py`` computes them).
"""

from __future__ import annotations

import html
import math

import torch
from matplotlib.figure import Figure

from ..maths.attention import causal_mask, scaled_dot_product_attention
from ..maths.inference import fully_masked_rows, mask_forms, naive_masked_softmax
from ..validation import check_fits, check_index, check_instance, check_positive_int, check_seed
from .base import LiveWidget, error_html, html_output, vbox
from .states import Control, States, every_combination

_ALIGNS = ("top_left", "bottom_right")


def _cell_text(value) -> str:
    if isinstance(value, bool):
        return "T" if value else "F"
    return "0" if value == 0 else "-inf"


def _grid_html(title: str, tensor: torch.Tensor, caption: str, klass: str) -> str:
    rows = []
    for row in tensor.tolist():
        cells = "".join(
            f"<td style='padding:1px 4px;text-align:center;background:{'#d8f3dc' if _allowed(v, klass) else '#f8d7da'}'>"
            f"{_cell_text(v)}</td>" for v in row)
        rows.append(f"<tr>{cells}</tr>")
    return (f"<div class='{klass}' style='margin:0 12px 6px 0'><b>{html.escape(title)}</b><br>"
            f"<span style='font-size:85%'>{html.escape(caption)}</span>"
            f"<table style='border-collapse:collapse;font-family:monospace;font-size:85%'>{''.join(rows)}</table></div>")


def _allowed(value, klass: str) -> bool:
    if "mha-form-torch" in klass:
        return not value  # True = blocked
    if "mha-form-float" in klass:
        return value == 0
    return bool(value)


class MaskEditor(LiveWidget):
    """An ``L x S`` grid of toggles: click a cell to allow or block query i -> key j, and see the consequences.

    Shown live: the attention weights of fixed random queries and keys under the mask (``mh.scaled_dot_product_attention``,
    so a fully masked row gives zeros), every fully masked row flagged with what a plain softmax gives there (NaN),
    and the mask in three forms side by side: SDPA's boolean (True = may attend), ``nn.MultiheadAttention``'s
    boolean (True = blocked) and the additive float form (0 / -inf). The alignment switch resets the grid to the
    causal mask aligned top-left (``is_causal``) or bottom-right (``causal_lower_right``).

    Everything the widget shows is computed by plain methods (:meth:`toggle`, :meth:`set_align`, :attr:`mask`,
    :meth:`forms`, :meth:`weights`, :meth:`dead_rows`, :meth:`alignment`), so it can be driven and tested without a
    browser. Display it as a cell's last expression; :func:`plot_mask_editor` draws the same view as a static figure.
    """

    def __init__(self, seq_len: int = 3, key_len: int = 6, align: str = "bottom_right", seed: int = 0,
                 head_dim: int = 4) -> None:
        check_positive_int("seq_len", seq_len)
        check_positive_int("key_len", key_len)
        check_positive_int("head_dim", head_dim)
        check_seed("seed", seed)
        if seq_len > 8 or key_len > 12:
            raise ValueError(f"the editor is for small grids: seq_len <= 8 and key_len <= 12, got ({seq_len}, {key_len})")
        check_fits({"head_dim": head_dim}, 80 * head_dim, "the editor's queries and keys", "the editor uses head_dim=4")
        self.L, self.S = seq_len, key_len
        g = torch.Generator().manual_seed(seed)
        self.query = torch.randn(seq_len, head_dim, generator=g)  # (L, head_dim), fixed for the editor's life
        self.key = torch.randn(key_len, head_dim, generator=g)  # (S, head_dim)
        self._mask = causal_mask(seq_len, key_len, align=align)  # checks align too
        self.align = align
        self._widget = None

    # ---- the logic ----------------------------------------------------------------------------------------

    @property
    def mask(self) -> torch.Tensor:
        """The current ``(L, S)`` boolean mask, True = may attend (a copy)."""
        return self._mask.clone()

    def toggle(self, i: int, j: int) -> bool:
        """Flip query ``i`` -> key ``j`` between allowed and blocked; returns the new state (True = allowed)."""
        check_index("i", i, self.L)
        check_index("j", j, self.S)
        self._mask[i, j] = not bool(self._mask[i, j])
        self._refresh(cells=False)
        if self._widget is not None:
            self._sync_cell(i, j)
        return bool(self._mask[i, j])

    def set_align(self, align: str) -> None:
        """Reset the grid to the causal mask with this alignment, ``"top_left"`` or ``"bottom_right"``."""
        self._mask = causal_mask(self.L, self.S, align=align)
        self.align = align
        if self._widget is not None and self._align_buttons.value != align:
            self._align_buttons.value = align  # its observer calls set_align again, which is harmless
        self._refresh(cells=True)

    def forms(self) -> dict[str, torch.Tensor]:
        """The current mask in the three forms of :func:`mask_forms`."""
        return mask_forms(self._mask)

    def scores(self) -> torch.Tensor:
        """The ``(L, S)`` scores q·k/√head_dim of the editor's fixed random queries and keys."""
        return self.query @ self.key.T / math.sqrt(self.query.shape[-1])  # (L, d) @ (d, S) -> (L, S)

    def weights(self) -> torch.Tensor:
        """``(L, S)`` attention weights under the mask, as SDPA gives them (a fully masked row is all zeros)."""
        q, k = self.query[None], self.key[None]  # (1, L, d), (1, S, d)
        return scaled_dot_product_attention(q, k, k, attn_mask=self._mask)[1][0]  # (L, S)

    def dead_rows(self) -> list[int]:
        """The query rows that may attend to no key (a plain softmax gives NaN there)."""
        return fully_masked_rows(self._mask)

    def alignment(self) -> str | None:
        """``"top_left"``/``"bottom_right"`` when the mask is exactly that causal mask (both when L = S), else None."""
        hits = [a for a in _ALIGNS if torch.equal(self._mask, causal_mask(self.L, self.S, align=a))]
        return " = ".join(hits) if hits else None

    def summary(self) -> str:
        """One line: how many cells are allowed, which causal mask it is, and the fully masked rows."""
        which = self.alignment()
        shape = f"causal, {which}" if which else "custom"
        dead = self.dead_rows()
        flag = f"fully masked rows: {dead}" if dead else "no fully masked row"
        return f"{int(self._mask.sum())} of {self.L * self.S} allowed ({shape}); {flag}"

    def __repr__(self) -> str:
        return f"MaskEditor(L={self.L}, S={self.S}, {self.summary()})"

    # ---- the widget ---------------------------------------------------------------------------------------

    def _build(self):
        import ipywidgets as widgets

        self._align_buttons = widgets.ToggleButtons(options=list(_ALIGNS), value=self.align,
                                                    description="reset to", tooltips=[
                                                        "is_causal=True: query i sees keys 0..i",
                                                        "causal_lower_right: query i sees keys 0..i + S - L"])
        self._align_buttons.add_class("mha-mask-align")
        self._cells = []
        for i in range(self.L):
            row = []
            for j in range(self.S):
                b = widgets.ToggleButton(value=bool(self._mask[i, j]), layout=widgets.Layout(width="34px", height="28px"))
                b.add_class("mha-mask-cell")
                b.add_class(f"mha-cell-{i}-{j}")
                b.observe(self._on_cell(i, j), names="value")
                row.append(b)
            self._cells.append(row)
        header = widgets.HTML("<div style='font-size:85%'>rows: queries i · columns: keys j · "
                              "✓ green = may attend, ✗ grey = blocked</div>")
        grid = widgets.GridBox([b for row in self._cells for b in row],
                               layout=widgets.Layout(grid_template_columns=f"repeat({self.S}, 36px)", grid_gap="2px"))
        self._readout = html_output("mha-mask-readout")
        self._weights_html = html_output("mha-mask-weights")
        self._forms_html = html_output("mha-mask-forms")
        self._align_buttons.observe(lambda change: self.set_align(change["new"]), names="value")
        top = widgets.HBox([widgets.VBox([header, grid]), self._weights_html],
                           layout=widgets.Layout(flex_flow="row wrap", align_items="flex-start"))
        box = vbox([self._align_buttons, self._readout, top, self._forms_html], "mha-mask-editor")
        self._widget = box
        self._refresh(cells=True)
        return box

    def _on_cell(self, i: int, j: int):
        def handler(change) -> None:
            if self._syncing or bool(self._mask[i, j]) == change["new"]:
                return
            try:
                self._mask[i, j] = change["new"]
                self._refresh(cells=False)
            except Exception as exc:  # an observer's exception would vanish into a log: show it instead
                self._readout.value = error_html(exc, "update")
        return handler

    _syncing = False

    def _sync_cell(self, i: int, j: int) -> None:
        self._syncing = True
        try:
            self._cells[i][j].value = bool(self._mask[i, j])
            self._show_cell(i, j)
        finally:
            self._syncing = False

    def _show_cell(self, i: int, j: int) -> None:
        """A cell's state by more than its colour: ✓ or ✗ written in it, and said in its tooltip (its accessible
        description: ipywidgets' toggle button has no aria-pressed)."""
        allowed = bool(self._mask[i, j])
        cell = self._cells[i][j]
        cell.button_style = "success" if allowed else ""
        cell.description = "✓" if allowed else "✗"
        cell.tooltip = f"query {i} -> key {j}: {'may attend' if allowed else 'blocked'} (click to switch)"

    def _refresh(self, cells: bool) -> None:
        if self._widget is None:
            return
        if cells:
            for i in range(self.L):
                for j in range(self.S):
                    self._sync_cell(i, j)
        else:
            for i in range(self.L):
                for j in range(self.S):
                    self._show_cell(i, j)
        self._readout.value = self._readout_html()
        self._weights_html.value = self._weights_table_html()
        self._forms_html.value = self._forms_table_html()

    def _forms_table_html(self) -> str:
        captions = {"sdpa bool": "F.scaled_dot_product_attention: True = may attend",
                    "nn.MultiheadAttention bool": "nn.MultiheadAttention: True = BLOCKED",
                    "additive float": "either function: added to the scores"}
        klass = {"sdpa bool": "mha-form-sdpa", "nn.MultiheadAttention bool": "mha-form-torch",
                 "additive float": "mha-form-float"}
        return ("<div style='display:flex;flex-wrap:wrap'>" + "".join(
            _grid_html(name, t, captions[name], klass[name]) for name, t in self.forms().items()) + "</div>")

    def _readout_html(self) -> str:
        text = f"<b>{html.escape(self.summary())}</b>"
        dead = self.dead_rows()
        if dead:
            naive = naive_masked_softmax(self.scores(), self._mask)
            text += (f"<br><span style='color:#b00'>⚠ row(s) {dead} may attend to no key: a plain softmax gives "
                     f"{naive[dead[0]].tolist()[:3]}… (NaN, 0/0); SDPA gives zeros on the CPU; "
                     f"nn.MultiheadAttention gives NaN with need_weights=True.</span>")
        return text

    def _weights_table_html(self) -> str:
        w = self.weights()
        dead = set(self.dead_rows())
        rows = []
        for i, row in enumerate(w.tolist()):
            cells = "".join(f"<td style='padding:1px 5px;text-align:right;background:rgba(42,157,143,{v:.2f})'>"
                            f"{v:.2f}</td>" for v in row)
            flag = " <span style='color:#b00'>NaN-prone</span>" if i in dead else ""
            rows.append(f"<tr><td style='padding-right:6px'>q{i}</td>{cells}<td>{flag}</td></tr>")
        return ("<div class='mha-weights'><b>attention weights</b> (each row with an allowed key sums to 1)"
                f"<table style='border-collapse:collapse;font-family:monospace;font-size:85%'>{''.join(rows)}</table></div>")

    def _box(self):
        return self._widget if self._widget is not None else self._build()  # built on first display

    # ---- every state, for a copy without a kernel (states.py) ---------------------------------------------

    def states(self, max_states: int | None = None) -> States:
        """One state per mask of :data:`MASK_PRESETS` (a copy cannot recompute a click), each with the grid, the
        read-out, the weights and the three forms this editor shows for that mask (see ``widgets/states.py``)."""
        start_mask, start_align = self._mask.clone(), self.align
        first = "causal, bottom-right" if start_align == "bottom_right" else "causal, top-left"
        controls = [Control("mask", "mask", "select", list(MASK_PRESETS), first)]

        def view(values: dict) -> dict:
            _apply_preset(self, values["mask"])
            return {"readout": self._readout_html(), "grid": _mask_grid_html(self),
                    "weights": self._weights_table_html(), "forms": self._forms_table_html(),
                    "status": f"Mask {values['mask']}: {self.summary()}."}

        def restore() -> None:
            self._mask, self.align = start_mask.clone(), start_align
            self._refresh(cells=True)

        return States(
            "mask_editor", controls, slots=[("readout", "html"), ("grid", "html"), ("weights", "html"),
                                            ("forms", "html"), ("status", "status")],
            rows=[["mask"], ["readout"], ["grid", "weights"], ["forms"]], combinations=every_combination(controls),
            view=view, restore=restore, css_class="mha-mask-editor",
            note="Clicking single cells needs a kernel (run the notebook in JupyterLab); here, pick one of these masks.",
        )


def mask_editor(seq_len: int = 3, key_len: int = 6, align: str = "bottom_right", seed: int = 0) -> MaskEditor:
    """An interactive :class:`MaskEditor` for an ``(L, S)`` = ``(seq_len, key_len)`` mask, starting causal with
    ``align`` (``"top_left"`` or ``"bottom_right"``); its queries and keys are random, seeded by ``seed``."""
    return MaskEditor(seq_len, key_len, align=align, seed=seed)


def plot_mask_editor(editor: MaskEditor) -> Figure:
    """The mask editor's view as a static matplotlib Figure: the weights and the three forms of the mask."""
    import matplotlib.pyplot as plt

    check_instance("editor", editor, MaskEditor, "a MaskEditor (mh.mask_editor(...))")
    L, S = editor.L, editor.S
    forms = editor.forms()
    fig, axes = plt.subplots(1, 4, figsize=(4 * (0.45 * S + 0.9), 0.5 * L + 1.6))
    w = editor.weights()
    axes[0].imshow(w.numpy(), cmap="Greens", vmin=0, vmax=1)
    dead = set(editor.dead_rows())
    for i in range(L):
        for j in range(S):
            axes[0].text(j, i, f"{w[i, j]:.2f}", ha="center", va="center", fontsize=7,
                         color="white" if w[i, j] > 0.6 else "black")
    axes[0].set_title("weights" + (f" (row {sorted(dead)} NaN-prone)" if dead else ""), fontsize=9)
    panels = (("sdpa bool", "SDPA: True = may attend"), ("nn.MultiheadAttention bool", "nn.MHA: True = blocked"),
              ("additive float", "additive: 0 / -inf"))
    for ax, (name, title) in zip(axes[1:], panels, strict=True):
        allowed = editor.mask
        ax.imshow(allowed.numpy(), cmap="RdYlGn", vmin=-0.5, vmax=1.5)
        t = forms[name]
        for i in range(L):
            for j in range(S):
                value = t[i, j].item()
                ax.text(j, i, _cell_text(value), ha="center", va="center", fontsize=7)
        ax.set_title(title, fontsize=9)
    for ax in axes:
        ax.set_xticks(range(S))
        ax.set_yticks(range(L), [f"q{i}" for i in range(L)])
        ax.set_xlabel("key j")
    fig.suptitle(editor.summary(), fontsize=10)
    fig.tight_layout()
    return fig


# ---- the masks a copy without a kernel offers (MaskEditor.states) -------------------------------------------------

#: The masks a copy of the editor offers (a static page cannot recompute a click): name -> cells to flip,
#: starting from the causal mask with the given alignment.
MASK_PRESETS = {
    "causal, bottom-right": ("bottom_right", []),
    "causal, top-left": ("top_left", []),
    "query 0 blocked everywhere": ("bottom_right", "block row 0"),
    "each query: itself and the key before": ("bottom_right", "band 2"),
}


def _apply_preset(editor: MaskEditor, preset: str) -> None:
    align, change = MASK_PRESETS[preset]
    editor.set_align(align)
    past = editor.S - editor.L
    for i in range(editor.L):
        for j in range(editor.S):
            allowed = bool(editor._mask[i, j])
            if change == "block row 0" and i == 0 and allowed:
                editor.toggle(i, j)
            elif change == "band 2" and allowed != (past + i - 1 <= j <= past + i):
                editor.toggle(i, j)


def _mask_grid_html(editor: MaskEditor) -> str:
    """The mask as a table a screen reader can walk: headers name each query and key, each cell says ✓ or ✗."""
    cell = "width:30px;height:24px;border:1px solid #fff;text-align:center"
    head = "".join(f"<th scope='col' style='font-weight:normal;padding:0 2px'>k{j}</th>" for j in range(editor.S))
    rows = "".join(f"<tr><th scope='row' style='font-weight:normal;padding:0 4px'>q{i}</th>" + "".join(
        f"<td style='{cell};background:{'#1d6f65' if allowed else '#e9ecef'};color:{'#fff' if allowed else '#333'}'"
        f" title='query {i} -> key {j}: {'may attend' if allowed else 'blocked'}'>{'✓' if allowed else '✗'}</td>"
        for j, allowed in enumerate(row)) + "</tr>" for i, row in enumerate(editor._mask.tolist()))
    return ("<div style='font-size:85%'>rows: queries i · columns: keys j · ✓ green = may attend, ✗ grey = blocked"
            f"</div><table style='border-collapse:collapse'><tr><td></td>{head}</tr>{rows}</table>")
