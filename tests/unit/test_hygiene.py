"""Lint and spelling over the map, the helper package, the site builder, the tests and the notebooks (pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True)


def test_ruff_is_clean():
    result = _run(str(BIN / "ruff"), "check", "mha_helpers.py", "_mha_helpers", "site", "conftest.py", "tests", "notebooks")
    assert result.returncode == 0, result.stdout + result.stderr


def test_spelling_is_clean():
    targets = ["mha_helpers.py", "_mha_helpers", "site/build.py", "site/saved_widgets.py", "site/static", "site/templates", "conftest.py", "tests", "notebooks", "images", *map(str, ROOT.glob("*.md"))]
    result = _run(str(BIN / "codespell"), *sorted(set(targets)))
    assert result.returncode == 0, "codespell found misspellings:\n" + result.stdout + result.stderr
