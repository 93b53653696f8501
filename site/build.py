"""Build the series as a static web site: ``.venv/bin/python site/build.py`` -> ``build/site/index.html``.

From the stored, executed notebooks (nothing is re-executed): every ``notebooks/NN_*.ipynb`` becomes
``build/site/notebooks/NN_*.html`` in series order, with previous/next links, a download link and the command that
runs it locally; ``index.html`` is the README's curriculum table; ``readme.html`` and ``teaching.html`` render the
two guides. Figures, diagrams (``images/``), math (MathJax 3 from npm, served by the site itself) and folded
solutions appear as in JupyterLab. No page asks another origin for anything, so the folder works from any static
host, a USB stick or straight from disk (file://).

Widgets: each head-count slider (``mh.head_explorer`` in 04 and 06), 10's mask editor and the split slider of 00 are
made kernel-free by ``site/widget_export.py``, which drives the live widget through every state it describes
(its ``states()``) at build time; the page's ``assets/static_widgets.js`` swaps the saved states. Other widgets
(finished progress bars) are drawn from their saved state (``site/saved_widgets.py``). Exported states are cached in
``build/site-cache/`` (keyed by the cell, its stored output, the helper code and the export code), so a second build
takes seconds.

Needs npm once, for MathJax: the build runs ``npm ci`` on ``site/package.json``/``package-lock.json`` into
``build/site-deps/`` (skipped when that is already installed). Options: ``--out DIR``, ``--no-cache``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import json
import pickle
import re
import shutil
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import nbformat
from saved_widgets import render_saved_widget, saved_states

ROOT = Path(__file__).resolve().parent.parent
SITE_SRC = ROOT / "site"
sys.path.insert(0, str(ROOT))  # the map and its package, also when the editable install is missing

import figure_text  # noqa: E402
from widget_export import WIDGET_VIEW, export_static_widget, widget_context  # noqa: E402 - it imports the map

import mha_helpers as mh  # noqa: E402

DEFAULT_OUT = ROOT / "build" / "site"
DEPS = ROOT / "build" / "site-deps"
CACHE = ROOT / "build" / "site-cache"
SERIES_GLOB = "[0-9][0-9]_*.ipynb"
#: Markdown files rendered as pages, and the page each becomes.
GUIDES = {"README.md": "readme.html", "TEACHING.md": "teaching.html"}
#: What the site copies from MathJax 3 (its SVG output needs no font files) and the TeX extensions it may autoload.
MATHJAX_FILES = ["es5/tex-svg.js", "es5/input/tex/extensions", "LICENSE"]
#: The tag of a cell that copies the widget above it for readers without a kernel (GitHub, nbviewer, print): the
#: site leaves it out when that widget is kernel-free on the page, so nothing appears twice.
STATIC_TWIN_TAG = "static-twin"
#: The text nbconvert gives an image without one; no figure of the site may keep it.
PLACEHOLDER_ALT = "No description has been provided for this image"
#: Attributes that make the browser fetch something; none may point to another origin.
FETCHING = re.compile(r"<(script|link|img|iframe|source|video|audio|embed|object)\b[^>]*?\b(src|href|data|srcset)="
                      r"[\"']([^\"']*)[\"']", re.I)


def log(message: str) -> None:
    print(f"[site] {message}", flush=True)


# ---- assets ---------------------------------------------------------------------------------------------------


def install_npm_assets() -> Path:
    """``npm ci`` the pinned browser assets into build/site-deps (once); returns the MathJax folder."""
    lock = (SITE_SRC / "package-lock.json").read_text()
    installed = DEPS / "package-lock.json"
    mathjax = DEPS / "node_modules" / "mathjax"
    if installed.exists() and installed.read_text() == lock and (mathjax / "es5" / "tex-svg.js").exists():
        return mathjax
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("site/build.py needs npm (Node.js) once, to fetch MathJax: install Node.js, then run this again.")
    DEPS.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(SITE_SRC / name, DEPS / name)
    log("npm ci (MathJax, pinned in site/package-lock.json) ...")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"], cwd=DEPS,
                   check=True)
    return mathjax


def lab_css() -> str:
    """JupyterLab's look as nbconvert's ``lab`` template ships it (written once, instead of inlined per page)."""
    from nbconvert.exporters import HTMLExporter

    for base in HTMLExporter(template_name="lab").template_paths:
        static = Path(base) / "static"
        if (static / "index.css").exists() and (static / "theme-light.css").exists():
            return (static / "index.css").read_text() + "\n" + (static / "theme-light.css").read_text()
    raise FileNotFoundError("nbconvert's lab template (static/index.css) was not found")


def copy_assets(out: Path, mathjax: Path) -> None:
    assets = out / "assets"
    assets.mkdir(parents=True)
    for rel in MATHJAX_FILES:
        src, dest = mathjax / rel, assets / "mathjax" / Path(rel).relative_to("es5" if rel.startswith("es5") else ".")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dest)
        else:
            shutil.copy2(src, dest)
    (assets / "lab.css").write_text(lab_css())
    for name in ("site.css", "static_widgets.js", "site.js", "favicon.svg"):
        shutil.copy2(SITE_SRC / "static" / name, assets / name)
    shutil.copytree(ROOT / "images", out / "images")


# ---- the series -----------------------------------------------------------------------------------------------


def series() -> list[Path]:
    """Every notebook of the series, in order: whatever ``notebooks/NN_*.ipynb`` exists now."""
    return sorted((ROOT / "notebooks").glob(SERIES_GLOB))


def notebook_title(nb, path: Path) -> str:
    """``06 · Exploring heads``: the number and the notebook's first heading (without its own number prefix)."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            match = re.search(r"^#\s+(.+)$", cell.source, re.M)
            if match:
                heading = re.sub(r"^(notebook\s+)?\d+\s*[·:.\-–—]\s*", "", match.group(1).strip(), flags=re.I)
                return f"{path.name[:2]} · {heading}"
    return path.stem.replace("_", " ")


