"""One contract for every exercise checker in ``mh.__all__`` (read at run time, so new notebooks' checkers are
included without editing this file):

* the untouched stub prints exactly today's ⏳ line and gives a falsy result;
* the folded solution of the notebook that uses the checker prints ✅ (checkers no notebook uses yet are skipped);
* the global random state (torch, random, NumPy) and torch's thread count, grad mode and default dtype are left as
  they were, whatever the student's function does to them;
* a fault injected into any of the checker's own helpers is reported as a failure of the CHECKER, never blamed on
  the student; an exception raised by the student's function is reported as theirs;
* odd things a beginner returns or passes (None, a string, a tensor instead of the function, ...) get a ❌ hint,
  never a checker failure or a traceback;
* whatever happens, a checker prints exactly one line (every call below goes through :func:`verdict`, which asserts
  it, as tests/unit/checker_support.py does for every answer of the per-notebook tests);
* a right answer in any reasonable form passes: NumPy arrays and numbers, half precision, float64, 0-d tensors;
* nothing is patched while the student's code runs, and a fault injected into any function that saves or restores
  the global state, or into any helper of checkers/core.py, gives the ⚠️ line with the rest of the state restored.
"""

from __future__ import annotations

import random
import re
import sys
import types

import numpy as np
import pytest
import torch
from notebook_solutions import bare_namespace, run_solution, run_stub, solutions_by_checker

import mha_helpers as mh

CHECKERS = [name for name in mh.__all__ if name.startswith("check_")]
SOLUTIONS = solutions_by_checker()
NOT_YET = "not yet — replace the `raise NotImplementedError` with your code, then run again."
CHECKER_FAILED = "the checker itself failed"


def stub(*args, **kwargs):
    raise NotImplementedError("your code here")


def verdict(checker, fn, capsys) -> tuple[bool, str]:
    """Run ``checker(fn)``: whether it passed and what it printed, which is always exactly one line."""
    passed = checker(fn)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.endswith("\n"), f"not one line: {out!r}"
    return bool(passed), out


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


# ---- one policy for answers in any reasonable form (checkers/core.py's docstring) ---------------------------------


def solution_function(name: str):
    """The function (or class) the folded solution of ``name``'s exercise defines, run in a bare namespace."""
    ex = SOLUTIONS[name]
    namespace = bare_namespace(ex.notebook)
    exec(compile(ex.solution or "", f"<solution of {name}>", "exec"), namespace)
    call = next(c for c in ex.calls if f"mh.{name}(" in c)
    return namespace[re.search(rf"mh\.{name}\((\w+)\)", call).group(1)]


def as_numpy(value):
    """An answer as a student working in NumPy would return it: arrays, NumPy ints and floats."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, (tuple, list)):
        return type(value)(as_numpy(v) for v in value)
    if isinstance(value, dict):
        return {as_numpy(k): as_numpy(v) for k, v in value.items()}
    if isinstance(value, bool):
        return value
    return np.int64(value) if isinstance(value, int) else np.float64(value) if isinstance(value, float) else value


def in_dtype(dtype):
    def convert(value):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value.to(dtype)
        if isinstance(value, (tuple, list)):
            return type(value)(convert(v) for v in value)
        return value

    return convert


def as_0d_tensor(value):
    return torch.tensor(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


ANSWER_FORMS = {"numpy": as_numpy, "float16": in_dtype(torch.float16), "bfloat16": in_dtype(torch.bfloat16),
                "float64": in_dtype(torch.float64), "0-d tensor": as_0d_tensor}
#: checkers judged by audit (notebook 13): their answers are implementations, not values
POLICY_CHECKERS = [name for name in FUNCTION_CHECKERS
                   if name in SOLUTIONS and not home(getattr(mh, name)).__name__.endswith("nb13")]


@pytest.mark.parametrize("form", list(ANSWER_FORMS))
@pytest.mark.parametrize("name", POLICY_CHECKERS)
def test_every_checker_takes_the_right_answer_in_any_reasonable_form(name, form, capsys):
    """The folded solution, its result returned as NumPy values, in half precision, in float64 or as 0-d tensors
    where it returns a number: every checker judges them all right (one policy, in checkers/core.py)."""
    solution, convert = solution_function(name), ANSWER_FORMS[form]
    passed, out = verdict(getattr(mh, name), lambda *args: convert(solution(*args)), capsys)
    assert passed and out.startswith("✅") and out.count("\n") == 1, out


def test_the_policy_covers_the_exercises():
    assert len(POLICY_CHECKERS) >= 25, POLICY_CHECKERS


# ---- nothing patched: the student's code sees torch and mh as they are -------------------------------------------


def test_the_checkers_patch_nothing_while_the_student_runs(capsys):
    """The softmax spy (2.1, 9.1) and the valid_head_counts watch (6.1) observe the call without touching torch or
    mh: inside the student's function every entry point is the object it was before."""
    import torch.nn.functional as F

    def entry_points():
        return (torch.softmax, F.softmax, torch.Tensor.softmax, torch.log_softmax, torch.special.softmax,
                torch._softmax, mh.valid_head_counts)

    before = entry_points()
    seen = []

    def looking(result):
        def fn(*args):
            seen.append(entry_points() == before and "softmax" not in vars(torch.Tensor))
            return result(*args)

        return fn

    mh.check_softmax(looking(solution_function("check_softmax")))
    mh.check_online_softmax(looking(solution_function("check_online_softmax")))
    mh.check_head_dims(looking(solution_function("check_head_dims")))
    out = capsys.readouterr().out
    assert out.count("✅") == 3, out
    assert seen and all(seen), seen
    assert entry_points() == before and sys.getprofile() is None


