"""The code behind ``mha_helpers``: one module per topic, in the order of the series.

Notebooks never import this package: they ``import mha_helpers as mh``, whose file is the map of what lives where.
Each module here reads top to bottom; ``checkers/`` holds the exercise checkers, one file per notebook.

This file holds one thing: :func:`publish`, which ``mha_helpers`` calls on the names it re-exports so that they
present themselves as ``mha_helpers.X`` (reprs, pickles and stored notebook outputs stay as they were) while
``inspect.getsource`` and "go to definition" still land on the file that defines them.
"""

from __future__ import annotations

import inspect


class _OnlyOn:
    """A class attribute that exists on one class only: not on its instances, not on its subclasses."""

    def __init__(self, cls: type, value: object) -> None:
        self.cls, self.value = cls, value

    def __get__(self, obj: object, owner: type) -> object:
        if obj is None and owner is self.cls:
            return self.value
        raise AttributeError


def publish(namespace: dict, names: list[str], module: str) -> None:
    """Give every function and class in ``names`` the ``__module__`` ``module``, keeping its source findable.

    Functions keep their source through their code object. ``inspect.getsource`` finds a class by looking its name
    up in the file of ``sys.modules[cls.__module__]``, which would now be the map; so the class gets a
    ``__wrapped__`` (which ``inspect`` follows) that points at a stand-in naming the defining module, and a
    ``__signature__``, so that ``inspect.signature`` does not follow it. Both are visible on that class only.
    """
    for name in names:
        obj = namespace[name]
        if inspect.isfunction(obj):
            obj.__module__ = module
        elif inspect.isclass(obj) and obj.__module__ != module:
            where = {"__module__": obj.__module__, "__qualname__": obj.__qualname__, "__doc__": obj.__doc__}
            if "__firstlineno__" in vars(obj):  # Python >= 3.13 finds a class's source by this line number
                where["__firstlineno__"] = obj.__firstlineno__
            signature = inspect.signature(obj)
            obj.__wrapped__ = _OnlyOn(obj, type(obj.__name__, (), where))
            obj.__signature__ = _OnlyOn(obj, signature)
            obj.__module__ = module
