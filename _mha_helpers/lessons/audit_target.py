"""The two kinds of implementation :func:`audit` (audit.py) understands, and the seeded inputs every probe starts from.

* a **function** with ``F.scaled_dot_product_attention``'s call convention, run on ``(batch, heads, L, head_dim)``
  inputs in the default dtype (``torch.get_default_dtype()``) on the CPU;
* an ``nn.Module`` **self-attention** called as ``module(x)`` (or ``module(x, x, x)`` when its forward takes query,
  key and value) on ``(batch, seq, d_model)`` inputs in the dtype and on the device of its own parameters.

Both are called on a copy: audit never changes the caller's module.
"""

from __future__ import annotations

import copy
import inspect
import itertools
from collections.abc import Callable

import torch
from torch import nn

from .audit_reading import D_MODEL_NAMES, positive_int_attr, read_structure


class ImplementationRaised(Exception):
    """The implementation raised, or returned something that is not an output, on a probe's input (the cause)."""


class WrongOutput(ValueError):
    """What an implementation returned is not an output of the right shape."""


def _guarded(call: Callable, *args, **kwargs) -> object:
    """``call(*args, **kwargs)``, with anything it raises wrapped in ImplementationRaised."""
    try:
        return call(*args, **kwargs)
    except Exception as exc:
        raise ImplementationRaised(str(exc)) from exc