# ---- faults in the machinery that saves and restores the global state ---------------------------------------------

#: (owner, name, what it is) of every function the state machinery calls; each is made to raise, one at a time
STATE_FUNCTIONS = [
    (torch, "get_rng_state", "read"), (torch, "set_rng_state", "write"),
    (random, "getstate", "read"), (random, "setstate", "write"),
    (np.random, "get_state", "read"), (np.random, "set_state", "write"),
    (torch, "get_num_threads", "read"), (torch, "set_num_threads", "write"),
    (torch, "is_grad_enabled", "read"), (torch, "set_grad_enabled", "write"),
    (torch, "get_default_dtype", "read"), (torch, "set_default_dtype", "write"),
]
REAL = {(owner.__name__, attr): getattr(owner, attr) for owner, attr, _ in STATE_FUNCTIONS}


def _state_snapshot() -> dict:
    return {"torch": REAL["torch", "get_rng_state"](), "random": REAL["random", "getstate"](),
            "numpy": REAL["numpy.random", "get_state"](), "threads": REAL["torch", "get_num_threads"](),
            "grad": REAL["torch", "is_grad_enabled"](), "dtype": REAL["torch", "get_default_dtype"]()}


def _state_differences(before: dict, after: dict) -> set[str]:
    same = {"torch": torch.equal(before["torch"], after["torch"]), "random": before["random"] == after["random"],
            "numpy": all(np.array_equal(a, b) for a, b in zip(before["numpy"], after["numpy"], strict=True))}
    same |= {key: before[key] == after[key] for key in ("threads", "grad", "dtype")}
    return {key for key, ok in same.items() if not ok}


def _put_state_back(state: dict) -> None:
    REAL["torch", "set_rng_state"](state["torch"])
    REAL["random", "setstate"](state["random"])
    REAL["numpy.random", "set_state"](state["numpy"])
    REAL["torch", "set_num_threads"](state["threads"])
    REAL["torch", "set_grad_enabled"](state["grad"])
    REAL["torch", "set_default_dtype"](state["dtype"])


#: which key of the snapshot each write function restores
PIECE = {"set_rng_state": "torch", "setstate": "random", "set_state": "numpy", "set_num_threads": "threads",
         "set_grad_enabled": "grad", "set_default_dtype": "dtype"}


def _vandal_with_real_functions(calls: list):
    """A student's function that changes every piece of global state (with the real functions, so that the one
    made to raise is met only by the checker), then fails."""

    def vandal(*args, **kwargs):
        calls.append(args)
        torch.manual_seed(1)
        torch.rand(5)
        random.seed(1)
        np.random.seed(1)
        REAL["torch", "set_num_threads"](2 if REAL["torch", "get_num_threads"]() == 1 else 1)
        torch._C._set_grad_enabled(False)
        REAL["torch", "set_default_dtype"](torch.float64)
        raise ValueError("boom")

    return vandal


@pytest.fixture
def global_state():
    """The global state before the test, put back with the real functions afterwards whatever the test broke."""
    state = _state_snapshot()
    yield state
    _put_state_back(state)


