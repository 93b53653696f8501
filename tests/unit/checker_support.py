"""What every checker test needs: the untouched exercise stub, and ways to run a checker and read what it printed.

Every answer run through :func:`run` (and so through :func:`assert_passes` and :func:`assert_hint`) is also held to
the contract's first rule: the checker prints exactly one line, whatever the answer.
"""

from __future__ import annotations


def stub(*args):
    """The function a student starts from: the checker must answer it with "not yet", never an exception."""
    raise NotImplementedError("your code here")


def run(checker, fn, capsys) -> tuple[bool, str]:
    """Run ``checker(fn)``; return whether it passed and the line it printed (asserting it is exactly one line)."""
    passed = checker(fn)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.endswith("\n"), f"not one line: {out!r}"
    return bool(passed), out


def assert_passes(checker, fn, capsys) -> None:
    """``fn`` is a right answer: the checker prints one ✅ line and returns a truthy result."""
    passed, out = run(checker, fn, capsys)
    assert passed and out.startswith("✅"), out


def assert_hint(checker, fn, hint: str, capsys) -> None:
    """``fn`` is a wrong answer: the checker prints one ❌ line containing ``hint`` (never blames itself)."""
    passed, out = run(checker, fn, capsys)
    assert not passed and out.startswith("❌"), out
    assert hint in out, out
