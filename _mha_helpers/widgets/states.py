"""What a widget says about its own states, so that it can be copied where there is no kernel to redraw it.

A live widget redraws in the kernel each time a reader moves a control. A widget that can be copied describes itself
with :class:`States`, returned by its ``states()`` method:

* ``controls``: what a reader can change (:class:`Control`: a slider, a list or a check box, its values, its start);
* ``slots``: what it displays: ``(name, "html")`` for a string of HTML, ``(name, "image")`` for a figure (a
  :class:`Picture`: PNG bytes and a text alternative saying what the figure shows) and ``(name, "status")`` for one
  line of plain text that a screen reader announces after a move (what changed; it is not drawn). ``rows`` places
  the control and slot names (every one but the status) in the rows of the widget's layout;
* ``combinations``: every combination of control values the live widget can be in (``{control name: value}``; the
  explorer has no "enlarge head 5" with 4 heads);
* ``view(values)``: sets the LIVE widget's own controls to ``values`` and returns what it then displays,
  ``{slot name: HTML string, Picture or status text}``: drawn by the widget's own code, nothing drawn again apart;
  ``restore()`` puts the widget back as ``states()`` found it;
* ``parts`` (optional): a slot whose pieces each depend on only some controls, ``{slot name: [controls of part 0,
  controls of part 1, ...]}``. ``view`` then returns that slot as a list of strings, one per part, whose
  concatenation is what the widget shows; an image slot has one part. A copy stores each part once per combination of
  ITS controls, so a widget with three sliders of 4, 32 and 32 positions (4,096 combinations: 11's cost meter) is
  copied as a few hundred small pieces, each still drawn by the widget for those values;
* ``note``: what a copy cannot do (type a new sentence, click one cell), and ``css_class``, the widget's own class.

This module knows nothing of what a copy is for (the static site's ``site/widget_export.py`` walks the combinations
and writes pages), and imports nothing of the rest of the package.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

#: The kinds of control a copy can offer, and the kinds of slot it can show.
CONTROL_KINDS = ("slider", "select", "checkbox")
SLOT_KINDS = ("html", "image", "status")


@dataclass
class Control:
    """One control of a widget: ``kind`` is ``"slider"``, ``"select"`` or ``"checkbox"``.

    ``options`` are the values it can take (JSON scalars), in the order a slider walks them; ``value`` the one it
    starts at. ``label`` is shown beside it, as in the live widget.
    """

    name: str
    label: str
    kind: str
    options: list
    value: object

    def __post_init__(self) -> None:
        if self.kind not in CONTROL_KINDS:
            raise ValueError(f"kind must be 'slider', 'select' or 'checkbox', got kind={self.kind!r}")
        if self.value not in self.options:
            raise ValueError(f"value must be one of options {self.options}, got value={self.value!r}")


@dataclass(frozen=True)
class Picture:
    """A figure a widget shows: ``png`` (the bytes of a PNG image) and ``alt``, a text alternative that says what it
    shows (for a reader who cannot see it), written from the same numbers the figure was drawn from."""

    png: bytes
    alt: str

    def __post_init__(self) -> None:
        if not isinstance(self.png, (bytes, bytearray)) or bytes(self.png[:8]) != b"\x89PNG\r\n\x1a\n":
            raise ValueError("png must be the bytes of a PNG image")
        if not isinstance(self.alt, str) or not self.alt.strip():
            raise ValueError("alt must say what the figure shows, got an empty text")


@dataclass
class States:
    """Every state a live widget can show, described by the widget itself (see this module's docstring)."""

    kind: str
    controls: list[Control]
    slots: list[tuple[str, str]]
    rows: list[list[str]]
    combinations: list[dict[str, object]]
    view: Callable[[dict[str, object]], dict[str, object]]
    restore: Callable[[], None]
    note: str = ""
    css_class: str = ""
    parts: dict[str, list[list[str]]] = field(default_factory=dict)
    start: dict[str, object] = field(init=False)

    def __post_init__(self) -> None:
        self.start = {c.name: c.value for c in self.controls}
        names = {c.name for c in self.controls}
        bad = [kind for _, kind in self.slots if kind not in SLOT_KINDS]
        if bad:
            raise ValueError(f"a slot's kind must be 'html', 'image' or 'status', got {bad}")
        shown = sorted([c.name for c in self.controls] + [n for n, kind in self.slots if kind != "status"])
        placed = [name for row in self.rows for name in row]
        if sorted(placed) != shown:
            raise ValueError(f"rows must place each control and slot (but the status) once, {shown}; got {self.rows}")
        kinds = dict(self.slots)
        for slot, parts in self.parts.items():
            if slot not in kinds or not parts or any(set(p) - names for p in parts):
                raise ValueError(f"parts must name a slot and, for each of its parts, some of the controls "
                                 f"{sorted(names)}; got {slot!r}: {parts}")
            if kinds[slot] == "image" and len(parts) != 1:
                raise ValueError(f"an image slot has one part, got {len(parts)} for {slot!r}")
        for values in self.combinations:
            if set(values) != names or any(values[c.name] not in c.options for c in self.controls):
                raise ValueError(f"a combination must give each control one of its options, got {values}")

    def parts_of(self, slot: str) -> list[list[str]]:
        """The controls each part of ``slot`` depends on, in the controls' order (one part, every control, unless
        ``parts`` says otherwise)."""
        order = [c.name for c in self.controls]
        return [[n for n in order if n in part] for part in self.parts.get(slot, [order])]


def every_combination(controls: Sequence[Control]) -> list[dict[str, object]]:
    """All combinations of the controls' options, the first control's changing slowest."""
    return [dict(zip([c.name for c in controls], values, strict=True))
            for values in itertools.product(*[c.options for c in controls])]
