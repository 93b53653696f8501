"""The answer key is real: every folded solution in every notebook passes its own checker.

Each exercise in a notebook is a code cell holding a stub (``raise NotImplementedError``) and a call of its checker,
``mh.check_something(my_function)``, followed by a markdown cell with the solution folded in a
``<details><summary>Solution</summary>`` block. This test builds the teacher's version of each notebook — every
exercise cell replaced by its solution plus ``assert mh.check_...(...)`` — executes it top to bottom and requires
every checker to pass. The stored (student) notebooks keep their stubs, so their checkers print "not yet".
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CHECK_CALL = re.compile(r"^\s*(mh\.check_\w+\(.*\))\s*$", re.M)
SOLUTION = re.compile(r"<details>\s*<summary>\s*Solution.*?</summary>(.*?)</details>", re.S | re.I)
CODE_BLOCK = re.compile(r"```(?:python)?\s*\n(.*?)```", re.S)


def exercises(nb) -> list[tuple[int, str, list[str]]]:
    """(index of the exercise cell, solution code, checker calls) for every exercise in the notebook."""
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or "NotImplementedError" not in cell.source:
            continue
        calls = CHECK_CALL.findall(cell.source)
        if not calls:
            continue
        solution = None
        for later in nb.cells[i + 1 :]:
            if later.cell_type == "code":
                break
            details = SOLUTION.search(later.source)
            if details:
                solution = "\n".join(CODE_BLOCK.findall(details.group(1)))
                break
        found.append((i, solution, calls))
    return found


def answer_key(nb):
    """The notebook with every exercise cell replaced by its folded solution and an assert on its checker."""
    key = nbformat.from_dict(nb)
    for i, solution, calls in exercises(nb):
        asserts = "\n".join(f"assert {call}, 'the folded solution fails {call}'" for call in calls)
        key.cells[i].source = f"{solution}\n{asserts}\n"
        key.cells[i].outputs = []
    return key


WITH_EXERCISES = [p for p in NOTEBOOKS if exercises(nbformat.read(p, as_version=4))]


def test_lesson_notebooks_have_checked_exercises():
    lessons = [p.name for p in NOTEBOOKS if not p.name.startswith("00_")]
    missing = [name for name in lessons if name not in {p.name for p in WITH_EXERCISES}]
    assert not missing, f"notebooks without an auto-checked exercise (stub + mh.check_...): {missing}"


@pytest.mark.parametrize("path", WITH_EXERCISES, ids=[p.stem for p in WITH_EXERCISES])
def test_every_solution_passes_its_checker(path):
    nb = nbformat.read(path, as_version=4)
    for i, solution, calls in exercises(nb):
        assert solution, f"{path.name}: the exercise in cell {i} ({calls[0]}) has no folded solution after it"
    key = answer_key(nb)
    NotebookClient(key, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    printed = "".join(
        out.get("text", "") for i, _, _ in exercises(nb) for out in key.cells[i].outputs if out.output_type == "stream"
    )
    assert "❌" not in printed and "⏳" not in printed, printed
