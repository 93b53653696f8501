"""Argument checks, one call away from every public function: ONE policy for bad input, in one place.

The policy, which every check here follows and ``tests/unit/test_error_policy.py`` holds every public name to:

* ``TypeError`` when a value is of the wrong KIND: a str, float, bool or None where an int belongs; a list where a
  tensor belongs; a tensor of ints where a floating-point tensor belongs (a dtype is a type: an integer dtype where a
  floating-point one belongs is a TypeError too); something that is not a model where a model belongs.
* ``ValueError`` when a value of the right kind cannot work: negative, zero where a size belongs, NaN or infinite,
  out of range, empty, a tensor of the wrong rank or shape, a device that does not exist.
* The message names the argument as the caller passed it, says what it got and what would work:
  ``d_model must be a positive int, got '8' of type str`` / ``d_model must be a positive int, got d_model=0``.

A module calls one of these functions instead of writing ``if isinstance(seed, bool) or not isinstance(...)`` again.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Mapping, Sequence

import torch


def _got(value: object) -> str:
    """``'8' of type str``: what a TypeError says the caller passed (long reprs are cut)."""
    shown = repr(value)
    return f"{shown if len(shown) <= 80 else shown[:77] + '...'} of type {type(value).__name__}"


# ---- numbers -------------------------------------------------------------------------------------------------------


def check_int(name: str, value: object, minimum: int = 0) -> int:
    """``value`` must be an int >= ``minimum`` (bools are refused); returns it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}, got {_got(value)}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {name}={value}")
    return value


def check_positive_int(name: str, value: object) -> int:
    """``value`` must be an int >= 1, e.g. a size or a count (bools are refused); returns it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int, got {_got(value)}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive int, got {name}={value}")
    return value


#: The largest seed: torch's generators take 64-bit seeds, and a few helpers derive several seeds from one.
MAX_SEED = 2**32 - 1


def check_seed(name: str, value: object) -> int:
    """A random seed: an int in ``0..2**32 - 1`` (as NumPy's; torch would fail deep inside on a larger one)."""
    check_int(name, value, minimum=0)
    if value > MAX_SEED:
        raise ValueError(f"{name} must be an int in 0..{MAX_SEED} (2**32 - 1), got {name}={value}")
    return value


#: The most training steps a helper runs: the toy models of the series train for at most a few thousand steps.
MAX_TRAINING_STEPS = 10**6


def check_steps(name: str, value: object) -> int:
    """A number of training steps: an int in ``1..MAX_TRAINING_STEPS`` (a million steps already take hours here)."""
    check_positive_int(name, value)
    if value > MAX_TRAINING_STEPS:
        raise ValueError(f"{name} must be at most {MAX_TRAINING_STEPS}: the notebooks train for at most a few thousand "
                         f"steps, and a million take hours on a laptop; got {name}={value}")
    return value


def check_index(name: str, value: object, size: int, what: str = "an int in") -> int:
    """``value`` must be an int in ``0..size-1`` (a position, a head, a row); ``what`` names it, e.g. "a head index"."""
    rule = f"{what} 0..{size - 1}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be {rule}, got {_got(value)}")
    if not 0 <= value < size:
        raise ValueError(f"{name} must be {rule}, got {name}={value}")
    return value


