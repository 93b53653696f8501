"""A fuzz of the public API: every public name called with bad and odd values of every argument, the API of
notebooks 10-13 (and the methods students call on its objects) most thoroughly.

``test_error_policy.py`` holds each parameter to the policy with a fixed table of bad values. This test derives its
values from the valid ones (``VALID`` of that file, plus the methods below): for a tensor it tries the same data as a
list, a NumPy array, ints, bools, complex, float64/float16/bfloat16, on the ``meta`` device, non-contiguous, with a
NaN or an infinity inside, empty, with one dim more or less, requiring grad; for an int it tries a NumPy int, a
float, a string, a tensor, 0, -1 and absurd sizes; and so on (``_variants``). Each call must end in one of:

* a ``TypeError`` or ``ValueError`` whose message names the argument the caller passed;
* a result that holds no NaN or infinity the input did not hold (a result that needs grad must backpropagate);
  for an odd but valid value (a NumPy int, float64, a tuple for a list) the result must equal the ordinary one.

Anything else is a finding, sorted into three kinds: ``silent`` (a bad value accepted, or an odd value giving another
result), ``nan`` (a NaN or infinity the input did not hold) and ``bare`` (another exception type, a message that does
not name the argument, an allocation of absurd size, a hang). ``python tests/unit/test_api_fuzz.py`` prints every
finding and the counts by kind. Calls run under a memory guard (an allocation of more than a few GB fails at once
instead of swapping) and a time guard. Exceptions to the rule are listed with their reason (``KEPT``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math
import re
import resource
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from test_error_policy import BAD, VALID, kind_of
from torch import nn

import mha_helpers as mh

# ---- the names walked -----------------------------------------------------------------------------------------

#: The API of notebooks 10-13 (the map's rows 10-13): every variant of the tables below is tried on them.
FOCUS = {
    "run_with_cache", "query_positions_seen", "plot_causal_alignment", "decode_cost", "mask_forms",
    "fully_masked_rows", "naive_masked_softmax", "KVCache", "GroupedQuerySelfAttention", "grouped_query_attention",
    "kv_cache_bytes_per_token", "decode_step_by_step", "rope", "rope_frequencies", "alibi_slopes", "alibi_bias",
    "sliding_window_mask", "sliding_window_attention", "LatentCache", "MultiHeadLatentAttention",
    "latent_cache_bytes_per_token", "variant_costs", "repeated_sequences", "occurrence_masks", "InductionModel",
    "induction_maps", "previous_token_scores", "induction_scores", "induction_test_set", "induction_example",
    "induction_letters", "occurrence_losses", "train_induction_model", "circuit_heads", "induction_ablation",
    "plot_occurrence_losses", "plot_head_scores", "plot_circuit_maps", "plot_snapshot_strip", "stored_one_layer_run",
    "MaskEditor", "mask_editor", "plot_mask_editor", "variant_cost_meter",
    "plot_variant_cost_meter", "TrainingReplay", "audit", "broken_attention", "fixed_attention", "show_bug",
    "zoo_table", "causal_mask",
}

#: Public names not walked here, with the reason.
NOT_WALKED = {
    "CheckResult": "a checker's verdict; the checkers' contract has its own test (test_checker_contract.py)",
    "exercise_checker": "the checkers' decorator; test_checker_contract.py holds it to the checker contract",
    "AuditReport": "a record that audit() fills in, not called by students",
    "AuditRow": "a record that audit() fills in, not called by students",
    "Bug": "a record of the zoo, written in bug_zoo.py",
    "InductionHistory": "a record that train_induction_model() fills in",
    "ZooAttention": "the bug zoo's base class, kept as bare as the buggy code notebook 13 prints beside it",
    "HeadExplorer": "built by head_explorer(), which checks every argument and is walked",
    "VariantCostMeter": "built by variant_cost_meter(), which checks every argument and is walked",
    "TextHeadPicker": "built by text_head_picker(), which checks every argument and is walked",
    "head_count_sweep": "trains a model per seed and head count: seconds per call (its checks: test_error_policy.py)",
    "count_matmul_flops": "runs the function it is given under a FLOP counter (its checks: test_error_policy.py)",
    "median_seconds": "times the function it is given (its checks: test_error_policy.py)",
    "measure_peak_memory": "runs a subprocess per job (its checks: test_error_policy.py)",
}

# ---- targets: a public callable or a method, its valid arguments and the kinds of its parameters --------------------


@dataclass
class Target:
    name: str
    call: Callable[..., object]
    valid: dict
    kinds: dict[str, tuple[str, bool]]  # parameter -> (kind, None is fine)


def _public_targets() -> list[Target]:
    targets = []
    for name in mh.__all__:
        obj = getattr(mh, name)
        if not callable(obj) or name.startswith("check_") or name in NOT_WALKED:
            continue
        kinds, valid = {}, dict(VALID.get(name, {}))
        for param in inspect.signature(obj).parameters.values():
            if param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                continue
            kind, optional = kind_of(name, param)
            if kind is not None:
                kinds[param.name] = (kind, optional)
            if param.name not in valid and param.default is not inspect.Parameter.empty:
                valid[param.name] = param.default
        valid.update(EXTRA_VALID.get(name, {}))
        targets.append(Target(name, obj, valid, kinds))
    return targets


def _small_layers():
    torch.manual_seed(0)
    return mh.GroupedQuerySelfAttention(8, 2, 1), mh.MultiHeadLatentAttention(8, 2, 4), mh.InductionModel(d_model=8,
                                                                                                         num_heads=2)


GQA, MLA, INDUCTION = _small_layers()
X = torch.randn(1, 3, 8, generator=torch.Generator().manual_seed(1))  # (batch, T, d_model) for the layers
REPEATS = mh.repeated_sequences(2, generator=torch.Generator().manual_seed(0))  # (2, 24)

#: Valid values for parameters whose default is None but that carry data worth fuzzing.
EXTRA_VALID = {
    "occurrence_losses": {"tokens": REPEATS},
    "circuit_heads": {"tokens": REPEATS},
    "plot_circuit_maps": {"tokens": REPEATS[:1]},
    "rope": {"positions": torch.arange(3)},
    "grouped_query_attention": {"attn_mask": mh.causal_mask(3)},
    "sliding_window_mask": {"key_len": 5},
}


@dataclass
class Fresh:
    """A value built anew for each call (a cache that one call fills must not be full for the next)."""

    make: Callable[[], object]


def _small_history():
    """A two-step training record with maps, for the replay widget (stored_one_layer_run keeps no maps)."""
    return mh.train_induction_model(steps=2, batch_size=2, d_model=8, num_heads=2, snapshot_every=1,
                                    progress=False)[1]


HISTORY = _small_history()
for _name in ("TrainingReplay", "plot_head_scores", "plot_snapshot_strip"):
    EXTRA_VALID[_name] = {"history": HISTORY}
EXTRA_VALID["plot_occurrence_losses"] = {"two_layers": HISTORY}


def _method(name: str, make: Callable[[], object], method: str, valid: dict, kinds: dict) -> Target:
    """A method called on a fresh object each time (a cache filled by one call must not change the next)."""
    return Target(name, lambda **kw: getattr(make(), method)(**kw), valid, kinds)


def _editor_target(method: str, valid: dict, kinds: dict) -> Target:
    return _method(f"MaskEditor.{method}", lambda: mh.MaskEditor(), method, valid, kinds)


T = ("float tensor", False)
METHODS = [
    _method("KVCache.append", lambda: mh.KVCache(1, 1, 2, 4), "append",
            {"key": torch.randn(1, 1, 2, 2), "value": torch.randn(1, 1, 2, 2)}, {"key": T, "value": T}),
    _method("LatentCache.append", lambda: mh.LatentCache(1, 2, 4), "append", {"latent": torch.randn(1, 2, 2)},
            {"latent": T}),
    _method("GroupedQuerySelfAttention.forward", lambda: GQA, "forward", {"x": X, "cache": None},
            {"x": T, "cache": ("instance", True)}),
    Target("GroupedQuerySelfAttention(cache)", lambda **kw: GQA(**kw),
           {"x": X[:, :1], "cache": Fresh(lambda: GQA.new_cache(1, 4))}, {"cache": ("instance", True), "x": T}),
    _method("GroupedQuerySelfAttention.new_cache", lambda: GQA, "new_cache", {"batch": 1, "max_len": 4},
            {"batch": ("positive int", False), "max_len": ("positive int", False)}),
    _method("MultiHeadLatentAttention.forward", lambda: MLA, "forward", {"x": X, "cache": None},
            {"x": T, "cache": ("instance", True)}),
    Target("MultiHeadLatentAttention(cache)", lambda **kw: MLA(**kw),
           {"x": X[:, :1], "cache": Fresh(lambda: MLA.new_cache(1, 4))}, {"cache": ("instance", True), "x": T}),
    _method("MultiHeadLatentAttention.forward_absorbed", lambda: MLA, "forward_absorbed", {"x": X, "cache": None},
            {"x": T, "cache": ("instance", True)}),
    _method("MultiHeadLatentAttention.new_cache", lambda: MLA, "new_cache", {"batch": 1, "max_len": 4},
            {"batch": ("positive int", False), "max_len": ("positive int", False)}),
    _method("MultiHeadLatentAttention.up_project", lambda: MLA, "up_project", {"latents": torch.randn(1, 3, 4)},
            {"latents": T}),
    _method("InductionModel.forward", lambda: INDUCTION, "forward", {"tokens": REPEATS, "return_weights": False},
            {"tokens": ("token ids", False), "return_weights": ("bool", False)}),
    _editor_target("toggle", {"i": 0, "j": 0}, {"i": ("int >= 0", False), "j": ("int >= 0", False)}),
    _editor_target("set_align", {"align": "top_left"}, {"align": ("choice", False)}),
]


# ---- the variants of a valid value -------------------------------------------------------------------------------

ERROR, ODD, ANY = "error", "odd", "any"  # must raise / may raise, else equals the ordinary result / may raise, else finite


@dataclass
class Variant:
    tag: str
    value: object
    expect: str
    nonfinite_input: bool = False  # the value itself holds NaN or inf
    tolerance: float = 1e-5


def _number_variants(kind: str, v: object) -> list[Variant]:
    if kind in ("positive int", "int >= 0"):
        out = [Variant("str", str(v), ERROR), Variant("float", float(v), ERROR), Variant("bool", True, ERROR),
               Variant("list", [v], ERROR), Variant("tensor", torch.tensor(v), ERROR), Variant("-1", -1, ERROR),
               Variant("numpy int", np.int64(v), ODD), Variant("10**12", 10**12, ANY), Variant("2**70", 2**70, ANY)]
        return out + [Variant("0", 0, ERROR if kind == "positive int" else ANY), Variant("1.5", 1.5, ERROR)]
    if kind == "number":
        return [Variant("str", str(v), ERROR), Variant("bool", True, ERROR), Variant("nan", math.nan, ERROR),
                Variant("inf", math.inf, ERROR), Variant("-inf", -math.inf, ERROR), Variant("list", [v], ERROR),
                Variant("tensor", torch.tensor(v), ERROR), Variant("numpy float32", np.float32(v), ODD, tolerance=1e-4),
                Variant("numpy float64", np.float64(v), ODD)]
    if kind == "bool":
        return [Variant("1", 1, ERROR), Variant("str", "yes", ERROR), Variant("tensor", torch.tensor(v), ERROR),
                Variant("numpy bool", np.bool_(v), ODD)]
    return []


def _text_variants(kind: str, v: object) -> list[Variant]:
    out = [Variant("int", 0, ERROR), Variant("list", [v], ERROR), Variant("bytes", str(v).encode(), ERROR)]
    if kind == "choice":
        out += [Variant("unknown", "no-such-choice", ERROR), Variant("upper case", str(v).upper(), ERROR),
                Variant("numpy str", np.str_(v), ODD)]
    return out


def _with(t: torch.Tensor, fill: float) -> torch.Tensor:
    t = t.clone()
    t.view(-1)[0] = fill
    return t


def _tensor_variants(kind: str, t: torch.Tensor) -> list[Variant]:
    """The same data as a list, as NumPy, in other dtypes, on meta, with NaN, empty, with another rank ..."""
    out = [Variant("list", t.tolist(), ERROR), Variant("numpy", t.numpy(), ERROR),
           Variant("complex", t.to(torch.complex64), ERROR), Variant("meta", t.to("meta"), ANY),
           Variant("non-contiguous", t.mT.contiguous().mT if t.dim() >= 2 else t, ODD),
           Variant("one dim more", t.unsqueeze(0), ANY), Variant("empty", t[..., :0] if t.dim() else t, ANY)]
    if t.dim() >= 1:
        out += [Variant("one dim less", t[0], ANY), Variant("empty first dim", t[:0], ANY)]
    if t.is_floating_point():
        out += [Variant("int", t.round().long(), ERROR), Variant("bool", t > 0, ERROR),
                Variant("float64", t.double(), ODD), Variant("float16", t.half(), ODD, tolerance=2e-2),
                Variant("bfloat16", t.bfloat16(), ODD, tolerance=5e-2),
                Variant("requires grad", t.clone().requires_grad_(), ODD),
                Variant("NaN inside", _with(t, math.nan), ANY, nonfinite_input=True),
                Variant("inf inside", _with(t, math.inf), ANY, nonfinite_input=True)]
    elif t.dtype == torch.bool:
        out += [Variant("int", t.long(), ERROR), Variant("uint8", t.to(torch.uint8), ERROR),
                Variant("float", t.float(), ANY if kind == "mask" else ERROR)]
    else:  # token ids
        out += [Variant("float", t.float(), ERROR), Variant("bool", t > 0, ERROR), Variant("int32", t.int(), ODD),
                Variant("-1 inside", _with(t, -1), ERROR), Variant("10**6 inside", _with(t, 10**6), ERROR)]
    return out


def _list_variants(kind: str, v: object) -> list[Variant]:
    out = [Variant(f"bad {i}", bad, ERROR) for error in BAD[kind].values() for i, bad in enumerate(error)
           if bad is not None]
    if kind == "list of int" and isinstance(v, (list, tuple)) and v:
        out += [Variant("tuple", tuple(v), ODD), Variant("list", list(v), ODD), Variant("numpy", np.array(v), ODD),
                Variant("numpy ints", [np.int64(i) for i in v], ODD), Variant("tensor", torch.tensor(v), ODD)]
    return out


def _object_variants(kind: str) -> list[Variant]:
    table = {"instance": ["model", nn.Linear(2, 2), object()], "callable": [0, "f"], "generator": [0, "g"],
             "axes": ["ax", 0], "device": [1.5, "nowhere", ["cpu"]], "dtype": ["float32", torch.long, torch.complex64]}
    out = [Variant(f"bad {value!r:.20}", value, ERROR) for value in table.get(kind, [])]
    if kind == "device":
        out += [Variant("meta", "meta", ANY), Variant("torch.device", torch.device("cpu"), ODD)]
    if kind == "dtype":
        out += [Variant(str(d), d, ANY) for d in (torch.float64, torch.float16, torch.bfloat16)]
    return out


def _variants(kind: str, optional: bool, v: object, focus: bool) -> list[Variant]:
    out = [] if optional else [Variant("None", None, ODD if kind in ("dtype", "device") else ERROR)]
    if kind in ("positive int", "int >= 0", "number", "bool"):
        placeholder = {"bool": True, "number": 1.0}.get(kind, 2)
        out += _number_variants(kind, v) if v is not None else [  # no ordinary value to compare an odd one with
            w for w in _number_variants(kind, placeholder) if w.expect != ODD]
    elif kind in ("str", "choice") and v is not None:
        out += _text_variants(kind, v)
    elif kind in ("float tensor", "mask", "bool tensor", "token ids") and isinstance(v, torch.Tensor):
        out += _tensor_variants(kind, v) if focus else _tensor_variants(kind, v)[:4]
    elif kind in BAD and kind not in ("float tensor", "mask", "bool tensor", "token ids"):
        out += _list_variants(kind, v)
    out += _object_variants(kind)
    return out


# ---- calling, under guards -------------------------------------------------------------------------------------


class _Hang(Exception):
    pass


def _memory_in_use() -> int | None:
    """The bytes of address space this process holds (Linux; None elsewhere: the memory guard is then off)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * resource.getpagesize()
    except OSError:
        return None


