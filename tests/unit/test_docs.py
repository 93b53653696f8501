"""The README, the map in 00_start_here and the teacher's guide agree with the notebooks they describe.

Each notebook states its own time ("**Time:** about N minutes"); every table that lists notebooks with minutes must
quote the same number, every notebook must be listed, and the lesson plans must add up to their slots.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
ROW = re.compile(r"^\|\s*\[(\d\d) · [^\]]*\]\(([^)]+)\)\s*\|(?:[^|]*\|)*?\s*(\d+)\s*\|\s*$", re.M)


def stated_minutes() -> dict[str, int]:
    minutes = {}
    for path in NOTEBOOKS:
        title = nbformat.read(path, as_version=4).cells[0].source
        minutes[path.name[:2]] = int(re.search(r"\*\*Time:\*\*\s*about (\d+) minutes", title).group(1))
    return minutes


def curriculum_tables() -> dict[str, str]:
    start = nbformat.read(ROOT / "notebooks" / "00_start_here.ipynb", as_version=4)
    return {
        "README.md": (ROOT / "README.md").read_text(encoding="utf-8"),
        "TEACHING.md": (ROOT / "TEACHING.md").read_text(encoding="utf-8").split("## Before the first lesson")[0],
        "00_start_here map": "\n".join(c.source for c in start.cells if "## The map of the series" in c.source),
    }


@pytest.mark.parametrize("name", list(curriculum_tables()))
def test_curriculum_tables_list_every_notebook_with_its_own_minutes(name):
    text = curriculum_tables()[name]
    rows = {number: (target, int(minutes)) for number, target, minutes in ROW.findall(text)}
    minutes = stated_minutes()
    assert sorted(rows) == sorted(minutes), f"{name}: lists notebooks {sorted(rows)}, the series has {sorted(minutes)}"
    for number, (target, quoted) in rows.items():
        assert Path(target).name.startswith(number), f"{name}: row {number} links to {target}"
        assert quoted == minutes[number], f"{name}: notebook {number} is quoted as {quoted} min, it says {minutes[number]}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_each_notebooks_core_path_fits_its_stated_minutes(path):
    """The "Time" line of a notebook covers its core path, by the one measure of tests/notebook_minutes.py."""
    from notebook_minutes import measure

    stated, core, optional = measure(path)
    assert stated is not None, f"{path.name}: no '**Time:** about N minutes' line in the title cell"
    assert core.minutes <= stated, (f"{path.name}: its core path takes {core.minutes:.1f} min by the measure, it says "
                                    f"{stated}; shorten it or mark a deep dive 'Going deeper' (optional {optional.minutes:.1f})")


def _plan(heading: str) -> list[tuple[int, str]]:
    text = (ROOT / "TEACHING.md").read_text(encoding="utf-8")
    section = text.split(heading, 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\|\s*\**(\d+)\**\s*\|([^|]*)\|", section, re.M)
    return [(int(m), what.strip()) for m, what in rows]


@pytest.mark.parametrize(
    "heading,total",
    [(f"### Lesson {k}", 45) for k in range(1, 8)] + [("## Workshop plan", 240)],
)
def test_lesson_plans_add_up(heading, total):
    rows = _plan(heading)
    assert rows, f"TEACHING.md: no plan table under {heading}"
    *steps, (stated_total, _) = rows
    assert stated_total == total, f"{heading}: the total row says {stated_total}, the slot is {total}"
    assert sum(m for m, _ in steps) == total, f"{heading}: the steps add up to {sum(m for m, _ in steps)}, not {total}"
    for _, what in steps:
        for number in re.findall(r"\b(\d\d)\b", what):
            assert any(p.name.startswith(number) for p in NOTEBOOKS), f"{heading}: no notebook {number}"


def test_teaching_guide_sections_exist():
    """Every 'NN §k' the guide points to is a numbered section of that notebook."""
    text = (ROOT / "TEACHING.md").read_text(encoding="utf-8")
    for number, first, last in re.findall(r"\b(\d\d) §(\d+)(?:[–-](\d+))?", text):
        path = next(p for p in NOTEBOOKS if p.name.startswith(number))
        nb = nbformat.read(path, as_version=4)
        sections = {int(m) for c in nb.cells if c.cell_type == "markdown" for m in re.findall(r"^## (\d+)\. ", c.source, re.M)}
        for k in range(int(first), int(last or first) + 1):
            assert k in sections, f"TEACHING.md points to {number} §{k}, which {path.name} does not have"
