"""Text alternatives for the notebooks' figures, written when the site is built (``site/build.py``).

A stored notebook keeps a figure as PNG pixels only: its title, axes and legend are gone. But the cell that drew it
is stored too, and in this series every figure is drawn by code that names what it shows: a ``title=``, a
``set_title``/``suptitle``, ``set_xlabel``/``set_ylabel``, the ``label=`` of each line, and the helper that drew it
(``mh.plot_attention`` draws a heat map of queries against keys ...). :func:`describe_figures` reads the cell's code
(it never runs it) and writes one description per figure from those texts, resolving the simple names and loops the
notebooks use (``for ax, title in ((axes[0], "RoPE ..."), ...)``, ``n_keys = 8`` in an earlier cell).

An author can write a figure's description by hand: a string (or a list, one per figure) in the cell's metadata
under ``"alt"``; it wins over the derived one.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

#: What each helper of the series draws, in words (a helper missing here is described by its docstring).
HELPERS = {
    "plot_attention": "a heat map with one row per query token and one column per key token, each cell's value "
                      "written in it",
    "plot_heads": "one attention heat map per head (rows: query tokens, columns: key tokens)",
    "plot_soft_lookup": "arrows from the origin in 2-D: the query and each key, a key's arrow thicker for more weight",
    "plot_head_influence": "a heat map of how strongly each head (columns) reaches each output feature (rows)",
    "plot_head_explorer": "the head explorer at one setting: one attention map per head, each titled with its entropy "
                          "in bits and its previous-token share",
    "plot_patch_tokens": "the toy image with its numbered patch grid, the flattened patches, and the tokens",
    "plot_patch_attention": "one query token's attention, head by head, drawn back onto the image's patch grid",
    "plot_lookup_heads": "per-head attention maps of the look-up model, the cells each look-up needs outlined (key "
                         "i-1 for the previous letter in red, key 0 for the first letter in dashed blue)",
    "plot_head_sweep": "a dot plot of each seed's share of both look-ups right against the number of heads, with "
                       "how many runs solved the task above each column and the guessing level",
    "plot_block_schedule": "a grid of (query block, key block) tiles, filled where the blocked online-softmax "
                           "attention computes a tile",
    "plot_causal_alignment": "two causal masks side by side: aligned top-left (is_causal) and bottom-right "
                             "(causal_lower_right)",
    "plot_mask_editor": "the mask editor's view: the attention weights under the mask, then the mask in three forms "
                        "(SDPA boolean, nn.MultiheadAttention boolean, additive float)",
    "plot_variant_cost_meter": "the cost meter at one setting: which K/V head each query head reads, the sliding "
                               "window's band, and a bar chart of each variant's KV-cache bytes",
    "plot_occurrence_losses": "a line chart over training steps of the loss on first and on repeated occurrences "
                              "of tokens, a dotted line marking blind guessing",
    "plot_head_scores": "two line charts over training steps: each layer-0 head's previous-token score and each "
                        "layer-1 head's induction score",
    "plot_circuit_maps": "the attention maps of the circuit's two heads on one sequence, red boxes where a perfect "
                         "previous-token head and a perfect induction head would look",
    "plot_snapshot_strip": "snapshots during training: the previous-token head (top row) and the induction head "
                           "(bottom row) at evenly spaced steps",
    "plot_pattern_scores": "five heat maps, one per pattern (previous character, itself, word start, whitespace, "
                           "first position), of each head's share of attention weight (rows: layers, columns: heads), "
                           "a red box on each head in the map of the pattern that names it",
    "plot_head_ablation": "a heat map of the held-out loss added by switching each head off alone (rows: layers, "
                          "columns: heads), the bits written in each cell",
    "plot_pruning_curve": "a line chart of held-out bits per character against the number of heads kept, the least "
                          "important pruned first, with dashed lines at all heads on and all heads off",
    "plot_head_count_sweep": "a dot plot of held-out bits per character for 1, 2, 4 and 8 heads, one dot per seed, "
                             "with a line through the means",
}
#: Keyword arguments of a helper that say nothing about what is drawn.
_STYLE = {"ax", "title", "cbar", "annot", "vmin", "vmax", "cmap", "figsize", "fontsize"}
#: Matplotlib calls whose first argument (or whose keyword) is text the figure shows, and what that text is.
_TEXT_CALLS = {"suptitle": "title", "set_title": "panel", "set_xlabel": "x", "set_ylabel": "y"}
_UNKNOWN = "\u2026"


@dataclass
class _Figure:
    """The texts found for one figure, in the order the code draws them."""

    helpers: list[str] = field(default_factory=list)
    texts: dict[str, list[str]] = field(default_factory=lambda: {"title": [], "panel": [], "x": [], "y": [],
                                                                   "legend": []})

    def empty(self) -> bool:
        return not self.helpers and not any(self.texts.values())


def _name(func: ast.expr) -> str | None:
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)


def _literal(node: ast.expr) -> object:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


class _Reader:
    """Walks a cell's statements, as they would run, collecting the texts of each figure (a ``plt.show()`` ends
    one). ``env`` holds what simple names are known to be: literals of earlier cells, a loop's current values."""

    def __init__(self, helpers: dict, env: dict[str, object]) -> None:
        self.helpers, self.env = helpers, env
        self.figures = [_Figure()]

    # -- values ---------------------------------------------------------------------------------------------------

    def text(self, node: ast.expr, env: dict) -> str | None:
        """The text ``node`` evaluates to, with ``…`` for what cannot be known without running the cell."""
        if isinstance(node, ast.Constant):
            return node.value if isinstance(node.value, str) else None
        if isinstance(node, ast.Name):
            value = env.get(node.id)
            return value if isinstance(value, str) else None
        if isinstance(node, ast.JoinedStr):
            out = []
            for part in node.values:
                if isinstance(part, ast.Constant):
                    out.append(str(part.value))
                else:
                    out.append(self._formatted(part, env))
            return "".join(out)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = self.text(node.left, env), self.text(node.right, env)
            return None if left is None or right is None else left + right
        return None

    def _formatted(self, part: ast.FormattedValue, env: dict) -> str:
        value = self.value(part.value, env)
        if value is None:
            return _UNKNOWN
        spec = self.text(part.format_spec, env) if part.format_spec is not None else ""
        try:
            return format(value, spec or "")
        except (ValueError, TypeError):
            return str(value)

    def value(self, node: ast.expr, env: dict) -> object:
        if isinstance(node, ast.Name):
            return env.get(node.id)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and not node.args
                and node.func.attr in ("capitalize", "upper", "lower", "title", "strip")):
            inner = self.value(node.func.value, env)
            return getattr(inner, node.func.attr)() if isinstance(inner, str) else None
        if isinstance(node, ast.BinOp):
            left, right = self.value(node.left, env), self.value(node.right, env)
            if isinstance(left, (int, float)) and isinstance(right, (int, float)):
                ops = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b}
                if type(node.op) in ops:
                    return ops[type(node.op)](left, right)
            return None
        literal = _literal(node)
        return literal if isinstance(literal, (int, float, str)) else self.text(node, env)

    # -- statements -----------------------------------------------------------------------------------------------

    def walk(self, body: Sequence[ast.stmt], env: dict) -> None:
        for statement in body:
            if isinstance(statement, ast.For):
                for binding in self._iterations(statement, env):
                    self.walk(statement.body, {**env, **binding})
                continue
            if isinstance(statement, (ast.If, ast.With)):
                self.walk(statement.body, env)
                continue
            for node in ast.walk(statement):
                if isinstance(node, ast.Call):
                    self._call(node, env)
            if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
                _bind(statement.targets[0], self._item(statement.value, env), env)

    def _iterations(self, loop: ast.For, env: dict) -> Iterator[dict]:
        """The loop's bindings, one dict per iteration, where the iterable is written in the cell; else one
        iteration with nothing known."""
        items = self._items(loop.iter, env)
        if items is None:
            yield {}
            return
        for item in items:
            binding: dict[str, object] = {}
            _bind(loop.target, item, binding)
            yield binding

    def _items(self, node: ast.expr, env: dict) -> list | None:
        if isinstance(node, (ast.Tuple, ast.List)):
            return [self._item(e, env) for e in node.elts]
        if isinstance(node, ast.Call) and _name(node.func) == "zip":
            columns = [self._items(a, env) for a in node.args]
            if all(c is None for c in columns):
                return None
            length = min(len(c) for c in columns if c is not None)
            return [tuple(c[i] if c is not None else None for c in columns) for i in range(length)]
        if isinstance(node, ast.Call) and _name(node.func) == "range" and not node.keywords:
            bounds = [self.value(a, env) for a in node.args]
            ok = bounds and all(isinstance(b, int) and not isinstance(b, bool) for b in bounds)
            return list(range(*bounds))[:64] if ok else None
        if isinstance(node, ast.Call) and _name(node.func) == "enumerate" and node.args:
            inner = self._items(node.args[0], env)
            return None if inner is None else list(enumerate(inner))
        value = env.get(node.id) if isinstance(node, ast.Name) else None
        return list(value) if isinstance(value, (list, tuple)) else None

    def _item(self, node: ast.expr, env: dict) -> object:
        if isinstance(node, (ast.Tuple, ast.List)):
            return tuple(self._item(e, env) for e in node.elts)
        return self.value(node, env)

    def _call(self, call: ast.Call, env: dict) -> None:
        name = _name(call.func)
        figure = self.figures[-1]
        if name == "show" and isinstance(call.func, ast.Attribute) and getattr(call.func.value, "id", "") == "plt":
            self.figures.append(_Figure())
            return
        if name in self.helpers:
            args = [f"{k.arg}={v!r}" for k in call.keywords if k.arg not in _STYLE
                    for v in [self.value(k.value, env)] if isinstance(v, (int, float, bool, str))]
            what = self.helpers[name] + (f" ({', '.join(args)})" if args else "")
            if what not in figure.helpers:
                figure.helpers.append(what)
        if name in _TEXT_CALLS and call.args:
            self._add(figure, _TEXT_CALLS[name], self.text(call.args[0], env))
        for keyword in call.keywords:
            if keyword.arg == "title":
                self._add(figure, "title" if name in self.helpers and name != "plot_attention" else "panel",
                          self.text(keyword.value, env))
            elif keyword.arg == "label":
                self._add(figure, "legend", self.text(keyword.value, env))
            elif keyword.arg in ("xlabel", "ylabel"):
                self._add(figure, keyword.arg[0], self.text(keyword.value, env))

    @staticmethod
    def _add(figure: _Figure, kind: str, text: str | None) -> None:
        text = " ".join(text.split()) if text else ""
        if text and text.strip(_UNKNOWN + " :,.") and text not in figure.texts[kind]:
            figure.texts[kind].append(text)