MEMORY_GUARD = _memory_in_use() is not None


@contextlib.contextmanager
def _memory_guard(headroom: int):
    """An allocation of more than ``headroom`` bytes fails at once (torch: "you tried to allocate ...")."""
    used = _memory_in_use()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if used is not None:
        limit = used + headroom if hard == resource.RLIM_INFINITY else min(used + headroom, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@contextlib.contextmanager
def _time_guard(seconds: float):
    """A call that runs longer than ``seconds`` is stopped with _Hang (where SIGALRM exists, in the main thread)."""
    def stop(*_):
        raise _Hang(f"took more than {seconds} s")

    try:
        before = signal.signal(signal.SIGALRM, stop)
    except (AttributeError, ValueError):  # no SIGALRM (Windows) or not the main thread: no time guard
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, before)


@contextlib.contextmanager
def _guards(seconds: float = 10.0, headroom: int = 4 << 30):
    """A call may take ``seconds`` and allocate ``headroom`` bytes more than the process holds; beyond, it fails."""
    with _memory_guard(headroom), _time_guard(seconds):
        yield


def _call(target: Target, kwargs: dict) -> object:
    kwargs = {k: (v.make() if isinstance(v, Fresh) else v) for k, v in kwargs.items()}
    torch.manual_seed(0)
    result = target.call(**kwargs)
    if hasattr(result, "__enter__") and hasattr(result, "__exit__"):  # heads_switched_off
        with result:
            pass
    return result


