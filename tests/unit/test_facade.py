"""The public surface of ``mha_helpers``: the one import of every notebook, and the map of where the code lives.

Pins what the re-housing promised: the map stays short, ``dir(mh)`` shows exactly ``__all__`` (no leaked
``torch``/``os``/``F``), every name a notebook or a folded solution uses is public and on the map, re-exported names
present themselves as ``mha_helpers.X`` while their source stays findable, and no implementation file grows past a
readable size.
"""

from __future__ import annotations

import inspect
import json
import pickle
import re
import sys
import typing
from pathlib import Path

import pytest

import mha_helpers as mh

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PACKAGE = ROOT / "_mha_helpers"
MAP_LINES = 150  # mha_helpers.py is a map, not code: a reader sees all of it at once
FILE_LINES = 600  # one topic per file, readable top to bottom


def _notebook_sources(path: Path) -> list[str]:
    """Every cell's source, markdown included (folded solutions live in markdown)."""
    return ["".join(cell["source"]) for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]]


def _names_used(path: Path) -> set[str]:
    return {name for source in _notebook_sources(path) for name in re.findall(r"\bmh\.(\w+)", source)}


def test_dir_shows_exactly_the_public_names():
    public = {name for name in dir(mh) if not name.startswith("_")}
    assert public == set(mh.__all__), f"leaked: {sorted(public - set(mh.__all__))}"
    assert len(mh.__all__) == len(set(mh.__all__)), "a name is listed twice in __all__"


def test_the_map_is_short():
    lines = (ROOT / "mha_helpers.py").read_text(encoding="utf-8").count("\n")
    assert lines <= MAP_LINES, f"mha_helpers.py has {lines} lines; the code belongs in _mha_helpers/"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_implementation_file_is_too_long(path):
    lines = path.read_text(encoding="utf-8").count("\n")
    assert lines <= FILE_LINES, f"{path.relative_to(ROOT)} has {lines} lines: split it by topic"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_name_a_notebook_uses_is_public(path):
    missing = _names_used(path) - set(mh.__all__)
    assert not missing, f"{path.name} uses mh.{', mh.'.join(sorted(missing))}, which __all__ does not list"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_import_only_the_map(path):
    for source in _notebook_sources(path):  # code cells and the folded solutions in markdown alike
        assert not re.search(r"^\s*(from|import)\s+_mha_helpers\b", source, re.M), (
            f"{path.name} imports the private package; use `import mha_helpers as mh`"
        )


def test_every_public_name_appears_on_the_map():
    doc = mh.__doc__
    missing = [name for name in mh.__all__ if not re.search(rf"\b{name}\b", doc)]
    assert not missing, f"the map in mha_helpers.py does not mention {missing}"


def test_the_map_names_files_that_exist():
    for name in re.findall(r"\b([\w/]+\.py)\b", mh.__doc__):
        assert (PACKAGE / name).exists(), f"the map names {name}, which is not in _mha_helpers/"


@pytest.mark.parametrize("name", [n for n in mh.__all__ if callable(getattr(mh, n))])
def test_every_public_callable_is_documented_and_findable_where_it_is_written(name):
    obj = getattr(mh, name)
    assert inspect.getdoc(obj), f"mh.{name} has no docstring"
    assert obj.__module__.startswith("_mha_helpers."), f"mh.{name}.__module__ is {obj.__module__!r}"
    assert getattr(sys.modules[obj.__module__], name) is obj, f"mh.{name} is not {obj.__module__}.{name}"
    source = inspect.getsource(obj)
    assert re.search(rf"^\s*(def|class) {name}\b", source, re.M) or name.startswith("check_"), (
        f"inspect.getsource(mh.{name}) does not show its definition"
    )


@pytest.mark.parametrize("name", [n for n in mh.__all__ if inspect.isfunction(getattr(mh, n))
                                  or inspect.isclass(getattr(mh, n))])
def test_type_hints_resolve_for_every_public_name(name):
    """typing.get_type_hints, which IDEs, dataclasses tools and type checkers call, finds every annotated name."""
    obj = getattr(mh, name)
    typing.get_type_hints(obj)
    if inspect.isclass(obj) and "__init__" in vars(obj):
        typing.get_type_hints(obj.__init__)


def test_a_class_keeps_its_signature_and_pickles_by_its_own_module():
    cls = mh.MultiHeadAttention
    assert inspect.getsource(cls).startswith("class MultiHeadAttention(nn.Module):")
    assert "embed_dim" in inspect.signature(cls).parameters
    assert pickle.loads(pickle.dumps(cls)) is cls
    module = cls(8, 2)
    assert type(pickle.loads(pickle.dumps(module))) is cls

    class Mine(cls):
        """A student's subclass: its own source, not ours."""

    assert "class Mine" in inspect.getsource(Mine)