def curriculum_rows(readme: str) -> dict[str, str]:
    """The README's curriculum table: ``{notebook file name: its table row}``."""
    rows = {}
    for line in readme.splitlines():
        match = re.match(r"\|\s*\[[^\]]+\]\(notebooks/([0-9][0-9]_[^)]+\.ipynb)\)", line)
        if match:
            rows[match.group(1)] = line
    return rows


def readme_section(readme: str, heading: str) -> str:
    match = re.search(rf"^## {re.escape(heading)}\s*$(.*?)(?=^## |\Z)", readme, re.M | re.S)
    return match.group(1).strip() if match else ""


def index_markdown(readme: str, titles: dict[str, str]) -> str:
    """The home page: the README's title and opening, the curriculum table (every notebook that exists, in
    order; one the README does not list yet gets a row from its own title), and the quick start."""
    title = re.search(r"^# (.+)$", readme, re.M).group(1)
    opening = readme.split("\n## ", 1)[0].split("\n", 1)[1].strip()
    rows = curriculum_rows(readme)
    table = ["| notebook | the idea | minutes |", "|---|---|---|"]
    for name, nb_title in titles.items():
        table.append(rows.get(name) or f"| [{nb_title}](notebooks/{name}) | (new: see the notebook) | |")
    curriculum = readme_section(readme, "The curriculum")
    after_table = "\n".join(line for line in curriculum.splitlines() if not line.startswith("|")).strip()
    quick = readme_section(readme, "Quick start")
    return "\n\n".join([
        f"# {title}", opening,
        "**Read it here, no install needed:** every notebook is a page of this site, with its stored outputs, "
        "figures and diagrams, and its sliders and widgets work in the browser (their states were drawn when the "
        "site was built). To change code and run cells, run the series on your machine (below).",
        "## The curriculum", "\n".join(table), after_table,
        "## Run it on your machine", quick,
        "More: [the full README](README.md) (for maintainers, benchmarks, troubleshooting) and "
        "[the teacher's guide](TEACHING.md).",
    ])


# ---- widgets --------------------------------------------------------------------------------------------------


def _code_fingerprint() -> str:
    import matplotlib
    import PIL
    import torch

    digest = hashlib.sha256(f"{torch.__version__} {matplotlib.__version__} {PIL.__version__}".encode())
    for path in [*sorted((ROOT / "_mha_helpers").rglob("*.py")), SITE_SRC / "widget_export.py",
                 SITE_SRC / "figure_text.py"]:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def cached_export(source: str, output: dict, earlier: list[str], use_cache: bool):
    """:func:`export_static_widget`, remembered in build/site-cache/ (the key covers the cell, the earlier cells'
    statements it takes names from, the helper code and the export code)."""
    plain = output.get("data", {}).get("text/plain", "")
    context = widget_context(source, earlier)
    key = hashlib.sha256(f"{_code_fingerprint()}\0{source}\0{context}\0{''.join(plain)}".encode()).hexdigest()[:24]
    path = CACHE / f"{key}.pickle"
    if use_cache and path.exists():
        return pickle.loads(path.read_bytes())
    start = time.perf_counter()
    widget = export_static_widget(source, output, earlier)
    if widget is not None:
        log(f"  {widget.kind}: {widget.state_count} pieces from {widget.views} views, drawn in "
            f"{time.perf_counter() - start:.1f} s")
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(widget))
    return widget


