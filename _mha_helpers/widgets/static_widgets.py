"""Kernel-free copies of the notebooks' widgets, for the static web site (``site/build.py``).

A live ipywidget needs a kernel: on a static page its slider could move, but nothing would redraw. So the site
computes, at BUILD time, every state a widget can be in (each valid head count, with and without the causal
mask, ...) by driving the very widget a notebook shows (``mh.head_explorer(...)``: the same drawing code, nothing
drawn again here) and saves what it displays in each state. A small script in the page (``site/static/
static_widgets.js``) then swaps the saved outputs as the reader moves the controls.

The result of an export is a :class:`StaticWidget`: a list of :class:`Control` (what the reader can change), the
output slots (HTML read-outs, figures as PNG bytes) and one state per combination of control values. It knows
nothing about pages or files; the site's build writes the figures next to the page and embeds the rest as JSON.

Adding another kernel-free widget (a mask editor, a cost meter, a training-time slider): in the helper module
that defines the widget, write a function ``exporter(source, output) -> StaticWidget | None`` that recognises the
widget in a code cell (its ``source`` and its stored ``output``, a dict with ``data``; e.g. by the ``text/plain``
its ``__repr__`` stored), returns ``None`` for anything else, re-creates the widget from the cell's literal
arguments (:func:`recreate_from_cell`) and computes the states by setting the live widget's own controls and
reading what it displays (see :func:`head_explorer_states`); decorate it with :func:`register_exporter`. Keep the
number of states small (:data:`MAX_STATES`): a state is a figure the reader downloads. ``site/build.py`` calls
:func:`export_static_widget` on every widget output (which imports ``mha_helpers``, so every module's exporters are
registered) and shows the output's saved view when no exporter claims it. A self-contained cell of plain
ipywidgets whose observers write labels (00's split slider) needs no exporter of its own.
"""

from __future__ import annotations

import ast
import html
import io
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

#: The most states one widget may have: each is a figure (~10-20 kB as WebP) the page downloads.
MAX_STATES = 200

#: The MIME type of a stored ipywidget view in a notebook output.
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@dataclass
class Control:
    """One control of a kernel-free widget: ``kind`` is ``"slider"``, ``"select"`` or ``"checkbox"``.

    ``options`` are the values it can take (JSON scalars), in the order a slider walks them; ``value`` the one it
    starts at. ``label`` is shown beside it, as in the live widget.
    """

    name: str
    label: str
    kind: str
    options: list
    value: object

    def __post_init__(self) -> None:
        if self.kind not in {"slider", "select", "checkbox"}:
            raise ValueError(f"kind must be 'slider', 'select' or 'checkbox', got kind={self.kind!r}")
        if self.value not in self.options:
            raise ValueError(f"value must be one of options {self.options}, got value={self.value!r}")


@dataclass
class StaticWidget:
    """Every state of one widget, ready to be written into a page.

    ``slots``: ``(name, type)`` pairs, ``type`` being ``"html"`` (a string of HTML) or ``"image"`` (the bytes of a
    PNG or WebP image), in the
    order the live widget shows them; ``rows`` groups the control and slot names into the rows of that layout.
    ``states`` maps :func:`state_key` of a combination of control values to ``{slot name: value}``; a combination
    that the live widget cannot reach (enlarging head 5 of 4) has no state. ``note`` says what the static copy
    cannot do (type a new sentence).
    """

    kind: str
    controls: list[Control]
    slots: list[tuple[str, str]]
    rows: list[list[str]]
    states: dict[str, dict[str, object]] = field(default_factory=dict)
    note: str = ""
    css_class: str = ""

    @property
    def initial_key(self) -> str:
        return state_key({c.name: c.value for c in self.controls}, self.controls)

    def spec(self, image_url: Callable[[bytes], str]) -> dict:
        """The JSON-able description the page's script reads; ``image_url(data)`` names where a figure was saved."""
        states = {}
        for key, outputs in self.states.items():
            states[key] = {name: image_url(outputs[name]) if kind == "image" else outputs[name]
                           for name, kind in self.slots}
        return {
            "kind": self.kind,
            "controls": [{"name": c.name, "label": c.label, "kind": c.kind, "options": c.options, "value": c.value,
                          "keys": [_json_key(o) for o in c.options]} for c in self.controls],
            "slots": [{"name": n, "type": t} for n, t in self.slots],
            "rows": self.rows,
            "initial": self.initial_key,
            "states": states,
            "note": self.note,
            "cssClass": self.css_class,
        }


