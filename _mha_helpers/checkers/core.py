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
  the student's function raised           ``❌ <title>: your function raised X: message`` (+ a hint for common ones,
                                          checkers/error_hints.py)
  the checker's OWN code raised           ``⚠️ <title>: the checker itself failed ...`` (never the student's fault)
  ======================================  ==================================================================

* The global random state (torch, Python's ``random``, NumPy), torch's thread count, grad mode and default dtype are
  saved before and restored after every check, whatever the student's function does (checkers/global_state.py). A
  piece that cannot be saved (the student's code then does not run) or put back is the checker's failure: the ⚠️
  line, never an exception.
* Every line printed is one line (:func:`_one_line`).
* One policy for answers in any reasonable form, the same in every checker:

  - where a tensor is asked, a NumPy array is taken as the tensor it holds (:func:`_tensor_answer`);
  - where a number is asked, a Python or NumPy int or float and a one-element tensor or array are numbers
    (:func:`_as_number`; :func:`_as_int` where a whole number is asked, e.g. ``np.argmax(...)``);
  - values are compared by :func:`_close`: the tolerance follows the coarser dtype of the two (half precision at
    half precision's, float64 against float64 at float64's), never after a conversion to float64.

* Nothing is patched: the checkers watch the student's torch calls with a ``TorchFunctionMode``
  (:func:`_spying_on_softmax`) and their calls of our own functions with a profile hook for the one thread
  (:func:`_watching_calls`), both gone when the call ends.

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
import re
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..validation import check_bool, check_str
from .error_hints import error_hint
from .global_state import restore_global_state, save_global_state

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
#: the student's exceptions that refuse an attribute, remembered for the one check running (a fresh list each time)
_UNMARKABLE: contextvars.ContextVar[list | None] = contextvars.ContextVar("_mha_unmarkable", default=None)
_STUDENT_MARK = "_mha_raised_by_student"
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__))
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # _mha_helpers/: never the student's code


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
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not os.path.abspath(f.filename).startswith((_TORCH_DIR, _PACKAGE_DIR))]  # never quote our own code
    ours = [f for f in frames if f.filename == filename] or frames
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
    except Exception:  # an exception type that refuses attributes: remember the object itself, for this check
        remembered = _UNMARKABLE.get()
        if remembered is not None:
            remembered.append(exc)


def _names_in(code: object) -> set[str]:
    """The global and attribute names a code object (and the functions nested in it) uses, e.g. ``T`` for ``.T``."""
    if not hasattr(code, "co_names"):
        return set()
    names = set(code.co_names)
    for const in code.co_consts:
        names |= _names_in(const)
    return names


def _raised_by_student(exc: BaseException) -> bool:
    return hasattr(exc, _STUDENT_MARK) or any(exc is e for e in (_UNMARKABLE.get() or ()))


def _student_error_line(exc: BaseException) -> str:
    """``your function raised X: message`` plus where and a hint, for an exception the student's function raised."""
    line, case = getattr(exc, _STUDENT_MARK, ("", None))
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    yours = "your class" if re.search(r"\b__init__\(\)", message) else "your function"
    text = f"{yours} raised {type(exc).__name__}" + (f": {message}" if message else "")
    if case:
        text += f" (for {case})"
    source = line.split("  # .T")[0].strip()
    if source:
        text += f", at `{source}`"
    hint = error_hint(exc, line)
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


_RETURNED_NONE = ("your function returned None — did you forget `return`? End it with `return <your result>` "
                  "(a bare expression on the last line is not returned)")


def _one_line(text: object) -> str:
    """What a checker prints is one line: any newline (a tensor's repr, a torch error) becomes a space."""
    return " ".join(str(text).split())


