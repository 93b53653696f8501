"""Every relative link and image in the notebooks and Markdown files resolves; every image in images/ is used."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MARKDOWN = sorted(p for p in ROOT.glob("*.md"))
IMAGES = sorted(p for p in (ROOT / "images").iterdir() if p.suffix.lower() in {".svg", ".png", ".jpg", ".gif"})

# [text](target) and ![alt](target) in Markdown; src="..." / href="..." in inline HTML.
MD_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


def _documents():
    for path in MARKDOWN:
        yield path, path.read_text(encoding="utf-8")
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        yield path, "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def _targets(text: str) -> list[str]:
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # links inside code blocks are examples, not links
    return MD_LINK.findall(text) + HTML_LINK.findall(text)


def _local(target: str) -> str | None:
    parsed = urlparse(target)
    if parsed.scheme or target.startswith(("#", "mailto:")):
        return None
    return unquote(parsed.path) or None


DOCS = list(_documents())


@pytest.mark.parametrize("path,text", DOCS, ids=[p.name for p, _ in DOCS])
def test_relative_links_resolve(path, text):
    broken = []
    for target in _targets(text):
        local = _local(target)
        if local and not (path.parent / local).resolve().exists():
            broken.append(target)
    assert not broken, f"{path.relative_to(ROOT)}: broken links {broken}"


def test_every_image_is_used():
    used = set()
    for path, text in DOCS:
        for target in _targets(text):
            local = _local(target)
            if local:
                used.add((path.parent / local).resolve())
    unused = [p.name for p in IMAGES if p.resolve() not in used]
    assert not unused, f"images not referenced by any notebook or Markdown file: {unused}"


def test_images_have_alt_text():
    for path, text in DOCS:
        for alt, target in re.findall(r"!\[([^\]]*)\]\(([^)]+)\)", text):
            assert alt.strip(), f"{path.name}: image {target} needs alt text"
