"""Write the teacher's answer key: executed copies of the notebooks with every exercise solved.

    python tests/make_answer_key.py answer_key/

Each exercise stub is replaced by the solution folded beneath it (the same substitution tests/test_answer_key.py
checks), the notebook is run top to bottom, and the result is written to the output folder, where every checker
prints ✅. The output folder is ignored by git: the committed notebooks stay the students' version.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from test_answer_key import NOTEBOOKS, answer_key, exercises


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        if not exercises(nb):
            continue
        key = answer_key(nb)
        NotebookClient(key, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
        target = out / path.name.replace(".ipynb", "_answers.ipynb")
        nbformat.write(key, target)
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