def check_number(
    name: str,
    value: object,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above_minimum: bool = False,
    below_maximum: bool = False,
    allow_none: bool = False,
    what: str = "a number",
    rule: str | None = None,
) -> float | None:
    """A real number (an int or a float; bools, strings and tensors are refused), finite, within the bounds.

    ``above_minimum``/``below_maximum`` make a bound strict. ``what`` says what works in the TypeError (e.g. "a float
    in [0, 1)"), ``rule`` in the ValueError (default: ``what``). Returns the number as a float (None if allowed).
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be {what}{' or None' if allow_none else ''}, got {_got(value)}")
    low_ok = minimum is None or value > minimum or (value == minimum and not above_minimum)
    high_ok = maximum is None or value < maximum or (value == maximum and not below_maximum)
    if not (math.isfinite(value) and low_ok and high_ok):  # NaN fails every comparison, so it lands here too
        raise ValueError(f"{name} must be {rule or what}, got {name}={value!r}")
    return float(value)


def check_positive_number(name: str, value: object, example: str = "1.0") -> float:
    """A finite number > 0, e.g. a gain or a number of seconds."""
    return check_number(name, value, minimum=0, above_minimum=True, what=f"a positive number such as {example}")


def check_probability(name: str, value: object) -> float:
    """A dropout probability in [0, 1): 1 would drop everything."""
    return check_number(name, value, minimum=0, maximum=1, below_maximum=True, what="a float in [0, 1)",
                        rule="in [0, 1) (a probability; 1 would drop everything)")


def check_fraction(name: str, value: object, example: str = "0.95") -> float:
    """A share of something in (0, 1], e.g. an accuracy to reach."""
    return check_number(name, value, minimum=0, maximum=1, above_minimum=True,
                        what=f"a fraction in (0, 1], e.g. {example}")


def check_learning_rate(name: str, value: object, example: str = "0.01") -> float:
    """A learning rate in (0, 1): the toy models of the series train with 0.01 to 0.03."""
    return check_number(name, value, minimum=0, maximum=1, above_minimum=True, below_maximum=True,
                        what=f"a learning rate between 0 and 1, e.g. {example}")


def check_scale(name: str, value: object) -> float | None:
    """The score scale of attention: None (meaning 1/√d_k) or a positive, finite number."""
    if value is None:
        return None
    return check_number(name, value, minimum=0, above_minimum=True, what="a positive float or None (meaning "
                        "1/sqrt(d_k))", rule="a positive finite number or None (meaning 1/sqrt(d_k))")


# ---- flags, strings, lists, objects ------------------------------------------------------------------------------


def check_bool(name: str, value: object) -> bool:
    """``value`` must be True or False (1, "yes", None and one-element tensors are refused)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {_got(value)}")
    return value


def check_str(name: str, value: object, what: str = "a string") -> str:
    """A string, e.g. a title or a label; ``what`` says what works."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be {what}, got {_got(value)}")
    return value


def check_choice(name: str, value: object, choices: Sequence[str] | Mapping[str, str]) -> str:
    """``value`` must be one of the strings ``choices``; a dict maps each choice to what it means (for the message)."""
    listed = ", ".join(repr(c) for c in choices)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {listed} (a str), got {_got(value)}")
    if value not in choices:
        if isinstance(choices, Mapping):
            listed = " or ".join(f"{c!r} ({meaning})" for c, meaning in choices.items())
            raise ValueError(f"{name} must be {listed}, got {name}={value!r}")
        raise ValueError(f"{name} must be one of {listed}, got {name}={value!r}")
    return value


def check_list(name: str, value: object, item: type | tuple[type, ...], what: str, allow_empty: bool = True) -> list:
    """A list or tuple (not a string) of ``item``s; ``what`` says what works, e.g. "a list of dicts"; returns a list."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be {what}, got {_got(value)}")
    items = list(value)
    wrong = [v for v in items if isinstance(v, bool) and item is not bool or not isinstance(v, item)]
    if wrong:
        raise TypeError(f"{name} must be {what}, got a list holding {_got(wrong[0])}")
    if not items and not allow_empty:
        raise ValueError(f"{name} is empty: pass {what}")
    return items


def check_tokens(name: str, tokens: object, allow_empty: bool = False) -> list[str]:
    """``tokens`` must be a list (or tuple) of strings, e.g. ``["the", "cat"]``; a single string is refused."""
    if isinstance(tokens, (str, bytes)):
        raise TypeError(f"{name} must be a list of strings, e.g. {tokens.split()!r}, got the single string {tokens!r}")
    if not isinstance(tokens, Sequence) or not all(isinstance(t, str) for t in tokens):
        shown = type(tokens).__name__ if not isinstance(tokens, Sequence) else repr(list(tokens))[:80]
        raise TypeError(f"{name} must be a list of strings, e.g. ['the', 'cat'], got {shown}")
    if not allow_empty and len(tokens) == 0:
        raise ValueError(f"{name} is empty: pass at least one string, e.g. ['the', 'cat']")
    return list(tokens)