def state_key(values: dict[str, object], controls: Sequence[Control]) -> str:
    """The key of one combination of control values: ``"heads=4|enlarge=0|causal=false"`` (JSON values, in order).

    The page's script joins the same strings, which :meth:`StaticWidget.spec` hands it (``keys``) so that it never
    formats a value itself (``site/static/static_widgets.js``).
    """
    return "|".join(f"{c.name}={_json_key(values[c.name])}" for c in controls)


def _json_key(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


_EXPORTERS: list[Callable[[str, dict], StaticWidget | None]] = []
_FALLBACK_EXPORTERS: list[Callable[[str, dict], StaticWidget | None]] = []


def register_exporter(exporter: Callable[[str, dict], StaticWidget | None] | None = None, *, fallback: bool = False):
    """Add ``exporter(source, output) -> StaticWidget | None`` to those :func:`export_static_widget` tries.

    Use it as a decorator, in the module that defines the widget (that module is imported with ``mha_helpers``).
    ``fallback=True`` (``@register_exporter(fallback=True)``): tried only after every other exporter, for generic
    exporters that could also claim a specific widget.
    """
    def add(function):
        (_FALLBACK_EXPORTERS if fallback else _EXPORTERS).append(function)
        return function

    return add if exporter is None else add(exporter)


def export_static_widget(source: str, output: dict) -> StaticWidget | None:
    """The kernel-free copy of the widget a code cell displays, or None if no exporter knows that widget.

    ``source``: the cell's code; ``output``: one of its stored outputs (a dict with ``data``), the one holding the
    widget view. Exporters are tried in the order they were registered, fallbacks last; the first that returns a
    widget wins. ``mha_helpers`` is imported first, so that every helper module's exporters are registered.
    """
    if not isinstance(source, str):
        raise TypeError(f"source must be the cell's code as a str, got {type(source).__name__}")
    if not isinstance(output, dict):
        raise TypeError(f"output must be a notebook output dict (with 'data'), got {type(output).__name__}")
    import mha_helpers  # noqa: F401 - importing the map imports every module, and so registers their exporters

    for exporter in [*_EXPORTERS, *_FALLBACK_EXPORTERS]:
        widget = exporter(source, output)
        if widget is not None:
            if not widget.states:
                raise ValueError(f"exporter {exporter.__name__} returned a {widget.kind} widget with no states")
            if widget.initial_key not in widget.states:
                raise ValueError(f"exporter {exporter.__name__}: no state for the starting values {widget.initial_key}")
            return widget
    return None


def lossless_webp(png: bytes) -> bytes:
    """The same pixels as ``png``, as a lossless WebP: about a third of the size of the live widget's PNG.

    The live widget compresses fast (``compress_level=1``) because it redraws on every move; a page downloads each
    state once. Every browser of the last years shows WebP (Chrome, Firefox, Safari 14+, Edge).
    """
    from PIL import Image

    if not isinstance(png, (bytes, bytearray)):
        raise TypeError(f"png must be the bytes of a PNG image, got {type(png).__name__}")
    if bytes(png[:8]) != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"png must be the bytes of a PNG image, got bytes starting {bytes(png[:8])!r}")
    buffer = io.BytesIO()
    with Image.open(io.BytesIO(png)) as image:
        image.save(buffer, format="webp", lossless=True, quality=100, method=4)
    return buffer.getvalue()


# ---- the head explorer (notebook 06, and 04's compact slider) -------------------------------------------------


def _literal_call_arguments(source: str, function: str) -> dict[str, object] | None:
    """The keyword arguments of the one call to ``function`` (or ``anything.function``) in ``source``.

    Only literal values (numbers, strings, booleans, lists) are accepted: they are what the notebook passed, and the
    site can re-create them without running the notebook. Returns None when there is no such call.
    """
    calls = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if name == function:
                calls.append(node)
    if not calls:
        return None
    if len(calls) > 1:
        raise ValueError(f"a cell calls {function} {len(calls)} times; the site can copy one call per cell")
    call = calls[0]
    if call.args:
        raise ValueError(f"{function}(...) in a notebook must take keyword arguments only for the site to copy it, "
                         f"got {ast.unparse(call)}")
    try:
        return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
    except ValueError as exc:
        raise ValueError(f"the site can copy {function}(...) only with literal arguments, got "
                         f"{ast.unparse(call)}") from exc