def _bind(target: ast.expr, value: object, binding: dict) -> None:
    if isinstance(target, ast.Name):
        binding[target.id] = value
    elif isinstance(target, ast.Tuple):
        values = value if isinstance(value, tuple) and len(value) == len(target.elts) else [None] * len(target.elts)
        for t, v in zip(target.elts, values, strict=True):
            _bind(t, v, binding)


def _sentence(figure: _Figure) -> str:
    """One figure's description: what drew it, its titles, its axes and its legend."""
    t = figure.texts
    out = []
    if t["title"]:
        out.append(f"\u201c{t['title'][0]}\u201d" + (f" ({'; '.join(t['title'][1:])})" if t["title"][1:] else ""))
    if figure.helpers:
        out.append("; ".join(figure.helpers))
    if t["panel"]:
        label = "Panel" if len(t["panel"]) == 1 else f"{len(t['panel'])} panels"
        out.append(f"{label}: " + "; ".join(f"\u201c{p}\u201d" for p in t["panel"]))
    axes = [f"{axis} axis: {', '.join(t[axis])}" for axis in ("x", "y") if t[axis]]
    if axes:
        out.append("; ".join(axes))
    if t["legend"]:
        out.append("legend: " + "; ".join(t["legend"]))
    text = ". ".join(s[0].upper() + s[1:] for s in out if s)
    return text + "." if text and not text.endswith(".") else text