def check_int_list(name: str, values: object, *, minimum: int = 0, what: str | None = None,
                   allow_empty: bool = True) -> list[int]:
    """A list (or tuple, range) of ints, each >= ``minimum``; ``what`` says what works; returns it as a list."""
    what = what or f"a list of ints >= {minimum}"
    items = check_list(name, values, int, what, allow_empty=allow_empty)
    if any(v < minimum for v in items):
        raise ValueError(f"{name} must be {what}, got {name}={items!r}")
    return items


def check_head_numbers(name: str, heads: object, num_heads: int) -> list[int]:
    """A head number or a list of them, each in ``0..num_heads-1``; returns the list."""
    items = [heads] if isinstance(heads, int) and not isinstance(heads, bool) else heads
    items = check_list(name, items, int, "a head number or a list of them, e.g. [0]")
    if any(not 0 <= h < num_heads for h in items):
        raise ValueError(f"{name} must be head numbers in 0..{num_heads - 1}, got {name}={heads!r}")
    return items


def check_callable(name: str, fn: object, example: str = "lambda: model(x)", what: str | None = None) -> None:
    """Something to call (a function, a module); ``what`` replaces "a function to call, e.g. <example>"."""
    if not callable(fn):
        raise TypeError(f"{name} must be {what or f'a function to call, e.g. {example}'}, got {type(fn).__name__}")


def check_instance(name: str, value: object, cls: type | tuple[type, ...], what: str, allow_none: bool = False,
                   hint: str = "") -> None:
    """``value`` must be an instance of ``cls`` (``what`` names it for the message, e.g. "a KVCache")."""
    if value is None and allow_none:
        return
    if not isinstance(value, cls):
        raise TypeError(f"{name} must be {what}{' or None' if allow_none else ''}, got {type(value).__name__}{hint}")


def check_generator(name: str, value: object) -> None:
    """None (torch's global random state) or a torch.Generator, for repeatable random data."""
    check_instance(name, value, torch.Generator, "a seeded torch.Generator", allow_none=True)


def check_axes(name: str, ax: object) -> None:
    """None (a new figure) or a matplotlib Axes to draw into."""
    axes = sys.modules.get("matplotlib.axes")  # no Axes can exist before matplotlib is imported: no need to import it
    if ax is not None and (axes is None or not isinstance(ax, axes.Axes)):
        raise TypeError(f"{name} must be a matplotlib Axes (e.g. from plt.subplots()) or None, got {type(ax).__name__}")


def check_device(name: str, device: object) -> None:
    """None, a device name such as 'cpu' or 'cuda', a torch.device, or a CUDA device index (as torch takes them)."""
    rule = "None, 'cpu', 'cuda', 'mps' or a torch.device"
    if device is None:
        return
    if isinstance(device, bool) or not isinstance(device, (str, torch.device, int)):
        raise TypeError(f"{name} must be {rule}, got {_got(device)}")
    try:
        torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{name} must be {rule}, got {name}={device!r}") from None


def check_dtype(name: str, dtype: object) -> None:
    """None or a floating-point torch.dtype (an integer dtype is the wrong type of number, hence a TypeError)."""
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"{name} must be None or a floating-point torch.dtype such as torch.float32, got {dtype!r}")


def check_factory_kwargs(device: object, dtype: object) -> None:
    """``device`` and ``dtype`` as a module constructor takes them: None, a device name, a floating-point dtype."""
    check_device("device", device)
    check_dtype("dtype", dtype)


