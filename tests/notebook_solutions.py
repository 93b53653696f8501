"""The exercises of the notebooks and their folded solutions, read straight from the .ipynb files.

Shared by tests/unit/test_answer_key.py (the fast check: every solution against its checker in a bare namespace),
tests/unit/test_checker_contract.py (one contract test over every checker) and tests/make_answer_key.py (the teacher's
executed copies). Not a test module itself, so scripts may import it.

An exercise is a code cell holding a stub (``raise NotImplementedError``) and a call of its checker,
``mh.check_something(my_function)``, followed (before the next code cell) by a markdown cell with the solution
folded in a ``<details><summary>Solution</summary>`` block of fenced Python code.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import io
import json
import linecache
import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CHECK_CALL = re.compile(r"^\s*(mh\.(check_\w+)\(.*\))\s*$", re.M)
SOLUTION = re.compile(r"<details>\s*<summary>\s*Solution.*?</summary>(.*?)</details>", re.S | re.I)
CODE_BLOCK = re.compile(r"```(?:python)?\s*\n(.*?)```", re.S)


@dataclass
class Exercise:
    """One exercise of one notebook: where it is, its stub cell, its checker calls and its folded solution."""

    notebook: Path
    cell: int  # index among all cells
    stub: str  # the exercise cell as stored (stub + checker call)
    stored_output: str  # what that cell printed when the notebook was executed
    calls: list[str] = field(default_factory=list)  # e.g. ["mh.check_softmax(stable_softmax)"]
    checkers: list[str] = field(default_factory=list)  # e.g. ["check_softmax"]
    solution: str | None = None  # the code of the folded solution, None when missing

    @property
    def name(self) -> str:
        return f"{self.notebook.stem}:{'+'.join(self.checkers)}"


def _text(value: str | list[str]) -> str:
    """A notebook's multi-line string: stored as one string or as a list of lines."""
    return value if isinstance(value, str) else "".join(value)


def exercises(nb: dict, path: Path | None = None) -> list[Exercise]:
    """Every exercise of the notebook ``nb`` (its JSON as a dict, or an nbformat node), in order."""
    found = []
    cells = nb["cells"]
    for i, cell in enumerate(cells):
        source = _text(cell["source"])
        if cell["cell_type"] != "code" or "NotImplementedError" not in source:
            continue
        calls = CHECK_CALL.findall(source)
        if not calls:
            continue
        solution = None
        for later in cells[i + 1 :]:
            if later["cell_type"] == "code":
                break
            details = SOLUTION.search(_text(later["source"]))
            if details:
                solution = "\n".join(CODE_BLOCK.findall(details.group(1)))
                break
        printed = "".join(_text(out.get("text", "")) for out in cell.get("outputs", [])
                          if out.get("output_type") == "stream")
        found.append(Exercise(path or Path("?"), i, source, printed, [c for c, _ in calls], [n for _, n in calls],
                              solution))
    return found


@functools.cache
def read_notebook(path: Path) -> dict:
    """The notebook at ``path`` as its JSON dict, read once (plain JSON: importing and validating with nbformat
    takes seconds, the whole point of the fast check is not to)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def all_exercises() -> list[Exercise]:
    """Every exercise of every notebook in notebooks/, in series order."""
    return [ex for path in NOTEBOOKS for ex in exercises(read_notebook(path), path)]


def solutions_by_checker() -> dict[str, Exercise]:
    """``{checker name: the exercise that uses it}`` for every checker some notebook calls."""
    return {name: ex for ex in all_exercises() for name in ex.checkers}


def answer_key(nb):
    """The notebook (an nbformat node) with every exercise cell replaced by its folded solution and an assert on its
    checker."""
    import nbformat  # only the teacher's copy needs it (and its import alone takes seconds)

    key = nbformat.reads(json.dumps(nb), as_version=4)  # a validated node, multi-line strings joined
    for ex in exercises(nb):
        asserts = "\n".join(f"assert {call}, 'the folded solution fails {call}'" for call in ex.calls)
        key.cells[ex.cell].source = f"{ex.solution}\n{asserts}\n"
        key.cells[ex.cell].outputs = []
    return key


def notebook_imports(path: Path) -> str:
    """The notebook's top-level import statements (from every code cell, magics skipped), as source code."""
    nb = read_notebook(path)
    lines = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        lines_of_cell = _text(cell["source"]).splitlines()
        source = "\n".join(line for line in lines_of_cell if not line.lstrip().startswith(("%", "!")))
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        lines += [ast.get_source_segment(source, node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    return "\n".join(dict.fromkeys(lines))


_IMPORTED: dict[Path, dict] = {}


def bare_namespace(path: Path) -> dict:
    """A fresh namespace holding only what the notebook imports (``mh``, ``torch``, ``math`` ...): nothing the
    notebook's other cells define. A solution that needs more is not self-contained."""
    if path not in _IMPORTED:
        namespace: dict = {"__name__": "__answer_key__"}
        exec(compile(notebook_imports(path), f"<imports of {path.name}>", "exec"), namespace)
        _IMPORTED[path] = namespace
    return dict(_IMPORTED[path])


def _run(code: str, label: str, namespace: dict) -> None:
    """Execute ``code`` in ``namespace`` under a file name that tracebacks (and the checkers' hints) can read."""
    filename = f"<{label}>"
    linecache.cache[filename] = (len(code), None, code.splitlines(keepends=True), filename)
    exec(compile(code, filename, "exec"), namespace)


def run_solution(ex: Exercise) -> tuple[list[bool], str]:
    """Run the folded solution of ``ex`` in a bare namespace, then each of its checker calls; return whether each
    passed and everything printed."""
    namespace = bare_namespace(ex.notebook)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        _run(ex.solution or "", f"solution in {ex.notebook.name}, cell {ex.cell}", namespace)
        results = [bool(eval(call, namespace)) for call in ex.calls]
    return results, printed.getvalue()


def run_stub(ex: Exercise) -> str:
    """Run the exercise cell as stored (the untouched stub and its checker call) in a bare namespace; return what it
    printed."""
    namespace = bare_namespace(ex.notebook)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        _run(ex.stub, f"exercise cell {ex.cell} of {ex.notebook.name}", namespace)
    return printed.getvalue()
