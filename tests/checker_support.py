"""What every checker test needs: the untouched exercise stub, and a way to run a checker and read what it printed."""

from __future__ import annotations


def stub(*args):
    """The function a student starts from: the checker must answer it with "not yet", never an exception."""
    raise NotImplementedError("your code here")


def run(checker, fn, capsys) -> tuple[bool, str]:
    """Run ``checker(fn)``; return whether it passed and the line it printed."""
    passed = checker(fn)
    return bool(passed), capsys.readouterr().out
