"""The machinery every exercise checker shares: call the student's function, turn what happens into one line
(pass, a specific hint, or "not yet"), and never raise into the notebook.

The contract, the same for every ``check_*`` (tests/unit/test_checker_contract.py tests it for all of them):

* A checker is written as ``@exercise_checker("Exercise N.k: name")`` over a function that returns None on a pass
  or a hint string. It calls the student's function only through :func:`_call_student`.
* What the student sees, one line, is decided here:

  ======================================  ==================================================================
  what happened                           the line
  ======================================  ==================================================================
  the check returned None                 ``✅ <title>: passed``
  the check returned a hint               ``❌ <title>: <hint>``
  the untouched stub (NotImplementedError)  ``⏳ <title>: not yet — replace the `raise NotImplementedError` ...``
  the function returned None              ``❌ <title>: your function returned None — did you forget `return`? ...``
  not a function was passed               ``❌ <title>: you passed a Tensor, not a function ...``
  the student's function raised           ``❌ <title>: your function raised X: message`` (+ a hint for common ones)
  the checker's OWN code raised           ``⚠️ <title>: the checker itself failed ...`` (never the student's fault)
  ======================================  ==================================================================

* The global random state (torch, Python's ``random``, NumPy), torch's thread count, grad mode and default dtype are
  saved before and restored after every check, whatever the student's function does.
* Values are compared with one policy, :func:`_close` (see there): float64, NumPy arrays and ``F.linear``'s rounding
  pass; the tolerance follows the coarser dtype of the two.

Only :func:`exercise_checker` and :class:`CheckResult` are public. The helpers below keep their leading underscore
although every ``checkers/nbNN.py`` imports them (the one exception to the package's rule that a name another module
uses is public): they are the contract's machinery, private to the ``checkers/`` sub-package, and nothing outside it
may call them. ``_call_student`` in particular must stay the one door to the student's code, which
``tests/unit/test_checker_contract.py`` finds by that name; ``tests/unit/test_package_structure.py`` checks that no
module outside ``checkers/`` imports them.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import math
import os
import random
import re
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..validation import check_bool, check_str

_NOT_YET = "not yet — replace the `raise NotImplementedError` with your code, then run again."
_REPORT = (
    "This is a bug in mha_helpers, not in your code (which may well be right). Please report it — open an issue in "
    "the project's repository, or tell your teacher — quoting this line and your function."
)


class _NotYet(Exception):
    """Raised inside a checker when the student's function is still the stub."""


class _ReturnedNone(Exception):
    """Raised inside a checker when the student's function returned None (usually a forgotten ``return``)."""


class _Hint(Exception):
    """Raise ``_Hint("...")`` anywhere inside a checker to stop it with that hint (as if the check returned it)."""


_CASE: contextvars.ContextVar[str | None] = contextvars.ContextVar("_mha_checker_case", default=None)
_STUDENT_MARK = "_mha_raised_by_student"
_UNMARKABLE: list[BaseException] = []  # student exceptions that refuse an attribute (cleared after every check)
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__))
_HERE = os.path.dirname(os.path.abspath(__file__))


@contextlib.contextmanager
def _describe_case(description: str) -> Iterator[None]:
    """Inside this block, an error raised by the student's function is reported "for <description>"."""
    token = _CASE.set(description)
    try:
        yield
    finally:
        _CASE.reset(token)


def _innermost_frame_is_library(exc: BaseException) -> bool:
    """True when the innermost frame of ``exc``'s traceback is inside torch (not the student's own code)."""
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and os.path.abspath(frames[-1].filename).startswith(_TORCH_DIR)


def _student_line(exc: BaseException, fn: Callable) -> str:
    """The source line of the student's code where ``exc`` was raised (the innermost frame in their file), or ''."""
    filename = getattr(getattr(fn, "__code__", None), "co_filename", None)
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if f.filename == filename] or [
        f for f in frames if not os.path.abspath(f.filename).startswith((_TORCH_DIR, _HERE))
    ]
    return (ours[-1].line or "") if ours else ""