def _tensors(result: object, depth: int = 0) -> list[torch.Tensor]:
    """Every tensor (and float, as a tensor) a result holds: in dicts, lists, tuples, dataclasses, modules."""
    if depth > 4:
        return []
    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, float):
        return [torch.tensor(result)]
    if isinstance(result, dict):
        return [t for v in result.values() for t in _tensors(v, depth + 1)]
    if isinstance(result, (list, tuple)):
        return [t for v in result[:1000] for t in _tensors(v, depth + 1)]
    if isinstance(result, nn.Module):
        return list(result.state_dict().values())
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return [t for f in dataclasses.fields(result) for t in _tensors(getattr(result, f.name), depth + 1)]
    return []


def _nonfinite(result: object) -> bool:
    return any(t.dtype.is_floating_point and t.device.type != "meta" and not bool(torch.isfinite(t).all())
               for t in _tensors(result))


def _same(a: object, b: object, tolerance: float) -> bool:
    """Equal results: tensors (on meta: equal shapes) within ``tolerance``, the same structure and numbers."""
    ta, tb = _tensors(a), _tensors(b)
    if type(a) is not type(b) and not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
        return False
    if len(ta) != len(tb):
        return False
    for x, y in zip(ta, tb, strict=True):
        if x.shape != y.shape:
            return False
        if "meta" in (x.device.type, y.device.type):
            continue
        if not torch.allclose(x.detach().double(), y.detach().double(), rtol=tolerance, atol=tolerance, equal_nan=True):
            return False
    return a == b if isinstance(a, (str, int, bool)) else True


