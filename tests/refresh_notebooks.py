"""Re-execute notebooks in place so that their stored outputs (what nbval compares) are fresh.

    python tests/refresh_notebooks.py                 # every notebook in notebooks/
    python tests/refresh_notebooks.py notebooks/03_masking.ipynb   # just these

Run it after any change to mha_helpers.py or to a notebook, then commit the notebooks. It executes each notebook
top to bottom in a fresh kernel, on the CPU (MHA_DEVICE=cpu), stores widget state (so a trusted viewer shows the saved
widgets) and prints how long each notebook took.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent


def refresh(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}},
        store_widget_state=True,
        record_timing=False,  # no timestamps in cell metadata: a refresh changes only what really changed
    )
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return elapsed


def main(argv: list[str]) -> int:
    os.environ["MHA_DEVICE"] = "cpu"  # stored outputs are always the CPU's
    paths = [Path(a).resolve() for a in argv] or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    total = 0.0
    for path in paths:
        seconds = refresh(path)
        total += seconds
        print(f"{seconds:6.1f} s  {path.relative_to(ROOT)}", flush=True)
    print(f"{total:6.1f} s  in all ({len(paths)} notebooks)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
