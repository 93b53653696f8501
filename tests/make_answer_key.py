"""The teacher's answer key: executed copies of the notebooks with every exercise solved.

    python tests/make_answer_key.py answer_key/     # write the executed copies to answer_key/
    python tests/make_answer_key.py --check         # execute them and fail unless every checker passes (CI)
    python tests/make_answer_key.py --check notebooks/03_masking.ipynb   # just these notebooks

Each exercise stub is replaced by the solution folded beneath it plus an ``assert`` on its checker, the notebook is
run top to bottom in a fresh kernel, and (without --check) the result is written to the output folder, where every
checker prints ✅. The output folder is ignored by git: the committed notebooks stay the students' version.
tests/unit/test_answer_key.py checks the same solutions in seconds, without executing the notebooks.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from notebook_solutions import NOTEBOOKS, answer_key, exercises, read_notebook


def execute_key(path: Path):
    """The answer key of one notebook, executed; raises if a cell fails (an assert on a checker included)."""
    key = answer_key(read_notebook(path))
    NotebookClient(key, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    return key


def verdicts(path: Path, key) -> str:
    """Everything the exercise cells of the executed key printed."""
    cells = [ex.cell for ex in exercises(read_notebook(path))]
    return "".join(out.get("text", "") for i in cells for out in key.cells[i].outputs if out.output_type == "stream")


def main(argv: list[str]) -> int:
    check = argv[:1] == ["--check"]
    if not argv or (not check and len(argv) != 1):
        print(__doc__)
        return 2
    paths = [Path(p).resolve() for p in argv[1:]] if check and len(argv) > 1 else NOTEBOOKS
    out = None if check else Path(argv[0])
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    failures = 0
    for path in paths:
        if not exercises(read_notebook(path)):
            continue
        start = time.perf_counter()
        try:
            key = execute_key(path)
        except Exception as exc:  # noqa: BLE001 - report every notebook, then fail
            print(f"FAIL {path.name}: {type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}")
            failures += 1
            continue
        printed = verdicts(path, key)
        bad = [line for line in printed.splitlines() if not line.startswith("✅")]
        if bad:
            print(f"FAIL {path.name}: " + " | ".join(bad))
            failures += 1
            continue
        if out is not None:
            target = out / path.name.replace(".ipynb", "_answers.ipynb")
            nbformat.write(key, target)
            print(f"wrote {target} ({time.perf_counter() - start:.1f} s)")
        else:
            print(f"ok   {path.name}: {printed.count('✅')} solutions pass ({time.perf_counter() - start:.1f} s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
