"""Kernel-free copies of the notebooks' widgets, for the static web site (``site/build.py``).

A live ipywidget needs a kernel: on a static page its slider could move, but nothing would redraw. So the site draws,
at BUILD time, every state a widget can be in, by driving the very widget a notebook shows: the widget describes its
own states (its ``states()``, a ``States`` of ``_mha_helpers/widgets/states.py``: controls, output slots, reachable
combinations, which controls each piece of an output depends on, and a ``view(values)`` drawn by its own code).
:func:`pack` walks them, keeps what the widget displays (figures as lossless WebP, each with its text alternative)
and returns a :class:`StaticWidget`, whose :meth:`~StaticWidget.spec` is the JSON the page's script
(``site/static/static_widgets.js``) reads to swap the saved outputs as the reader moves a control.

Which widgets are copied is the literal :data:`KERNEL_FREE`: the start of the text a cell stored (the widget's repr)
-> the ``mh`` function or class that made it, called again with the cell's arguments (:func:`recreate_from_cell`).
An argument is a literal, or a name an earlier cell of the notebook bound to the result of a function of the literal
:data:`PRODUCERS` called with literal arguments (12's ``history`` from ``mh.train_induction_model(seed=0)``): the
build calls it again, so the notebook's cell stays as a student reads it.

Adding a kernel-free widget (as 14's layer/head picker was): give its class a ``states()`` method (``widgets/states.py``
says what it returns), add its repr prefix and its maker to :data:`KERNEL_FREE`, and, if its cell takes a model or a
record by name, the function that made that object to :data:`PRODUCERS`. ``tests/site/test_site.py`` then moves each
of its controls on the built page. A self-contained cell of plain ipywidgets whose observers write labels (00's split
slider) is copied by :func:`plain_widget_states`. Any other widget shows its saved view (``site/saved_widgets.py``).
"""

from __future__ import annotations

import ast
import html
import inspect
import io
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import mha_helpers as mh
from _mha_helpers.widgets.states import Control, Picture, States, every_combination

#: The most values one piece of a widget may take: each is a figure (~10-30 kB as WebP) the page downloads.
MAX_STATES = 200
#: How many combinations that a copy does not need (their pieces are stored) :func:`pack` views anyway, to check.
SPOT_CHECKS = 8
#: The most combinations of control values a widget may offer (the page lists them when some are unreachable).
MAX_COMBINATIONS = 10_000

#: The MIME type of a stored ipywidget view in a notebook output.
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

#: The widgets the site copies: the start of the ``text/plain`` a cell stored (the widget's repr) -> the function
#: or class of the map that made it, called again with the cell's arguments. What it returns has ``states()``.
KERNEL_FREE: dict[str, Callable[..., object]] = {
    "HeadExplorer(": mh.head_explorer,
    "MaskEditor(": mh.mask_editor,
    "VariantCostMeter(": mh.variant_cost_meter,
    "TrainingReplay(": mh.TrainingReplay,
    "TextHeadPicker(": mh.text_head_picker,
}

#: Functions whose results a widget's cell may take by name: ``model, history = mh.train_induction_model(seed=0)`` in
#: an earlier cell is called again (with its literal arguments) to give the widget its ``history``.
PRODUCERS: dict[str, Callable[..., object]] = {
    "train_induction_model": mh.train_induction_model,
    "load_text_model": mh.load_text_model,
}


@dataclass(frozen=True)
class SavedImage:
    """A figure as a page stores it: ``data`` (lossless WebP, or the widget's PNG) and its text alternative."""

    data: bytes
    alt: str