def divisors(n: int) -> list[int]:
    """The divisors of ``n`` >= 1, smallest first (found up to sqrt(n), so 10**12 takes a moment, not an hour)."""
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return small + [n // d for d in reversed(small) if d * d != n]


def check_divisible(d_model: int, num_heads: int, d_name: str = "embed_dim") -> None:
    """``num_heads`` must divide ``d_model`` (named ``d_name``); the message lists the head counts that would."""
    if d_model % num_heads != 0:
        counts = ", ".join(str(h) for h in divisors(d_model)) if d_model <= 10**8 else f"the divisors of {d_model}"
        raise ValueError(
            f"{d_name}={d_model} is not divisible by num_heads={num_heads}; valid head counts: {counts}"
        )


def machine_memory() -> int:
    """This machine's memory in bytes (64 GiB where the system does not say, e.g. on Windows)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 64 << 30


def _bytes_text(n: int) -> str:
    power = min(max(0, len(str(int(n))) - 1) // 3, 5)  # 1234 -> 1 (KB), 12_345_678 -> 2 (MB) ...
    return f"{n} bytes" if power == 0 else f"{n / 1000**power:.3g} {('KB', 'MB', 'GB', 'TB', 'PB')[power - 1]}"


class SizeTooLargeError(ValueError):
    """A size too large for this machine (:func:`check_fits`, :func:`sized_by`); an outer ``sized_by`` renames it
    after its own argument."""


def check_fits(sizes: Mapping[str, int], nbytes: int, what: str, usual: str) -> None:
    """Refuse UP FRONT a tensor or a layer that would need more memory than this machine has, before torch tries to
    allocate it (and fails with "you tried to allocate ... bytes", or swaps, or overflows its size calculation).

    ``sizes`` are the caller's arguments that set the size, all named in the message; ``nbytes`` what they would
    need (an int, exact or a fair estimate); ``what`` says for what, ``usual`` what the notebooks use.
    """
    limit = machine_memory()
    if nbytes > limit:
        given = ", ".join(f"{name}={value}" for name, value in sizes.items() if value is not None)
        raise SizeTooLargeError(f"{given} would need {_bytes_text(nbytes)} for {what}, more than the "
                         f"{_bytes_text(limit)} of memory this machine has; {usual}")


@contextlib.contextmanager
def sized_by(name: str, value: int):
    """``with sized_by("embed_dim", 10**6):`` turns torch's out-of-memory error while building layers into a
    ValueError that names the size which asked for that memory (the outermost caller's argument wins)."""
    try:
        yield
    except (RuntimeError, MemoryError, OverflowError, TypeError, SizeTooLargeError) as exc:
        text = str(exc)
        if isinstance(exc, (RuntimeError, TypeError)) and not any(w in text for w in ("allocate", "verflow")):
            raise
        raise SizeTooLargeError(f"{name}={value} needs more memory for its weights than this machine has; the notebooks use "
                         f"sizes up to a few hundred") from None


# ---- tensors ---------------------------------------------------------------------------------------------------


def _check_rank(name: str, x: torch.Tensor, ranks: Sequence[int] | None, layout: str | None) -> None:
    if ranks is not None and x.dim() not in ranks:
        allowed = " or ".join(f"{r}-D" for r in ranks)
        shape_hint = f", i.e. {layout}" if layout else ""
        raise ValueError(f"{name} must be {allowed}{shape_hint}, got a {x.dim()}-D tensor of shape {tuple(x.shape)}")


def check_float_tensor(
    name: str, x: object, ranks: Sequence[int] | None = None, layout: str | None = None
) -> torch.Tensor:
    """Check that ``x`` is a floating-point tensor of one of the given ranks; return it.

    ``layout`` (e.g. ``"(batch, seq, d_model)"``) is added to the message for a wrong rank, to say what would work.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.is_nested:
        raise TypeError(
            f"{name} is a nested tensor, which these readable helpers do not take; pad it with "
            f"torch.nested.to_padded_tensor({name}, 0.0) and mark the padding with a key_padding_mask"
        )
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor, got dtype {x.dtype}; convert it with {name}.float()"
        )
    _check_rank(name, x, ranks, layout)
    return x


def check_has_values(name: str, x: torch.Tensor) -> None:
    """A tensor whose values are read (a mask, token ids, inputs checked for NaN) must not be on the ``meta`` device,
    which holds a shape and no values (torch's own error, "cannot be called on meta tensors", names nothing)."""
    if x.device.type == "meta":
        raise ValueError(f"{name} is on the meta device, which holds a shape but no values; build it on 'cpu' or "
                         f"'cuda', e.g. torch.zeros({tuple(x.shape)})")


def check_finite(name: str, x: torch.Tensor, allow_minus_inf: bool = False) -> None:
    """A floating-point tensor of inputs must hold no NaN or inf: attention mixes positions (0 × NaN is NaN), so one
    bad value would silently spread to outputs that never looked at it. ``allow_minus_inf`` lets -inf through (a
    blocked score)."""
    check_has_values(name, x)
    if bool(torch.isfinite(x).all()):  # the usual case, in one pass
        return
    bad = x.isnan() | (x == math.inf) | (False if allow_minus_inf else x == -math.inf)
    if bool(bad.any()):
        where = tuple(bad.nonzero()[0].tolist())
        what = "NaN" if bool(x[where].isnan()) else "an infinite value"
        raise ValueError(f"{name} holds {what} (first at index {where}); pass finite numbers"
                         + (" (-inf is fine: a blocked score)" if allow_minus_inf else ""))


def check_bool_tensor(name: str, x: object, ranks: Sequence[int] | None = None, layout: str = "") -> torch.Tensor:
    """A boolean tensor (a mask, True = may attend unless the caller says otherwise) of one of the given ranks."""
    kind = " or ".join(f"{r}-D" for r in ranks) + " " if ranks else ""
    what = f"a {kind}boolean tensor{(' ' + layout) if layout else ''}"
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be {what}, got {type(x).__name__}")
    if x.dtype != torch.bool:
        raise TypeError(f"{name} must be {what}, got a tensor of dtype {x.dtype}; use {name}.bool() or a comparison "
                        f"such as {name} > 0")
    _check_rank(name, x, ranks, layout)
    return x


def check_token_ids(name: str, tokens: object, vocab_size: int | None = None, min_len: int = 1) -> torch.Tensor:
    """A ``(batch, seq)`` tensor of token ids (torch.long), at least one sequence of ``min_len`` positions, every id
    in ``0..vocab_size-1`` when ``vocab_size`` is given; returns it."""
    layout = "a (batch, seq) tensor of token ids (torch.long)"
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"{name} must be {layout}, got {type(tokens).__name__}")
    if tokens.dtype != torch.long:
        raise TypeError(f"{name} must be {layout}, got a tensor of dtype {tokens.dtype}; convert it with {name}.long()")
    _check_rank(name, tokens, (2,), "(batch, seq)")
    check_has_values(name, tokens)
    if tokens.shape[0] == 0 or tokens.shape[1] < min_len:
        raise ValueError(f"{name} needs at least one sequence of at least {min_len} positions (seq >= {min_len}), "
                         f"got shape {tuple(tokens.shape)}")
    too_big = vocab_size is not None and bool((tokens >= vocab_size).any())
    if too_big or bool((tokens < 0).any()):
        ids = f"0..{vocab_size - 1} (vocab_size={vocab_size})" if vocab_size is not None else "0 or more"
        raise ValueError(f"{name}: token ids must be in {ids}, got ids from {int(tokens.min())} to {int(tokens.max())}")
    return tokens


def check_qkv(query: object, key: object, value: object) -> None:
    """Checks every attention function shares: query ``(..., L, d_k)``, key ``(..., S, d_k)``, value ``(..., S, d_v)``,
    all floating point, of one dtype and on one device."""
    for name, t in (("query", query), ("key", key), ("value", value)):
        check_float_tensor(name, t)
        if t.dim() < 2:
            raise ValueError(f"{name} must have at least 2 dims (..., seq, features), got shape {tuple(t.shape)}")
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(
            f"query and key must have the same last dim d_k to be compared by a dot product, "
            f"got query {tuple(query.shape)} and key {tuple(key.shape)}"
        )
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(
            f"key and value must have the same length S (one value per key), "
            f"got key {tuple(key.shape)} and value {tuple(value.shape)}"
        )
    for name, t in (("key", key), ("value", value)):
        if t.dtype != query.dtype:
            raise TypeError(
                f"{name} has dtype {t.dtype} but query has {query.dtype}; convert it with {name}.to({query.dtype})"
            )
        if t.device != query.device:
            raise ValueError(f"{name} is on {t.device} but query is on {query.device}; move it with {name}.to(query.device)")


def broadcast_shape(*shapes: Sequence[int]) -> tuple[int, ...] | None:
    """The shape that ``shapes`` broadcast to (the rule of NumPy and torch), or None when they do not.

    Written out because ``torch.broadcast_shapes`` imports sympy on its first call: a second of CPU in every notebook.
    """
    ndim = max(len(shape) for shape in shapes)
    out = []
    for i in range(1, ndim + 1):  # from the last dim backwards, as broadcasting aligns shapes on the right
        sizes = {shape[-i] for shape in shapes if len(shape) >= i} - {1}
        if len(sizes) > 1:
            return None
        out.append(sizes.pop() if sizes else 1)
    return tuple(reversed(out))


def check_broadcasts_to(name: str, x: torch.Tensor, shape: Sequence[int], target: str, hint: str = "") -> None:
    """``x`` must broadcast TO ``shape`` (``target`` names it, e.g. "the scores' shape") without growing it."""
    if broadcast_shape(tuple(x.shape), tuple(shape)) != tuple(shape):
        raise ValueError(f"{name} of shape {tuple(x.shape)} does not broadcast to {target} {tuple(shape)}{hint}")


def check_leading_dims_broadcast(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> None:
    """The leading dims (e.g. batch, heads) of query, key and value must match or broadcast, as in a batched matmul."""
    if broadcast_shape(query.shape[:-2], key.shape[:-2], value.shape[:-2]) is None:
        raise ValueError(
            f"query, key and value must have the same leading dims (..., e.g. batch and heads) or dims of size 1, "
            f"got query {tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}"
        )


def check_like_parameters(name: str, x: torch.Tensor, parameter: torch.Tensor, module: str) -> None:
    """``x`` must have the dtype and the device of the parameters of ``module`` (a word such as "block", "layer");
    torch's own error names neither the argument nor the fix."""
    if x.dtype != parameter.dtype:
        raise TypeError(
            f"{name} has dtype {x.dtype} but the {module}'s parameters are {parameter.dtype}; convert one of them, "
            f"e.g. {name}.to({parameter.dtype}) or {module}.to({x.dtype})"
        )
    if x.device != parameter.device:
        raise ValueError(
            f"{name} is on {x.device} but the {module}'s parameters are on {parameter.device}; move one of them, "
            f"e.g. {name}.to('{parameter.device}')"
        )


def check_layer_input(name: str, x: object, d_model: int, parameter: torch.Tensor, module: str = "layer",
                      features: str = "d_model") -> None:
    """``x`` ``(batch >= 1, T >= 1, d_model)`` for a layer with the parameter ``parameter`` (for its dtype and device):
    finite numbers, of the layer's dtype, on its device. ``features`` names the last dim (e.g. "latent_dim")."""
    check_float_tensor(name, x, ranks=(3,), layout=f"(batch, T, {features}={d_model})")
    check_like_parameters(name, x, parameter, module)
    for dim, what in ((1, "tokens"), (0, "sequences")):
        if x.shape[dim] == 0:
            raise ValueError(f"{name} has no {what} (shape {tuple(x.shape)}): {name} must be (batch >= 1, T >= 1, "
                             f"{features}={d_model})")
    if x.shape[2] != d_model:
        raise ValueError(f"{name} has {x.shape[2]} features (shape {tuple(x.shape)}) but the {module} has "
                         f"{features}={d_model}")
    check_finite(name, x)


def check_attention_weights(weights: object, name: str = "weights") -> None:
    """Attention weights are probabilities: a float tensor with entries in [0, 1] (NaN or negative ones are refused,
    which is what a mask applied after the softmax, or a softmax over a fully masked row, leaves behind)."""
    check_float_tensor(name, weights)
    check_has_values(name, weights)
    if weights.numel() and not bool(((weights >= -1e-6) & (weights <= 1 + 1e-6)).all()):  # False for NaN too
        bad = "NaN" if bool(weights.isnan().any()) else "values outside [0, 1]"
        raise ValueError(f"{name} must be attention weights (each in [0, 1], rows summing to 1), got {bad}; "
                         f"check the softmax and the mask that produced them")


# ---- masks -------------------------------------------------------------------------------------------------------


def is_causal_bias(mask: object) -> bool:
    """Is ``mask`` a ``torch.nn.attention.bias.CausalBias`` (from ``causal_upper_left`` / ``causal_lower_right``)?"""
    # A CausalBias exists only once its module has been imported, so look there first: importing it ourselves would
    # pull in torch._dynamo (about 3 s of CPU) on the first masked call of every notebook.
    bias = sys.modules.get("torch.nn.attention.bias")
    return bias is not None and isinstance(mask, bias.CausalBias)


def materialize_causal_bias(
    name: str, mask: object, L: int, S: int, device: torch.device, is_causal: bool = False
) -> object:
    """A ``CausalBias`` -> its ``(L, S)`` boolean tensor, True = may attend; any other ``mask`` is returned unchanged.

    A CausalBias is a torch.Tensor only in name: its own storage is uninitialised memory of a meaningless shape, and
    PyTorch's SDPA reads only its variant and sizes. So it must be turned into a real mask before any tensor maths.
    """
    if not is_causal_bias(mask):
        return mask
    if is_causal:
        raise ValueError(
            f"{name} is a CausalBias, which already is a causal mask: pass it with is_causal=False (as "
            f"F.scaled_dot_product_attention demands), or pass is_causal=True and no {name}"
        )
    if (mask.seq_len_q, mask.seq_len_kv) != (L, S):
        raise ValueError(
            f"{name} is a CausalBias for (L, S) = ({mask.seq_len_q}, {mask.seq_len_kv}) queries and keys, but the "
            f"inputs have L={L} queries and S={S} keys; build it with causal_upper_left({L}, {S}) or "
            f"causal_lower_right({L}, {S})"
        )
    return mask._materialize(device)  # (L, S) bool, True = may attend


def check_mask_dtype(name: str, mask: torch.Tensor, float_dtype: torch.dtype, device: torch.device | None = None
                      ) -> None:
    """A mask is boolean or floating point (added to the scores); integers are ambiguous and refused. With
    ``device``, the mask must be on it (torch's own message names neither the mask nor the fix)."""
    if is_causal_bias(mask):  # a caller that does not materialise it would read uninitialised memory
        raise TypeError(
            f"{name} is a torch.nn.attention.bias.CausalBias, which this function does not read; pass "
            f"is_causal=True (upper-left aligned) or the boolean mask {name}._materialize(device) instead"
        )
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (bool or float), got {type(mask).__name__}")
    if device is not None and mask.device != device:
        raise ValueError(f"{name} is on {mask.device} but the inputs are on {device}; move it with {name}.to('{device}')")
    if mask.dtype == torch.bool:
        return
    if mask.is_floating_point() and bool(mask.isnan().any()):
        raise ValueError(f"{name} holds NaN, which would make every score it touches NaN; use float('-inf') (or a "
                         f"large negative number) where attention is blocked and 0 where it is allowed")
    if not mask.is_floating_point():
        raise TypeError(
            f"{name} must be a bool or floating-point tensor, got dtype {mask.dtype}; "
            f"use {name}.bool() for a boolean mask or {name}.to({float_dtype}) for an additive one"
        )