def _call_student(fn: Callable, *args, **kwargs):
    """Call the student's function and return what it returned.

    The untouched stub (``raise NotImplementedError``) becomes :class:`_NotYet`; a None result becomes
    :class:`_ReturnedNone`; any other exception is re-raised unchanged (so a checker may still catch, say, a
    RuntimeError to give a specific hint) but marked as the student's, so that :func:`exercise_checker` reports it
    as "your function raised ..." and not as a failure of the checker.
    """
    caught: list = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = fn(*args, **kwargs)
            except NotImplementedError as exc:
                if not _innermost_frame_is_library(exc):  # the stub itself, not an op torch lacks for some dtype
                    raise _NotYet() from exc
                _mark_student(exc, fn, caught)
                raise
            except Exception as exc:
                _mark_student(exc, fn, caught)
                raise
    finally:
        _warn_again(caught)  # outside the listening block: re-emitted warnings must not be caught again
    if result is None:
        raise _ReturnedNone()
    return result


def _warn_again(caught: list) -> None:
    """Pass the warnings the student's code raised on to the notebook, as if nobody had listened in."""
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _mark_student(exc: BaseException, fn: Callable, caught: Sequence = ()) -> None:
    """Remember on ``exc`` that the student's function raised it, with the line, the hidden case and the warnings
    seen on the way (torch warns about ``.T`` on a 3-D tensor before the product fails)."""
    line = _student_line(exc, fn)
    warned = any("x.T" in str(w.message) for w in caught)  # torch warns (once per process) about .T on 3-D
    if ".T" not in line and (warned or (not line and "T" in _names_in(getattr(fn, "__code__", None)))):
        line += "  # .T"  # no source to read (e.g. a function typed at a prompt): its code still shows .T
    try:
        setattr(exc, _STUDENT_MARK, (line, _CASE.get()))
    except Exception:  # an exception type that refuses attributes: remember the object itself
        _UNMARKABLE.append(exc)


def _names_in(code: object) -> set[str]:
    """The global and attribute names a code object (and the functions nested in it) uses, e.g. ``T`` for ``.T``."""
    if not hasattr(code, "co_names"):
        return set()
    names = set(code.co_names)
    for const in code.co_consts:
        names |= _names_in(const)
    return names


def _raised_by_student(exc: BaseException) -> bool:
    return hasattr(exc, _STUDENT_MARK) or any(exc is e for e in _UNMARKABLE)


# ---- hints for the errors beginners meet most --------------------------------------------------------------------