def widget_html(widget, page_dir: Path, stem: str, number: int) -> str:
    """The markup of one kernel-free widget: its spec as JSON and, for a reader without scripts, its first state."""
    folder = page_dir / "widgets" / stem
    folder.mkdir(parents=True, exist_ok=True)

    def image_url(data: bytes) -> str:
        suffix = "webp" if data[:4] == b"RIFF" else "png"
        name = f"{hashlib.sha256(data).hexdigest()[:16]}.{suffix}"
        (folder / name).write_bytes(data)
        return f"widgets/{stem}/{name}"

    spec = widget.spec(image_url)
    first = widget.shown({c.name: c.value for c in widget.controls})
    fallback = "".join(
        f"<img src='{image_url(first[n].data)}' alt='{html.escape(first[n].alt, quote=True)}'>" if kind == "image"
        else f"<div>{first[n]}</div>" for n, kind in widget.slots if kind != "status")
    data = json.dumps(spec, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
    return (f"<div class='mha-static-widget {widget.css_class}' data-kind='{widget.kind}' id='mha-widget-{number}'>"
            f"<script type='application/json' class='mha-static-widget-spec'>{data}</script>"
            f"<div class='mha-sw-fallback'>{fallback}</div></div>")


def figure_alts(cell, outputs: list[dict], earlier: list[str], context: str, helpers: dict) -> list[str]:
    """One text alternative per figure of a cell: the cell's own ``alt`` metadata (a string, or a list with one per
    figure) if its author wrote one, else described from the code that drew it (``site/figure_text.py``)."""
    given = cell.metadata.get("alt")
    if isinstance(given, str):
        given = [given]
    if isinstance(given, list) and len(given) == len(outputs) and all(isinstance(g, str) and g for g in given):
        return given
    return figure_text.describe_figures(cell.source, len(outputs), helpers, earlier, context)


def save_figures(cell, page_dir: Path, stem: str, earlier: list[str], context: str, helpers: dict) -> None:
    """Write each PNG of ``cell`` as a file beside the page (a reader can open it full size, and the page is a
    third lighter than with base64), and give it its text alternative (``metadata.mha_alt``)."""
    outputs = [o for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    if not outputs:
        return
    alts = figure_alts(cell, outputs, earlier, context, helpers)
    folder = page_dir / "figures" / stem
    folder.mkdir(parents=True, exist_ok=True)
    for output, alt in zip(outputs, alts, strict=True):
        data = base64.b64decode(output["data"]["image/png"])
        name = f"{hashlib.sha256(data).hexdigest()[:16]}.png"
        (folder / name).write_bytes(data)
        output.setdefault("metadata", {})
        output["metadata"]["filenames"] = {"image/png": f"figures/{stem}/{name}"}
        output["metadata"]["mha_alt"] = alt or PLACEHOLDER_ALT  # (the site's tests refuse the placeholder)


def site_copy(nb, page_dir: Path, stem: str, use_cache: bool) -> tuple[object, int]:
    """The notebook as the site shows it: widget views replaced by kernel-free copies or their saved views, the
    static twin of a kernel-free widget left out, figures saved as files with their text alternatives, the saved
    widget state dropped (the stored notebook itself is not touched). Returns it and the kernel-free count."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))  # a deep copy
    models = saved_states(nb)
    nb.metadata.pop("widgets", None)
    kernel_free, last_widget_free, earlier, context, kept = 0, False, [], "", []
    helpers = figure_text.helper_descriptions(mh)
    for cell in nb.cells:
        if STATIC_TWIN_TAG in cell.metadata.get("tags", []) and last_widget_free:
            continue  # the widget above is alive on the page: its static copy would show the same twice
        kept.append(cell)
        if cell.cell_type != "code":
            context = cell.source
            continue
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW not in data:
                continue
            widget = cached_export(cell.source, output, earlier, use_cache)
            last_widget_free = widget is not None
            if widget is not None:
                kernel_free += 1
                markup = widget_html(widget, page_dir, stem, kernel_free)
            else:
                markup = render_saved_widget(data[WIDGET_VIEW].get("model_id", ""), models)
            plain = data.get("text/plain", "")
            output["data"] = {"text/html": markup} if markup else {"text/plain": plain}
        save_figures(cell, page_dir, stem, earlier, context, helpers)
        earlier.append(cell.source)
    nb.cells = kept
    return nb, kernel_free


# ---- pages ----------------------------------------------------------------------------------------------------


def github_slug(text: str, seen: dict[str, int]) -> str:
    """The anchor GitHub gives a heading (``## The curriculum`` -> ``the-curriculum``), so README links work."""
    text = unicodedata.normalize("NFKC", html.unescape(re.sub(r"<[^>]+>", "", text))).strip().lower()
    slug = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
    count = seen.get(slug, 0)
    seen[slug] = count + 1
    return slug if count == 0 else f"{slug}-{count}"


def add_github_anchors(page: str) -> str:
    """Keep nbconvert's heading ids (JupyterLab's style, ``The-curriculum``) and add GitHub's beside them."""
    seen: dict[str, int] = {}

    def anchor(match: re.Match) -> str:
        slug = github_slug(match.group(3), seen)
        extra = f"<a class='mha-slug' id='{slug}'></a>" if slug != match.group(2) else ""
        return f"{match.group(1)}{extra}{match.group(3)}"

    return re.sub(r"(<h[1-6] id=\"([^\"]*)\">)(.*?)(?=<a class=\"anchor-link\")", anchor, page, flags=re.S)


class LinkMap:
    """Relative links as written in the repository, made to work on the site, whose layout mirrors it:
    a series notebook ``X.ipynb`` -> its page ``X.html`` (the download links keep the ``.ipynb``), a guide
    ``README.md`` -> ``readme.html``; any other file of the repository is copied to the same path, and a folder
    gets a small page listing its files."""

    def __init__(self, out: Path, notebooks: list[Path]) -> None:
        self.out, self.notebooks = out, {p.relative_to(ROOT).as_posix() for p in notebooks}
        #: The pages the build itself writes: links to them are left as they are.
        self.pages = {f"notebooks/{p.stem}.html" for p in notebooks} | {"index.html", *GUIDES.values()}
        self.missing: list[str] = []

    def rewrite(self, page: str, source_dir: str) -> str:
        def link(match: re.Match) -> str:
            tag, url = match.group(0), match.group(1)
            if re.search(r"\sdownload\b", tag) or re.match(r"^([a-z][a-z0-9+.-]*:|#|//)", url, re.I):
                return tag
            path, _, fragment = url.partition("#")
            new = self.target(path, source_dir) + (f"#{fragment}" if fragment else "")
            return tag.replace(f'href="{url}"', f'href="{new}"', 1)

        return re.sub(r"<a\b[^>]*?\bhref=\"([^\"]*)\"[^>]*>", link, page)

    def target(self, path: str, source_dir: str) -> str:
        if not path or (self.out / source_dir / path).is_file():  # (a figure the build itself wrote)
            return path
        repo = (Path(source_dir) / path).as_posix()
        resolved = (ROOT / repo).resolve()
        try:
            rel = resolved.relative_to(ROOT).as_posix()
        except ValueError:
            self.missing.append(path)
            return path
        if rel in self.pages:
            return path
        if rel in self.notebooks:
            return re.sub(r"\.ipynb$", ".html", path)
        if rel in GUIDES:
            folder = path.rpartition("/")[0]
            return f"{folder}/{GUIDES[rel]}" if folder else GUIDES[rel]
        if resolved.is_dir():
            self.copy_folder(rel)
            return path.rstrip("/") + "/index.html"
        if resolved.is_file():
            dest = self.out / rel
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(resolved, dest)
            return path
        self.missing.append(f"{path} (from {source_dir or 'the top folder'})")
        return path

    def copy_folder(self, rel: str) -> None:
        listing = subprocess.run(["git", "ls-files", rel], cwd=ROOT, capture_output=True, text=True).stdout.split()
        files = [f for f in listing if (ROOT / f).is_file()] or [
            p.relative_to(ROOT).as_posix() for p in sorted((ROOT / rel).rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts]
        items = []
        for f in files:
            (self.out / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, self.out / f)
            inner = Path(f).relative_to(rel).as_posix()
            items.append(f"<li><a href='{html.escape(inner)}'>{html.escape(inner)}</a></li>")
        depth = "../" * (rel.count("/") + 1)
        (self.out / rel / "index.html").write_text(
            f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(rel)}/</title>"
            f"<link rel='stylesheet' href='{depth}assets/site.css'></head><body><nav class='mha-nav'>"
            f"<a class='mha-home' href='{depth}index.html'>Multi-Head Attention, step by step</a></nav>"
            f"<h1>{html.escape(rel)}/</h1><ul>{''.join(items)}</ul></body></html>")


def page_nav(i: int, notebooks: list[Path], titles: dict[str, str], built_from: str) -> dict:
    """What the template's navigation shows for notebook ``i``: its number among the series' numbers ("notebook 12
    of 00–13", not its position, which is one more), previous and next."""
    path = notebooks[i]
    return {
        "root": "../", "notebook": path.name,
        "position": f"notebook {path.name[:2]} of {notebooks[0].name[:2]}\u2013{notebooks[-1].name[:2]}",
        "prev": {"href": f"{notebooks[i - 1].stem}.html", "title": titles[notebooks[i - 1].name]} if i else None,
        "next": ({"href": f"{notebooks[i + 1].stem}.html", "title": titles[notebooks[i + 1].name]}
                 if i + 1 < len(notebooks) else None),
        "description": titles[path.name], "built_from": built_from,
    }


def export_page(nb, resources: dict, exporter) -> str:
    body, _ = exporter.from_notebook_node(nb, resources={"mha": resources})
    return accessible_page(add_github_anchors(body))


def _breakable(match: re.Match) -> str:
    """A table cell's plain text with a line-break opportunity after each ``/`` and ``_`` of a long token
    (``labmlai/annotated_deep_learning_paper_implementations#146``): a table fits a laptop's width instead of
    being as wide as its longest name."""
    text = re.sub(r"\S{24,}", lambda m: re.sub(r"([/_])", r"\1<wbr>", m.group(0)), match.group(2))
    return match.group(1) + text


def accessible_page(page: str) -> str:
    """What the page needs for a keyboard and a screen reader, beyond nbconvert's output:

    * an empty header cell (the corner of a pandas table, of the audit's tables) becomes a plain cell: a header that
      names nothing is read out as the header of nothing;
    * every table sits in a box that scrolls sideways when it is wider than the page (site.css), not the page, and
      a long name in a cell may break after a ``/`` or ``_``;
    * nbconvert makes every cell's input and every output a Tab stop (two per cell: 04 had 100 before its slider);
      the site's script (site.js) makes only a box that scrolls a Tab stop, so that the arrow keys can scroll it.
    """
    pieces = re.split(r"(<script\b.*?</script>)", page, flags=re.S)  # (a widget's JSON spec is left as it is)
    for i in range(0, len(pieces), 2):
        piece = re.sub(r"<th\b([^>]*)>(\s|&nbsp;)*</th>", r"<td\1></td>", pieces[i])
        piece = re.sub(r"(<td\b[^>]*>)([^<]*)(?=</td>)", _breakable, piece)
        piece = re.sub(r"<table\b", "<div class=\"mha-table-scroll\"><table", piece)
        pieces[i] = piece.replace("</table>", "</table></div>")
    return re.sub(r"(<div class=\"(?:jp-Cell-inputWrapper|jp-OutputArea-output[^\"]*)\"[^>]*?) tabindex=\"0\"", r"\1",
                  "".join(pieces))


def markdown_notebook(text: str, title: str):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(text)]
    nb.metadata["title"] = title
    return nb


def check_offline(out: Path) -> list[str]:
    """Every fetch in every page stays on the site: no http(s)://, no protocol-relative //host URL."""
    problems = []
    for page in out.rglob("*.html"):
        for match in FETCHING.finditer(page.read_text()):
            if re.match(r"^([a-z][a-z0-9+.-]*:)?//", match.group(3), re.I) and not match.group(3).startswith("data:"):
                problems.append(f"{page.relative_to(out)}: <{match.group(1)} {match.group(2)}={match.group(3)!r}>")
    return problems


def size_report(out: Path, pages: list[Path]) -> tuple[int, list[tuple[int, str]]]:
    """Total bytes, and each page's own weight: its HTML, its figures and those of its kernel-free widgets."""
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    weights = []
    for page in pages:
        own = page.stat().st_size
        for folder in (page.parent / "widgets" / page.stem, page.parent / "figures" / page.stem):
            if folder.is_dir():
                own += sum(p.stat().st_size for p in folder.iterdir())
        weights.append((own, page.relative_to(out).as_posix()))
    return total, sorted(weights, reverse=True)


def build(out: Path, use_cache: bool = True) -> dict:
    start = time.perf_counter()
    from nbconvert.exporters import HTMLExporter

    mathjax = install_npm_assets()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    copy_assets(out, mathjax)
    notebooks = series()
    if not notebooks:
        sys.exit(f"no notebooks match notebooks/{SERIES_GLOB}")
    exporter = HTMLExporter(template_name="mha", extra_template_basedirs=[str(SITE_SRC / "templates")],
                            exclude_anchor_links=False)
    links = LinkMap(out, notebooks)
    built = time.strftime("%Y-%m-%d")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    built_from = f"commit {commit}, built {built}" if commit else f"built {built}"
    nbs = {p: nbformat.read(p, as_version=4) for p in notebooks}
    titles = {p.name: notebook_title(nb, p) for p, nb in nbs.items()}
    pages, kernel_free = [], {}
    (out / "notebooks").mkdir()
    for i, (path, nb) in enumerate(nbs.items()):
        log(f"{path.name}")
        copy, kernel_free[path.name] = site_copy(nb, out / "notebooks", path.stem, use_cache)
        copy.metadata["title"] = f"{titles[path.name]} · Multi-Head Attention, step by step"
        page = links.rewrite(export_page(copy, page_nav(i, notebooks, titles, built_from), exporter), "notebooks")
        target = out / "notebooks" / f"{path.stem}.html"
        target.write_text(page)
        shutil.copy2(path, out / "notebooks" / path.name)  # the download: the stored notebook, as committed
        pages.append(target)
    readme = (ROOT / "README.md").read_text()
    home = {"root": "", "notebook": None, "position": None, "prev": None,
            "next": {"href": f"notebooks/{notebooks[0].stem}.html", "title": titles[notebooks[0].name]},
            "description": "Multi-Head Attention, step by step: the series as a web site", "built_from": built_from}
    index = export_page(markdown_notebook(index_markdown(readme, titles), "Multi-Head Attention, step by step"),
                        home, exporter)
    (out / "index.html").write_text(links.rewrite(index, ""))
    pages.append(out / "index.html")
    for name, page_name in GUIDES.items():
        if (ROOT / name).exists():
            text = (ROOT / name).read_text()
            page = export_page(markdown_notebook(text, f"{name} · Multi-Head Attention, step by step"),
                               dict(home, description=name), exporter)
            (out / page_name).write_text(links.rewrite(page, ""))
            pages.append(out / page_name)
    problems = check_offline(out)
    if problems:
        sys.exit("pages would fetch from another origin:\n  " + "\n  ".join(problems))
    if links.missing:
        log("WARNING: links to files that do not exist: " + ", ".join(sorted(set(links.missing))))
    total, weights = size_report(out, pages)
    seconds = time.perf_counter() - start
    log(f"{len(notebooks)} notebooks -> {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}/ "
        f"in {seconds:.1f} s; kernel-free widgets: "
        + ", ".join(f"{k[:2]}: {v}" for k, v in kernel_free.items() if v))
    log(f"site {total / 1e6:.1f} MB in all; largest page {weights[0][1]} {weights[0][0] / 1e6:.2f} MB "
        f"(HTML + its figures); MathJax, shared by every page, "
        f"{sum(p.stat().st_size for p in (out / 'assets' / 'mathjax').rglob('*') if p.is_file()) / 1e6:.1f} MB")
    log(f"open {out / 'index.html'} or serve the folder: python -m http.server -d {out}")
    return {"seconds": seconds, "total_bytes": total, "pages": weights, "kernel_free": kernel_free}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: build/site)")
    parser.add_argument("--no-cache", action="store_true", help="draw every widget state again")
    args = parser.parse_args(argv)
    build(args.out.resolve(), use_cache=not args.no_cache)


if __name__ == "__main__":
    main()
