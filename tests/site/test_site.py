"""The static site (``site/build.py``) works in a real browser with no kernel and no other origin.

First, without a browser: the widget export (``site/widget_export.py``) drives the live widgets (head explorer,
mask editor, cost meter, training replay) through every state they describe (their ``states()``) and keeps exactly
what they show, and rejects what it cannot copy; figures are described from the code that drew them
(``site/figure_text.py``), and a widget's static twin is left out.

Then the site is built (the README's command, into a temporary folder) and served on 127.0.0.1, and headless
Chromium (Debian's ``chromium`` via Playwright, as in tests/browser/test_browser.py) opens every page: no console error,
every image and diagram loaded, math typeset, folded solutions folded, previous/next links in series order, the
page counter right, every figure described in words, no disabled control, every internal link (and #fragment)
resolves, and not one request to another origin (each is recorded and blocked). axe-core (pinned in
site/package.json) finds no critical or serious violation on any page, on a laptop and on a phone; no code cell is
cut off at 390 and 1024 px. Every control of every kernel-free widget is moved to every value: the page around it
changes, a screen reader hears what changed, and the median time from the move to the new figure being decoded and
painted must be <= 100 ms. One page is also opened from disk (file://). This is the ``site`` lane (``-m site``): it
needs Chromium and npm.
Screenshots of every page and widget go to ``test-artifacts/site/`` with ``MHA_SITE_SCREENSHOTS=1`` (and on failure).
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import pytest

import mha_helpers as mh

ROOT = Path(__file__).resolve().parents[2]
SERIES = "[0-9][0-9]_*.ipynb"
NOTEBOOKS = sorted((ROOT / "notebooks").glob(SERIES))
ARTIFACTS = ROOT / "test-artifacts" / "site"
SCREENSHOTS = os.environ.get("MHA_SITE_SCREENSHOTS", "") == "1"
MEDIAN_LIMIT_MS = 100.0
#: Every move's response time, gathered over the slider tests and reported by the last test.
RESPONSES: dict[str, list[float]] = {}


# ---- the export, without a browser ----------------------------------------------------------------------------


def _site_module(name: str):
    """``site/<name>.py``, imported as the build imports it (site/ is not a package: ``site`` is Python's own)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "site" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


sw = _site_module("widget_export")


def test_export_keeps_the_live_widgets_pixels_and_read_outs():
    """Each state is what the live widget itself shows for those controls: the same PNG pixels, the same read-out,
    and a text alternative written from the same numbers."""
    from PIL import Image, ImageChops

    explorer = mh.head_explorer(d_model=8, num_heads=2, compact=True)
    widget = sw.pack(explorer.states())
    assert [c.name for c in widget.controls] == ["heads"]
    assert list(widget.values["figure"][0]) == ["heads=1", "heads=2", "heads=4", "heads=8"]
    assert widget.reachable is None and widget.views == 4
    assert widget.initial_key == "heads=2" and explorer.head_slider.value == 2  # left as it was found
    for h in (1, 2, 4, 8):
        explorer.head_slider.value = h
        shown = widget.shown({"heads": h})
        live = Image.open(io.BytesIO(bytes(explorer.image.value))).convert("RGB")
        saved = Image.open(io.BytesIO(shown["figure"].data)).convert("RGB")
        assert ImageChops.difference(live, saved).getbbox() is None, f"heads={h}: pixels differ"
        assert shown["readout"] == explorer.readout.value and shown["figure"].alt == explorer.describe()
        assert f"head_dim = {8 // h}" in explorer.readout.value
        assert shown["status"] == explorer.status_line() and f"head_dim {8 // h}" in shown["status"]


def test_full_explorer_has_every_head_count_mask_and_enlarged_head():
    explorer = mh.head_explorer(d_model=4, num_heads=2)
    widget = sw.pack(explorer.states())
    assert [c.name for c in widget.controls] == ["heads", "enlarge", "causal"]
    # 1, 2 and 4 heads; each head enlarged once; mask off and on: (1 + 2 + 4) * 2 states
    assert len(widget.reachable) == 14 and widget.views == 14
    assert "heads=2|enlarge=1|causal=true" in widget.reachable
    assert "heads=2|enlarge=2|causal=true" not in widget.reachable
    on = widget.shown({"heads": 4, "enlarge": 0, "causal": True})
    off = widget.shown({"heads": 4, "enlarge": 0, "causal": False})
    assert on["figure"] != off["figure"] and on["table"] != off["table"] and "causal mask on" in on["status"]
    spec = widget.spec(lambda data: f"{len(data)}.webp")
    assert spec["initial"] == "heads=2|enlarge=0|causal=false"
    assert spec["controls"][2]["keys"] == ["false", "true"]
    assert spec["slots"][1] == {"name": "figure", "type": "image", "parts": [["heads", "enlarge", "causal"]]}
    assert all(v["src"].endswith(".webp") and v["alt"] for v in spec["values"]["figure"][0].values())


def test_the_cost_meter_is_stored_in_pieces_each_what_the_live_meter_shows():
    """4,096 slider combinations, stored as a few hundred pieces: any combination, joined from its pieces, is what
    the live meter shows for it."""
    import random

    meter = mh.variant_cost_meter()
    widget = sw.pack(meter.states())
    assert widget.reachable is None and widget.views < 200 and widget.state_count < 500
    assert [len(v) for v in widget.values["window_map"]] == [32] and [len(v) for v in widget.values["gqa"]] == [4]
    rng = random.Random(0)
    for _ in range(12):
        values = {c.name: rng.choice(c.options) for c in widget.controls}
        meter.set_values(*values.values())
        shown = widget.shown(values)
        assert shown["readout"] == meter.readout.value, values
        assert shown["gqa"].alt == meter._gqa_alt() and shown["window_map"].alt == meter._window_alt()
        assert f"Sliding window {values['window']}:" in shown["status"]


def test_a_widget_whose_piece_depends_on_more_than_it_says_is_refused():
    from _mha_helpers.widgets.states import Control, States, every_combination

    controls = [Control("a", "a", "slider", [1, 2], 1), Control("b", "b", "slider", [1, 2], 1)]
    states = States("liar", controls, [("text", "html")], [["a", "b"], ["text"]], every_combination(controls),
                    view=lambda v: {"text": [f"a={v['a']}", f" b={v['b']}"]}, restore=lambda: None,
                    parts={"text": [["a"], ["a"]]})  # the second part depends on b, not on a
    with pytest.raises(ValueError, match="depends only on"):
        sw.pack(states)


def test_the_notebooks_explorers_are_recognised_from_their_stored_output():
    output = {"data": {"text/plain": "HeadExplorer(compact, d_model=4, num_heads=2, head_dim=2, params=80, tokens=6, "
                                     "causal=False)", sw.WIDGET_VIEW: {"model_id": "x"}}}
    widget = sw.export_static_widget("mh.head_explorer(d_model=4, num_heads=2, compact=True)", output)
    assert widget is not None and len(widget.values["figure"][0]) == 3
    assert sw.export_static_widget("print(1)", {"data": {"text/plain": "1"}}) is None
    with pytest.raises(ValueError, match="re-execute the notebook"):  # the stored output came from other arguments
        sw.export_static_widget("mh.head_explorer(d_model=8, num_heads=2, compact=True)", output)
    with pytest.raises(ValueError, match="literal arguments"):
        sw.export_static_widget("mh.head_explorer(d_model=d, compact=True)", output)


def test_a_replay_is_made_again_from_the_earlier_cell_that_trained_it():
    """12's cell is ``mh.TrainingReplay(history)``: the site finds the earlier cell that made ``history`` with literal
    arguments, trains again (seeded: the same snapshots) and copies the replay, one state per snapshot."""
    earlier = ["%matplotlib inline\nimport mha_helpers as mh",
               "model, history = mh.train_induction_model(seed=0, steps=4, batch_size=8, d_model=16, num_heads=2, "
               "snapshot_every=2)", "history_1 = 3"]
    output = {"data": {"text/plain": "TrainingReplay(3 snapshots, steps 0..4)", sw.WIDGET_VIEW: {"model_id": "x"}}}
    widget = sw.export_static_widget("# NBVAL_IGNORE_OUTPUT\nmh.TrainingReplay(history)", output, earlier)
    assert widget.kind == "training_replay" and list(widget.values["figure"][0]) == ["step=0", "step=2", "step=4"]
    assert "training step 4" in widget.values["figure"][0]["step=4"].alt
    assert "train_induction_model(seed=0" in sw.widget_context("mh.TrainingReplay(history)", earlier)
    with pytest.raises(ValueError, match="cannot re-create 'history'"):  # rebound by something the site cannot make
        sw.export_static_widget("mh.TrainingReplay(history)", output, [*earlier, "history = load_it()"])
    with pytest.raises(ValueError, match="cannot re-create 'history'"):
        sw.export_static_widget("mh.TrainingReplay(history)", output)


def test_a_self_contained_widget_cell_is_copied_with_its_labels():
    source = ("d_model = 8\nheads = widgets.SelectionSlider(options=mh.valid_head_counts(d_model), value=2)\n"
              "split = widgets.Label()\n\ndef show(change=None):\n    split.value = f'{d_model // heads.value} each'\n\n"
              "heads.observe(show, names='value')\nshow()\nwidgets.VBox([heads, split])")
    output = {"data": {"text/plain": "VBox(children=(...))", sw.WIDGET_VIEW: {"model_id": "x"}}}
    widget = sw.export_static_widget(source, output)
    assert widget is not None and widget.kind == "widgets"
    assert [widget.shown({"c0": h})["o0"] for h in (1, 2, 4, 8)] == ["8 each", "4 each", "2 each", "1 each"]
    assert widget.shown({"c0": 4})["status"] == "2 each"
    # A cell that needs an earlier cell's variable is not copied (the page shows its saved view instead).
    assert sw.export_static_widget(source.replace("d_model = 8\n", ""), output) is None


def test_explorers_with_too_many_states_keep_every_head_count():
    """d_model = 64 would have 2 x 127 heads to enlarge: the copy enlarges head 0 only, every head count stays."""
    explorer = mh.head_explorer(d_model=64, num_heads=4)
    assert len(explorer.states().combinations) > sw.MAX_STATES
    states = explorer.states(max_states=sw.MAX_STATES)
    assert [c.name for c in states.controls] == ["heads", "causal"] and states.rows[0] == ["heads", "causal"]
    assert len(states.combinations) == 2 * len(mh.valid_head_counts(64)) <= sw.MAX_STATES


def test_the_notebooks_mask_editor_is_recognised_from_its_stored_output():
    import nbformat

    nb = nbformat.read(ROOT / "notebooks" / "10_attention_at_inference.ipynb", as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and "mh.mask_editor(" in c.source
             and any(sw.WIDGET_VIEW in o.get("data", {}) for o in c.outputs)]
    assert len(cells) == 1
    output = next(o for o in cells[0].outputs if "data" in o)
    widget = sw.export_static_widget(cells[0].source, output)
    assert widget is not None and widget.kind == "mask_editor" and widget.css_class == "mha-mask-editor"
    assert widget.initial_key == 'mask="causal, bottom-right"'
    assert 'mask="each query: itself and the key before"' in widget.values["grid"][0] and widget.views == 4
    blocked = widget.shown({"mask": "query 0 blocked everywhere"})
    assert "✗" in blocked["grid"] and "scope='row'" in blocked["grid"] and "fully masked rows: [0]" in blocked["status"]


class _Counter:
    """A stand-in for a new kind of widget: all it needs is a repr a cell stores and a ``states()``."""

    def __init__(self, n: int = 1) -> None:
        self.n = n

    def __repr__(self) -> str:
        return f"Counter(n={self.n})"

    def states(self, max_states=None):
        from _mha_helpers.widgets.states import Control, States

        control = Control("n", "tokens", "slider", [1, 2], self.n)
        return States("cost", [control], [("readout", "html")], [["n"], ["readout"]], [{"n": 1}, {"n": 2}],
                      view=lambda values: {"readout": f"{values['n'] ** 2} scores"}, restore=lambda: None)


def counter(n: int = 1) -> _Counter:
    return _Counter(n)


def test_new_kinds_of_widget_plug_in_with_states_and_one_line_of_the_registry(monkeypatch):
    output = {"data": {"text/plain": "Counter(n=2)", sw.WIDGET_VIEW: {"model_id": "x"}}}
    assert sw.export_static_widget("counter(n=2)", output) is None  # not in the registry: shown as saved
    monkeypatch.setitem(sw.KERNEL_FREE, "Counter(", counter)
    widget = sw.export_static_widget("counter(n=2)", output)
    assert widget.shown({"n": 2})["readout"] == "4 scores" and widget.initial_key == "n=2"


def test_bad_inputs_name_the_argument():
    with pytest.raises(TypeError, match="states must be what a widget's states"):
        sw.pack("not a widget's states")
    with pytest.raises(TypeError, match="source must be"):
        sw.export_static_widget(None, {})
    with pytest.raises(TypeError, match="output must be"):
        sw.export_static_widget("", None)
    with pytest.raises(TypeError, match="png must be"):
        sw.lossless_webp("x")
    with pytest.raises(ValueError, match="png must be"):
        sw.lossless_webp(b"GIF89a....")
    with pytest.raises(ValueError, match="kind must be"):
        sw.Control("x", "x", "knob", [1], 1)
    with pytest.raises(ValueError, match="value must be one of"):
        sw.Control("x", "x", "slider", [1, 2], 3)


# ---- figures in words, and what the build leaves out --------------------------------------------------------

ft = _site_module("figure_text")


def test_a_figure_is_described_from_the_code_that_drew_it():
    helpers = ft.helper_descriptions(mh)
    source = ("fig, axes = plt.subplots(1, 2)\n"
              "for ax, title in ((axes[0], 'RoPE: constant along diagonals'), (axes[1], f'{n_keys} keys')):\n"
              "    ax.set_title(title)\n    ax.set_xlabel('key position j')\n"
              "ax.plot([1], label='score')\nfig.suptitle('Two maps')\nplt.show()\n"
              "mh.plot_attention(w, tokens, title='after')\nplt.show()")
    first, second = ft.describe_figures(source, 2, helpers, earlier=["n_keys = 8"])
    assert first == ("\u201cTwo maps\u201d. 2 panels: \u201cRoPE: constant along diagonals\u201d; \u201c8 keys\u201d. "
                     "X axis: key position j. Legend: score.")
    assert second.startswith("A heat map with one row per query token") and "\u201cafter\u201d" in second
    # A helper the table does not know yet is described by its docstring's first sentence.
    namespace = type("Map", (), {"plot_new_thing": staticmethod(lambda: None)})
    namespace.plot_new_thing.__doc__ = "Draw the ``(L, S)`` thing as :func:`bars`. More text."
    assert ft.helper_descriptions(namespace)["plot_new_thing"] == "Draw the (L, S) thing as bars"
    assert ft.describe_figures("plt.imshow(x)", 1, helpers, context="The grid of every pair:") == [
        "The figure the text before it introduces: The grid of every pair:"]


def test_a_saved_control_is_its_value_and_a_visible_note_never_a_dead_control():
    saved = _site_module("saved_widgets")
    models = {"s": {"model_name": "IntSliderModel", "state": {"description": "step", "value": 30, "min": 0}},
              "c": {"model_name": "CheckboxModel", "state": {"description": "causal", "value": True}}}
    for model_id, value in (("s", "30"), ("c", "on")):
        markup = saved.render_saved_widget(model_id, models)
        assert "disabled" not in markup and "<input" not in markup and f": {value} <em>(" in markup
        assert "JupyterLab" in markup  # said on the page, not in a hover tooltip


def _build_module():
    import importlib.util

    sys.path.insert(0, str(ROOT / "site"))
    try:
        spec = importlib.util.spec_from_file_location("mha_site_build", ROOT / "site" / "build.py")
        build = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(build)
    finally:
        sys.path.remove(str(ROOT / "site"))
    return build


def test_the_static_twin_of_a_kernel_free_widget_is_left_out_and_figures_get_their_words(tmp_path):
    """A cell tagged ``static-twin`` copies the widget above it for readers without a kernel: the site, where the
    widget is alive, leaves it out. Every figure gets a text alternative; the cell's own ``alt`` wins."""
    import base64

    import nbformat

    build = _build_module()
    from matplotlib.figure import Figure

    from _mha_helpers.widgets.base import figure_png

    editor = mh.mask_editor(seq_len=3, key_len=6)
    png = base64.b64encode(figure_png(Figure(figsize=(1, 1)))).decode()
    nb = nbformat.v4.new_notebook()
    widget_cell = nbformat.v4.new_code_cell("mh.mask_editor(seq_len=3, key_len=6)", outputs=[
        nbformat.v4.new_output("execute_result", {"text/plain": repr(editor), sw.WIDGET_VIEW: {"model_id": "m"}})])
    twin_md = nbformat.v4.new_markdown_cell("The same, for readers without a kernel:")
    twin_code = nbformat.v4.new_code_cell("fig = mh.plot_mask_editor(editor)\nplt.show()", outputs=[
        nbformat.v4.new_output("display_data", {"image/png": png, "text/plain": "<Figure>"})])
    for cell in (twin_md, twin_code):
        cell.metadata["tags"] = ["static-twin"]
    figure = nbformat.v4.new_code_cell("ax.set_title('hello')", outputs=[
        nbformat.v4.new_output("display_data", {"image/png": png, "text/plain": "<Figure>"})])
    mine = nbformat.v4.new_code_cell("x", outputs=[nbformat.v4.new_output("display_data", {"image/png": png})])
    mine.metadata["alt"] = "what the author wrote"
    nb.cells = [widget_cell, twin_md, twin_code, figure, mine]
    copy, kernel_free = build.site_copy(nb, tmp_path, "99_test", use_cache=False)
    assert kernel_free == 1 and [c.source for c in copy.cells] == [widget_cell.source, figure.source, mine.source]
    assert copy.cells[1].outputs[0].metadata["mha_alt"] == "Panel: \u201chello\u201d."
    assert copy.cells[2].outputs[0].metadata["mha_alt"] == "what the author wrote"
    assert (tmp_path / copy.cells[1].outputs[0].metadata["filenames"]["image/png"]).is_file()
    assert len(nb.cells) == 5, "the stored notebook is not touched"


# ---- the built site in a browser ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built_site(tmp_path_factory):
    """The README's build command, into a temporary folder; returns (folder, seconds, build log, the notebooks).

    The notebooks are listed just before the build (the page checks follow that series order), so a notebook added
    while the tests run does not make the site look wrong.

    ``MHA_SITE_DIR=build/site`` tests a site already built there instead (for quick re-runs by hand)."""
    if os.environ.get("MHA_SITE_DIR"):
        return Path(os.environ["MHA_SITE_DIR"]).resolve(), 0.0, "", sorted((ROOT / "notebooks").glob(SERIES))
    installed = ROOT / "build" / "site-deps" / "node_modules" / "mathjax"
    if shutil.which("npm") is None and not installed.is_dir():
        pytest.fail("the site's build needs npm once, to fetch MathJax: install Node.js (Debian: apt-get install "
                    "nodejs npm)", pytrace=False)
    out = tmp_path_factory.mktemp("site") / "site"
    notebooks = sorted((ROOT / "notebooks").glob(SERIES))
    start = time.monotonic()
    run = subprocess.run([sys.executable, str(ROOT / "site" / "build.py"), "--out", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=900)
    seconds = time.monotonic() - start
    assert run.returncode == 0, f"site/build.py failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    print(run.stdout[-800:])
    return out, seconds, run.stdout, notebooks


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def server(built_site):
    out = built_site[0]
    handler = functools.partial(_Quiet, directory=str(out))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def browser(chromium):
    """The session's headless Chromium (tests/conftest.py); each page opens in a fresh context of its own."""
    return chromium


class Visit:
    """One page in a fresh context that records console errors, failed loads and every request, and blocks any
    request that would leave the site's origin."""

    def __init__(self, browser, origin: str, width: int = 1280) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": 900})
        self.page = self.context.new_page()
        self.origin, self.errors, self.foreign, self.requests = origin, [], [], []
        self.context.route("**/*", self._route)
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("requestfailed", lambda r: self.errors.append(f"failed: {r.url} {r.failure}"))
        self.page.on("response", lambda r: r.status >= 400 and self.errors.append(f"HTTP {r.status}: {r.url}"))

    def _route(self, route) -> None:
        url = route.request.url
        self.requests.append(url)
        same = url.startswith(self.origin) or (self.origin.startswith("file:") and url.startswith("file:"))
        if same or url.startswith("data:"):
            route.continue_()
        else:
            self.foreign.append(url)
            route.abort()

    def open(self, url: str) -> None:
        self.page.goto(url, wait_until="load")  # MathJax is a deferred script: it has started by now
        self.page.evaluate("async () => { if (window.MathJax && MathJax.startup) await MathJax.startup.promise; }")

    def close(self) -> None:
        self.context.close()


def _shot(locator, name: str, always: bool = False) -> None:
    if SCREENSHOTS or always:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        try:
            locator.screenshot(path=str(ARTIFACTS / name), timeout=20_000)
        except Exception:  # a missing screenshot must not hide the real result
            pass


def _pages(site: Path) -> list[str]:
    return [f"notebooks/{p.stem}.html" for p in NOTEBOOKS] + ["index.html", "readme.html", "teaching.html"]


_PAGE_FACTS = """() => {
  const md = [...document.querySelectorAll('.jp-RenderedMarkdown')];
  const text = md.map(m => { const c = m.cloneNode(true); c.querySelectorAll('pre, code, mjx-container')
      .forEach(x => x.remove()); return c.textContent; }).join('\\n');
  return {
    images: [...document.images].map(i => ({src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0})),
    math: document.querySelectorAll('mjx-container').length,
    mathErrors: document.querySelectorAll('mjx-merror, [data-mjx-error]').length,
    rawTex: (text.match(/\\$[^$\\n]*\\\\[a-zA-Z]+[^$\\n]*\\$/g) || []).slice(0, 3),
    details: [...document.querySelectorAll('.jp-RenderedMarkdown details')].map(d => d.open),
    links: [...document.querySelectorAll('a[href]')].map(a => ({href: a.href, rel: a.rel,
                                                              download: a.hasAttribute('download')})),
    ids: [...document.querySelectorAll('[id]')].map(e => e.id),
    widgets: document.querySelectorAll('.mha-static-widget').length,
    figures: [...document.querySelectorAll('main img')].map(i => ({src: i.getAttribute('src'), alt: i.alt})),
    disabled: [...document.querySelectorAll('input, select, button, textarea, [aria-disabled="true"]')]
      .filter(e => e.disabled || e.getAttribute('aria-disabled') === 'true').map(e => e.outerHTML.slice(0, 120)),
    positions: [...document.querySelectorAll('.mha-position')].map(e => e.textContent.trim()),
    twins: document.querySelectorAll('.celltag_static-twin').length,
  };
}"""

#: Alternative texts that say nothing about a figure: nbconvert's placeholder and generic phrases.
GENERIC_ALT = re.compile(r"^(no description has been provided for this image|figure|image|plot|chart|graph|"
                         r"figure of the widget's state|the widget at its starting state|)$", re.I)


def _markdown_facts(name: str) -> dict:
    """What the stored notebook's markdown asks for: math, folded solutions, diagrams."""
    import nbformat

    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    prose = re.sub(r"```.*?```|`[^`\n]*`", "", md, flags=re.S)
    return {"math": bool(re.search(r"\$\$.+?\$\$|\$[^$\n]+\$", prose, re.S)), "details": md.count("<details"),
            "diagrams": sorted(set(re.findall(r"\.\./images/([\w.-]+\.svg)", md)))}


@pytest.mark.parametrize("page_name", _pages(ROOT), ids=lambda p: Path(p).stem)
def test_every_page_loads_offline_with_images_math_and_links(browser, server, built_site, page_name):
    out, series = built_site[0], built_site[3]
    visit = Visit(browser, server)
    try:
        visit.open(server + page_name)
        facts = visit.page.evaluate(_PAGE_FACTS)
        _shot(visit.page.locator("main"), f"{Path(page_name).stem}.png")
        assert not visit.foreign, f"{page_name}: requests to other origins: {visit.foreign}"
        assert not visit.errors, f"{page_name}: " + "\n".join(visit.errors)
        broken = [i["src"] for i in facts["images"] if not i["ok"]]
        assert not broken, f"{page_name}: images that did not load: {broken}"
        assert facts["mathErrors"] == 0 and not facts["rawTex"], f"{page_name}: math not typeset: {facts['rawTex']}"
        if page_name.startswith("notebooks/"):
            source = _markdown_facts(Path(page_name).stem + ".ipynb")
            if source["math"]:
                assert facts["math"] > 0, f"{page_name}: the notebook has math but none was typeset"
            assert len(facts["details"]) == source["details"] and not any(facts["details"]), (
                f"{page_name}: folded solutions {facts['details']} (expected {source['details']}, all closed)")
            loaded = {Path(urlparse(i["src"]).path).name for i in facts["images"] if i["ok"]}
            assert set(source["diagrams"]) <= loaded, f"{page_name}: diagrams missing: {source['diagrams']}"
            index = [p.stem for p in series].index(Path(page_name).stem)
            rel = {r: {Path(urlparse(link["href"]).path).stem for link in facts["links"] if r in link["rel"]}
                   for r in ("prev", "next")}
            assert rel["prev"] == ({series[index - 1].stem} if index else set()), f"{page_name}: prev {rel}"
            assert rel["next"] == ({series[index + 1].stem} if index + 1 < len(series) else set())
            downloads = [link["href"] for link in facts["links"] if link["download"]]
            assert downloads and all(d.endswith(Path(page_name).stem + ".ipynb") for d in downloads)
            number, first, last = Path(page_name).stem[:2], series[0].stem[:2], series[-1].stem[:2]
            assert facts["positions"] == [f"notebook {number} of {first}\u2013{last}"] * 2, facts["positions"]
            vague = [f for f in facts["figures"] if GENERIC_ALT.match(f["alt"].strip()) or len(f["alt"]) < 25]
            assert not vague, f"{page_name}: figures without a real description: {vague}"
            assert facts["twins"] == 0, f"{page_name}: a static twin of a kernel-free widget is still shown"
        assert not facts["disabled"], f"{page_name}: controls that do nothing: {facts['disabled']}"
        _check_links(visit, server, out, page_name, facts)
    except Exception:  # (not a skip)
        _shot(visit.page.locator("body"), f"{Path(page_name).stem}-failure.png", always=True)
        raise
    finally:
        visit.close()


@functools.cache
def _ids_of(path: Path) -> frozenset[str]:
    found = re.findall(r"\bid=\"([^\"]*)\"|\bid='([^']*)'", path.read_text(errors="replace"))
    return frozenset(a or b for a, b in found)


def _check_links(visit: Visit, server: str, out: Path, page_name: str, facts: dict) -> None:
    """Every link to this site resolves to a file of the build, and its #fragment (if any) to an element there."""
    bad = []
    for link in facts["links"]:
        url, fragment = urldefrag(link["href"])
        if not url.startswith(server):
            if urlparse(url).scheme in ("http", "https"):
                continue  # a link to another site is a navigation the reader chooses, not a request of the page
            bad.append(link["href"])
            continue
        target = out / unquote(urlparse(url).path).lstrip("/")
        if not target.is_file():
            bad.append(f"{link['href']} (no such file)")
        elif fragment and target.suffix == ".html" and not {fragment, unquote(fragment)} & _ids_of(target):
            # (a browser looks for the fragment as written, then percent-decoded: nbconvert's ids are written encoded)
            bad.append(f"{link['href']} (no element with id {unquote(fragment)!r})")
        elif target.suffix == ".ipynb":
            json.loads(target.read_text())  # the download is a real notebook
    assert not bad, f"{page_name}: links that do not resolve: {bad}"


def _axe_source() -> str:
    """axe-core, as pinned in site/package.json and installed by the build's ``npm ci`` (never fetched by a page)."""
    path = ROOT / "build" / "site-deps" / "node_modules" / "axe-core" / "axe.min.js"
    assert path.is_file(), "axe-core is missing: site/build.py's npm ci installs it into build/site-deps"
    return path.read_text()


_AXE_RUN = """async (context) => {
  const result = await axe.run(context || document, {resultTypes: ['violations'], runOnly: {type: 'tag',
    values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice']}});
  return result.violations.map(v => ({id: v.id, impact: v.impact,
    nodes: v.nodes.slice(0, 3).map(n => n.html.slice(0, 160) + ' :: ' + (n.failureSummary || '').slice(0, 240)),
    count: v.nodes.length}));
}"""


def _axe(visit: Visit, context: str | None = None) -> list[dict]:
    """The critical and serious violations axe-core finds on the page (or inside the ``context`` selector)."""
    if not visit.page.evaluate("() => Boolean(window.axe)"):
        visit.page.add_script_tag(content=_axe_source())  # inline: no request leaves the site
    return [v for v in visit.page.evaluate(_AXE_RUN, context) if v["impact"] in ("critical", "serious")]


@pytest.mark.parametrize("width", [1366, 390], ids=["laptop", "phone"])
@pytest.mark.parametrize("page_name", _pages(ROOT), ids=lambda p: Path(p).stem)
def test_axe_finds_no_critical_or_serious_violation(browser, server, page_name, width):
    """axe-core (WCAG 2.0-2.2 A and AA, and best practice) on every page, on a laptop and a phone, after MathJax
    and the widgets have drawn: 0 critical and 0 serious violations."""
    visit = Visit(browser, server, width=width)
    try:
        visit.open(server + page_name)
        visit.page.wait_for_function("() => document.documentElement.dataset.mhaScrollChecked === 'true'")
        bad = _axe(visit)
        assert not bad, f"{page_name} at {width} px: " + json.dumps(bad, indent=1, ensure_ascii=False)
    finally:
        visit.close()


_CLIPPED = """() => {
  // A code box whose text is wider than the box must let it scroll (nbconvert's own style hides it); nothing may
  // make the whole page wider than the screen.
  const boxes = [...document.querySelectorAll('.jp-InputArea-editor')];
  const clipped = boxes.filter(e => {
    const x = getComputedStyle(e).overflowX;
    return e.scrollWidth > e.clientWidth + 1 && !(x === 'auto' || x === 'scroll');
  }).map(e => e.textContent.trim().slice(0, 60));
  const outside = boxes.filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
    .map(e => e.textContent.trim().slice(0, 60));
  const scrollers = boxes.filter(e => e.scrollWidth > e.clientWidth + 1);
  return {boxes: boxes.length, clipped, outside, scrollers: scrollers.length,
          unreachable: scrollers.filter(e => e.tabIndex !== 0 || !e.getAttribute('aria-label')).length,
          page: document.documentElement.scrollWidth - document.documentElement.clientWidth};
}"""


@pytest.mark.parametrize("width", [390, 1024])
@pytest.mark.parametrize("stem", [p.stem for p in NOTEBOOKS])
def test_no_code_is_cut_off_on_a_phone_or_a_tablet(browser, server, stem, width):
    """WCAG reflow: every code cell shows all its text, scrolling sideways in its own box when it is wider (and that
    box is a named Tab stop, so that the keyboard scrolls it); the page itself is never wider than the screen."""
    visit = Visit(browser, server, width=width)
    try:
        visit.open(f"{server}notebooks/{stem}.html")
        visit.page.wait_for_function("() => document.documentElement.dataset.mhaScrollChecked === 'true'")
        found = visit.page.evaluate(_CLIPPED)
        assert found["boxes"] > 0
        assert not found["clipped"], f"{stem} at {width} px: code cut off: {found['clipped']}"
        assert not found["outside"], f"{stem} at {width} px: code beyond the screen: {found['outside']}"
        assert found["page"] <= 1, f"{stem} at {width} px: the page is {found['page']} px wider than the screen"
        assert found["unreachable"] == 0, f"{stem}: {found['unreachable']} scrolling code boxes not reachable by Tab"
    finally:
        visit.close()


_MOVE = """async ([root, name, step]) => {
  // One move, as a reader's: the control's value changes, it fires its event, the widget swaps its outputs.
  // Returns what the widget showed before and after, and the milliseconds until the new figure was painted.
  const widget = document.querySelector(root);
  const spec = JSON.parse(widget.querySelector('script.mha-static-widget-spec').textContent);
  const control = spec.controls.find(c => c.name === name);
  const input = widget.querySelector(`[data-control="${name}"]`);
  const snap = () => ({state: widget.dataset.state, slots: spec.slots.map(s => {
      const e = s.type === 'status' ? widget.querySelector('[aria-live="polite"]')
                                    : widget.querySelector('.mha-sw-' + s.name);
      return s.type === 'image' ? e.getAttribute('src') : e.textContent; }),
    readout: (widget.querySelector('.mha-sw-readout') || {}).textContent || '',
    alts: [...widget.querySelectorAll('img.mha-sw-figure')].map(i => i.alt),
    said: (widget.querySelector('[aria-live="polite"]') || {}).textContent || '',
    value: (widget.querySelector(`[data-control="${name}"] ~ .mha-sw-value`) || {}).textContent || ''});
  const before = snap();
  const t0 = performance.now();
  if (control.kind === 'checkbox') { input.checked = !input.checked; } else { input.value = String(step); }
  input.dispatchEvent(new Event(control.kind === 'slider' ? 'input' : 'change', {bubbles: true}));
  await Promise.all([...widget.querySelectorAll('img.mha-sw-figure')].map(i => i.decode()));
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  const ms = performance.now() - t0;
  return {before, after: snap(), ms,
          natural: Math.min(...[...widget.querySelectorAll('img.mha-sw-figure')].map(i => i.naturalWidth), 1)};
}"""


def _kernel_free_widgets(path: Path) -> int:
    """How many of a notebook's stored widget views the site makes kernel-free: the widgets of KERNEL_FREE (known by
    their stored repr) and self-contained boxes of plain ipywidgets (00's split slider)."""
    import nbformat

    count = 0
    for cell in nbformat.read(path, as_version=4).cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            data = output.get("data", {})
            text = "".join(data.get("text/plain", ""))
            if sw.WIDGET_VIEW in data and text.startswith((*sw.KERNEL_FREE, "VBox(", "HBox(")):
                count += 1
    return count


#: The notebooks with kernel-free widgets on their page, and how many (every other widget is a progress bar).
KERNEL_FREE_PAGES = {p.stem: n for p in NOTEBOOKS if (n := _kernel_free_widgets(p))}


def _moves(spec: dict) -> list[tuple[str, int]]:
    """Every value of every control, and back: sliders there and back again, each option of a list, boxes on/off."""
    moves = []
    for c in spec["controls"]:
        start = c["options"].index(c["value"])
        others = [i for i in range(len(c["options"])) if i != start]
        if c["kind"] == "slider":
            moves += [(c["name"], i) for i in [*others, start, *reversed(others), start]]
        elif c["kind"] == "select":  # the options the widget offers with the other controls as they start
            parts = spec["initial"].split("|")
            at = [p.split("=", 1)[0] for p in parts].index(c["name"])
            offered = [i for i in others if spec["reachable"] is None
                       or "|".join(parts[:at] + [f"{c['name']}={c['keys'][i]}"] + parts[at + 1:]) in spec["reachable"]]
            moves += [(c["name"], i) for i in [*offered, start]]
        else:
            moves += [(c["name"], -1), (c["name"], -1)]  # toggled on, then off again
    return moves


@pytest.mark.parametrize("stem", sorted(KERNEL_FREE_PAGES))
def test_kernel_free_widgets_redraw_at_every_value(browser, server, stem):
    """Every slider, list and check box of every kernel-free widget, moved to every value: the page around it
    changes (figure, read-out, what a screen reader hears), each figure keeps a real description, the median move
    is painted within 100 ms, the arrow keys move a slider, and axe finds nothing serious in the moved widget."""
    visit = Visit(browser, server)
    try:
        visit.open(f"{server}notebooks/{stem}.html")
        widgets = visit.page.locator(".mha-static-widget")
        assert widgets.count() == KERNEL_FREE_PAGES[stem], f"{stem}: a widget is not kernel-free on the site"
        visit.page.wait_for_function("() => [...document.querySelectorAll('.mha-static-widget')]"
                                     ".every(w => w.dataset.ready === 'true')", timeout=10_000)
        for i in range(widgets.count()):
            widget = widgets.nth(i)
            root = f"#{widget.get_attribute('id')}"
            spec = json.loads(widget.locator("script.mha-static-widget-spec").text_content())
            widget.scroll_into_view_if_needed()
            if any(s["type"] == "image" for s in spec["slots"]):
                # As a reader scrolling to it: by the first move, its figures are fetched and decoded.
                visit.page.wait_for_function(f"() => {{ const d = document.querySelector('{root}').dataset; "
                                             "return d.preloaded > 0 && d.decoded === d.preloaded; }",
                                             timeout=30_000)
            _shot(widget, f"{stem}-widget{i}-start.png")
            times = []
            for name, step in _moves(spec):
                moved = visit.page.evaluate(_MOVE, [root, name, step])
                before, after = moved["before"], moved["after"]
                what = f"{stem} widget {i} ({spec['kind']}): {name} -> {step}"
                assert after["state"] != before["state"], f"{what}: the state did not change"
                assert after["slots"] != before["slots"], f"{what}: nothing on screen changed"
                assert after["said"].strip(), f"{what}: a screen reader hears nothing of the change"
                vague = [a for a in after["alts"] if GENERIC_ALT.match(a.strip()) or len(a) < 25]
                assert not vague, f"{what}: figures without a real description: {vague}"
                control = next(c for c in spec["controls"] if c["name"] == name)
                if control["kind"] == "slider":
                    assert after["value"] == str(control["options"][step]), f"{what}: read-out {after['value']}"
                if spec["kind"] == "head_explorer" and name == "heads":
                    heads = control["options"][step]
                    assert after["slots"][1] != before["slots"][1] and moved["natural"] > 0, f"{what}: same figure"
                    d_model = int(re.search(r"d_model (\d+)", after["readout"]).group(1))
                    assert f"head_dim = {d_model // heads}" in after["readout"], f"{what}: {after['readout']}"
                    assert f"head_dim = {d_model // heads}" not in before["readout"] or heads == 1
                    if step == len(control["options"]) - 1:
                        _shot(widget, f"{stem}-widget{i}-most-heads.png")
                times.append(moved["ms"])
            if any(c["kind"] == "slider" for c in spec["controls"]):
                _keyboard_moves_the_slider(visit, widget, root, spec)
            bad = _axe(visit, root)  # the widget as the moves left it: other figures, tables and colours
            assert not bad, f"{stem} widget {i}: " + json.dumps(bad, indent=1, ensure_ascii=False)
            RESPONSES[f"{stem} widget {i} ({spec['kind']})"] = times
            median = statistics.median(times)
            print(f"{stem} widget {i} ({spec['kind']}): {len(times)} moves, response median {median:.1f} ms, "
                  f"max {max(times):.1f} ms")
            assert median <= MEDIAN_LIMIT_MS, f"{stem}: median response {median:.1f} ms > {MEDIAN_LIMIT_MS} ms"
        assert not visit.foreign, f"{stem}: requests to other origins: {visit.foreign}"
        assert not any("/api/" in url for url in visit.requests), "a request went to a kernel API"
        assert not visit.errors, f"{stem}: " + "\n".join(visit.errors)
    except Exception:  # (not a skip)
        _shot(visit.page.locator("body"), f"{stem}-widgets-failure.png", always=True)
        raise
    finally:
        visit.close()


def _keyboard_moves_the_slider(visit: Visit, widget, root: str, spec: dict) -> None:
    """What a reader does (and tests/browser/test_browser.py does in JupyterLab): focus the slider, press Home, then →."""
    slider = next(c for c in spec["controls"] if c["kind"] == "slider")
    handle = widget.locator(f"[data-control='{slider['name']}']")
    handle.focus()
    visit.page.keyboard.press("Home")
    before = visit.page.evaluate(f"() => document.querySelector('{root}').dataset.state")
    visit.page.keyboard.press("ArrowRight")
    visit.page.wait_for_function(f"() => document.querySelector('{root}').dataset.state !== {json.dumps(before)}",
                                 timeout=5_000)
    value = widget.locator(f"[data-control='{slider['name']}'] ~ .mha-sw-value").text_content()
    assert value == str(slider["options"][1]), f"the arrow key moved the slider to {value}"


def test_pages_work_from_disk(browser, built_site):
    """Opened as file:// (a USB stick): math is typeset and the explorer's slider still redraws."""
    out = built_site[0]
    visit = Visit(browser, "file://")
    try:
        visit.open((out / "notebooks" / "02_scaled_dot_product_attention.html").as_uri())
        assert visit.page.evaluate("() => document.querySelectorAll('mjx-container').length") > 0
        visit.open((out / "notebooks" / "06_exploring_heads.html").as_uri())
        visit.page.wait_for_function("() => document.querySelector('.mha-static-widget').dataset.ready === 'true'")
        root = f"#{visit.page.locator('.mha-static-widget').first.get_attribute('id')}"
        moved = visit.page.evaluate(_MOVE, [root, "heads", 0])
        assert moved["after"]["slots"][1] != moved["before"]["slots"][1] and "head_dim = 16" in moved["after"]["readout"]
        assert not visit.errors, "\n".join(visit.errors)
    finally:
        visit.close()


def test_site_size_and_build_time(built_site):
    """Sized for a school connection: no page (its HTML and its widget figures) near tens of MB."""
    out, seconds, log, series = built_site
    pages = sorted(out.rglob("*.html"), key=lambda p: p.stat().st_size, reverse=True)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    weight = {p: p.stat().st_size + sum(f.stat().st_size for folder in ("widgets", "figures")
                                        for f in (p.parent / folder / p.stem).glob("*")) for p in pages}
    heaviest = max(weight, key=weight.get)
    print(f"site: {total / 1e6:.1f} MB, {len(pages)} pages, heaviest {heaviest.relative_to(out)} "
          f"{weight[heaviest] / 1e6:.2f} MB, built in {seconds:.0f} s; responses: "
          + ", ".join(f"{k} median {statistics.median(v):.1f} ms" for k, v in RESPONSES.items()))
    assert sorted(p.stem for p in (out / "notebooks").glob("[0-9][0-9]_*.html")) == [p.stem for p in series]
    assert weight[heaviest] < 5e6, f"{heaviest.name} weighs {weight[heaviest] / 1e6:.1f} MB"
    assert total < 40e6
    assert not any("widget-state+json" in p.read_text() for p in pages), "saved widget state left in a page"


def test_the_build_refuses_pages_that_would_fetch_from_another_origin(tmp_path):
    """The build's own offline check (it stops the build): http(s) and //host fetches are caught, links are not."""
    build = _build_module()
    (tmp_path / "ok.html").write_text("<script src='assets/x.js'></script><img src='data:image/png;base64,AA'>"
                                      "<a href='https://arxiv.org/abs/1706.03762'>a paper</a>")
    assert build.check_offline(tmp_path) == []
    (tmp_path / "bad.html").write_text('<script src="https://cdn.example/mathjax.js"></script>'
                                       "<link rel='stylesheet' href='//fonts.example/css'>")
    assert len(build.check_offline(tmp_path)) == 2
    assert build.github_slug("6. Proof: the same as PyTorch's `nn.Foo`", {}) == "6-proof-the-same-as-pytorchs-nnfoo"
