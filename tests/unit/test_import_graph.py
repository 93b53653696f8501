"""Dependencies flow one way: ``site/`` -> ``mha_helpers`` (the map) -> ``_mha_helpers/``.

Every module of the package is read with ``ast`` (nothing is imported), every import it makes is collected,
including those inside functions and under ``if TYPE_CHECKING:``. None may import the map or the site, and the
imports among the package's own modules form no cycle, so which names exist never depends on import order.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "_mha_helpers"
FORBIDDEN = ("mha_helpers", "site")  # the map, and the site's code (site/ is not a package; `site` is the name)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path) -> list[tuple[str, int]]:
    """Every module ``path`` imports, absolute (``from ..maths import mha`` -> ``_mha_helpers.maths.mha``), with
    its line; an imported name that is itself a module of the package counts as that module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((target, node.lineno))
            found += [(f"{target}.{alias.name}", node.lineno) for alias in node.names
                      if f"{target}.{alias.name}" in MODULES]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            found.append((str(node.args[0].value), node.lineno))  # importlib.import_module("...") counts too
    return found


def _graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports: each one named, and the packages above it (their __init__ runs)."""
    graph = {}
    for name, path in MODULES.items():
        edges = set()
        for target, _ in _imports(name, path):
            parts = target.split(".")
            edges |= {".".join(parts[:k]) for k in range(1, len(parts) + 1)} & set(MODULES)
        edges.discard(name)
        graph[name] = edges
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules (first = last), or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_of_the_package_imports_the_map_or_the_site(name):
    bad = [f"line {line}: {target}" for target, line in _imports(name, MODULES[name])
           if target.split(".")[0] in FORBIDDEN]
    assert not bad, f"{MODULES[name].relative_to(ROOT)} imports {bad}: the map and the site import the package, " \
                    "never the other way round"


def test_the_package_has_no_import_cycle():
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_checks_see_imports_inside_functions_and_find_cycles(tmp_path):
    """The helpers themselves: an import inside a function is found, relative imports resolve, a cycle is caught."""
    module = tmp_path / "x.py"
    module.write_text("def f():\n    import mha_helpers\n    from ..maths import mha\n    from . import head_maps\n")
    found = {target for target, _ in _imports("_mha_helpers.widgets.x", module)}
    assert {"mha_helpers", "_mha_helpers.maths", "_mha_helpers.maths.mha", "_mha_helpers.widgets.head_maps"} <= found
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
