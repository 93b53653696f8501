"""The exercise checkers of notebook 04 (splitting into heads): hidden cases, a reference, and a hint for each common mistake."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..maths.attention import split_heads
from .core import _call_student, _close, _describe_case, _shape_hint, _tensor_answer, exercise_checker


def _split_heads_cases() -> list[tuple[torch.Tensor, int]]:
    """Hidden inputs ``(x, num_heads)``: seq, heads and head_dim differ in each, so a swapped axis always shows."""
    g = torch.Generator().manual_seed(404)
    sizes = ((2, 5, 12, 3), (1, 7, 8, 2), (3, 4, 30, 5))  # (batch, seq, d_model, num_heads)
    return [(torch.randn(b, s, d, generator=g), h) for b, s, d, h in sizes]


@exercise_checker("Exercise 4.1: split_heads")
def check_split_heads(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> str | None:
    """Check ``fn(x, num_heads)``: ``(batch, seq, d_model) -> (batch, heads, seq, head_dim)``, as :func:`split_heads`.

    Prints a pass, a specific hint (transpose missing, axes swapped, tokens scrambled by a direct reshape,
    features interleaved) or "not yet" for the stub; returns True on success.
    """
    for x, num_heads in _split_heads_cases():
        batch, seq, d_model = x.shape
        head_dim = d_model // num_heads
        expected = split_heads(x, num_heads)  # (batch, heads, seq, head_dim)
        case = f"x of shape {tuple(x.shape)} and num_heads={num_heads}"
        with _describe_case(case):
            got = _tensor_answer(_call_student(fn, x.clone(), num_heads))
        if not isinstance(got, torch.Tensor):
            return f"return a torch.Tensor, got {type(got).__name__}"
        got = got.detach().cpu()
        shape = tuple(got.shape)
        if shape == (batch * num_heads, seq, head_dim):
            return (f"your output has shape {shape} = (batch * heads, seq, head_dim): you folded the batch and the "
                    f"heads into one dim; keep them apart, (batch, heads, seq, head_dim) = {tuple(expected.shape)}")
        if shape == (batch, seq, num_heads, head_dim):
            return (
                f"your output has shape {shape} = (batch, seq, heads, head_dim): the view is right, now bring the "
                f"heads in front of the tokens with .transpose(1, 2) to get {tuple(expected.shape)}"
            )
        if shape == (batch, num_heads, head_dim, seq):
            return (
                f"axes swapped: your output has shape {shape} = (batch, heads, head_dim, seq), expected "
                f"(batch, heads, seq, head_dim) = {tuple(expected.shape)}; after the view to (batch, seq, heads, "
                "head_dim) swap axes 1 and 2 only"
            )
        hint = _shape_hint("your output", got, expected.shape, "(batch, heads, seq, head_dim)", f"for {case}")
        if hint:
            return hint
        if _close(got, x.reshape(batch, num_heads, seq, head_dim)):
            return (
                "you reshaped straight to (batch, heads, seq, head_dim): tokens are scrambled (head 0's rows are the "
                "first tokens' features, cut in pieces) — view to (batch, seq, heads, head_dim) first, then "
                "transpose(1, 2)"
            )
        if _close(got, x.reshape(batch, seq, head_dim, num_heads).permute(0, 3, 1, 2)):
            return (
                f"features interleaved: your head h gets features h, h + {num_heads}, h + {2 * num_heads}, ...; "
                "each head owns a block of head_dim consecutive features: view to (batch, seq, heads, head_dim)"
            )
        if not _close(got, expected):
            bad = ((got.double() - expected.double()).abs() > 1e-5).any(dim=0).any(dim=-1)  # (heads, seq)
            if not bool(bad.any()):  # NaN somewhere, or a difference below the per-entry threshold
                return "right shape, but the values differ from x's features (NaN, or rounded?)"
            h, t = (int(i) for i in bad.nonzero()[0])
            return (
                f"right shape, wrong values: e.g. head {h}, token {t} should hold features "
                f"{h * head_dim}..{(h + 1) * head_dim - 1} of token {t}, i.e. x[:, {t}, {h * head_dim}:{(h + 1) * head_dim}]"
            )
    return None


@exercise_checker("Exercise 4.2: one head's block of W_q")
def check_head_weight(fn: Callable[[torch.Tensor, int, int], torch.Tensor]) -> str | None:
    """Check ``fn(weight, head, num_heads)``: the ``(head_dim, d_model)`` block of an ``nn.Linear`` weight that is
    head ``head``'s own small projection, i.e. rows ``head * head_dim`` to ``(head + 1) * head_dim - 1`` of the
    ``(d_model, d_model)`` = ``(out_features, in_features)`` weight. Prints a pass, a hint or "not yet".
    """
    g = torch.Generator().manual_seed(405)
    for d_model, num_heads, head in ((12, 3, 1), (8, 2, 0), (12, 4, 3)):
        weight = torch.randn(d_model, d_model, generator=g)  # (out_features, in_features)
        head_dim = d_model // num_heads
        rows = slice(head * head_dim, (head + 1) * head_dim)
        expected = weight[rows]  # (head_dim, d_model)
        with _describe_case(f"a ({d_model}, {d_model}) weight, head={head}, num_heads={num_heads}"):
            got = _tensor_answer(_call_student(fn, weight.clone(), head, num_heads))
        if _close(got, weight[rows].T) and head_dim != d_model:
            return (f"your block is transposed, ({d_model}, {head_dim}) = (d_model, head_dim): the rows of nn.Linear's "
                    f"weight are its outputs, so head {head}'s block is weight[rows], of shape (head_dim, d_model)")
        if _close(got, weight[:, rows]) or _close(got, weight[:, rows].T):
            return (
                "you took a block of columns: nn.Linear's weight has shape (out_features, in_features) and computes "
                "x @ weight.T, so a head, which owns a block of OUTPUT features, owns a block of ROWS"
            )
        if _close(got, weight[head::num_heads]):
            return (
                f"you took rows head, head + {num_heads}, head + {2 * num_heads}, ...; a head owns a block of head_dim "
                "CONSECUTIVE rows, "
                "weight[head * head_dim : (head + 1) * head_dim]"
            )
        hint = _shape_hint("your block", got, expected.shape, "(head_dim, d_model)",
                           f"for a ({d_model}, {d_model}) weight and num_heads={num_heads}")
        if hint:
            return hint
        if not _close(got, expected):
            for other in range(num_heads):
                if _close(got, weight[other * head_dim : (other + 1) * head_dim]):
                    return f"you returned head {other}'s rows for head={head}: head h owns rows h*head_dim ... (h+1)*head_dim - 1"
            return f"right shape, wrong values: for head={head}, num_heads={num_heads} expected weight[{rows.start}:{rows.stop}]"
    return None
