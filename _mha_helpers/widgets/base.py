"""What the series' widgets share (the head explorer, the mask editor, the cost meter, the training replay): the
ipywidgets pieces they show (an HTML read-out, a figure as PNG), how a notebook displays them (the live view, with a
short, stable text in place of the ipywidgets' long repr) and how a redraw that fails shows its error.

"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import ipywidgets
from matplotlib.figure import Figure

if TYPE_CHECKING:  # a method's return type only (states.py is the site-facing description of a widget)
    from .states import States


def error_html(exc: BaseException, doing: str = "redraw") -> str:
    """The read-out shown when an observer fails: an observer's exception would vanish into a log."""
    return f"<b style='color:#b00'>could not {doing}: {type(exc).__name__}: {exc}</b>"


def text_colour_on(background: str) -> str:
    """Black or white, whichever reads better on ``background`` (``"#rrggbb"``): the higher WCAG contrast ratio."""
    channels = [int(background.lstrip("#")[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return "#000" if (luminance + 0.05) / 0.05 >= 1.05 / (luminance + 0.05) else "#fff"


def html_output(css_class: str) -> ipywidgets.HTML:
    """An empty HTML read-out carrying ``css_class`` (the browser tests find it by that class)."""
    out = ipywidgets.HTML()
    out.add_class(css_class)
    return out


def image_output(css_class: str, **layout: str) -> ipywidgets.Image:
    """An empty PNG image, as wide as it may be and never stretched, carrying ``css_class``; ``layout`` adds to its
    ``ipywidgets.Layout``."""
    out = ipywidgets.Image(format="png", layout=ipywidgets.Layout(max_width="100%", height="auto", **layout))
    out.add_class(css_class)
    return out


def vbox(children: list, css_class: str) -> ipywidgets.VBox:
    """The whole widget: ``children`` one above the other, the box carrying the widget's own ``css_class``."""
    box = ipywidgets.VBox(children)
    box.add_class(css_class)
    return box


def figure_png(fig: Figure, **savefig_kwargs: object) -> bytes:
    """``fig`` as PNG bytes (``fig.savefig(..., format="png", **savefig_kwargs)``)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", **savefig_kwargs)
    return buffer.getvalue()


class LiveWidget:
    """The base of the series' widgets. A subclass sets ``widget`` (its ipywidgets box) and ``readout`` (an HTML
    read-out) and defines ``__repr__``, and ``redraw()`` if it observes its controls with ``_safe_redraw``. Displayed
    as a cell's last expression, it shows the live box, with its repr as the text a notebook stores."""

    widget: ipywidgets.Box
    readout: ipywidgets.HTML

    def _box(self) -> ipywidgets.Box:
        """The box to display (a subclass may build it on first display)."""
        return self.widget

    def _repr_mimebundle_(self, **kwargs):
        bundle = self._box()._repr_mimebundle_(**kwargs)  # the widget view, for JupyterLab
        bundle["text/plain"] = repr(self)  # a short, stable text instead of the widgets' long repr
        return bundle

    def _safe_redraw(self, change: object = None) -> None:
        """Redraw (an observer's callback); an error is shown in the read-out instead of vanishing into a log."""
        try:
            self.redraw()
        except Exception as exc:
            self.readout.value = error_html(exc)

    def states(self, max_states: int | None = None) -> States:
        """Every state this widget can show, for a copy without a kernel (see ``states.py``); a widget that can be
        copied defines it. ``max_states``: the most combinations the copy may hold."""
        raise NotImplementedError(f"{type(self).__name__} cannot be copied without a kernel yet")
