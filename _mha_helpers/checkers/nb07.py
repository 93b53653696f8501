"""The exercise checkers of notebook 07 (MHA inside a Transformer): hidden cases, a reference, and a hint for each common mistake."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..maths.attention import causal_mask, padding_mask
from .core import _call_student, _close, _describe_case, _random_linear, _shape_hint, _tensor_answer, exercise_checker


def _pre_norm_variants(x, norm, sublayer) -> dict[str, torch.Tensor]:
    """The right pre-norm residual sub-layer and its typical mistakes, each ``(batch, L, d) -> (batch, L, d)``."""
    return {
        "right": x + sublayer(norm(x)),
        "post-norm": norm(x + sublayer(x)),
        "no residual": sublayer(norm(x)),
        "norm after": x + norm(sublayer(x)),
        "no norm": x + sublayer(x),
        "normed residual": norm(x) + sublayer(norm(x)),
        "extra norm": norm(x + sublayer(norm(x))),
        "fresh norm": x + sublayer(F.layer_norm(x, x.shape[-1:])),
    }


@exercise_checker("Exercise 7.1: a pre-norm residual sub-layer")
def check_pre_norm_sublayer(fn: Callable[..., torch.Tensor]) -> str | None:
    """Check ``fn(x, norm, sublayer) -> x + sublayer(norm(x))`` on hidden cases (``x (batch, L, d_model)``, ``norm`` a
    LayerNorm with random scale and shift, ``sublayer`` a random Linear). Hints name post-norm, a missing residual,
    the norm in the wrong place, or a missing norm."""
    g = torch.Generator().manual_seed(701)
    hints = {
        "post-norm": "that is post-norm, LN(x + sublayer(x)) (the 2017 paper's order); pre-norm normalises the "
                     "sub-layer's INPUT and adds the result to the untouched x: x + sublayer(norm(x))",
        "no residual": "the residual connection is missing: add x back, x + sublayer(norm(x))",
        "norm after": "the norm is in the wrong place: it goes before the sub-layer, x + sublayer(norm(x))",
        "no norm": "the LayerNorm is missing: the sub-layer should see norm(x), not x",
        "normed residual": "the residual adds norm(x); it must add the untouched x: x + sublayer(norm(x))",
        "extra norm": "one norm too many: pre-norm does not normalise the sum; return x + sublayer(norm(x)) as it is",
        "fresh norm": "you normalised with a new LayerNorm (or F.layer_norm without its weights): use the `norm` "
                      "passed in, whose scale and shift are the block's own parameters",
    }
    for batch, L, d in ((2, 5, 8), (1, 3, 6)):
        x = torch.randn(batch, L, d, generator=g) * 3 + 1  # far from normalised, so a missing norm shows
        norm = nn.LayerNorm(d)  # its initialisation uses no randomness
        sublayer = _random_linear(d, d, g)  # seeded, so torch's global random state is left alone
        with torch.no_grad():
            norm.weight.copy_(1.0 + 0.5 * torch.randn(d, generator=g))
            norm.bias.copy_(0.5 * torch.randn(d, generator=g))
            variants = _pre_norm_variants(x, norm, sublayer)
            with _describe_case(f"x of shape {tuple(x.shape)}"):
                got = _tensor_answer(_call_student(fn, x.clone(), norm, sublayer))
        hint = _shape_hint("your output", got, x.shape, "(batch, L, d_model)")
        if hint:
            return f"{hint}: a residual sub-layer keeps the shape"
        if _close(got, variants["right"]):
            continue
        for name, expected in variants.items():
            if name != "right" and _close(got, expected):
                return hints[name]
        return "right shape, wrong values: compute h = norm(x), then return x + sublayer(h)"
    return None


def _causal_padding_mask(lengths: Sequence[int], seq_len: int) -> torch.Tensor:
    """Reference for exercise 7.2: ``(batch, seq_len, seq_len)`` bool, True where query i may NOT look at key j."""
    future = ~causal_mask(seq_len)  # (L, L): True above the diagonal (j > i)
    padded = padding_mask(lengths, seq_len)  # (batch, L): True at padding
    return future[None, :, :] | padded[:, None, :]  # (1, L, L) | (batch, 1, L) -> (batch, L, L)


@exercise_checker("Exercise 7.2: one mask for causal attention over a padded batch")
def check_causal_padding_mask(fn: Callable[[Sequence[int], int], torch.Tensor]) -> str | None:
    """Check ``fn(lengths, seq_len) -> (batch, seq_len, seq_len)`` bool, True where query i may NOT attend to key j
    (nn.MultiheadAttention's convention): j is in i's future, or j is padding. Hints name the usual mistakes."""
    for lengths, seq_len in (([4, 2, 3], 4), ([5, 1], 6)):
        expected = _causal_padding_mask(lengths, seq_len)
        with _describe_case(f"lengths={lengths}, seq_len={seq_len}"):
            got = _tensor_answer(_call_student(fn, list(lengths), seq_len))
        if not isinstance(got, torch.Tensor):
            return f"return a torch.Tensor, got {type(got).__name__}"
        got = got.detach().cpu()
        if got.dtype != torch.bool:
            return f"return a boolean mask (True = blocked), got dtype {got.dtype}; comparisons like >= give bools"
        if tuple(got.shape) == (seq_len, seq_len):
            return (f"your mask has shape {tuple(got.shape)}: each sentence has its own padding, so the mask needs a "
                    f"batch axis, (batch, L, L) = {tuple(expected.shape)}")
        if tuple(got.shape) == (len(lengths), 1, seq_len, seq_len):
            return (f"your mask has shape {tuple(got.shape)}: no head axis here, the exercise asks for (batch, L, L) = "
                    f"{tuple(expected.shape)}")
        hint = _shape_hint("your mask", got, expected.shape, "(batch, L, L)", f"for lengths={lengths}")
        if hint:
            return hint
        if torch.equal(got, expected):
            continue
        if torch.equal(got, ~expected):
            return ("your mask is the wrong way round: here True means BLOCKED (nn.MultiheadAttention's convention), "
                    "so True goes to future keys and to padding")
        if torch.equal(got, expected.transpose(1, 2)):
            return "rows and columns swapped: row i is the query, column j the key; block the keys j > i"
        future = (~causal_mask(seq_len)).expand_as(expected)
        if torch.equal(got, future):
            return "only the causal part: also block the keys that are padding (padding_mask(lengths, seq_len))"
        padded = padding_mask(lengths, seq_len)[:, None, :].expand_as(expected)  # (batch, L, L), True at padding
        if torch.equal(got, padded):
            return "only the padding part: also block every key j > i (the future), e.g. with ~mh.causal_mask(L)"
        if torch.equal(got, causal_mask(seq_len)[None] | padded):
            return ("mh.causal_mask is True where a query MAY attend, the opposite of this mask's convention: negate "
                    "it, ~mh.causal_mask(seq_len), before combining it with the padding")
        if torch.equal(got, future & padded):
            return ("you combined the two with &, which blocks only keys that are BOTH future and padding: a key is "
                    "blocked if EITHER holds, so use |")
        return "right shape, wrong entries: block (True) where key j > query i OR key j is padding"
    return None