def _backprop(result: object) -> None:
    grads = [t for t in _tensors(result) if t.requires_grad]
    if grads:
        sum(t.float().sum() for t in grads).backward()


# ---- the verdict of one call ---------------------------------------------------------------------------------------

#: Results that hold NaN or inf by design, with the reason.
NONFINITE_BY_DESIGN = {
    "mask_forms": "the additive form is -inf where attention is blocked",
    "naive_masked_softmax": "it shows what a plain softmax gives a fully masked row: NaN",
}


def _raised_here(exc: BaseException) -> bool:
    """Was ``exc`` raised by the project's own code (a check), not deep inside torch, NumPy or matplotlib?"""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and ("_mha_helpers" in tb.tb_frame.f_code.co_filename
                               or tb.tb_frame.f_code.co_filename.endswith("mha_helpers.py"))


def _names(message: str, param: str) -> bool:
    """Does ``message`` name ``param`` as a word (``x`` in "x has 3 features", not in "3x8" or "self.x")?"""
    return re.search(rf"(?<![\w.]){re.escape(param)}(?!\w)", message) is not None


def _outcome(target: Target, param: str | None, variant: Variant) -> tuple[object, BaseException | None]:
    import matplotlib.pyplot as plt

    grad, threads = torch.is_grad_enabled(), torch.get_num_threads()  # a call stopped by the time guard may leave
    try:  # a no_grad() or OneThread() half-exited: the next call must not inherit that
        with _guards():
            result = _call(target, {**target.valid, **({param: variant.value} if param else {})})
            if variant.tag == "requires grad":
                _backprop(result)
        return result, None
    except Exception as exc:  # noqa: BLE001 - every exception is judged by _verdict
        return None, exc
    finally:
        plt.close("all")
        torch.set_grad_enabled(grad)
        torch.set_num_threads(threads)


