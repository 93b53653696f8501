"""Project-wide pytest hooks: print how long each notebook took under nbval, so CI logs show the runtime budget."""

from __future__ import annotations

from collections import defaultdict

_NOTEBOOK_SECONDS: dict[str, float] = defaultdict(float)


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
