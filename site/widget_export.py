"""Kernel-free copies of the notebooks' widgets, for the static web site (``site/build.py``).

A live ipywidget needs a kernel: on a static page its slider could move, but nothing would redraw. So the site draws,
at BUILD time, every state a widget can be in, by driving the very widget a notebook shows: the widget describes its
own states (its ``states()``, a ``States`` of ``_mha_helpers/widgets/states.py``: controls, output slots, reachable
combinations and a ``view(values)`` drawn by its own code). :func:`pack` walks them, keeps what the widget displays
in each (figures as lossless WebP) and returns a :class:`StaticWidget`, whose :meth:`~StaticWidget.spec` is the JSON
the page's script (``site/static/static_widgets.js``) reads to swap the saved outputs as the reader moves a control.

Which widgets are copied is the literal :data:`KERNEL_FREE`: the start of the text a cell stored (the widget's repr)
-> the ``mh`` function that made it. The cell's literal arguments re-create the widget (:func:`recreate_from_cell`).
Adding another kernel-free widget: give its class a ``states()`` method and add a line to :data:`KERNEL_FREE`. A
self-contained cell of plain ipywidgets whose observers write labels (00's split slider) is copied by
:func:`plain_widget_states`. Any other widget shows its saved view (``site/saved_widgets.py``).
"""

from __future__ import annotations

import ast
import html
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import mha_helpers as mh
from _mha_helpers.widgets.states import Control, States, every_combination

#: The most states one widget may have: each is a figure (~10-20 kB as WebP) the page downloads.
MAX_STATES = 200

#: The MIME type of a stored ipywidget view in a notebook output.
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

#: The widgets the site copies: the start of the ``text/plain`` a cell stored (the widget's repr) -> the function
#: of the map that made it, called again with the cell's literal arguments. The class it returns has ``states()``.
KERNEL_FREE: dict[str, Callable[..., object]] = {
    "HeadExplorer(": mh.head_explorer,
    "MaskEditor(": mh.mask_editor,
}


@dataclass
class StaticWidget:
    """Every state of one widget, ready to be written into a page.

    ``slots``: ``(name, type)`` pairs, ``type`` being ``"html"`` (a string of HTML) or ``"image"`` (the bytes of a
    PNG or WebP image), in the order the live widget shows them; ``rows`` groups the control and slot names into the
    rows of that layout. ``states`` maps :func:`state_key` of a combination of control values to ``{slot name:
    value}``; a combination that the live widget cannot reach (enlarging head 5 of 4) has no state. ``note`` says
    what the static copy cannot do (type a new sentence).
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


def pack(states: States, compress: bool = True) -> StaticWidget:
    """Every state a widget described (its ``states()``): for each reachable combination, what its ``view`` shows.

    Figures are stored as lossless WebP (:func:`lossless_webp`), or as the widget's own PNG with ``compress=False``.
    The widget is restored as it was found, also when a view fails.
    """
    if not isinstance(states, States):
        raise TypeError(f"states must be what a widget's states() returns (a States), got {type(states).__name__}")
    if len(states.combinations) > MAX_STATES:
        raise ValueError(f"a {states.kind} widget with {len(states.combinations)} states is too heavy for a page "
                         f"(at most MAX_STATES={MAX_STATES})")
    widget = StaticWidget(kind=states.kind, controls=list(states.controls), slots=list(states.slots),
                          rows=[list(row) for row in states.rows], note=states.note, css_class=states.css_class)
    try:
        for values in states.combinations:
            shown = states.view(dict(values))
            widget.states[state_key(values, widget.controls)] = {
                name: (lossless_webp(shown[name]) if compress else bytes(shown[name])) if kind == "image"
                else shown[name] for name, kind in widget.slots}
    finally:
        states.restore()
    if not widget.states:
        raise ValueError(f"the {widget.kind} widget described no state")
    if widget.initial_key not in widget.states:
        raise ValueError(f"the {widget.kind} widget has no state for its starting values {widget.initial_key}")
    return widget


def export_static_widget(source: str, output: dict) -> StaticWidget | None:
    """The kernel-free copy of the widget a code cell displays, or None if the site does not know that widget.

    ``source``: the cell's code; ``output``: one of its stored outputs (a dict with ``data``), the one holding the
    widget view. The widgets of :data:`KERNEL_FREE` are recognised by their stored repr; a self-contained cell of plain
    ipywidgets (:func:`plain_widget_states`) last.
    """
    if not isinstance(source, str):
        raise TypeError(f"source must be the cell's code as a str, got {type(source).__name__}")
    if not isinstance(output, dict):
        raise TypeError(f"output must be a notebook output dict (with 'data'), got {type(output).__name__}")
    for repr_prefix, factory in KERNEL_FREE.items():
        live = recreate_from_cell(source, output, repr_prefix, factory)
        if live is not None:
            return pack(live.states(max_states=MAX_STATES))
    states = plain_widget_states(source, output)
    return None if states is None else pack(states)


# ---- re-creating the widget a cell made -------------------------------------------------------------------------


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


def _run_widget_cell(source: str):
    """The widget a self-contained cell displays, run with only ``mh`` and ``widgets`` defined (as the notebook's
    first cell imports them); None if the cell needs anything else or its last expression is not a widget."""
    import ipywidgets as widgets

    tree = ast.parse(source)
    if not tree.body or not isinstance(tree.body[-1], ast.Expr):
        return None
    namespace = {"mh": mh, "widgets": widgets}
    body = ast.Module(body=tree.body[:-1], type_ignores=[])
    try:
        exec(compile(body, "<widget cell>", "exec"), namespace)  # noqa: S102 - the project's own notebook code
        root = eval(compile(ast.Expression(tree.body[-1].value), "<widget cell>", "eval"), namespace)  # noqa: S307
    except Exception:  # needs an earlier cell's variables: not a self-contained widget
        return None
    return root if isinstance(root, widgets.Widget) else None


def plain_widget_states(source: str, output: dict) -> States | None:
    """The states of a self-contained cell that builds sliders/check boxes whose observers write into labels (00's
    split slider), or None for any other cell.

    The cell is run on its own (:func:`_run_widget_cell`); its last expression must be the box of widgets it displays.
    A cell that needs anything else (a variable of an earlier cell) is not copied: the page then shows its saved view.
    """
    import ipywidgets as widgets

    data = output.get("data", {})
    text = "".join(data.get("text/plain", ""))
    if WIDGET_VIEW not in data or not text.startswith(("VBox(", "HBox(", "Box(")):
        return None
    root = _run_widget_cell(source)
    found = None if root is None else _simple_widget_tree(root)
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
    start = [w.value for w in live_controls]

    def view(chosen: dict) -> dict:
        for w, c in zip(live_controls, controls, strict=True):
            w.value = chosen[c.name]
        return {name: html.escape(out.value) if isinstance(out, widgets.Label) else out.value
                for (name, _), out in zip(slots, outputs, strict=True)}

    def restore() -> None:
        for w, v in zip(live_controls, start, strict=True):
            w.value = v

    return States("widgets", controls, slots, [[c.name for c in controls], *[[name] for name, _ in slots]],
                  every_combination(controls), view, restore)
