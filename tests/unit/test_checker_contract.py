"""One contract for every exercise checker in ``mh.__all__`` (read at run time, so new notebooks' checkers are
included without editing this file):

* the untouched stub prints exactly today's ⏳ line and gives a falsy result;
* the folded solution of the notebook that uses the checker prints ✅ (checkers no notebook uses yet are skipped);
* the global random state (torch, random, NumPy) and torch's thread count, grad mode and default dtype are left as
  they were, whatever the student's function does to them;
* a fault injected into any of the checker's own helpers is reported as a failure of the CHECKER, never blamed on
  the student; an exception raised by the student's function is reported as theirs;
* odd things a beginner returns or passes (None, a string, a tensor instead of the function, ...) get a ❌ hint,
  never a checker failure or a traceback.
"""

from __future__ import annotations

import random
import sys
import types

import numpy as np
import pytest
import torch
from notebook_solutions import run_solution, run_stub, solutions_by_checker

import mha_helpers as mh

CHECKERS = [name for name in mh.__all__ if name.startswith("check_")]
SOLUTIONS = solutions_by_checker()
NOT_YET = "not yet — replace the `raise NotImplementedError` with your code, then run again."
CHECKER_FAILED = "the checker itself failed"


def stub(*args, **kwargs):
    raise NotImplementedError("your code here")


def verdict(checker, fn, capsys) -> tuple[bool, str]:
    passed = checker(fn)
    return bool(passed), capsys.readouterr().out


def inner(checker):
    """The undecorated check function (its module and the names its code uses)."""
    return checker.__wrapped__


def home(checker) -> types.ModuleType:
    """The module that defines the checker (checkers/nbNN.py)."""
    return sys.modules[inner(checker).__module__]