def _checker_failed(title: str, exc: BaseException) -> str:
    """The line for a failure of the checker's own code: what, where, and how to report it."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f", in {frames[-1].name}, line {frames[-1].lineno} of {os.path.basename(frames[-1].filename)}" \
        if frames else ""
    return f"⚠️ {title}: the checker itself failed ({type(exc).__name__}: {exc}{where}). {_REPORT}"


def _verdict(title: str, check: Callable, args: tuple, kwargs: dict, takes_function: bool) -> tuple[str, bool]:
    """Run the check once: (the line to print, passed). A fault of the checker's own code gives the ⚠️ line."""
    try:
        hint = _call_hint(check, args, kwargs, takes_function)
        if hint is None:
            hint = check(*args, **kwargs)
    except _NotYet:
        return f"⏳ {title}: {_NOT_YET}", False
    except _ReturnedNone:
        hint = _RETURNED_NONE
    except _Hint as stop:
        hint = str(stop)
    except Exception as exc:
        if not _raised_by_student(exc):  # the checker's own code raised: never the student's fault
            return _checker_failed(title, exc), False
        hint = _student_error_line(exc)
    if hint:
        return f"❌ {title}: {hint}", False
    return f"✅ {title}: passed", True


def _checked(title: str, check: Callable, args: tuple, kwargs: dict, takes_function: bool) -> tuple[str, bool]:
    """:func:`_verdict` with the global state saved before and put back after, whatever happens in between."""
    saved = save_global_state()  # if this fails, nothing has run yet: the caller reports the checker's failure
    token = _UNMARKABLE.set([])
    try:
        line, passed = _verdict(title, check, args, kwargs, takes_function)
    except Exception as exc:  # noqa: BLE001 - a fault while judging (e.g. in a hint's own helper)
        line, passed = _checker_failed(title, exc), False
    finally:
        _UNMARKABLE.reset(token)
        failure = restore_global_state(saved)
    if failure is not None:
        return _checker_failed(title, failure), False
    return line, passed


def exercise_checker(title: str, *, takes_function: bool = True) -> Callable:
    """Decorator for checkers: the wrapped function returns None on success or a hint string on failure.

    The decorated checker prints one line (✅ passed, ❌ a hint, ⏳ not yet, or ⚠️ when the checker itself failed;
    see the module docstring) and returns a :class:`CheckResult`, truthy only on success. It never raises into the
    notebook. With ``takes_function`` (the default) its first argument must be callable: a tensor or None passed
    instead gets its own hint. Global random states, torch's thread count, grad mode and default dtype are restored;
    a piece that cannot be saved or restored makes the checker report its own failure.
    """
    check_str("title", title, "the exercise's title, e.g. 'Exercise 2.1: softmax'")
    check_bool("takes_function", takes_function)

    def wrap(check: Callable[..., str | None]) -> Callable[..., CheckResult]:
        @functools.wraps(check)
        def run(*args, **kwargs) -> CheckResult:
            try:
                line, passed = _checked(title, check, args, kwargs, takes_function)
                line = _one_line(line)
            except Exception as exc:  # noqa: BLE001 - the last resort: the machinery above itself broke
                line, passed = (f"⚠️ {title}: the checker itself failed ({type(exc).__name__}: "
                                f"{' '.join(str(exc).split())}). {_REPORT}"), False
            print(line)
            return CheckResult(passed)

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


def _numpy_value(got: object) -> bool:
    """True for a NumPy array or NumPy scalar (without importing NumPy: a student who has it has imported it)."""
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(got, (numpy.ndarray, numpy.generic))


def _as_tensor(got: object) -> object:
    """NumPy arrays and NumPy/Python numbers as a CPU tensor (detached); a tensor detached on the CPU; anything
    else unchanged. Lets a checker accept ``np.prod(...)`` or an ``ndarray`` where a value is asked for."""
    if isinstance(got, torch.Tensor):
        return got.detach().cpu()
    if _numpy_value(got):
        if got.dtype.kind in "biuf":
            return torch.as_tensor(sys.modules["numpy"].asarray(got).copy())
        return got
    if isinstance(got, (int, float)) and not isinstance(got, bool):
        return torch.tensor(got, dtype=torch.float64 if isinstance(got, float) else torch.int64)
    return got