def _verdict(target: Target, param: str, variant: Variant, baseline: object) -> tuple[str, str] | None:
    """None when the call ended as the rule says; else (kind of finding, what happened)."""
    result, exc = _outcome(target, param, variant)
    if isinstance(exc, (TypeError, ValueError)):
        if not _names(str(exc), param):
            return "bare", f"{type(exc).__name__} that does not name {param}: {str(exc)[:160]}"
        if not _raised_here(exc):
            return "bare", f"{type(exc).__name__} from deep inside a library: {str(exc)[:160]}"
        return None
    if exc is not None:
        return "bare", f"{type(exc).__name__}: {str(exc)[:160]}"
    if variant.expect == ERROR:
        return "silent", f"accepted, returned {_summary(result)}"
    if not variant.nonfinite_input and target.name not in NONFINITE_BY_DESIGN and _nonfinite(result):
        return "nan", f"returned NaN or inf: {_summary(result)}"
    if variant.expect == ODD and not _same(result, baseline, variant.tolerance):
        return "silent", f"returned {_summary(result)}, the ordinary value gives {_summary(baseline)}"
    return None


def _summary(result: object) -> str:
    if isinstance(result, torch.Tensor):
        return f"a {result.dtype} tensor {tuple(result.shape)} on {result.device}" + (
            f" {result.flatten()[:4].tolist()}" if result.device.type != "meta" else "")
    return repr(result)[:100]


# ---- cases beyond the tables: values that only make sense for one parameter ---------------------------------------


def _full_cache(layer):
    cache = layer.new_cache(1, 1)
    layer(X[:, :1], cache=cache)
    return cache


