"""The answer key is real: every folded solution in every notebook passes its own checker.

Each exercise in a notebook is a code cell holding a stub (``raise NotImplementedError``) and a call of its checker,
followed by its solution folded in a ``<details><summary>Solution</summary>`` block. Here every solution is run in a
bare namespace — only the notebook's own imports (``mh``, ``torch``, ...), nothing its other cells define — and its
checker must print ✅; the stored stub cell, run the same way, must print exactly what the notebook stores (⏳).
This takes about two seconds. The full teacher's copy — every notebook re-executed top to bottom with its solutions
filled in — is `python tests/make_answer_key.py --check` (run by .ci/run).
"""

from __future__ import annotations

import pytest
from notebook_solutions import NOTEBOOKS, all_exercises, run_solution, run_stub

EXERCISES = all_exercises()


def test_lesson_notebooks_have_checked_exercises():
    lessons = [p.name for p in NOTEBOOKS if not p.name.startswith("00_")]
    with_exercises = {ex.notebook.name for ex in EXERCISES}
    missing = [name for name in lessons if name not in with_exercises]
    assert not missing, f"notebooks without an auto-checked exercise (stub + mh.check_...): {missing}"


@pytest.mark.parametrize("ex", EXERCISES, ids=[ex.name for ex in EXERCISES])
def test_every_solution_passes_its_checker(ex):
    assert ex.solution, f"{ex.notebook.name}: the exercise in cell {ex.cell} ({ex.calls[0]}) has no folded solution"
    results, printed = run_solution(ex)
    assert all(results), printed
    lines = printed.strip().splitlines()
    assert len(lines) == len(ex.calls) and all(line.startswith("✅") for line in lines), printed


@pytest.mark.parametrize("ex", EXERCISES, ids=[ex.name for ex in EXERCISES])
def test_every_stub_prints_what_the_notebook_stores(ex):
    if not ex.stored_output:
        pytest.skip(f"{ex.notebook.name} cell {ex.cell} has no stored output yet (the notebook is not executed)")
    printed = run_stub(ex)
    assert printed.startswith("⏳"), printed
    assert printed == ex.stored_output, f"{ex.notebook.name} cell {ex.cell}: stored {ex.stored_output!r}, now {printed!r}"
