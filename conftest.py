"""Project-wide pytest hooks: the test lanes, one thread per worker, and the time each notebook took under nbval.

**Lanes.** A test's folder is its lane: ``tests/browser/`` is marked ``browser``, ``tests/site/`` ``site``; a test
that trains for minutes carries ``@pytest.mark.slow`` itself. ``python -m pytest`` (the README's test command) runs
everything else: the unit tests, the cheap claims and every notebook under nbval. ``-m slow``, ``-m browser`` and
``-m site`` run one lane each; ``.ci/run`` runs them all. Nothing is skipped for want of an environment variable.

**Workers.** The command runs on every core with pytest-xdist (``-n auto --dist loadfile``: each file, and so each
notebook with its kernel, stays on one worker, in order). With several workers, each worker and the kernels it
starts use one CPU thread, so they do not fight over the cores; the stored outputs are the same at any thread count
(``.ci/run`` checks one and two threads).
"""

from __future__ import annotations

import os
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
#: folder -> the marker every test in it gets
LANES = {ROOT / "tests" / "browser": "browser", ROOT / "tests" / "site": "site"}

_NOTEBOOK_SECONDS: dict[str, float] = defaultdict(float)


def pytest_configure(config):
    if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:  # a worker among several
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(name, "1")  # read by torch here and by every kernel this worker starts
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        for folder, lane in LANES.items():
            if folder in Path(item.fspath).parents:
                item.add_marker(lane)


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::", 1)[0]
    if path.endswith(".ipynb"):
        _NOTEBOOK_SECONDS[path] += report.duration  # setup (kernel start), every cell, teardown


def pytest_terminal_summary(terminalreporter):
    if not _NOTEBOOK_SECONDS:
        return
    terminalreporter.section("time per notebook under nbval")
    for path, seconds in sorted(_NOTEBOOK_SECONDS.items(), key=lambda item: -item[1]):
        terminalreporter.write_line(f"{seconds:6.1f} s  {path}")
    terminalreporter.write_line(f"{sum(_NOTEBOOK_SECONDS.values()):6.1f} s  all notebooks")