EXTRA_VARIANTS: dict[tuple[str, str], list[Variant]] = {
    ("GroupedQuerySelfAttention(cache)", "cache"): [
        Variant("cache of batch 2", Fresh(lambda: GQA.new_cache(2, 4)), ERROR),
        Variant("full cache", Fresh(lambda: _full_cache(GQA)), ERROR),
        Variant("float64 cache", Fresh(lambda: mh.KVCache(1, 1, 4, 4, dtype=torch.float64)), ERROR),
        Variant("cache of head_dim 2", Fresh(lambda: mh.KVCache(1, 1, 2, 4)), ERROR),
        Variant("cache on meta", Fresh(lambda: mh.KVCache(1, 1, 4, 4, device="meta")), ERROR),
        Variant("a LatentCache", Fresh(lambda: MLA.new_cache(1, 4)), ERROR)],
    ("MultiHeadLatentAttention(cache)", "cache"): [
        Variant("cache of batch 2", Fresh(lambda: MLA.new_cache(2, 4)), ERROR),
        Variant("full cache", Fresh(lambda: _full_cache(MLA)), ERROR),
        Variant("float64 cache", Fresh(lambda: mh.LatentCache(1, 4, 4, dtype=torch.float64)), ERROR),
        Variant("cache of latent_dim 2", Fresh(lambda: mh.LatentCache(1, 2, 4)), ERROR),
        Variant("cache on meta", Fresh(lambda: mh.LatentCache(1, 4, 4, device="meta")), ERROR),
        Variant("a KVCache", Fresh(lambda: GQA.new_cache(1, 4)), ERROR)],
    ("occurrence_losses", "tokens"): [
        Variant("nothing repeats", torch.arange(20)[None], ANY),
        Variant("one token only", torch.zeros(2, 24, dtype=torch.long), ANY)],
    ("circuit_heads", "tokens"): [Variant("nothing repeats", torch.arange(20)[None], ERROR)],
    ("induction_scores", "tokens"): [Variant("nothing repeats", torch.arange(20)[None], ERROR)],
    ("induction_letters", "tokens"): [Variant("two sequences", REPEATS, ERROR),
                                      Variant("numpy ints", REPEATS[0].numpy(), ERROR)],
    ("run_with_cache", "chunks"): [Variant("zero chunk", [3, 0], ERROR), Variant("too many", [2, 2], ERROR)],
    ("sliding_window_attention", "key"): [Variant("longer", torch.randn(1, 7, 4), ERROR)],
    ("rope", "positions"): [Variant("nan", torch.tensor([0.0, math.nan, 2.0]), ERROR),
                            Variant("bool", torch.tensor([True, False, True]), ERROR),
                            Variant("float64 positions", torch.arange(3.0, dtype=torch.float64), ODD)],
}

#: Values that the rule says must fail although the table calls them odd-but-valid: a cache stores in its own dtype,
#: so anything else would be converted silently (KVCache refuses it; LatentCache must too).
MUST_FAIL = {(name, param, tag) for name, param in (("KVCache.append", "key"), ("KVCache.append", "value"),
                                                    ("LatentCache.append", "latent"))
             for tag in ("float64", "float16", "bfloat16")}

#: Findings kept on purpose: (target, parameter, variant) -> why the outcome is right as it is.
KEPT: dict[tuple[str, str, str], str] = {
    ("occurrence_masks", "tokens", "10**6 inside"): "any id >= 0 is a token here: the masks only compare ids, no "
    "vocabulary bounds them (the model-facing functions refuse ids >= vocab_size)",
}


# ---- the cases -----------------------------------------------------------------------------------------------------


def _targets() -> dict[str, Target]:
    return {t.name: t for t in _public_targets() + METHODS}


TARGETS = _targets()


def _cases(target: Target) -> list[tuple[str, Variant]]:
    focus = target.name.split(".")[0].split("(")[0] in FOCUS or target in METHODS
    cases = []
    for param, (kind, optional) in target.kinds.items():
        variants = _variants(kind, optional, target.valid.get(param), focus)
        for variant in variants + EXTRA_VARIANTS.get((target.name, param), []):
            if (target.name, param, variant.tag) in MUST_FAIL:
                variant = dataclasses.replace(variant, expect=ERROR)
            cases.append((param, variant))
    return cases


def findings(name: str, kept: bool = False) -> list[tuple[str, str, str, str, str]]:
    """(kind, target, parameter, variant, what happened) for every call of ``name`` that broke the rule."""
    target = TARGETS[name]
    baseline, exc = _outcome(target, None, Variant("valid", None, ANY))
    if exc is not None:
        raise AssertionError(f"{name} fails on its valid arguments {target.valid}: {exc!r}")
    out = []
    for param, variant in _cases(target):
        verdict = _verdict(target, param, variant, baseline)
        if verdict and (kept or (name, param, variant.tag) not in KEPT):
            out.append((verdict[0], name, param, variant.tag, verdict[1]))
    return out


# ---- three more rules: a NaN stays where it was, training ignores the caller's grad mode, defaults do not change ----


def _nan_at(t: torch.Tensor, index: tuple) -> torch.Tensor:
    t = t.clone()
    t[index] = math.nan
    return t