@dataclass
class StaticWidget:
    """Every state of one widget, ready to be written into a page.

    ``slots``: ``(name, kind)`` pairs (``"html"``, ``"image"`` or ``"status"``) in the order the live widget shows
    them; ``rows`` groups the control and slot names into the rows of that layout. ``parts[slot]`` lists the
    controls each part of a slot depends on, and ``values[slot][i]`` maps :func:`state_key` of those controls'
    values to part ``i``'s value (HTML, status text, or a :class:`Picture` for an image): what the widget shows for
    a combination is, slot by slot, the concatenation of its parts. ``reachable`` lists the keys of the combinations
    the live widget can be in, or is None when every combination is (a page offers no unreachable one: no
    "enlarge head 5" with 4 heads). ``note`` says what the static copy cannot do (type a new sentence).
    """

    kind: str
    controls: list[Control]
    slots: list[tuple[str, str]]
    rows: list[list[str]]
    parts: dict[str, list[list[str]]] = field(default_factory=dict)
    values: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    reachable: list[str] | None = None
    note: str = ""
    css_class: str = ""
    views: int = 0

    @property
    def initial_key(self) -> str:
        return state_key({c.name: c.value for c in self.controls}, self.controls)

    def shown(self, values: dict[str, object]) -> dict[str, object]:
        """What the copy shows for one combination: ``{slot: HTML or status text (parts joined) or SavedImage}``."""
        out = {}
        for name, kind in self.slots:
            pieces = [self.values[name][i][state_key(values, self._controls(deps))]
                      for i, deps in enumerate(self.parts[name])]
            out[name] = pieces[0] if kind == "image" else "".join(pieces)
        return out

    def _controls(self, names: Sequence[str]) -> list[Control]:
        return [c for c in self.controls if c.name in names]

    @property
    def state_count(self) -> int:
        """How many distinct outputs the copy stores (pieces of every slot)."""
        return sum(len(v) for parts in self.values.values() for v in parts)

    def spec(self, image_url: Callable[[bytes], str]) -> dict:
        """The JSON-able description the page's script reads; ``image_url(data)`` names where a figure was saved."""
        values = {}
        for name, kind in self.slots:
            values[name] = [{key: {"src": image_url(v.data), "alt": v.alt} if kind == "image" else v
                             for key, v in part.items()} for part in self.values[name]]
        return {
            "kind": self.kind,
            "controls": [{"name": c.name, "label": c.label, "kind": c.kind, "options": c.options, "value": c.value,
                          "keys": [_json_key(o) for o in c.options]} for c in self.controls],
            "slots": [{"name": n, "type": t, "parts": self.parts[n]} for n, t in self.slots],
            "rows": self.rows,
            "initial": self.initial_key,
            "reachable": self.reachable,
            "values": values,
            "note": self.note,
            "cssClass": self.css_class,
        }


def state_key(values: dict[str, object], controls: Sequence[Control]) -> str:
    """The key of one combination of control values: ``"heads=4|enlarge=0|causal=false"`` (JSON values, in order).

    The page's script joins the same strings, which :meth:`StaticWidget.spec` hands it (``keys``) so that it never
    formats a value itself (``site/static/static_widgets.js``). The key of no control is ``""``.
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


def _piece(kind: str, value: object, parts: int, name: str) -> list:
    """A slot's value as :func:`pack` stores it: a list of ``parts`` pieces (one Picture for an image)."""
    if kind == "image":
        if not isinstance(value, Picture):
            raise TypeError(f"the view must show image slot {name!r} as a Picture (PNG and its text alternative), "
                            f"got {type(value).__name__}")
        return [value]
    pieces = value if parts > 1 else [value]
    if not isinstance(pieces, list) or len(pieces) != parts or not all(isinstance(p, str) for p in pieces):
        raise TypeError(f"the view must show slot {name!r} as {parts} string(s), got {value!r:.80}")
    return pieces


def _store(widget: StaticWidget, compress: bool, name: str, i: int, key: str, value: object, values: dict) -> None:
    """Keep piece ``i`` of slot ``name`` for ``key``; a piece seen before must not have changed."""
    seen = widget.values[name][i]
    if isinstance(value, Picture):
        if key in seen and seen[key].alt == value.alt:
            return  # (the pixels of a redraw may differ in their last bits: figures are compared by their text)
        value = SavedImage(lossless_webp(value.png) if compress else bytes(value.png), value.alt)
    if key in seen:
        same = seen[key].alt == value.alt if isinstance(value, SavedImage) else seen[key] == value
        if not same:
            raise ValueError(f"the {widget.kind} widget says part {i} of {name!r} depends only on "
                             f"{widget.parts[name][i]}, but it changed with the other controls at {values}")
        return
    seen[key] = value


