"""What a widget says about its own states, so that it can be copied where there is no kernel to redraw it.

A live widget redraws in the kernel each time a reader moves a control. A widget that can be copied describes itself
with :class:`States`, returned by its ``states()`` method:

* ``controls``: what a reader can change (:class:`Control`: a slider, a list or a check box, its values, its start);
* ``slots``: what it displays, ``(name, "html")`` for a string of HTML or ``(name, "image")`` for PNG bytes, and
  ``rows``, the control and slot names in the rows of its layout;
* ``combinations``: every combination of control values the live widget can be in (``{control name: value}``; the
  explorer has no "enlarge head 5" with 4 heads);
* ``view(values)``: sets the LIVE widget's own controls to ``values`` and returns what it then displays,
  ``{slot name: HTML string or PNG bytes}``: drawn by the widget's own code, nothing drawn again apart;
  ``restore()`` puts the widget back as ``states()`` found it;
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
SLOT_KINDS = ("html", "image")


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
    start: dict[str, object] = field(init=False)

    def __post_init__(self) -> None:
        self.start = {c.name: c.value for c in self.controls}
        names = [c.name for c in self.controls] + [name for name, _ in self.slots]
        bad = [kind for _, kind in self.slots if kind not in SLOT_KINDS]
        if bad:
            raise ValueError(f"a slot's kind must be 'html' or 'image', got {bad}")
        placed = [name for row in self.rows for name in row]
        if sorted(placed) != sorted(names):
            raise ValueError(f"rows must place each control and slot once, {sorted(names)}; got {self.rows}")
        for values in self.combinations:
            if set(values) != {c.name for c in self.controls} or any(
                    values[c.name] not in c.options for c in self.controls):
                raise ValueError(f"a combination must give each control one of its options, got {values}")


def every_combination(controls: Sequence[Control]) -> list[dict[str, object]]:
    """All combinations of the controls' options, the first control's changing slowest."""
    return [dict(zip([c.name for c in controls], values, strict=True))
            for values in itertools.product(*[c.options for c in controls])]