def _tensor_answer(got: object) -> object:
    """THE policy for an answer where a tensor is asked: a tensor (detached, on the CPU) or a NumPy array of numbers
    or booleans (as a tensor of its dtype) is taken as it is; a tuple or list of them element by element; anything
    else is left for the checker's hint (a number, a string, None)."""
    if isinstance(got, (tuple, list)):
        return type(got)(_tensor_answer(t) for t in got)
    if isinstance(got, torch.Tensor) or (_numpy_value(got) and got.ndim > 0):
        return _as_tensor(got)
    return got


def _as_number(got: object) -> int | float | None:
    """A plain Python int or float for a number in any reasonable form (int, NumPy int/float, a one-element tensor
    or array); None for anything else (bool included: True is not a count)."""
    if isinstance(got, bool):
        return None
    if isinstance(got, (int, float)):
        return got
    if _numpy_value(got):
        if getattr(got, "size", 1) != 1 or got.dtype.kind not in "iuf":
            return None
        return got.item()
    if isinstance(got, torch.Tensor) and got.numel() == 1 and got.dtype != torch.bool and not got.is_complex():
        return got.item()
    return None


def _as_int(got: object) -> int | None:
    """A plain int for a whole number in any integer form (int, NumPy integer, ``np.argmax(...)``, a one-element
    integer tensor or array such as ``scores.argmax()``); None for anything else (floats and bools included)."""
    number = _as_number(got)
    if number is None or isinstance(number, float):
        return None
    if isinstance(got, torch.Tensor) and got.is_floating_point():
        return None
    return int(number)


def _tolerance(*dtypes: torch.dtype) -> tuple[float, float]:
    """(rtol, atol) of the coarsest floating dtype among ``dtypes`` (float32's when there is none)."""
    floats = [d for d in dtypes if d in _TOLERANCES]
    if not floats:
        return _TOLERANCES[torch.float32]
    coarsest = min(floats, key=_PRECISION.index)
    return _TOLERANCES[coarsest]


def _close(got: object, expected: torch.Tensor, *, rtol: float | None = None, atol: float | None = None) -> bool:
    """THE comparison of every checker: True when ``got`` (a tensor or NumPy array) has ``expected``'s shape and
    values. NaN never matches; shapes must be equal (no broadcasting); integer and boolean tensors must be equal
    exactly; floats within the tolerance of the coarser dtype of the two (see ``_TOLERANCES``), so a half-precision
    answer is judged at half precision. ``rtol``/``atol``, when given, are floors: a checker may loosen the
    tolerance for its exercise, never make it tighter than the answer's dtype allows. Nothing is converted to
    float64 before the dtype is read."""
    got = _as_tensor(got)
    if not isinstance(got, torch.Tensor) or not isinstance(expected, torch.Tensor):
        return False
    if tuple(got.shape) != tuple(expected.shape) or got.is_complex():
        return False
    want = expected.detach().cpu()
    if not got.is_floating_point() and not want.is_floating_point():
        return bool(torch.equal(got.long(), want.long()))
    default_rtol, default_atol = _tolerance(got.dtype, want.dtype)
    rtol = max(default_rtol, rtol or 0.0)
    atol = max(default_atol, atol or 0.0)
    g, w = got.double(), want.double()
    if bool(torch.isnan(g).any()) or bool(torch.isnan(w).any()):
        return False
    finite = w[torch.isfinite(w)]
    scale = max(1.0, float(finite.abs().max())) if finite.numel() else 1.0
    return bool(torch.allclose(g, w, rtol=rtol, atol=atol * scale))


def _matches(got: object, expected: torch.Tensor, atol: float | None = None) -> bool:
    """True when ``got`` is a tensor (or NumPy array) of ``expected``'s shape with the same values: :func:`_close`
    (``atol``, when given, is a floor under the dtype's absolute tolerance)."""
    return _close(got, expected, atol=atol)


def _sums_to_one(t: torch.Tensor, dim: int) -> bool:
    """True when ``t`` sums to 1 along ``dim``, within the rounding of ``t``'s own dtype (half precision rounds each
    weight to about 1e-3)."""
    total = t.double().sum(dim=dim)
    rtol, _ = _tolerance(t.dtype)
    return bool(((total - 1.0).abs() <= max(1e-4, rtol)).all())