def pack(states: States, compress: bool = True) -> StaticWidget:
    """Every state a widget described (its ``states()``): for each reachable combination, what its ``view`` shows.

    The view is called for the combinations that show a piece not stored yet (all of them, unless the widget says
    that some pieces depend on fewer controls), and each piece is stored once per value of its own controls; a few
    other combinations are viewed to check that no piece depends on more than the widget said.
    Figures are stored as lossless WebP (:func:`lossless_webp`), or as the widget's own PNG with ``compress=False``.
    The widget is restored as it was found, also when a view fails.
    """
    if not isinstance(states, States):
        raise TypeError(f"states must be what a widget's states() returns (a States), got {type(states).__name__}")
    if len(states.combinations) > MAX_COMBINATIONS:
        raise ValueError(f"a {states.kind} widget with {len(states.combinations)} combinations is too many for a "
                         f"page (at most MAX_COMBINATIONS={MAX_COMBINATIONS})")
    parts = {name: states.parts_of(name) for name, _ in states.slots}
    widget = StaticWidget(kind=states.kind, controls=list(states.controls), slots=list(states.slots),
                          rows=[list(row) for row in states.rows], parts=parts, note=states.note,
                          css_class=states.css_class, values={name: [{} for _ in p] for name, p in parts.items()})
    controls = {name: [widget._controls(deps) for deps in p] for name, p in parts.items()}

    def show(values: dict) -> None:
        keys = {(name, i): state_key(values, cs) for name, p in controls.items() for i, cs in enumerate(p)}
        shown = states.view(dict(values))
        widget.views += 1
        for name, kind in widget.slots:
            for i, piece in enumerate(_piece(kind, shown[name], len(parts[name]), name)):
                _store(widget, compress, name, i, keys[name, i], piece, values)

    skipped = []
    try:
        for values in states.combinations:
            keys = {(name, i): state_key(values, cs) for name, p in controls.items() for i, cs in enumerate(p)}
            if all(key in widget.values[name][i] for (name, i), key in keys.items()):
                skipped.append(values)  # every piece already stored
            else:
                show(values)
        # A widget that says a piece depends on fewer controls than it does would be copied wrong: view a few of
        # the skipped combinations anyway (evenly spread), and check that every piece is the one stored.
        for values in skipped[::max(1, len(skipped) // SPOT_CHECKS)][:SPOT_CHECKS]:
            show(values)
    finally:
        states.restore()
    heavy = {name: max(len(v) for v in p) for name, p in widget.values.items()}
    if max(heavy.values(), default=0) > MAX_STATES:
        raise ValueError(f"a {widget.kind} widget stores {heavy} values per piece, too heavy for a page (at most "
                         f"MAX_STATES={MAX_STATES} each)")
    if not states.combinations:
        raise ValueError(f"the {widget.kind} widget described no state")
    everything = every_combination(widget.controls)
    if len(states.combinations) != len(everything):
        widget.reachable = [state_key(v, widget.controls) for v in states.combinations]
    start = {c.name: c.value for c in widget.controls}
    if start not in states.combinations:
        raise ValueError(f"the {widget.kind} widget has no state for its starting values {widget.initial_key}")
    return widget


def export_static_widget(source: str, output: dict, earlier: Sequence[str] = ()) -> StaticWidget | None:
    """The kernel-free copy of the widget a code cell displays, or None if the site does not know that widget.

    ``source``: the cell's code; ``output``: one of its stored outputs (a dict with ``data``), the one holding the
    widget view; ``earlier``: the code of the notebook's cells before it (where a name the cell passes was bound).
    The widgets of :data:`KERNEL_FREE` are recognised by their stored repr; a self-contained cell of plain
    ipywidgets (:func:`plain_widget_states`) last.
    """
    if not isinstance(source, str):
        raise TypeError(f"source must be the cell's code as a str, got {type(source).__name__}")
    if not isinstance(output, dict):
        raise TypeError(f"output must be a notebook output dict (with 'data'), got {type(output).__name__}")
    for repr_prefix, factory in KERNEL_FREE.items():
        live = recreate_from_cell(source, output, repr_prefix, factory, earlier)
        if live is not None:
            return pack(live.states(max_states=MAX_STATES))
    states = plain_widget_states(source, output)
    return None if states is None else pack(states)


# ---- re-creating the widget a cell made -------------------------------------------------------------------------


def _one_call(source: str, function: str) -> ast.Call | None:
    """The one call to ``function`` (or ``anything.function``) in ``source``, or None."""
    calls = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if name == function:
                calls.append(node)
    if len(calls) > 1:
        raise ValueError(f"a cell calls {function} {len(calls)} times; the site can copy one call per cell")
    return calls[0] if calls else None


def _literal_call_arguments(source: str, function: str) -> dict[str, object] | None:
    """The keyword arguments of the one call to ``function`` (or ``anything.function``) in ``source``.

    Only literal values (numbers, strings, booleans, lists) are accepted: they are what the notebook passed, and the
    site can re-create them without running the notebook. Returns None when there is no such call.
    """
    call = _one_call(source, function)
    if call is None:
        return None
    if call.args:
        raise ValueError(f"{function}(...) in a notebook must take keyword arguments only for the site to copy it, "
                         f"got {ast.unparse(call)}")
    try:
        return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
    except ValueError as exc:
        raise ValueError(f"the site can copy {function}(...) only with literal arguments, got "
                         f"{ast.unparse(call)}") from exc


def produced_names(earlier: Sequence[str]) -> dict[str, tuple[str, Callable[..., object], dict, int | None]]:
    """The names the cells ``earlier`` bound to a call of a :data:`PRODUCERS` function with literal arguments:
    ``{name: (the statement, function, keyword arguments, index in the returned tuple or None)}``. A later binding of
    the same name by anything else removes it (the widget would not get what the notebook gave it)."""
    found: dict[str, tuple[str, Callable[..., object], dict, int | None]] = {}
    for source in earlier:
        try:
            tree = ast.parse(source)
        except SyntaxError:  # a cell with IPython magics (%matplotlib inline): it binds nothing the site needs
            tree = ast.parse("\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))))
        for node in tree.body:
            if not isinstance(node, ast.Assign):
                continue
            names = [[t.id] if isinstance(t, ast.Name) else [getattr(e, "id", None) for e in t.elts]
                     for t in node.targets if isinstance(t, (ast.Name, ast.Tuple))]
            call = node.value if isinstance(node.value, ast.Call) else None
            function = call and (call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", None))
            for target in names:
                for index, name in enumerate(target):
                    if name is None:
                        continue
                    found.pop(name, None)
                    if function in PRODUCERS and not call.args:
                        try:
                            kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
                        except ValueError:
                            continue
                        found[name] = (ast.unparse(node), PRODUCERS[function], kwargs, index if len(target) > 1 else None)
    return found


def _call_arguments(call: ast.Call, earlier: Sequence[str]) -> tuple[list, dict, list[str]]:
    """The call's arguments: literals as written, names made again by their producer. Also returns the producer
    statements used (the cache of built widgets keys on them)."""
    produced = produced_names(earlier) if any(isinstance(a, ast.Name) for a in [*call.args, *(k.value for k in call.keywords)]) else {}
    used: list[str] = []

    def value(node: ast.expr) -> object:
        if isinstance(node, ast.Name):
            if node.id not in produced:
                raise ValueError(f"{ast.unparse(call)}: the site cannot re-create {node.id!r}; an earlier cell must "
                                 f"bind it to a call of one of {sorted(PRODUCERS)} with literal arguments")
            statement, function, kwargs, index = produced[node.id]
            if "progress" in inspect.signature(function).parameters:
                kwargs = {"progress": False, **kwargs}  # a progress bar has no reader at build time
            result = function(**kwargs)
            used.append(statement)
            return result if index is None else result[index]
        try:
            return ast.literal_eval(node)
        except ValueError as exc:
            raise ValueError(f"the site can copy {ast.unparse(call)} only with literal arguments or names an "
                             f"earlier cell made with one of {sorted(PRODUCERS)}") from exc

    return [value(a) for a in call.args], {k.arg: value(k.value) for k in call.keywords}, used


def recreate_from_cell(source: str, output: dict, repr_prefix: str, factory: Callable[..., object],
                       earlier: Sequence[str] = ()) -> object | None:
    """The live widget a cell made, built again: ``factory(the cell's arguments)``.

    None when the stored ``text/plain`` does not start with ``repr_prefix`` (not this kind of widget). The stored text
    must equal the re-created widget's repr: if the notebook's output came from other arguments, the build stops
    instead of showing a different widget.
    """
    text = output.get("data", {}).get("text/plain", "")
    text = "".join(text) if isinstance(text, list) else text
    if not text.startswith(repr_prefix):
        return None
    name = factory.__name__
    call = _one_call(source, name)
    if call is None:
        raise ValueError(f"a cell shows {text} but does not call {name}(...) itself; the site cannot copy it")
    args, kwargs, _ = _call_arguments(call, earlier)
    widget = factory(*args, **kwargs)
    if repr(widget) != text:
        raise ValueError(f"the stored output says {text} but {ast.unparse(call)} gives {widget!r}: "
                         "re-execute the notebook (tests/refresh_notebooks.py) before building the site")
    return widget


def widget_context(source: str, earlier: Sequence[str]) -> str:
    """The statements of earlier cells a widget cell depends on (the producers of the names it passes), as text:
    the build's cache of widget copies keys on them, so that changing ``train_induction_model(seed=0)`` redraws."""
    names = {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name)}
    produced = produced_names(earlier) if names else {}
    return "\n".join(produced[n][0] for n in sorted(names) if n in produced)


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
        shown = {name: html.escape(out.value) if isinstance(out, widgets.Label) else out.value
                 for (name, _), out in zip(slots, outputs, strict=True)}
        words = [html.unescape(re.sub(r"<[^>]+>", " ", shown[name])) for name, _ in slots]
        shown["status"] = " ".join(" ".join(w.split()) for w in words if w.strip())  # what the labels now say
        return shown

    def restore() -> None:
        for w, v in zip(live_controls, start, strict=True):
            w.value = v

    return States("widgets", controls, [*slots, ("status", "status")],
                  [[c.name for c in controls], *[[name] for name, _ in slots]], every_combination(controls), view,
                  restore)
