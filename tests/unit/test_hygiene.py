"""Lint and spelling over the map, the helper package, the site builder, the tests and the notebooks (pyproject.toml),
and the packages pyproject.toml declares."""

from __future__ import annotations

import re
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


def test_pyproject_declares_every_package_the_helper_imports_at_the_pinned_version():
    """`pip install -e .` must bring what `import mha_helpers` needs, at the versions requirements.txt pins."""
    import ast
    import sys

    distribution = {"PIL": "pillow"}  # import name -> the name pip knows it by, where they differ
    imported = set()
    for path in (ROOT / "_mha_helpers").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            imported |= {n.split(".")[0] for n in names}
    third_party = {distribution.get(n, n) for n in imported - set(sys.stdlib_module_names)
                   - {"_mha_helpers", "mha_helpers"}}  # the project's own modules
    block = re.search(r"^dependencies = \[(.*?)\]", (ROOT / "pyproject.toml").read_text(), re.S | re.M).group(1)
    declared = dict(d.split("==") for d in re.findall(r'"([^"]+)"', block))
    pinned = dict(line.split("==") for line in (ROOT / "requirements.txt").read_text().splitlines()
                  if "==" in line and not line.startswith("#"))
    assert third_party <= set(declared), f"pyproject.toml does not declare {sorted(third_party - set(declared))}"
    assert all(pinned.get(name) == version for name, version in declared.items()), (
        {name: (version, pinned.get(name)) for name, version in declared.items() if pinned.get(name) != version})