def _values(t: torch.Tensor) -> str:
    """A tensor's values as one short line for a hint: ``[0.25, 0.5]`` (4 significant digits), ``[[1, 0], [1, 1]]``
    for a mask."""
    t = t.detach().cpu()
    if not t.is_floating_point():
        return str(t.long().tolist())
    return re.sub(r"-?\d+\.\d+(e-?\d+)?", lambda m: f"{float(m.group()):.4g}", str(t.double().tolist()))


def _shape_hint(name: str, got: object, expected: Sequence[int], meaning: str = "", context: str = "") -> str | None:
    """A hint when ``got`` is not a tensor of shape ``expected``; None when it is.

    ``meaning`` names the dims (``"(batch, seq, d_model)"``) and ``context`` the case (``"for seq_len=5"``); both
    are woven into one sentence: "your mask has shape (5, 6), expected (5, 5) = (seq_len, seq_len) for seq_len=5".
    """
    expected = tuple(int(n) for n in expected)
    named = f"{expected} = {meaning}" if meaning else f"{expected}"
    tail = f" {context}" if context else ""
    got = _tensor_answer(got)  # a NumPy array is judged by its shape, as the tensor it holds
    if not isinstance(got, torch.Tensor):
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


#: the names torch gives its softmax functions when they pass through a TorchFunctionMode
_SOFTMAX_NAMES = {"softmax", "log_softmax", "softmin", "_softmax", "_log_softmax", "special_softmax",
                  "special_log_softmax", "_softmax.default", "_log_softmax.default"}
#: how a student would have written the function, by the module torch reports for it (None: a Tensor method)
_SOFTMAX_PREFIXES = {"torch": "torch.", "torch.nn.functional": "F.", "torch._C._special": "torch.special.",
                     "torch._ops.aten": "torch.ops.aten.", None: "."}


class _SoftmaxSpy(TorchFunctionMode):
    """Records, by the name a student would write, every softmax of torch called while it is active (see
    :func:`_spying_on_softmax`); every call still runs as usual."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in _SOFTMAX_NAMES:
            prefix = _SOFTMAX_PREFIXES.get(getattr(func, "__module__", None), "torch.")
            self.calls.append(prefix + name.removeprefix("special_").removesuffix(".default"))
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def _spying_on_softmax() -> Iterator[list[str]]:
    """Inside this block every softmax of torch the code calls — ``torch.softmax``, ``F.softmax``,
    ``Tensor.softmax``, ``nn.Softmax`` (through F.softmax), their ``log_softmax`` and ``torch.special`` twins,
    ``F.softmin``, and the private ``torch._softmax`` and ``torch.ops.aten._softmax`` — still works, but is recorded
    in the list yielded. It is a ``TorchFunctionMode``: it sees the torch calls made in this thread inside the block,
    patches nothing, and is gone when the block ends, also on an error."""
    spy = _SoftmaxSpy()
    with spy:
        yield spy.calls


@contextlib.contextmanager
def _watching_calls(*functions: Callable) -> Iterator[list[str]]:
    """Inside this block, every call of one of ``functions`` (plain Python functions, e.g. ``valid_head_counts``) is
    recorded by name in the list yielded, however the student's code reached it (``mh.f``, an alias, a helper).

    It listens with a profile hook for this thread only (``sys.setprofile``), passes every event on to a Python hook
    that was there before, and puts that hook back on exit, also on an error: nothing is patched."""
    codes = {f.__code__: f.__name__ for f in functions}
    called: list[str] = []
    previous = sys.getprofile()
    chain = previous if inspect.isfunction(previous) or inspect.ismethod(previous) else None

    def hook(frame, event, arg):
        if event == "call" and frame.f_code in codes:
            called.append(codes[frame.f_code])
        if chain is not None:
            chain(frame, event, arg)

    sys.setprofile(hook)
    try:
        yield called
    finally:
        sys.setprofile(previous)


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