@pytest.mark.parametrize("owner, attr, kind", STATE_FUNCTIONS, ids=[f"{o.__name__}.{a}" for o, a, _ in STATE_FUNCTIONS])
@pytest.mark.parametrize("name", CHECKERS)
def test_a_fault_in_saving_or_restoring_the_state_is_the_checkers(name, owner, attr, kind, monkeypatch, capsys,
                                                                  global_state):
    """Each function that reads or writes the global state raises, one at a time, while a student's function that
    changes every piece runs: the checker prints one ⚠️ line (never an exception, never the student's error), and
    every piece it could put back is back. A read that fails stops the check before the student's code runs (as
    does a checker whose own code calls the broken function first, e.g. torch.no_grad() calling set_grad_enabled)."""
    checker, calls = getattr(mh, name), []
    answer = vandal = _vandal_with_real_functions(calls)
    if takes_a_class(checker):
        answer = type("Vandal", (torch.nn.Module,), {"__init__": lambda self: vandal()})

    def fault(*args, **kwargs):
        raise KeyError("injected fault")

    monkeypatch.setattr(owner, attr, fault)
    passed, out = verdict(checker, answer, capsys)
    monkeypatch.undo()
    assert not passed and out.count("\n") == 1, out
    assert out.startswith(f"⚠️ {checker.title}: the checker itself failed") and "KeyError" in out, out
    assert "your function raised" not in out and "report" in out, out
    changed = _state_differences(global_state, _state_snapshot())
    if kind == "read" or not calls:  # a failed read, or the checker's own code needed the broken function first
        assert not calls and not changed, (calls, changed)
    else:
        assert "could not restore" in out, out
        assert changed <= {PIECE[attr]}, changed  # all the others were put back


@pytest.mark.parametrize("owner, attr, kind", [f for f in STATE_FUNCTIONS if f[2] == "write"],
                         ids=[f"{o.__name__}.{a}" for o, a, k in STATE_FUNCTIONS if k == "write"])
def test_a_broken_writer_is_not_needed_when_nothing_changed(owner, attr, kind, monkeypatch, capsys):
    """Only what changed is written back: a right answer that leaves the state alone still passes."""

    def fault(*args, **kwargs):
        raise KeyError("injected fault")

    monkeypatch.setattr(owner, attr, fault)
    passed, out = verdict(mh.check_causal_mask, solution_function("check_causal_mask"), capsys)
    assert passed and out == f"✅ {mh.check_causal_mask.title}: passed\n", out


CORE = sys.modules["_mha_helpers.checkers.core"]
GLOBAL_STATE = sys.modules["_mha_helpers.checkers.global_state"]
#: the contract's own machinery (checkers/core.py and the state it saves, checkers/global_state.py), each made to
#: raise in turn: (module, name)
CORE_HELPERS = [(CORE, name) for name in (
    "save_global_state", "restore_global_state", "_checked", "_verdict", "_checker_failed", "_one_line",
    "_call_hint", "_not_a_function_hint", "_student_error_line", "error_hint", "_mark_student", "_student_line",
    "_names_in", "_warn_again", "_innermost_frame_is_library", "_raised_by_student")] + [
    (GLOBAL_STATE, name) for name in ("state_pieces", "_same_numpy_state")]
#: with these broken the state cannot be saved or put back at all: the ⚠️ line is all the checker can do
STATE_MACHINERY = {"save_global_state", "restore_global_state", "state_pieces", "_checked"}


def _typo(n):
    return torch.ones(n, n, dtype=torch.bool).tril(-1)


def _raises(n):
    return {}["missing key"]


CORE_ANSWERS = {"stub": stub, "right": lambda n: torch.ones(n, n, dtype=torch.bool).tril(), "wrong": _typo,
                "raises": _raises, "returns None": lambda n: None, "not a function": torch.zeros(3),
                "changes the state": lambda n: (torch.manual_seed(5), torch.ones(n, n, dtype=torch.bool).tril())[1]}


@pytest.mark.parametrize("answer", list(CORE_ANSWERS))
@pytest.mark.parametrize("module, helper", CORE_HELPERS, ids=[name for _, name in CORE_HELPERS])
def test_a_fault_in_the_contracts_machinery_is_never_blamed_on_the_student(module, helper, answer, monkeypatch,
                                                                           capsys, global_state):
    """Each helper of checkers/core.py raises, one at a time: the checker prints either the line it prints without
    the fault, or one ⚠️ line naming the fault; never an exception, never a ❌ the fault caused; the state is back."""
    expected = verdict(mh.check_causal_mask, CORE_ANSWERS[answer], capsys)
    torch.manual_seed(123)
    before = _state_snapshot()

    def fault(*args, **kwargs):
        raise KeyError("injected fault")

    monkeypatch.setattr(module, helper, fault)
    passed, out = verdict(mh.check_causal_mask, CORE_ANSWERS[answer], capsys)
    assert out.count("\n") == 1, out
    assert (passed, out) == expected or (
        not passed and out.startswith(f"⚠️ {mh.check_causal_mask.title}: the checker itself failed") and
        "KeyError" in out and "report" in out), (expected, out)
    if helper not in STATE_MACHINERY:
        assert not _state_differences(before, _state_snapshot())