def helper_descriptions(namespace: object) -> dict[str, str]:
    """:data:`HELPERS`, plus the first sentence of the docstring of any other ``plot_*`` function of ``namespace``
    (the map), so that a new helper is described before this table knows it."""
    found = dict(HELPERS)
    for name in dir(namespace):
        if name.startswith("plot_") and name not in found:
            doc = inspect.getdoc(getattr(namespace, name)) or ""
            first = re.split(r"(?<=\.)\s", " ".join(doc.split("\n\n")[0].split()), maxsplit=1)[0]
            found[name] = re.sub(r":\w+:`~?([^`]+)`|``([^`]+)``", lambda m: m.group(1) or m.group(2), first).rstrip(".")
    return found


def literal_names(sources: Sequence[str]) -> dict[str, object]:
    """Names the cells bind to a literal at their top level (``n_keys = 8``), the last binding winning."""
    env: dict[str, object] = {}
    for source in sources:
        for node in _parse(source).body:
            if isinstance(node, ast.Assign):
                value = _literal(node.value)
                for target in node.targets:
                    binding: dict[str, object] = {}
                    _bind(target, value if isinstance(value, (int, float, str, tuple, list)) else None, binding)
                    for name, v in binding.items():
                        if v is None:
                            env.pop(name, None)
                        else:
                            env[name] = v
    return env


def _parse(source: str) -> ast.Module:
    try:
        return ast.parse(source)
    except SyntaxError:  # IPython magics (%matplotlib inline) and shell escapes
        return ast.parse("\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()))


def describe_figures(source: str, count: int, helpers: dict[str, str], earlier: Sequence[str] = (),
                     context: str = "") -> list[str]:
    """``count`` descriptions, one per figure the cell ``source`` shows, in order.

    ``helpers``: :func:`helper_descriptions`; ``earlier``: the code of the cells before (for names bound to literals);
    ``context``: the prose just before the cell, used only for a figure whose code names nothing it shows.
    """
    reader = _Reader(helpers, literal_names(earlier))
    reader.walk(_parse(source).body, dict(reader.env))
    figures = [f for f in reader.figures if not f.empty()]
    if len(figures) != count:  # the cell draws its figures in a way the reader cannot split: describe them together
        merged = _Figure()
        for f in figures:
            merged.helpers += [h for h in f.helpers if h not in merged.helpers]
            for kind, texts in f.texts.items():
                merged.texts[kind] += [t for t in texts if t not in merged.texts[kind]]
        figures = [merged] * count
    out = []
    for i, figure in enumerate(figures):
        text = _sentence(figure)
        if not text:
            last = re.split(r"(?<=[.:!?])\s+", " ".join(context.split()).strip())[-1] if context.strip() else ""
            text = f"The figure the text before it introduces: {last}" if last else ""
        if text and count > 1 and len(set(map(_sentence, figures))) == 1:
            text = f"Figure {i + 1} of {count}: {text}"
        out.append(text)
    return out