def _error_hint(exc: BaseException, line: str) -> str:
    """A plain-words hint for a common error raised by the student's code ('' when none applies)."""
    message = str(exc)
    if isinstance(exc, NameError):
        name = getattr(exc, "name", None) or (re.findall(r"'(\w+)'", message) or [""])[0]
        if name == "math":
            return ("this notebook does not import math: write x ** 0.5 for a square root (or add `import math` at "
                    "the top of the notebook)")
        if name in {"F", "nn", "np", "torch", "mh"}:
            return f"`{name}` is not imported in this notebook; use the names its first cell imports"
        return f"`{name}` is not defined here: is it defined in a cell you have not run yet?"
    if isinstance(exc, TypeError) and re.search(
        r"but got float|'float' object cannot be interpreted as an integer|slice indices must be integers|"
        r"must be tuple of ints|expected .*int.* but got float|received an invalid combination of arguments.*float",
        message, re.S,
    ):
        return ("a size or an index is a float: d_model / num_heads gives a float (12 / 3 = 4.0) even when it "
                "divides evenly; use integer division, d_model // num_heads")
    if isinstance(exc, TypeError) and re.search(r"required positional argument|positional arguments? but \d+ (were|was) "
                                                r"given|got an unexpected keyword argument", message) and \
            not re.search(r"^(view|reshape|ones|zeros|full|randn|arange)\(", message):
        return ("the checker calls your function exactly as the stub's `def` line says: keep the stub's name and "
                "parameters (and call any helper with all of its arguments)")
    if isinstance(exc, IndexError) and "Dimension out of range" in message:
        return ("your code uses a dim this tensor does not have: the hidden inputs may have more or fewer dims than "
                "the ones you tried; count dims from the end (dim=-1, .transpose(-2, -1)) so any leading dims work")
    if isinstance(exc, AttributeError) and re.search(r"'(list|tuple|int|float)' object has no attribute", message):
        return ("an argument is a plain Python value (a list, tuple or number), not a tensor: use len(...) and "
                "indexing on it, or turn it into one with torch.tensor(...)")
    if "view size is not compatible with input tensor's size and stride" in message:
        return ("view on a non-contiguous tensor: after transpose(1, 2) a token's features are no longer next to "
                "each other in memory, so .view cannot merge them — use .reshape(...) (it copies when it must) or "
                ".contiguous().view(...)")
    matmul = re.search(r"mat1 and mat2 shapes cannot be multiplied|Expected size for first two dimensions of batch2|"
                       r"size mismatch|inconsistent tensor size|must match the size of tensor", message)
    if matmul and re.search(r"\.T\b", line) and ("@" in line or "# .T" in line):
        return ("`.T` reverses ALL the dims of a tensor with more than two (a (batch, S, d) key becomes (d, S, batch)); "
                "swap only the last two with .transpose(-2, -1)")
    if matmul and re.search(r"\bW\w*\s*@\s*\w", line):
        return ("the weight is on the left: a token is a row of x, so the projection is x @ W.T "
                "(nn.Linear stores W as (out_features, in_features))")
    if "must match the size of tensor" in message:
        if re.search(r"\.(max|sum|amax|mean|logsumexp)\((?![^)]*keepdim\s*=\s*True)", line) or "@" not in line:
            return ("two tensors' shapes do not line up here. If one of them comes from a reduction such as "
                    ".max(dim=-1) or .sum(dim=-1), pass keepdim=True: (..., S) and (..., 1) broadcast row by row, "
                    "(..., S) and (...,) do not")
    if matmul:
        return ("the inner sizes of this matrix product do not match: check each operand's shape (print it); for "
                "attention scores it is query @ key.transpose(-2, -1)")
    return ""


def _student_error_line(exc: BaseException) -> str:
    """``your function raised X: message`` plus where and a hint, for an exception the student's function raised."""
    line, case = getattr(exc, _STUDENT_MARK, ("", None))
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"your function raised {type(exc).__name__}" + (f": {message}" if message else "")
    if case:
        text += f" (for {case})"
    source = line.split("  # .T")[0].strip()
    if source:
        text += f", at `{source}`"
    hint = _error_hint(exc, line)
    return f"{text}. Hint: {hint}" if hint else text


# ---- what is passed in -------------------------------------------------------------------------------------------


def _not_a_function_hint(fn: object, checker_name: str) -> str | None:
    """A hint when the checker was given something other than a function (a result, None, a string)."""
    if callable(fn):
        return None
    call = f"mh.{checker_name}(your_function)"
    if fn is None:
        return (f"you passed None, not a function: pass the function itself by its name, without parentheses, "
                f"e.g. {call}")
    what = "a torch.Tensor" if isinstance(fn, torch.Tensor) else f"a {type(fn).__name__}"
    return (f"you passed {what}, not a function: pass the function itself by its name, without calling it, "
            f"e.g. {call} (not {checker_name}(your_function(...)))")


def _call_hint(check: Callable, args: tuple, kwargs: dict, takes_function: bool) -> str | None:
    """A hint when the checker itself is called wrongly: no argument, extra ones, or not a function."""
    call = f"mh.{check.__name__}(your_function)"
    try:
        inspect.signature(check).bind(*args, **kwargs)
    except TypeError:
        if not args and not kwargs:
            return f"pass your function to the checker: {call}"
        return f"call the checker with your function only: {call}"
    if not takes_function:
        return None
    return _not_a_function_hint(args[0] if args else next(iter(kwargs.values())), check.__name__)


# ---- the global state a checker must leave as it found it ---------------------------------------------------------