def _nan_reach_cases() -> list[tuple[str, str, Callable[[], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]]:
    """(name, argument holding the NaN, call, the part of the result the NaN must not reach). A NaN in key 0 may
    only reach the queries whose window holds key 0; a NaN in the last token only that token's own output."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 100, 4, generator=g) for _ in range(3))
    q4, k4, v4 = torch.randn(1, 2, 6, 4, generator=g), torch.randn(1, 1, 6, 4, generator=g), torch.randn(1, 1, 6, 4)
    x = _nan_at(torch.randn(1, 6, 8, generator=g), (0, -1))  # the last token is NaN
    early = lambda out: out[:, :-1]  # noqa: E731 - every output before the last token
    return [
        ("sliding_window_attention", "key", lambda: mh.sliding_window_attention(q, _nan_at(k, (0, 0)), v, 2),
         lambda out: out[:, 2:]),
        ("sliding_window_attention", "value", lambda: mh.sliding_window_attention(q, k, _nan_at(v, (0, 0)), 2),
         lambda out: out[:, 2:]),
        ("grouped_query_attention", "key", lambda: mh.grouped_query_attention(
            q4, _nan_at(k4, (0, 0, -1)), v4, is_causal=True), lambda out: out[:, :, :-1]),
        ("grouped_query_attention", "value", lambda: mh.grouped_query_attention(
            q4, k4, _nan_at(v4, (0, 0, -1)), attn_mask=mh.causal_mask(6)), lambda out: out[:, :, :-1]),
        ("GroupedQuerySelfAttention.forward", "x", lambda: GQA(x), early),
        ("run_with_cache", "x", lambda: mh.run_with_cache(GQA, x, [4, 2])[0], early),
        ("decode_step_by_step", "x", lambda: mh.decode_step_by_step(GQA, x, use_cache=True), early),
        ("MultiHeadLatentAttention.forward", "x", lambda: MLA(x), early),
        ("MultiHeadLatentAttention.forward_absorbed", "x", lambda: MLA.forward_absorbed(x), early),
        ("rope", "x", lambda: mh.rope(_nan_at(torch.randn(5, 4, generator=g), (0, 0))), lambda out: out[1:]),
    ]


def nan_reach_findings() -> list[tuple[str, str, str, str, str]]:
    out = []
    for name, param, call, untouched in _nan_reach_cases():
        result, exc = _outcome(Target(name, lambda call=call: call(), {}, {}), None, Variant("NaN", None, ANY))
        if isinstance(exc, (TypeError, ValueError)) and _names(str(exc), param) and _raised_here(exc):
            continue
        if exc is not None:
            out.append(("bare", name, param, "NaN in one position", f"{type(exc).__name__}: {str(exc)[:160]}"))
        elif not bool(torch.isfinite(untouched(result)).all()):
            out.append(("nan", name, param, "NaN in one position", "the NaN reached outputs that never see it"))
    return out


def _tiny_training_calls() -> dict[str, Callable[[], object]]:
    return {
        "train_lookup_model": lambda: mh.train_lookup_model(1, d_model=2, steps=1, batch_size=2, progress=False),
        "steps_to_solve": lambda: mh.steps_to_solve(1, max_steps=1, every=1, num_examples=1, d_model=2),
        "train_induction_model": lambda: mh.train_induction_model(steps=1, batch_size=2, d_model=8, num_heads=2,
                                                                  snapshot_every=1, progress=False),
        "head_count_sweep": lambda: mh.head_count_sweep(d_model=1, seeds=(0,), progress=False, steps=1),
    }


def grad_mode_findings() -> list[tuple[str, str, str, str, str]]:
    """Training helpers must train whatever the caller's grad mode (inside torch.no_grad() too) and restore it."""
    out = []
    for name, call in _tiny_training_calls().items():
        for mode, context in (("torch.no_grad()", torch.no_grad), ("torch.inference_mode()", torch.inference_mode)):
            try:
                with context():
                    call()
                    if torch.is_grad_enabled():
                        out.append(("silent", name, "(grad mode)", mode, "left grad mode switched on"))
            except Exception as exc:  # noqa: BLE001 - any exception is a finding here
                out.append(("bare", name, "(grad mode)", mode, f"{type(exc).__name__}: {str(exc)[:160]}"))
    return out


IMMUTABLE = (type(None), bool, int, float, complex, str, bytes, frozenset, torch.dtype, torch.device, range)

#: Public values that may stay mutable, with the reason.
MUTABLE_KEPT = {
    "BUG_ZOO": "lessons/bug_zoo.py belongs to notebook 13's audit engineer (reported, not changed here)",
}


def _immutable(value: object) -> bool:
    if isinstance(value, tuple):
        return all(_immutable(v) for v in value)
    return isinstance(value, IMMUTABLE) or callable(value) and not isinstance(value, (list, dict, set))


def _signatures() -> list[tuple[str, inspect.Signature]]:
    out = []
    for name in mh.__all__:
        obj = getattr(mh, name)
        owners = [(name, obj)] + [(f"{name}.{m}", getattr(obj, m)) for m in vars(obj) if not m.startswith("_")
                                  and inspect.isfunction(getattr(obj, m))] if isinstance(obj, type) else [(name, obj)]
        for label, fn in owners:
            if callable(fn):
                with contextlib.suppress(TypeError, ValueError):
                    out.append((label, inspect.signature(fn)))
    return out


def mutable_default_findings() -> list[tuple[str, str, str, str, str]]:
    """A default (or public constant) that a caller can change in place changes it for every later call."""
    out = [("silent", name, "(constant)", type(getattr(mh, name)).__name__, "a public value that can be changed "
            "in place") for name in mh.__all__ if not callable(getattr(mh, name))
           and not _immutable(getattr(mh, name)) and name not in MUTABLE_KEPT]
    for label, sig in _signatures():
        for param in sig.parameters.values():
            default = param.default
            if default is not param.empty and not _immutable(default) and repr(default) != "<factory>":
                out.append(("silent", label, param.name, f"default {default!r:.40}", "a mutable default"))
    return out


# ---- the tests -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_bad_and_odd_values_get_a_clear_error_or_the_right_result(name):
    problems = findings(name)
    assert not problems, f"{len(problems)} calls broke the rule:\n" + "\n".join(
        f"[{kind}] {target}({param}={tag}): {what}" for kind, target, param, tag, what in problems)


def test_the_walk_covers_the_public_names():
    walked = {name.split(".")[0].split("(")[0] for name in TARGETS}
    public = {n for n in mh.__all__ if callable(getattr(mh, n)) and not n.startswith("check_")}
    assert public - walked == set(NOT_WALKED), "a public callable is neither walked nor listed in NOT_WALKED"
    assert FOCUS <= walked
    assert sum(len(_cases(t)) for t in TARGETS.values()) > 2000


def test_every_kept_finding_is_still_needed():
    kinds = {(name, param, variant.tag) for name, t in TARGETS.items() for param, variant in _cases(t)}
    assert set(KEPT) <= kinds, f"these exceptions match no case any more: {set(KEPT) - kinds}"
    assert set(NONFINITE_BY_DESIGN) <= set(TARGETS)


def test_the_verdict_catches_each_kind_of_finding():
    """The harness itself: a silent conversion, a NaN, a bare error and a message without the name are caught."""
    def silent(n: int) -> int:
        return int(n)

    def nan(x: torch.Tensor) -> torch.Tensor:
        return x / 0 * 0

    def bare(x: torch.Tensor) -> torch.Tensor:
        return x @ torch.ones(99, 1)

    def unnamed(n: int) -> int:
        raise ValueError("must be positive")

    assert _verdict(Target("f", silent, {"n": 1}, {}), "n", Variant("float", 1.5, ERROR), 1)[0] == "silent"
    assert _verdict(Target("f", nan, {"x": torch.ones(2)}, {}), "x", Variant("one", torch.ones(2), ANY), 0)[0] == "nan"
    assert _verdict(Target("f", bare, {"x": torch.ones(2)}, {}), "x", Variant("one", torch.ones(2), ANY), 0)[0] == "bare"
    assert _verdict(Target("f", unnamed, {"n": 1}, {}), "n", Variant("-1", -1, ERROR), 1)[0] == "bare"
    assert _verdict(Target("f", silent, {"n": 1}, {}), "n", Variant("numpy", np.int64(1), ODD), 1) is None


@pytest.mark.skipif(not MEMORY_GUARD, reason="the memory guard reads /proc/self/statm (Linux)")
def test_the_memory_guard_turns_an_absurd_allocation_into_a_finding():
    target = Target("f", lambda n: torch.zeros(n, dtype=torch.uint8), {"n": 1}, {})
    kind, what = _verdict(target, "n", Variant("huge", 8 << 30, ANY), None)
    assert kind == "bare" and "allocate" in what


def test_a_nan_stays_where_it_was():
    problems = nan_reach_findings()
    assert not problems, "\n".join(f"[{kind}] {name}({param}): {what}" for kind, name, param, _, what in problems)


def test_training_ignores_the_callers_grad_mode():
    problems = grad_mode_findings()
    assert not problems, "\n".join(f"[{kind}] {name} in {mode}: {what}" for kind, name, _, mode, what in problems)


def test_no_public_default_can_be_changed_in_place():
    problems = mutable_default_findings()
    assert not problems, "\n".join(f"{name}({param}): {tag}, {what}" for _, name, param, tag, what in problems)
    assert set(MUTABLE_KEPT) <= set(mh.__all__)


def report() -> None:
    """Print every finding and the counts by kind (``python tests/unit/test_api_fuzz.py [names]``)."""
    counts: dict[str, int] = {"silent": 0, "nan": 0, "bare": 0}
    cases, chosen = 0, sys.argv[1:]
    rows = nan_reach_findings() + grad_mode_findings() + mutable_default_findings() if not chosen else []
    for name in sorted(n for n in TARGETS if not chosen or n.split(".")[0].split("(")[0] in chosen):
        cases += len(_cases(TARGETS[name]))
        rows += findings(name, kept=True)
    for kind, target, param, tag, what in rows:
        counts[kind] += 1
        print(f"[{kind}] {target}({param}={tag}){' (kept)' if (target, param, tag) in KEPT else ''}: {what}")
    print(f"\n{cases} calls over {len(TARGETS)} names: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


if __name__ == "__main__":
    sys.exit(report())
