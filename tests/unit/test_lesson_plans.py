"""Every lesson plan of TEACHING.md runs as written: a teacher who opens a notebook, runs its import cell and then
only the sections a plan row names gets no error.

A plan row names sections like ``02 §1–4, §5–6, §8``, ``03 §2, §4``, ``04 Try it``, ``02 Exercises`` or ``01 all``.
For each plan, each notebook it uses gets one fresh kernel (as in class: the notebook stays open from one row to the
next), which runs the notebook's first code cell (the imports) and then, row by row, the code cells of the sections
named, in the order the plan names them. Sections are the notebook's ``## N. ...`` headings (``§N``), its
``## Exercises`` and its ``## Try it ...``; a cell belongs to the ``##`` heading above it.

This executes most of the series once more, so it is in the slow lane (``python -m pytest -m slow``).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
TEACHING = ROOT / "TEACHING.md"
NOTEBOOKS = {p.name[:2]: p for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))}
ROW = re.compile(r"^\|\s*\**\d+\**\s*\|([^|]*)\|", re.M)
ITEM = re.compile(r"^(?:(\d\d)\s+)?(all|Exercises|Try it|§(\d+)(?:[–-](\d+))?)$")

pytestmark = pytest.mark.slow


def plans() -> dict[str, list[str]]:
    """``{plan heading: [the "notebook and sections" cell of each row]}`` for every lesson and the workshop."""
    text = TEACHING.read_text(encoding="utf-8")
    found = {}
    for match in re.finditer(r"^(###? (?:Lesson \d+|Workshop plan)[^\n]*)\n(.*?)(?=^#|\Z)", text, re.M | re.S):
        rows = [cell.strip() for cell in ROW.findall(match.group(2))]
        found[match.group(1).lstrip("# ")] = [r for r in rows if r and r != "break" and r != "notebook and sections"]
    return found


def parse_row(row: str, previous: str | None) -> list[tuple[str, str]]:
    """``"02 §1–4, §8"`` -> ``[("02", "§1"), ..., ("02", "§4"), ("02", "§8")]``; an item without a number continues
    the notebook of the item before it."""
    items = []
    for part in (p.strip() for p in row.split(",")):
        match = ITEM.match(part)
        if not match:
            raise ValueError(f"TEACHING.md: cannot read the plan item {part!r} in the row {row!r}")
        number, what, first, last = match.groups()
        previous = number or previous
        if previous is None:
            raise ValueError(f"TEACHING.md: the plan item {part!r} names no notebook")
        if first:
            items += [(previous, f"§{k}") for k in range(int(first), int(last or first) + 1)]
        else:
            items.append((previous, what))
    return items


def sections(path: Path) -> tuple[dict, list]:
    """``({section: [code cells]}, every code cell)`` of a notebook, by the ``##`` heading above each cell."""
    nb = nbformat.read(path, as_version=4)
    by_section: dict[str, list] = {}
    current = None
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                heading = re.match(r"^##\s+(.*)$", line)
                if heading:
                    title = heading.group(1).strip()
                    number = re.match(r"(\d+)\.", title)
                    current = f"§{number.group(1)}" if number else (
                        "Try it" if title.startswith("Try it") else title.split()[0])
        elif cell.cell_type == "code":
            by_section.setdefault(current, []).append(cell)
    return by_section, [c for c in nb.cells if c.cell_type == "code"]


def cells_for(plan_rows: list[str]) -> dict[str, list]:
    """``{notebook number: [the code cells a teacher runs, in order]}`` for one plan."""
    run: dict[str, list] = {}
    previous = None
    for row in plan_rows:
        for number, section in parse_row(row, previous):
            previous = number
            if number not in NOTEBOOKS:
                raise ValueError(f"TEACHING.md names notebook {number}, which does not exist")
            by_section, every = sections(NOTEBOOKS[number])
            cells = run.setdefault(number, [every[0]])  # the import cell first
            if section == "all":
                cells += every[1:]
            elif section in by_section:
                cells += by_section[section]
            else:
                raise ValueError(f"TEACHING.md names {number} {section}, which {NOTEBOOKS[number].name} does not have "
                                 f"(it has {', '.join(str(s) for s in by_section)})")
    return run


def test_the_plans_are_read():
    found = plans()
    assert len(found) >= 7 and all(found.values()), found
    assert parse_row("02 §1–2, §8, Exercises", None) == [("02", "§1"), ("02", "§2"), ("02", "§8"), ("02", "Exercises")]


@pytest.mark.parametrize("plan", list(plans()))
def test_every_plan_runs_as_written_in_a_fresh_kernel(plan):
    for number, cells in cells_for(plans()[plan]).items():
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c.source) for c in cells])
        client = NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(ROOT / "notebooks")}})
        try:
            client.execute()
        except Exception as exc:  # CellExecutionError: name the plan, the notebook and the failing cell
            raise AssertionError(f"{plan}: notebook {number}, run as the plan says (imports, then "
                                 f"{len(cells) - 1} cells of the named sections), fails:\n{str(exc)[:1500]}") from None
