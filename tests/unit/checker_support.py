"""What every checker test needs: the untouched exercise stub, and ways to run a checker and read what it printed."""

from __future__ import annotations


def stub(*args):
    """The function a student starts from: the checker must answer it with "not yet", never an exception."""
    raise NotImplementedError("your code here")


def run(checker, fn, capsys) -> tuple[bool, str]:
    """Run ``checker(fn)``; return whether it passed and the line it printed."""
    passed = checker(fn)
    return bool(passed), capsys.readouterr().out


def assert_passes(checker, fn, capsys) -> None:
    """``fn`` is a right answer: the checker prints one ✅ line and returns a truthy result."""
    passed, out = run(checker, fn, capsys)
    assert passed and out.startswith("✅") and out.count("\n") == 1, out


def assert_hint(checker, fn, hint: str, capsys) -> None:
    """``fn`` is a wrong answer: the checker prints one ❌ line containing ``hint`` (never blames itself)."""
    passed, out = run(checker, fn, capsys)
    assert not passed and out.startswith("❌") and out.count("\n") == 1, out
    assert hint in out, out
