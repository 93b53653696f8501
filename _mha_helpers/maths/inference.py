"""Notebook 10, attention at inference: prefill and decode through a KV cache, causal alignment when the queries are
the last L of S keys, what one generated token costs in bytes and FLOPs, and a mask editor widget.

Builds on notebook 09's :class:`~_mha_helpers.maths.kv_cache.GroupedQuerySelfAttention` and
:class:`~_mha_helpers.maths.kv_cache.KVCache`, which this file only uses.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from ..validation import (
    check_axes,
    check_bool_tensor,
    check_broadcasts_to,
    check_float_tensor,
    check_index,
    check_instance,
    check_int_list,
    check_positive_int,
    check_seed,
)
from ..widgets.static_widgets import Control, StaticWidget, recreate_from_cell, register_exporter, state_key
from .attention import causal_mask, scaled_dot_product_attention
from .kv_cache import GroupedQuerySelfAttention, kv_cache_bytes_per_token

if TYPE_CHECKING:  # type hints only: matplotlib is imported where a figure is drawn, not when the helpers load
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# ---- prefill and decode -------------------------------------------------------------------------------------------


def run_with_cache(
    layer: GroupedQuerySelfAttention, x: torch.Tensor, chunks: Sequence[int]
) -> tuple[torch.Tensor, list[dict[str, int]]]:
    """Feed ``x`` ``(batch, T, d_model)`` to ``layer`` in pieces of ``chunks`` tokens, through one KV cache.

    ``chunks`` are positive ints that add up to T: ``[7, 1, 1, 1]`` is "prefill 7 prompt tokens, then decode 3 one
    at a time"; ``[3, 3, 1, 1, 1, 1]`` is a chunked prefill of 3 + 3 + 1 tokens then 3 decode steps. Each call gives
    the layer only the NEW tokens; their keys and values join the cache, their queries attend to everything cached.

    Returns ``(outputs, steps)``: ``outputs`` ``(batch, T, d_model)`` (equal to ``layer(x)``), and one dict per call
    with ``"new"`` (L, the queries), ``"past"`` (tokens already cached) and ``"keys"`` (S = past + L).
    """
    check_instance("layer", layer, GroupedQuerySelfAttention, "a GroupedQuerySelfAttention (notebook 09)")
    check_float_tensor("x", x, ranks=(3,), layout="(batch, T, d_model)")
    batch, T, _ = x.shape
    check_int_list("chunks", chunks, minimum=1, allow_empty=False,
                   what=f"a non-empty list of positive ints adding up to T={T}")
    if sum(chunks) != T:
        raise ValueError(f"chunks {list(chunks)} add up to {sum(chunks)}, but x has T={T} tokens; make them add up")
    cache = layer.new_cache(batch, T)
    outputs, steps, start = [], [], 0
    for size in chunks:
        steps.append({"new": size, "past": start, "keys": start + size})
        outputs.append(layer(x[:, start:start + size], cache=cache))  # (batch, size, d_model)
        start += size
    return torch.cat(outputs, dim=1), steps  # (batch, T, d_model)


def query_positions_seen(mask: torch.Tensor) -> list[list[int]]:
    """For a boolean ``(L, S)`` mask (True = may attend), the key positions each query row may see."""
    check_bool_tensor("mask", mask, ranks=(2,), layout="(L, S)")
    return [torch.nonzero(row).flatten().tolist() for row in mask]


def plot_causal_alignment(seq_len: int, key_len: int, ax: Axes | None = None) -> Figure:
    """Both causal alignments of an ``(L, S)`` = ``(seq_len, key_len)`` mask side by side; returns the Figure.

    Left: top-left (``is_causal=True``), query i sees keys 0..i. Right: bottom-right (``causal_lower_right``),
    query i sees keys 0..i + S - L. Rows are labelled with the position each query has in the sequence when the
    queries are the last L tokens (the decoding case).
    """
    check_positive_int("seq_len", seq_len)
    check_positive_int("key_len", key_len)
    check_axes("ax", ax)
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    L, S = seq_len, key_len
    fig, axes = plt.subplots(1, 2, figsize=(2.2 + 0.9 * S, 0.9 + 0.55 * L))
    cmap = ListedColormap(["#e9ecef", "#2a9d8f"])
    past = S - L
    for ax, align, title in ((axes[0], "top_left", "top-left: is_causal=True"),
                             (axes[1], "bottom_right", "bottom-right: causal_lower_right")):
        mask = causal_mask(L, S, align=align)  # (L, S), True = may attend
        ax.imshow(mask.numpy(), cmap=cmap, vmin=0, vmax=1, aspect="equal")
        for i in range(L):
            for j in range(S):
                ax.text(j, i, "✓" if mask[i, j] else "", ha="center", va="center", color="white", fontsize=9)
        ax.set_xticks(range(S), [str(j) for j in range(S)])
        ax.set_yticks(range(L), [f"q{i} (pos {past + i})" if past >= 0 else f"q{i}" for i in range(L)])
        ax.set_xlabel("key position j")
        ax.set_title(f"{title}\n{int(mask.sum())} of {L * S} allowed", fontsize=10)
    axes[0].set_ylabel("query (its position in the sequence)")
    fig.suptitle(f"L = {L} queries over S = {S} keys", fontsize=11)
    fig.tight_layout()
    return fig


# ---- what one generated token costs ------------------------------------------------------------------------------


def decode_cost(
    num_layers: int,
    d_model: int,
    num_heads: int,
    num_kv_heads: int,
    context_len: int,
    *,
    new_tokens: int = 1,
    batch: int = 1,
    d_ff: int | None = None,
    bytes_per_value: int = 2,
) -> dict[str, float]:
    """Bytes read and FLOPs done by one forward step of a stack of notebook-07 blocks with GQA attention.

    The step processes ``new_tokens`` tokens per sequence (1 = decoding one token; the prompt length = prefill) for
    ``batch`` sequences, whose queries attend to ``context_len`` cached + new positions. Per layer the weights are
    ``W_q, W_o: d_model x d_model``, ``W_k, W_v: d_model x num_kv_heads·head_dim`` and an MLP of two
    ``d_model x d_ff`` matrices (``d_ff = 4 · d_model`` by default); biases, norms and embeddings are left out.

    Counted (one multiply-add = 2 FLOPs): every weight is read once per step (shared by all tokens of the batch);
    each sequence's KV cache (``context_len`` positions) is read once; FLOPs are ``2 · params`` per token plus the
    attention's ``2 · 2 · num_heads · head_dim · context_len`` per token and layer (QKᵀ and weights·V).

    Returns a dict: ``"params"``, ``"weight bytes"``, ``"kv bytes"``, ``"bytes"`` (their sum), ``"flops"`` and
    ``"intensity"`` = FLOPs per byte read (the roofline model's arithmetic intensity).
    """
    for name, value in (("num_layers", num_layers), ("d_model", d_model), ("num_heads", num_heads),
                        ("num_kv_heads", num_kv_heads), ("context_len", context_len), ("new_tokens", new_tokens),
                        ("batch", batch), ("bytes_per_value", bytes_per_value)):
        check_positive_int(name, value)
    d_ff = 4 * d_model if d_ff is None else d_ff
    check_positive_int("d_ff", d_ff)
    if d_model % num_heads or num_heads % num_kv_heads:
        raise ValueError(f"need d_model % num_heads == 0 and num_heads % num_kv_heads == 0, got d_model={d_model}, "
                         f"num_heads={num_heads}, num_kv_heads={num_kv_heads}")
    if new_tokens > context_len:
        raise ValueError(f"new_tokens={new_tokens} cannot exceed context_len={context_len} (the new tokens are part "
                         f"of the context they attend to)")
    head_dim = d_model // num_heads
    per_layer = 2 * d_model * d_model + 2 * d_model * num_kv_heads * head_dim + 2 * d_model * d_ff
    params = num_layers * per_layer
    tokens = batch * new_tokens
    weight_bytes = params * bytes_per_value
    kv_bytes = batch * context_len * kv_cache_bytes_per_token(num_layers, num_kv_heads, head_dim, bytes_per_value)
    attention_flops = num_layers * 4 * num_heads * head_dim * context_len * tokens  # upper bound for prefill rows
    flops = 2 * params * tokens + attention_flops
    total = weight_bytes + kv_bytes
    return {"params": params, "weight bytes": weight_bytes, "kv bytes": kv_bytes, "bytes": total,
            "flops": flops, "intensity": flops / total}


# ---- the mask editor -----------------------------------------------------------------------------------------------

_ALIGNS = ("top_left", "bottom_right")


def mask_forms(mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """One mask in the three forms PyTorch's functions take, from a boolean ``(L, S)`` mask (True = may attend).

    ``"sdpa bool"``: True = may attend (``F.scaled_dot_product_attention``'s ``attn_mask``);
    ``"nn.MultiheadAttention bool"``: True = blocked, the opposite (its ``attn_mask``);
    ``"additive float"``: 0.0 where allowed, -inf where blocked (added to the scores; both functions accept it).
    """
    check_bool_tensor("mask", mask, layout="(True = may attend)")
    additive = torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))  # (L, S): 0 or -inf
    return {"sdpa bool": mask.clone(), "nn.MultiheadAttention bool": ~mask, "additive float": additive}


def fully_masked_rows(mask: torch.Tensor) -> list[int]:
    """The query rows of a boolean ``(L, S)`` mask (True = may attend) that may attend to no key at all."""
    check_bool_tensor("mask", mask, ranks=(2,), layout="(L, S), True = may attend")
    return torch.nonzero(~mask.any(dim=-1)).flatten().tolist()


def naive_masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """softmax(scores with -inf where ``mask`` is False), with no special case: a fully masked row is NaN (0/0).

    ``scores`` ``(..., L, S)`` floats; ``mask`` booleans (True = may attend) that broadcast to them.
    """
    check_float_tensor("scores", scores)
    check_bool_tensor("mask", mask, layout="(True = may attend)")
    check_broadcasts_to("mask", mask, scores.shape, "the scores' shape")
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)


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


class MaskEditor:
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
                b = widgets.ToggleButton(value=bool(self._mask[i, j]), layout=widgets.Layout(width="34px", height="28px"),
                                         tooltip=f"query {i} -> key {j}")
                b.add_class("mha-mask-cell")
                b.add_class(f"mha-cell-{i}-{j}")
                b.observe(self._on_cell(i, j), names="value")
                row.append(b)
            self._cells.append(row)
        header = widgets.HTML("<div style='font-size:85%'>rows: queries i · columns: keys j · green = may attend</div>")
        grid = widgets.GridBox([b for row in self._cells for b in row],
                               layout=widgets.Layout(grid_template_columns=f"repeat({self.S}, 36px)", grid_gap="2px"))
        self._readout = widgets.HTML()
        self._readout.add_class("mha-mask-readout")
        self._weights_html = widgets.HTML()
        self._weights_html.add_class("mha-mask-weights")
        self._forms_html = widgets.HTML()
        self._forms_html.add_class("mha-mask-forms")
        self._align_buttons.observe(lambda change: self.set_align(change["new"]), names="value")
        top = widgets.HBox([widgets.VBox([header, grid]), self._weights_html],
                           layout=widgets.Layout(flex_flow="row wrap", align_items="flex-start"))
        box = widgets.VBox([self._align_buttons, self._readout, top, self._forms_html])
        box.add_class("mha-mask-editor")
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
                self._readout.value = f"<b style='color:#b00'>could not update: {type(exc).__name__}: {exc}</b>"
        return handler

    _syncing = False

    def _sync_cell(self, i: int, j: int) -> None:
        self._syncing = True
        try:
            self._cells[i][j].value = bool(self._mask[i, j])
            self._cells[i][j].button_style = "success" if self._mask[i, j] else ""
        finally:
            self._syncing = False

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
                    self._cells[i][j].button_style = "success" if self._mask[i, j] else ""
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

    def _repr_mimebundle_(self, **kwargs):
        widget = self._widget if self._widget is not None else self._build()
        bundle = widget._repr_mimebundle_(**kwargs)  # the widget view, for JupyterLab
        bundle["text/plain"] = repr(self)  # a short, stable text instead of the widgets' long repr
        return bundle


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


# ---- the kernel-free copy for the static site (site/build.py, static_widgets.py) ----------------------------------

#: The masks the site's copy of the editor offers (a static page cannot recompute a click): name -> cells to flip,
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
    rows = "".join("<tr>" + "".join(
        f"<td style='width:30px;height:24px;border:1px solid #fff;text-align:center;"
        f"background:{'#2a9d8f' if allowed else '#e9ecef'};color:#fff'>{'✓' if allowed else ''}</td>"
        for allowed in row) + "</tr>" for row in editor._mask.tolist())
    return ("<div style='font-size:85%'>rows: queries i · columns: keys j · green = may attend</div>"
            f"<table style='border-collapse:collapse'>{rows}</table>")


def mask_editor_states(editor: MaskEditor) -> StaticWidget:
    """The kernel-free copy of a :class:`MaskEditor` for the static site: one state per entry of :data:`MASK_PRESETS`,
    each with the grid, the read-out, the weights and the three forms the live editor shows for that mask. The editor
    is left as it was found."""
    check_instance("editor", editor, MaskEditor, "a MaskEditor (mh.mask_editor(...))")
    start_mask, start_align = editor._mask.clone(), editor.align
    presets = list(MASK_PRESETS)
    first = "causal, bottom-right" if start_align == "bottom_right" else "causal, top-left"
    controls = [Control("mask", "mask", "select", presets, first)]
    widget = StaticWidget(
        kind="mask_editor", controls=controls,
        slots=[("readout", "html"), ("grid", "html"), ("weights", "html"), ("forms", "html")],
        rows=[["mask"], ["readout"], ["grid", "weights"], ["forms"]], css_class="mha-mask-editor",
        note="Clicking single cells needs a kernel (run the notebook in JupyterLab); here, pick one of these masks.",
    )
    try:
        for preset in presets:
            _apply_preset(editor, preset)
            widget.states[state_key({"mask": preset}, controls)] = {
                "readout": editor._readout_html(), "grid": _mask_grid_html(editor),
                "weights": editor._weights_table_html(), "forms": editor._forms_table_html()}
    finally:
        editor._mask, editor.align = start_mask, start_align
        editor._refresh(cells=True)
    return widget


@register_exporter
def _export_mask_editor(source: str, output: dict) -> StaticWidget | None:
    """``mh.mask_editor(...)`` in a cell whose stored output is its widget: re-create it and export its presets."""
    editor = recreate_from_cell(source, output, "MaskEditor(", mask_editor)
    return None if editor is None else mask_editor_states(editor)