def _names_used(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names_used(const)
    return names


def own_helpers(checker) -> list[str]:
    """The names of the project's own functions and classes that the checker's code calls (its helpers)."""
    check = inner(checker)
    namespace = check.__globals__
    found = []
    for name in sorted(_names_used(check.__code__)):
        obj = namespace.get(name)
        module = getattr(obj, "__module__", "") or ""
        if callable(obj) and module.startswith(("_mha_helpers", "mha_helpers")) and name != "exercise_checker":
            found.append(name)
    return found


def _calls_student_properly(code: types.CodeType, namespace: dict, seen: set) -> bool:
    """Does this code (or a helper of ours it calls) call the student through _call_student?"""
    for name in _names_used(code):
        if name == "_call_student":
            return True
        obj = namespace.get(name)
        helper = getattr(obj, "__code__", None)
        if helper is not None and name not in seen and (getattr(obj, "__module__", "") or "").startswith("_mha_helpers"):
            seen.add(name)
            if _calls_student_properly(helper, obj.__globals__, seen):
                return True
    return False


def uses_call_student(checker) -> bool:
    check = inner(checker)
    return _calls_student_properly(check.__code__, check.__globals__, set())


def takes_a_class(checker) -> bool:
    """Some checkers (the bug hunt's) take the student's fixed class, not a function."""
    check = inner(checker)
    first = check.__code__.co_varnames[0]
    return str(check.__annotations__.get(first, "")) in {"type", "<class 'type'>"}


ON_CONTRACT = [name for name in CHECKERS if uses_call_student(getattr(mh, name))]
FUNCTION_CHECKERS = [name for name in ON_CONTRACT if not takes_a_class(getattr(mh, name))]
FAULTS = [(name, helper) for name in ON_CONTRACT for helper in own_helpers(getattr(mh, name))]


class _StubModule(torch.nn.Module):
    """The stub of an exercise that asks for a class: building it raises NotImplementedError."""

    def __init__(self):
        raise NotImplementedError("your code here")


def stub_for(checker):
    return _StubModule if takes_a_class(checker) else stub


@pytest.mark.parametrize("name", CHECKERS)
def test_every_checker_calls_the_student_through_call_student(name):
    """The one door: only _call_student tells the stub, a missing return and the student's own errors apart."""
    assert uses_call_student(getattr(mh, name)), (
        f"{name} calls the student's code without _call_student (from _mha_helpers/checkers/core.py), so the "
        "contract's messages (not yet / returned None / your function raised / checker failed) cannot hold for it"
    )


def test_there_are_checkers_and_each_has_a_title():
    assert len(CHECKERS) >= 21
    for name in CHECKERS:
        assert getattr(mh, name).title.startswith("Exercise "), name


@pytest.mark.parametrize("name", CHECKERS)
def test_the_stub_prints_exactly_not_yet(name, capsys):
    """The stub as the notebook stores it (or, for a checker no notebook uses yet, a function stub)."""
    checker = getattr(mh, name)
    if name in SOLUTIONS:
        out = run_stub(SOLUTIONS[name])
        assert f"⏳ {checker.title}: {NOT_YET}\n" in out
    else:
        passed, out = verdict(checker, stub_for(checker), capsys)
        assert not passed
        assert out == f"⏳ {checker.title}: {NOT_YET}\n"


@pytest.mark.parametrize("name", CHECKERS)
def test_the_folded_solution_passes(name):
    if name not in SOLUTIONS:
        pytest.skip(f"no notebook calls mh.{name} yet")
    results, printed = run_solution(SOLUTIONS[name])
    assert all(results) and printed.count("✅") == len(results), printed


def _vandal(*args, **kwargs):
    """A student's function that touches every piece of global state, then fails."""
    torch.manual_seed(1)
    torch.rand(5)
    random.seed(1)
    np.random.seed(1)
    torch.set_num_threads(1)
    torch.set_grad_enabled(False)
    torch.set_default_dtype(torch.float64)
    raise ValueError("boom")


@pytest.mark.parametrize("name", CHECKERS)
def test_global_state_is_left_alone(name, capsys):
    checker = getattr(mh, name)
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    threads = torch.get_num_threads()
    before = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    for fn in (stub, _vandal, lambda *a: None):
        checker(fn)
    if name in SOLUTIONS:
        run_solution(SOLUTIONS[name])
    capsys.readouterr()
    assert torch.equal(torch.get_rng_state(), before[0])
    assert random.getstate() == before[1]
    assert np.array_equal(np.random.get_state()[1], before[2])
    assert torch.get_num_threads() == threads
    assert torch.is_grad_enabled() and torch.get_default_dtype() == torch.float32


@pytest.mark.parametrize("name, helper", FAULTS, ids=[f"{n}-{h}" for n, h in FAULTS])
def test_a_fault_in_the_checkers_own_code_is_never_blamed_on_the_student(name, helper, monkeypatch, capsys):
    checker = getattr(mh, name)

    def fault(*args, **kwargs):
        raise KeyError("injected fault")

    monkeypatch.setattr(home(checker), helper, fault)
    if name in SOLUTIONS:
        results, out = run_solution(SOLUTIONS[name])
        passed = all(results)
    else:
        passed, out = verdict(checker, stub_for(checker), capsys)
    assert "your function raised" not in out and "❌" not in out, out
    if not out.startswith(("✅", "⏳")):  # the helper was used: the checker says it failed, and how to report it
        assert out.startswith("⚠️") and CHECKER_FAILED in out and "report" in out and "KeyError" in out, out
        assert not passed


@pytest.mark.parametrize("name", ON_CONTRACT)
def test_every_checker_reports_its_own_faults(name, monkeypatch, capsys):
    """At least the first call into the student's function goes through _call_student: break it, and the checker
    must say that IT failed."""
    checker = getattr(mh, name)

    def fault(*args, **kwargs):
        raise KeyError("injected fault")

    monkeypatch.setattr(home(checker), "_call_student", fault)
    passed, out = verdict(checker, stub_for(checker), capsys)
    assert not passed and out.startswith("⚠️") and CHECKER_FAILED in out, out


ODD_RETURNS = {
    "a string": lambda *a: "hello",
    "an int": lambda *a: 3,
    "a list": lambda *a: [1, 2],
    "a dict": lambda *a: {},
    "a 0-d tensor": lambda *a: torch.tensor(1.0),
    "a 2x2 tensor": lambda *a: torch.zeros(2, 2),
    "a tuple of strings": lambda *a: ("a", "b"),
    "NaN": lambda *a: float("nan"),
    "a complex tensor": lambda *a: torch.zeros(3, dtype=torch.complex64),
    "a bool tensor": lambda *a: torch.ones(2, 3, dtype=torch.bool),
    "a NumPy array": lambda *a: np.zeros((2, 2)),
    "a generator": lambda *a: (t for t in a),
    "a grad tensor": lambda *a: torch.zeros(3, requires_grad=True),
    "the input back": lambda *a: a[0],
    "all the inputs": lambda *a: a,
}


@pytest.mark.parametrize("what", list(ODD_RETURNS))
@pytest.mark.parametrize("name", FUNCTION_CHECKERS)
def test_odd_answers_get_a_hint_never_a_checker_failure(name, what, capsys):
    passed, out = verdict(getattr(mh, name), ODD_RETURNS[what], capsys)
    assert CHECKER_FAILED not in out, out
    assert out.count("\n") == 1 and out.startswith(("❌", "✅")), out
    assert not passed or what in {"the input back", "all the inputs"}, out


@pytest.mark.parametrize("name", FUNCTION_CHECKERS)
def test_forgetting_return_has_its_own_message(name, capsys):
    checker = getattr(mh, name)
    passed, out = verdict(checker, lambda *a: None, capsys)
    assert not passed and out == (
        f"❌ {checker.title}: your function returned None — did you forget `return`? End it with "
        "`return <your result>` (a bare expression on the last line is not returned)\n"
    )


@pytest.mark.parametrize("name", CHECKERS)
@pytest.mark.parametrize("passed_instead", [None, torch.zeros(3), "my_function", 42], ids=["None", "tensor", "str", "int"])
def test_passing_something_else_than_a_function(name, passed_instead, capsys):
    checker = getattr(mh, name)
    passed, out = verdict(checker, passed_instead, capsys)
    assert not passed and out.startswith(f"❌ {checker.title}: you passed "), out
    assert "not a function" in out and f"mh.{name}(your_function)" in out, out


@pytest.mark.parametrize("name", FUNCTION_CHECKERS)
def test_the_students_exception_is_reported_as_theirs(name, capsys):
    def broken(*args):
        return {}["missing key"]

    passed, out = verdict(getattr(mh, name), broken, capsys)
    assert not passed and out.startswith("❌") and "your function raised KeyError: 'missing key'" in out, out
    assert CHECKER_FAILED not in out


@pytest.mark.parametrize("name", CHECKERS)
def test_calling_the_checker_wrongly_gets_a_hint(name, capsys):
    checker = getattr(mh, name)
    assert not checker()
    assert f"mh.{name}(your_function)" in capsys.readouterr().out
    assert not checker(stub, 1, 2, 3, 4, 5, 6, 7, 8, 9)
    assert f"mh.{name}(your_function)" in capsys.readouterr().out
