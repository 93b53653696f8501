"""Every notebook follows the series' template and is stored as executed by the refresh command.

The template (see notebooks/01_qkv_projections.ipynb): a title "# NN · ...", learning goals, short sections, a
summary, exercises, and a link to the next notebook; it imports mha_helpers; its stored outputs come from one
top-to-bottom run (execution counts in order, no error output) in the `python3` kernel.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
NAME = re.compile(r"^(\d\d)_[a-z0-9_]+\.ipynb$")


def _markdown(nb) -> str:
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def _headings(nb) -> list[str]:
    return [line.strip() for line in _markdown(nb).splitlines() if line.startswith("#")]


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found in notebooks/"


def test_names_are_numbered_in_sequence():
    numbers = []
    for path in NOTEBOOKS:
        match = NAME.match(path.name)
        assert match, f"{path.name}: notebook names are NN_lowercase_words.ipynb"
        numbers.append(int(match.group(1)))
    assert numbers == list(range(len(numbers))), f"notebook numbers must run 00, 01, ... without gaps: {numbers}"


@pytest.fixture(params=NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def notebook(request):
    return request.param, nbformat.read(request.param, as_version=4)


def test_title_goals_summary_exercises(notebook):
    path, nb = notebook
    first = nb.cells[0]
    number = path.name[:2]
    assert first.cell_type == "markdown", f"{path.name}: the first cell is the title (markdown)"
    assert first.source.startswith(f"# {number} · "), f"{path.name}: the title must start with '# {number} · '"
    heads = [h.lower() for h in _headings(nb)]
    assert any(h.startswith("## learning goals") for h in heads), f"{path.name}: needs a '## Learning goals' section"
    assert any(h.startswith("## summary") for h in heads), f"{path.name}: needs a '## Summary' section"
    if number != "00":  # 00 is the readiness check and the map of the series, not a lesson
        assert any(h.startswith("## exercises") for h in heads), f"{path.name}: needs a '## Exercises' section"
    assert re.search(r"\*\*Time:\*\*\s*about \d+ minutes", first.source), f"{path.name}: the title cell says '**Time:** about N minutes'"


def test_links_to_the_next_notebook(notebook):
    path, nb = notebook
    index = NOTEBOOKS.index(path)
    markdown = _markdown(nb)
    if index + 1 < len(NOTEBOOKS):
        target = NOTEBOOKS[index + 1].name
        assert f"]({target})" in markdown, f"{path.name}: must link to the next notebook, {target}"
    else:
        assert "](00_start_here.ipynb)" in markdown or "](../README.md)" in markdown, (
            f"{path.name}: the last notebook links back to 00_start_here.ipynb or the README"
        )


def test_imports_mha_helpers(notebook):
    path, nb = notebook
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert re.search(r"^\s*(import mha_helpers|from mha_helpers import)", code, re.M), f"{path.name}: import mha_helpers"
    assert "sys.path" not in code, f"{path.name}: no sys.path tricks; mha_helpers is installed in editable mode"


def test_stored_as_executed_in_order_without_errors(notebook):
    path, nb = notebook
    code = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code]
    assert all(n is not None for n in counts), f"{path.name}: every code cell must be executed (refresh command)"
    assert counts == list(range(1, len(code) + 1)), f"{path.name}: execution counts must be 1..n in order: {counts}"
    for i, cell in enumerate(code):
        for out in cell.get("outputs", []):
            assert out.output_type != "error", f"{path.name}: code cell {i} has a stored error: {out.get('ename')}"
            if out.output_type == "stream" and out.name == "stderr":
                assert "Traceback" not in out.text, f"{path.name}: code cell {i} printed a traceback"


def test_kernel_is_python3(notebook):
    path, nb = notebook
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", f"{path.name}: kernelspec name must be python3"
