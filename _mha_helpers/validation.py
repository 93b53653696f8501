"""Argument checks, one call away from every public function: one policy for bad input.

Each check names the argument as the caller passed it, says what it got and what would work, and raises a
``TypeError`` for a value of the wrong type (a string where a number belongs, a list where a tensor belongs) and a
``ValueError`` for a value of the right type that cannot work (a negative size, a tensor of the wrong shape, NaN).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence

import torch


def check_positive_int(name: str, value: object) -> None:
    """Raise a TypeError/ValueError naming ``name`` unless ``value`` is a positive int (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int, got {value!r} of type {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive int, got {name}={value}")


def check_int(name: str, value: object, minimum: int = 0) -> None:
    """Raise a TypeError/ValueError naming ``name`` unless ``value`` is an int >= ``minimum`` (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r} of type {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {name}={value}")


def check_factory_kwargs(device: object, dtype: object) -> None:
    """``device`` and ``dtype`` as a module constructor takes them: None, a device name, a floating-point dtype."""
    if device is not None:
        try:
            torch.device(device)
        except (RuntimeError, TypeError):
            raise ValueError(f"device must be None, 'cpu', 'cuda', 'mps' or a torch.device, got device={device!r}"
                             ) from None
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be None or a floating-point torch.dtype such as torch.float32, got {dtype!r}")


class SizeTooLargeError(ValueError):
    """Raised by :func:`sized_by`; an outer ``sized_by`` renames it after its own argument."""


@contextlib.contextmanager
def sized_by(name: str, value: int):
    """``with sized_by("embed_dim", 10**6):`` turns torch's out-of-memory error while building layers into a
    ValueError that names the size which asked for that memory (the outermost caller's argument wins)."""
    try:
        yield
    except (RuntimeError, MemoryError, SizeTooLargeError) as exc:
        if isinstance(exc, RuntimeError) and not isinstance(exc, SizeTooLargeError) and "allocate" not in str(exc):
            raise
        raise SizeTooLargeError(f"{name}={value} needs more memory for its weights than this machine has; the notebooks use "
                         f"sizes up to a few hundred") from None


def check_callable(name: str, fn: object, example: str = "lambda: model(x)") -> None:
    if not callable(fn):
        raise TypeError(f"{name} must be a function to call, e.g. {example}, got {type(fn).__name__}")


def check_tokens(name: str, tokens: object, allow_empty: bool = False) -> None:
    """``tokens`` must be a list (or tuple) of strings, e.g. ``["the", "cat"]``; a single string is refused."""
    if isinstance(tokens, (str, bytes)):
        raise TypeError(f"{name} must be a list of strings, e.g. {tokens.split()!r}, got the single string {tokens!r}")
    if not isinstance(tokens, Sequence) or not all(isinstance(t, str) for t in tokens):
        shown = type(tokens).__name__ if not isinstance(tokens, Sequence) else repr(list(tokens))[:80]
        raise TypeError(f"{name} must be a list of strings, e.g. ['the', 'cat'], got {shown}")
    if not allow_empty and len(tokens) == 0:
        raise ValueError(f"{name} is empty: pass at least one string, e.g. ['the', 'cat']")


def check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r} of type {type(value).__name__}")


def check_divisible(d_model: int, num_heads: int, d_name: str = "embed_dim") -> None:
    if d_model % num_heads != 0:
        counts = ", ".join(str(h) for h in range(1, d_model + 1) if d_model % h == 0)
        raise ValueError(
            f"{d_name}={d_model} is not divisible by num_heads={num_heads}; valid head counts: {counts}"
        )


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
    if ranks is not None and x.dim() not in ranks:
        allowed = " or ".join(f"{r}-D" for r in ranks)
        shape_hint = f", i.e. {layout}" if layout else ""
        raise ValueError(f"{name} must be {allowed}{shape_hint}, got a {x.dim()}-D tensor of shape {tuple(x.shape)}")
    return x


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


def check_attention_weights(weights: object, name: str = "weights") -> None:
    """Attention weights are probabilities: a float tensor with entries in [0, 1] (NaN or negative ones are refused,
    which is what a mask applied after the softmax, or a softmax over a fully masked row, leaves behind)."""
    check_float_tensor(name, weights)
    if weights.numel() and not bool(((weights >= -1e-6) & (weights <= 1 + 1e-6)).all()):  # False for NaN too
        bad = "NaN" if bool(weights.isnan().any()) else "values outside [0, 1]"
        raise ValueError(f"{name} must be attention weights (each in [0, 1], rows summing to 1), got {bad}; "
                         f"check the softmax and the mask that produced them")


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
