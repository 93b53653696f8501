"""A widget that no exporter makes kernel-free (a finished progress bar) is drawn as plain HTML from its saved state.

A notebook executed with nbconvert stores every widget's last state in ``metadata.widgets``. Jupyter's own
widget manager for static pages would need about a megabyte of scripts to show it, and still could not recompute
anything; the few widget types this series displays are simple enough to draw here, as what they showed when the
notebook was executed. A control (a slider, a check box) is drawn as its saved value with a visible note that it moves
in JupyterLab: never as a control that does nothing (a disabled control is unreachable with Tab, and its reason a
hover tooltip that touch and keyboard readers never see).
A type not known here returns None: the page then shows the output's text.
"""

from __future__ import annotations

import base64
import html

STATE_MIME = "application/vnd.jupyter.widget-state+json"
NEEDS_KERNEL = "moves when the notebook runs in JupyterLab (Run it locally, above)"


def saved_states(nb) -> dict[str, dict]:
    """``{model_id: {"model_name": ..., "state": {...}, "buffers": [...]}}`` saved in a notebook (empty if none)."""
    return dict(nb.metadata.get("widgets", {}).get(STATE_MIME, {}).get("state", {}))


def _model(models: dict, ref: str) -> dict | None:
    return models.get(ref.removeprefix("IPY_MODEL_")) if isinstance(ref, str) else None


def _description(state: dict) -> str:
    text = state.get("description") or ""
    return f"<span class='mha-saved-description'>{html.escape(text)}</span> " if text else ""


def _saved_control(state: dict, value: str) -> str:
    label = html.escape(state.get("description") or "setting")
    return (f"<div class='mha-saved-control'><b>{label}</b>: {value} <em>({NEEDS_KERNEL})</em></div>")


def render_saved_widget(model_id: str, models: dict) -> str | None:
    """HTML for the saved widget ``model_id`` and its children, or None if it (or a child) is of an unknown type."""
    model = models.get(model_id)
    if model is None:
        return None
    name, state = model.get("model_name", ""), model.get("state", {})
    if name in {"HBoxModel", "VBoxModel", "BoxModel", "GridBoxModel"}:
        children = [render_saved_widget(ref.removeprefix("IPY_MODEL_"), models) for ref in state.get("children", [])]
        if any(child is None for child in children):
            return None
        direction = "row" if name == "HBoxModel" else "column"
        return f"<div class='mha-saved-box' style='flex-direction:{direction}'>{''.join(children)}</div>"
    if name in {"HTMLModel", "HTMLMathModel"}:
        return f"<div class='mha-saved-html'>{_description(state)}{state.get('value', '')}</div>"
    if name == "LabelModel":
        return f"<div class='mha-saved-label'>{_description(state)}{html.escape(state.get('value', ''))}</div>"
    if name in {"FloatProgressModel", "IntProgressModel"}:
        value, top = state.get("value", 0), state.get("max", 100)
        style = state.get("bar_style", "")
        return (f"<progress class='mha-saved-progress {html.escape(style)}' value='{value}' max='{top}'>"
                f"{value}/{top}</progress>")
    if name in {"SelectionSliderModel", "IntSliderModel", "FloatSliderModel"}:
        if name == "SelectionSliderModel":
            labels = state.get("_options_labels", [])
            index = state.get("index", 0)
            readout = labels[index] if labels else ""
        else:
            readout = state.get("value", 0)
        return _saved_control(state, f"{html.escape(str(readout))}")
    if name == "CheckboxModel":
        return _saved_control(state, "on" if state.get("value") else "off")
    if name == "ImageModel":
        for buffer in model.get("buffers", []):
            if buffer.get("path") == ["value"] and buffer.get("encoding") == "base64":
                fmt = html.escape(state.get("format", "png"))
                data = base64.b64decode(buffer["data"])  # validate before embedding
                encoded = base64.b64encode(data).decode()
                return f"<img class='mha-saved-image' alt='the widget figure as saved when the notebook ran' src='data:image/{fmt};base64,{encoded}'>"
        return None
    return None