def recreate_from_cell(source: str, output: dict, repr_prefix: str, factory: Callable[..., object]) -> object | None:
    """The live widget a cell made, built again: ``factory(**the cell's literal arguments)``.

    None when the stored ``text/plain`` does not start with ``repr_prefix`` (not this kind of widget). The stored text
    must equal the re-created widget's repr: if the notebook's output came from other arguments, the build stops
    instead of showing a different widget.
    """
    text = output.get("data", {}).get("text/plain", "")
    text = "".join(text) if isinstance(text, list) else text
    if not text.startswith(repr_prefix):
        return None
    name = factory.__name__
    kwargs = _literal_call_arguments(source, name)
    if kwargs is None:
        raise ValueError(f"a cell shows {text} but does not call {name}(...) itself; the site cannot copy it")
    widget = factory(**kwargs)
    if repr(widget) != text:
        raise ValueError(f"the stored output says {text} but {name}(**{kwargs}) gives {widget!r}: "
                         "re-execute the notebook (tests/refresh_notebooks.py) before building the site")
    return widget


def head_explorer_states(explorer, compress: bool = True) -> StaticWidget:
    """Every state of a live :class:`HeadExplorer`, drawn by the explorer itself.

    Walks each valid head count; unless the explorer is compact, also each head to enlarge and the causal mask off
    and on: it sets the widget's own controls (``head_slider``, ``enlarge``, ``causal``), which redraw it as a
    reader's moves would, and keeps its figure (``image``, PNG), its read-out and, unless compact, the enlarged
    head's weight table. The sentence stays as it is (a static page cannot embed a new one). Figures are stored as
    lossless WebP (:func:`lossless_webp`), or as the widget's own PNG with ``compress=False``. The explorer is left
    as it was found.
    """
    from .head_explorer import HeadExplorer

    if not isinstance(explorer, HeadExplorer):
        raise TypeError(f"explorer must be a HeadExplorer (from mh.head_explorer), got {type(explorer).__name__}")
    start = (explorer.head_slider.value, explorer.enlarge.value, explorer.causal.value)
    heads = list(explorer.head_slider.options)
    controls = [Control("heads", "heads", "slider", heads, start[0])]
    slots = [("readout", "html"), ("figure", "image")]
    if explorer.compact:
        rows = [["heads"], ["readout"], ["figure"]]
    else:
        controls += [Control("enlarge", "enlarge head", "select", list(range(max(heads))), start[1]),
                     Control("causal", "causal mask", "checkbox", [False, True], start[2])]
        slots.append(("table", "html"))
        rows = [["heads", "enlarge", "causal"], ["readout"], ["figure", "table"]]
    causal_values = [start[2]] if explorer.compact else [False, True]
    combos = [(h, e, c) for h in heads for c in causal_values for e in (range(h) if not explorer.compact else [0])]
    if len(combos) > MAX_STATES:  # e.g. d_model = 64 (127 heads to enlarge): head 0 only, the rest still kernel-free
        combos = [(h, 0, c) for h in heads for c in causal_values]
        controls = [c for c in controls if c.name != "enlarge"]
        rows[0] = [n for n in rows[0] if n != "enlarge"]
    widget = StaticWidget(
        kind="head_explorer", controls=controls, slots=slots, rows=rows, css_class="mha-head-explorer",
        note=("" if explorer.compact else
              f"The sentence is fixed here (\u201c{' '.join(explorer.tokens)}\u201d): in JupyterLab you can type "
              "your own."),
    )
    names = [c.name for c in controls]
    try:
        for h, e, c in combos:
            explorer.head_slider.value = h
            if not explorer.compact:
                explorer.causal.value = c
                explorer.enlarge.value = e
            readout = explorer.readout.value
            if "could not redraw" in readout:
                raise RuntimeError(f"the explorer failed at heads={h}, enlarge={e}, causal={c}: {readout}")
            png = bytes(explorer.image.value)
            state = {"readout": readout, "figure": lossless_webp(png) if compress else png}
            if not explorer.compact:
                state["table"] = explorer.table.value
            values = dict(zip(["heads", "enlarge", "causal"], [h, e, c], strict=True))
            widget.states[state_key({n: values[n] for n in names}, controls)] = state
    finally:
        explorer.head_slider.value = start[0]
        explorer.enlarge.value = start[1]
        explorer.causal.value = start[2]
    return widget