def first_result(result: object) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(output, weights or None) from what an implementation returned."""
    weights = None
    if isinstance(result, (tuple, list)):
        if not result:
            raise WrongOutput("attention returned an empty tuple; return the output tensor (or (output, weights))")
        if len(result) > 1 and isinstance(result[1], torch.Tensor):
            weights = result[1]
        result = result[0]
    if not isinstance(result, torch.Tensor):
        raise WrongOutput(f"attention returned {type(result).__name__}; return the output tensor (or (output, weights))")
    return result, weights


class Function:
    """An SDPA-convention function: (batch, heads, L, head_dim) in, output out."""

    kind = "function"

    def __init__(self, fn: Callable, causal: bool) -> None:
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            sig = None
        self.takes_mask = self.takes_causal = True
        if sig is not None:
            params = list(sig.parameters.values())
            var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
            positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            if len(positional) < 3 and not any(p.kind is p.VAR_POSITIONAL for p in params):
                raise TypeError(
                    f"attention must take (query, key, value, attn_mask=None, is_causal=False) like "
                    f"F.scaled_dot_product_attention, got a function with signature {sig}; for a module called as "
                    f"module(x), pass an nn.Module"
                )
            self.takes_mask = var_kw or "attn_mask" in sig.parameters
            self.takes_causal = var_kw or "is_causal" in sig.parameters
            if causal and not self.takes_causal:
                raise TypeError(f"causal=True needs attention to accept is_causal=True; its signature is {sig}")
        self.fn, self.causal = fn, causal
        self.name = getattr(fn, "__qualname__", type(fn).__name__)
        self.head_dim, self.has_cache, self.notes = 8, False, []
        self.dtype, self.device = torch.get_default_dtype(), torch.device("cpu")

    def __call__(self, q, k, v, mask=None, causal=None):
        kwargs = {}
        if mask is not None:
            kwargs["attn_mask"] = mask
        if (self.causal if causal is None else causal):
            kwargs["is_causal"] = True
        return _guarded(lambda: _checked(first_result(self.fn(q, k, v, **kwargs)), q, v))


def _checked(result: tuple, q: torch.Tensor, v: torch.Tensor) -> tuple:
    want = tuple(q.shape[:-1]) + (v.shape[-1],)
    if tuple(result[0].shape) != want:
        raise WrongOutput(f"attention returned shape {tuple(result[0].shape)} for query {tuple(q.shape)} and value "
                          f"{tuple(v.shape)}; expected (batch, heads, L, d_v) = {want}")
    return result


def _dtype_and_device(module: nn.Module) -> tuple[torch.dtype, torch.device]:
    first = next((t for t in itertools.chain(module.parameters(), module.buffers()) if t.is_floating_point()), None)
    return (torch.get_default_dtype(), torch.device("cpu")) if first is None else (first.dtype, first.device)


def _forward_takes(module: nn.Module) -> tuple[inspect.Signature, int, bool]:
    """(signature, number of required positional inputs, takes **kwargs) of ``module.forward``."""
    sig = inspect.signature(module.forward)
    params = list(sig.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not positional and not any(p.kind is p.VAR_POSITIONAL for p in params):
        raise TypeError(f"the module's forward must take x (batch, seq, d_model), its signature is {sig}")
    required = sum(p.default is p.empty for p in positional)
    return sig, required, any(p.kind is p.VAR_KEYWORD for p in params)


class Module:
    """A self-attention module called as module(x) (or module(x, x, x)) on (batch, seq, d_model)."""

    kind = "module"

    def __init__(self, module: nn.Module, causal: bool) -> None:
        sig, required, var_kw = _forward_takes(module)
        self.notes: list[str] = []
        self.torch_mha = isinstance(module, nn.MultiheadAttention)
        self.three_inputs = self.torch_mha or required >= 3  # forward(query, key, value, ...)
        self.m = self._copy(module)
        self.structure = read_structure(self.m)
        self.dtype, self.device = _dtype_and_device(module)
        self.d_model = self.structure.d_model or positive_int_attr(module, D_MODEL_NAMES)
        if self.d_model is None:
            if any(True for _ in module.parameters()):
                raise ValueError(f"cannot tell d_model of {type(module).__name__}: give it a d_model attribute")
            self.d_model = 16
            self.notes.append("it has no parameters and no d_model: called on x with d_model 16")
        accepted = set(sig.parameters)
        self.takes_mask = self.torch_mha or var_kw or "key_padding_mask" in accepted
        self.has_cache = callable(getattr(module, "new_cache", None)) and (var_kw or "cache" in accepted)
        self.ours = "is_causal" in accepted and not self.torch_mha
        self.causal = causal

    @property
    def name(self) -> str:
        heads = f", {self.num_heads} heads" if self.num_heads else ""
        return f"{type(self.m).__name__}(d_model={self.d_model}{heads})"

    def _copy(self, module: nn.Module) -> nn.Module:
        base = copy.deepcopy(module)
        if not self.torch_mha:
            return base.eval()  # dropout off, as in use
        base.dropout = 0.0  # on audit's copy only
        base.train()  # its eval fast path returns NaN for a fully padded sequence (03 §5)
        self.notes.append("nn.MultiheadAttention called as module(x, x, x, need_weights=False) in training mode "
                          "with dropout 0: its eval fast path gives NaN for a fully padded sequence (03 §5)")
        if not base.batch_first:
            self.notes.append("batch_first=False: this module reads dim 0 of (batch, seq, d_model) as the sequence")
        return base

    @property
    def num_heads(self) -> int | None:
        return self.structure.num_heads

    @property
    def head_dim(self) -> int | None:
        return self.structure.head_dim

    @property
    def num_kv_heads(self) -> int | None:
        return self.structure.num_kv_heads

    def __call__(self, x, kpm=None, module=None, **extra):
        m = self.m if module is None else module
        kwargs = dict(extra)
        if kpm is not None:
            kwargs["key_padding_mask"] = kpm
        if self.torch_mha and self.causal:
            L = x.shape[1]
            kwargs["attn_mask"] = torch.ones(L, L, dtype=torch.bool, device=x.device).triu(1)  # True = blocked
        elif self.causal and self.ours and kpm is None and "cache" not in kwargs:
            kwargs["is_causal"] = True
        if self.torch_mha:
            kwargs["need_weights"] = False
        inputs = (x, x, x) if self.three_inputs else (x,)
        return _guarded(lambda: self._checked(m(*inputs, **kwargs), x))

    def _checked(self, result: object, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out, weights = first_result(result)
        if tuple(out.shape) != tuple(x.shape[:2]) + (self.d_model,):
            raise WrongOutput(f"the module returned shape {tuple(out.shape)} for x {tuple(x.shape)}; expected "
                              f"(batch, seq, d_model) = {tuple(x.shape[:2]) + (self.d_model,)}")
        return out, weights


def batch_size(t) -> int:
    """The batch of a module's inputs: as many sequences as heads (2..8), so that a (batch, 1, S) mask broadcasts
    over (batch, heads, L, S) scores silently, as it does in the bug it exposes; else 3."""
    return t.num_heads if t.num_heads and 2 <= t.num_heads <= 8 else 3


class Inputs:
    """The seeded inputs every probe starts from, in the implementation's dtype and on its device. The numbers are
    drawn in float32 whatever the default dtype, so a report reads the same in every dtype up to rounding."""

    def __init__(self, t) -> None:
        self.g = torch.Generator().manual_seed(13)
        self.dtype, self.device = t.dtype, t.device
        if t.kind == "function":
            self.shape = (2, 2, 5, t.head_dim)  # (batch, heads, L, head_dim)
            self.L = 5
            self.q, self.k, self.v = (self.noise(self.shape) for _ in range(3))
            self.out = t(self.q, self.k, self.v)[0]
            self.what = f"query/key/value {self.shape}"
        else:
            self.B, self.L = batch_size(t), 6
            self.x = self.noise((self.B, self.L, t.d_model))
            self.out = t(self.x)[0]
            self.what = f"x ({self.B}, {self.L}, {t.d_model})"

    def noise(self, shape) -> torch.Tensor:
        return torch.randn(shape, generator=self.g, dtype=torch.float32).to(self.dtype).to(self.device)