def _save_global_state() -> dict:
    state = {
        "torch": torch.get_rng_state(),
        "random": random.getstate(),
        "threads": torch.get_num_threads(),
        "grad": torch.is_grad_enabled(),
        "dtype": torch.get_default_dtype(),
    }
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        state["numpy"] = numpy.random.get_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_global_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["random"])
    if torch.get_num_threads() != state["threads"]:
        torch.set_num_threads(state["threads"])
    torch.set_grad_enabled(state["grad"])
    if torch.get_default_dtype() != state["dtype"]:
        torch.set_default_dtype(state["dtype"])
    if "numpy" in state:
        sys.modules["numpy"].random.set_state(state["numpy"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


# ---- the checker decorator ----------------------------------------------------------------------------------------


class CheckResult:
    """What a checker returns: truthy when the exercise passed. It shows nothing in a notebook (the checker has
    already printed its verdict), so an exercise cell ends with the one line a student needs to read."""

    def __init__(self, passed: bool) -> None:
        self.passed = passed

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return f"CheckResult(passed={self.passed})"

    def _ipython_display_(self) -> None:  # IPython calls this instead of printing the repr: show nothing
        pass


def exercise_checker(title: str, *, takes_function: bool = True) -> Callable:
    """Decorator for checkers: the wrapped function returns None on success or a hint string on failure.

    The decorated checker prints one line (✅ passed, ❌ a hint, ⏳ not yet, or ⚠️ when the checker itself failed;
    see the module docstring) and returns a :class:`CheckResult`, truthy only on success. It never raises into the
    notebook. With ``takes_function`` (the default) its first argument must be callable: a tensor or None passed
    instead gets its own hint. Global random states, torch's thread count, grad mode and default dtype are restored.
    """
    check_str("title", title, "the exercise's title, e.g. 'Exercise 2.1: softmax'")
    check_bool("takes_function", takes_function)

    def wrap(check: Callable[..., str | None]) -> Callable[..., CheckResult]:
        @functools.wraps(check)
        def run(*args, **kwargs) -> CheckResult:
            state = _save_global_state()
            try:
                hint = _call_hint(check, args, kwargs, takes_function)
                if hint is None:
                    hint = check(*args, **kwargs)
            except _NotYet:
                print(f"⏳ {title}: {_NOT_YET}")
                return CheckResult(False)
            except _ReturnedNone:
                hint = ("your function returned None — did you forget `return`? End it with `return <your result>` "
                        "(a bare expression on the last line is not returned)")
            except _Hint as stop:
                hint = str(stop)
            except Exception as exc:
                if _raised_by_student(exc):
                    hint = _student_error_line(exc)
                else:  # the checker's own code raised: never the student's fault
                    where = traceback.extract_tb(exc.__traceback__)[-1]
                    print(f"⚠️ {title}: the checker itself failed ({type(exc).__name__}: {exc}, in "
                          f"{where.name}, line {where.lineno} of {os.path.basename(where.filename)}). {_REPORT}")
                    return CheckResult(False)
            finally:
                _UNMARKABLE.clear()
                _restore_global_state(state)
            if hint:
                print(f"❌ {title}: {hint}")
                return CheckResult(False)
            print(f"✅ {title}: passed")
            return CheckResult(True)

        run.title = title  # what the checker prints before its verdict (tests read it)
        return run

    return wrap


# ---- comparing values: one tolerance policy -----------------------------------------------------------------------

#: rtol, atol per dtype. The coarser dtype of the two compared tensors decides, so a float64 answer to a float32
#: question is judged at float32 precision. atol is scaled by max(1, the largest |expected| value), so results in
#: the hundreds are not held to an absolute 1e-5. These are looser than torch.testing's defaults on purpose: a
#: student's order of operations (divide then exp, or exp then divide; F.linear or x @ W.T) rounds differently.
_TOLERANCES = {
    torch.float64: (1e-7, 1e-9),
    torch.float32: (1e-4, 1e-5),
    torch.float16: (2e-3, 1e-3),
    torch.bfloat16: (2e-2, 1e-2),
}
_PRECISION = [torch.bfloat16, torch.float16, torch.float32, torch.float64]  # coarse -> fine


def _as_tensor(got: object) -> object:
    """NumPy arrays and NumPy/Python numbers as a CPU tensor (detached); a tensor detached on the CPU; anything
    else unchanged. Lets a checker accept ``np.prod(...)`` or an ``ndarray`` where a value is asked for."""
    if isinstance(got, torch.Tensor):
        return got.detach().cpu()
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(got, (numpy.ndarray, numpy.generic)):
        if got.dtype.kind in "biuf":
            return torch.as_tensor(numpy.asarray(got).copy())
        return got
    if isinstance(got, (int, float)) and not isinstance(got, bool):
        return torch.tensor(got, dtype=torch.float64 if isinstance(got, float) else torch.int64)
    return got


def _as_number(got: object) -> int | float | None:
    """A plain Python int or float for a number in any reasonable form (int, NumPy int/float, a one-element tensor
    or array); None for anything else (bool included: True is not a count)."""
    if isinstance(got, bool):
        return None
    if isinstance(got, (int, float)):
        return got
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(got, (numpy.generic, numpy.ndarray)):
        if getattr(got, "size", 1) != 1 or got.dtype.kind not in "iuf":
            return None
        return got.item()
    if isinstance(got, torch.Tensor) and got.numel() == 1 and got.dtype != torch.bool and not got.is_complex():
        return got.item()
    return None


def _tolerance(*dtypes: torch.dtype) -> tuple[float, float]:
    floats = [d for d in dtypes if d in _TOLERANCES]
    if not floats:
        return _TOLERANCES[torch.float32]
    coarsest = min(floats, key=_PRECISION.index)
    return _TOLERANCES[coarsest]


def _close(got: object, expected: torch.Tensor, *, rtol: float | None = None, atol: float | None = None) -> bool:
    """THE comparison of every checker: True when ``got`` (a tensor or NumPy array) has ``expected``'s shape and
    values. NaN never matches; shapes must be equal (no broadcasting); integer and boolean tensors must be equal
    exactly; floats within the tolerance of the coarser dtype (see ``_TOLERANCES``), unless ``rtol``/``atol`` are
    given."""
    got = _as_tensor(got)
    if not isinstance(got, torch.Tensor) or not isinstance(expected, torch.Tensor):
        return False
    if tuple(got.shape) != tuple(expected.shape) or got.is_complex():
        return False
    want = expected.detach().cpu()
    if not got.is_floating_point() and not want.is_floating_point():
        return bool(torch.equal(got.long(), want.long()))
    default_rtol, default_atol = _tolerance(got.dtype, want.dtype)
    rtol = default_rtol if rtol is None else rtol
    atol = default_atol if atol is None else atol
    g, w = got.double(), want.double()
    if bool(torch.isnan(g).any()) or bool(torch.isnan(w).any()):
        return False
    finite = w[torch.isfinite(w)]
    scale = max(1.0, float(finite.abs().max())) if finite.numel() else 1.0
    return bool(torch.allclose(g, w, rtol=rtol, atol=atol * scale))


def _matches(got: object, expected: torch.Tensor, atol: float | None = None) -> bool:
    """True when ``got`` is a tensor (or NumPy array) of ``expected``'s shape with the same values: :func:`_close`
    (``atol``, when given, replaces the dtype's absolute tolerance)."""
    return _close(got, expected, atol=atol)


def _shape_hint(name: str, got: object, expected: Sequence[int], meaning: str = "", context: str = "") -> str | None:
    """A hint when ``got`` is not a tensor of shape ``expected``; None when it is.

    ``meaning`` names the dims (``"(batch, seq, d_model)"``) and ``context`` the case (``"for seq_len=5"``); both
    are woven into one sentence: "your mask has shape (5, 6), expected (5, 5) = (seq_len, seq_len) for seq_len=5".
    """
    expected = tuple(int(n) for n in expected)
    named = f"{expected} = {meaning}" if meaning else f"{expected}"
    tail = f" {context}" if context else ""
    if not isinstance(got, torch.Tensor):
        if got is not None and type(got).__name__ == "ndarray":
            return (f"{name} should be a torch.Tensor of shape {named}{tail}, got a NumPy array; "
                    "stay in torch (torch functions and methods keep tensors)")
        return f"{name} should be a torch.Tensor of shape {named}{tail}, got {type(got).__name__}"
    if tuple(got.shape) != expected:
        return f"{name} has shape {tuple(got.shape)}, expected {named}{tail}"
    return None


# ---- pairs and forbidden calls ------------------------------------------------------------------------------------


def _pair_hint(got: object, names: str, shapes: Sequence[Sequence[int]] | None = None) -> str | None:
    """A hint unless ``got`` is a tuple/list of two results named ``names`` (e.g. ``"output, weights"``).

    With ``shapes`` (the two expected shapes), a pair returned in the wrong order gets its own hint.
    """
    if isinstance(got, torch.Tensor) or not isinstance(got, (tuple, list)) or len(got) != 2:
        length = f" of length {len(got)}" if isinstance(got, (tuple, list)) else ""
        return f"return two tensors, `return {names}`; got {type(got).__name__}{length}"
    if shapes is not None:
        first, second = (tuple(s) for s in shapes)
        a, b = (tuple(t.shape) if isinstance(t, torch.Tensor) else None for t in got)
        if first != second and a == second and b == first:
            one, two = (n.strip() for n in names.split(","))
            return f"the two results are in the wrong order: return {one} first, then {two} (`return {names}`)"
    return None


_SOFTMAXES = (
    (torch, "softmax", "torch.softmax"), (F, "softmax", "F.softmax"), (torch.Tensor, "softmax", ".softmax"),
    (torch.special, "softmax", "torch.special.softmax"), (torch, "log_softmax", "torch.log_softmax"),
    (F, "log_softmax", "F.log_softmax"), (torch.Tensor, "log_softmax", ".log_softmax"),
    (torch.special, "log_softmax", "torch.special.log_softmax"),
)


@contextlib.contextmanager
def _spying_on_softmax() -> Iterator[list[str]]:
    """Inside this block every softmax of torch (``torch.softmax``, ``F.softmax``, ``Tensor.softmax``, their
    ``log_softmax`` and ``torch.special`` twins, and so ``nn.Softmax``) still works, but is recorded in the list
    yielded. Everything is put back afterwards, also on an error."""
    calls: list[str] = []
    saved = []
    for owner, attr, label in _SOFTMAXES:
        original = owner.__dict__.get(attr) if isinstance(owner, type) else getattr(owner, attr)
        inherited = isinstance(owner, type) and attr not in owner.__dict__
        real = getattr(owner, attr)

        def spy(*args, _real=real, _label=label, **kwargs):
            calls.append(_label)
            return _real(*args, **kwargs)

        saved.append((owner, attr, original, inherited))
        setattr(owner, attr, spy)
    try:
        yield calls
    finally:
        for owner, attr, original, inherited in reversed(saved):
            if inherited:
                delattr(owner, attr)
            else:
                setattr(owner, attr, original)


def _isclose_number(got: float, expected: float) -> bool:
    """Numbers (byte counts, FLOPs): equal, or within float rounding when either is a float."""
    return got == expected or math.isclose(got, expected, rel_tol=1e-9, abs_tol=0.0)


# ---- seeded inputs ----------------------------------------------------------------------------------------------


def _random_linear(d_in: int, d_out: int, g: torch.Generator) -> nn.Linear:
    """An nn.Linear with seeded random weights and biases, leaving torch's global random state alone."""
    lin = nn.utils.skip_init(nn.Linear, d_in, d_out)  # no initialisation, so the global RNG is not used
    with torch.no_grad():
        lin.weight.copy_(torch.randn(d_out, d_in, generator=g) / math.sqrt(d_in))
        lin.bias.copy_(torch.randn(d_out, generator=g) * 0.1)
    return lin