@register_exporter
def _export_head_explorer(source: str, output: dict) -> StaticWidget | None:
    """``mh.head_explorer(...)`` in a cell whose stored output is its widget: re-create it, export its states.

    The stored ``text/plain`` (``HeadExplorer(d_model=16, num_heads=4, ...)``) must equal the re-created
    explorer's: if the notebook's stored output came from other arguments, the build stops instead of showing a
    different widget.
    """
    from .head_explorer import head_explorer

    explorer = recreate_from_cell(source, output, "HeadExplorer(", head_explorer)
    return None if explorer is None else head_explorer_states(explorer)


# ---- a plain ipywidgets cell: sliders and check boxes whose observers set labels ---------------------------------


def _simple_widget_tree(root) -> tuple[list, list] | None:
    """The controls and the text outputs of a box of ipywidgets, or None if it holds anything else."""
    import ipywidgets as widgets

    controls, outputs = [], []
    stack = [root]
    while stack:
        w = stack.pop(0)
        if isinstance(w, widgets.Box):
            stack[:0] = list(w.children)
        elif isinstance(w, (widgets.SelectionSlider, widgets.IntSlider, widgets.Dropdown, widgets.Checkbox,
                            widgets.ToggleButtons, widgets.RadioButtons)):
            controls.append(w)
        elif isinstance(w, (widgets.Label, widgets.HTML, widgets.HTMLMath)):
            outputs.append(w)
        else:
            return None
    return (controls, outputs) if controls and outputs else None


def _control_values(w) -> list:
    import ipywidgets as widgets

    if isinstance(w, widgets.Checkbox):
        return [False, True]
    if isinstance(w, widgets.IntSlider):
        return list(range(w.min, w.max + 1, w.step))
    return [value for _, value in w._options_full] if hasattr(w, "_options_full") else list(w.options)


@register_exporter(fallback=True)
def _export_label_widgets(source: str, output: dict) -> StaticWidget | None:
    """A self-contained cell that builds sliders/check boxes whose observers write into labels (00's split slider).

    The cell is run on its own, with only ``mh`` (this package's map) and ``widgets`` (ipywidgets) defined, as the
    notebook's first cell imports them; its last expression must be the box of widgets it displays. A cell that
    needs anything else (a variable of an earlier cell) is not copied: the page then shows its saved view.
    """
    data = output.get("data", {})
    text = "".join(data.get("text/plain", ""))
    if WIDGET_VIEW not in data or not text.startswith(("VBox(", "HBox(", "Box(")):
        return None
    tree = ast.parse(source)
    if not tree.body or not isinstance(tree.body[-1], ast.Expr):
        return None
    import ipywidgets as widgets

    import mha_helpers

    namespace = {"mh": mha_helpers, "widgets": widgets}
    body = ast.Module(body=tree.body[:-1], type_ignores=[])
    try:
        exec(compile(body, "<widget cell>", "exec"), namespace)  # noqa: S102 - the project's own notebook code
        root = eval(compile(ast.Expression(tree.body[-1].value), "<widget cell>", "eval"), namespace)  # noqa: S307
    except Exception:  # needs an earlier cell's variables: not a self-contained widget
        return None
    found = _simple_widget_tree(root) if isinstance(root, widgets.Widget) else None
    if found is None:
        return None
    live_controls, outputs = found
    values = [_control_values(w) for w in live_controls]
    if not all(isinstance(v, (int, float, str, bool)) for vs in values for v in vs):
        return None  # the page's script compares JSON scalars only
    count = 1
    for vs in values:
        count *= len(vs)
    if count > MAX_STATES:
        return None
    controls = []
    for i, (w, vs) in enumerate(zip(live_controls, values, strict=True)):
        kind = "checkbox" if isinstance(w, widgets.Checkbox) else "slider" if "Slider" in type(w).__name__ else "select"
        controls.append(Control(f"c{i}", w.description, kind, vs, w.value))
    slots = [(f"o{i}", "html") for i in range(len(outputs))]
    widget = StaticWidget(kind="widgets", controls=controls, slots=slots,
                          rows=[[c.name for c in controls], *[[name] for name, _ in slots]])
    start = [w.value for w in live_controls]
    for combo in itertools.product(*values):
        for w, v in zip(live_controls, combo, strict=True):
            w.value = v
        state = {}
        for (name, _), out in zip(slots, outputs, strict=True):
            if isinstance(out, widgets.Label):

                state[name] = html.escape(out.value)
            else:
                state[name] = out.value
        widget.states[state_key({c.name: v for c, v in zip(controls, combo, strict=True)}, controls)] = state
    for w, v in zip(live_controls, start, strict=True):
        w.value = v
    return widget
