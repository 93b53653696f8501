"""The house style of ``_mha_helpers/`` that a reader sees before running anything, checked by reading the source:

* every function is at most 60 lines (nanoGPT's ``model.py`` as the yardstick: the maths on one screen, the checks
  one call away), so that a long one is split into named steps that read top to bottom;
* a name another module imports is public (no leading underscore): what students see is decided by the map,
  ``mha_helpers.py``, not by underscores. The one exception is ``checkers/``, whose shared machinery in
  ``checkers/core.py`` is private to that sub-package (its docstring says why);
* argument checks live in ``validation.py``: no module writes the int check out again.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "_mha_helpers"
FILES = sorted(PACKAGE.rglob("*.py"))
MAX_LINES = 60

#: Functions allowed to be longer for now, each with the reason. Empty it as they are split.
LONG_FUNCTIONS: dict[str, str] = {}

#: Underscore names that may be imported from another module, each with the reason.
PRIVATE_IMPORTS: dict[tuple[str, str], str] = {}


def _rel(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def _functions(tree: ast.AST, prefix: str = ""):
    """(qualified name, node) of every function, methods and nested functions included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node
            yield from _functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")
        else:
            yield from _functions(node, prefix)


def function_lengths() -> dict[str, int]:
    """``"maths/attention.py::split_heads"`` -> its number of lines (decorators excluded, docstring included)."""
    lengths = {}
    for path in FILES:
        for name, node in _functions(ast.parse(path.read_text(encoding="utf-8"))):
            lengths[f"{_rel(path)}::{name}"] = node.end_lineno - node.lineno + 1
    return lengths


def test_the_length_counter_sees_methods_and_nested_functions():
    lengths = function_lengths()
    assert lengths["maths/attention.py::split_heads"] < MAX_LINES
    assert "maths/mha.py::MultiHeadAttention.forward" in lengths
    assert "widgets/head_maps.py::HeadFigure.__init__" in lengths
    assert len(lengths) > 300


def test_every_function_fits_on_one_screen():
    too_long = {name: n for name, n in function_lengths().items() if n > MAX_LINES and name not in LONG_FUNCTIONS}
    assert not too_long, (
        f"functions over {MAX_LINES} lines (split them into named steps that read top to bottom): "
        + ", ".join(f"{name} ({n})" for name, n in sorted(too_long.items(), key=lambda item: -item[1]))
    )


def test_every_exception_to_the_length_rule_is_still_needed():
    lengths = function_lengths()
    stale = [name for name in LONG_FUNCTIONS if lengths.get(name, 0) <= MAX_LINES]
    assert not stale, f"these functions are short now (or gone): remove them from LONG_FUNCTIONS: {stale}"


def private_imports() -> dict[tuple[str, str], str]:
    """(importing file, underscore name) -> the module it comes from, for every ``from X import _name`` in the
    package, except within checkers/ (whose shared helpers are private to it)."""
    found = {}
    for path in FILES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            for alias in node.names:
                name = alias.name
                if not name.startswith("_") or name.startswith("__"):
                    continue
                if _rel(path).startswith("checkers/") and node.level == 1 and node.module == "core":
                    continue  # checkers/core.py's machinery, private to checkers/
                found[(_rel(path), name)] = "." * node.level + (node.module or "")
    return found


def test_no_underscore_name_is_imported_from_another_module():
    leaks = {key: source for key, source in private_imports().items() if key not in PRIVATE_IMPORTS}
    assert not leaks, (
        "a name another module uses is public within the package (the map decides what students see); rename: "
        + ", ".join(f"{name} (imported by {where} from {source})" for (where, name), source in sorted(leaks.items()))
    )


def test_only_the_checkers_import_the_checker_machinery():
    for path in FILES:
        if _rel(path).startswith("checkers/"):
            continue
        source = path.read_text(encoding="utf-8")
        assert not re.search(r"checkers\.core import _|from \.core import _", source), _rel(path)


def test_every_exception_to_the_import_rule_is_still_needed():
    stale = [key for key in PRIVATE_IMPORTS if key not in private_imports()]
    assert not stale, f"these underscore names are no longer imported across modules: remove them: {stale}"


INT_CHECK = re.compile(r"isinstance\((\w+), bool\) or not isinstance\(\1, \(?int")


@pytest.mark.parametrize("path", [p for p in FILES if _rel(p) != "validation.py" and not _rel(p).startswith("checkers/")],
                         ids=_rel)
def test_argument_checks_are_one_call_away(path):
    """The int check (``isinstance(x, bool) or not isinstance(x, int)``) is written once, in validation.py; the
    checkers may inspect a student's ANSWER that way (they print a hint, they do not raise)."""
    hits = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if INT_CHECK.search(line)]
    assert not hits, f"{_rel(path)} re-implements a check of validation.py (check_int, check_index, ...): {hits}"
