"""Shared setup: the device, one CPU thread where determinism needs it, and the toy data every notebook uses."""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Sequence

import torch

from .validation import check_bool, check_fits, check_positive_int, check_seed, check_tokens, divisors


def get_device() -> torch.device:
    """The device the heavy cells use: the CPU unless the environment variable ``MHA_DEVICE`` says otherwise.

    ``MHA_DEVICE=cuda`` or ``MHA_DEVICE=mps`` picks that accelerator, ``MHA_DEVICE=auto`` picks CUDA, then
    Apple's MPS, then the CPU. The stored notebook outputs (which nbval compares) are made on the CPU.
    """
    wanted = os.environ.get("MHA_DEVICE", "cpu").strip().lower()
    if wanted == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if wanted not in {"cpu", "cuda", "mps"}:
        raise ValueError(f"MHA_DEVICE={wanted!r} is not a device this series knows; use cpu, cuda, mps or auto")
    if wanted == "cuda" and not torch.cuda.is_available():
        raise ValueError("MHA_DEVICE='cuda' but torch.cuda.is_available() is False; use MHA_DEVICE=cpu or auto")
    if wanted == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("MHA_DEVICE='mps' but Apple's MPS is not available here; use MHA_DEVICE=cpu or auto")
    return torch.device(wanted)


#: The largest d_model whose head counts :func:`valid_head_counts` lists (its divisors, found up to sqrt(d_model)).
MAX_HEAD_COUNT_MODEL = 10**12


def valid_head_counts(d_model: int) -> list[int]:
    """The head counts that split ``d_model`` evenly: the divisors of ``d_model``, smallest first."""
    check_positive_int("d_model", d_model)
    if d_model > MAX_HEAD_COUNT_MODEL:
        raise ValueError(f"d_model must be at most {MAX_HEAD_COUNT_MODEL} to list its divisors (the notebooks use up "
                         f"to 512), got d_model={d_model}")
    return divisors(d_model)


class OneThread:
    """``with OneThread():`` runs the block on one CPU thread, then restores the thread count.

    Two uses: float sums then always add up in the same order, so a training run gives bit-identical numbers whatever
    OMP_NUM_THREADS says (notebook 08); and tiny tensor maths never waits on torch's second thread, which on a busy
    CPU can stall a 6 x 6 softmax for ~50 ms (the widgets of notebook 06).
    """

    def __enter__(self) -> None:
        self.before = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc) -> None:
        torch.set_num_threads(self.before)


def plain_labels(tokens: Sequence[str]) -> list[str]:
    """Tokens as matplotlib labels drawn literally: a ``$`` would start mathtext ("$x" even crashes the drawing)."""
    return [str(t).replace("$", r"\$") for t in tokens]


#: The short sentence most notebooks attend over (a tuple: a default that no caller can change for the next one).
SENTENCE: tuple[str, ...] = ("the", "cat", "sat", "on", "the", "mat")


def sinusoidal_positions(seq_len: int, d_model: int) -> torch.Tensor:
    """The fixed sine/cosine position encodings of Vaswani et al. (2017), section 3.5.

    Returns ``(seq_len, d_model)``: even columns ``sin(pos / 10000^(2i/d_model))``, odd columns the cosine.
    """
    check_positive_int("seq_len", seq_len)
    check_positive_int("d_model", d_model)
    check_fits({"seq_len": seq_len, "d_model": d_model}, 12 * seq_len * d_model, "the positions",
               "the notebooks use a few hundred positions and d_model up to a few hundred")
    position = torch.arange(seq_len, dtype=torch.float32)[:, None]  # (seq_len, 1)
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)  # (ceil(d/2),)
    angles = position * freq  # (seq_len, ceil(d_model/2))
    pe = torch.zeros(seq_len, d_model)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles[:, : d_model // 2])
    return pe


def toy_embeddings(
    tokens: Sequence[str] = SENTENCE, d_model: int = 8, seed: int = 0, positions: bool = True
) -> torch.Tensor:
    """Deterministic embeddings for a list of tokens: ``(1, seq, d_model)``.

    Each distinct word gets a fixed random vector (the same word always gets the same vector, whatever the
    sentence), scaled to unit variance per entry; ``positions=True`` adds the sinusoidal position encodings,
    so the two "the"s of the default sentence differ.
    """
    check_tokens("tokens", tokens)
    check_positive_int("d_model", d_model)
    check_seed("seed", seed)
    check_bool("positions", positions)
    check_fits({"d_model": d_model}, 16 * len(tokens) * d_model, "the embeddings",
               "the notebooks use d_model up to a few hundred")
    rows = []
    for token in tokens:
        # A generator seeded by a hash of the word's bytes (and the seed): stable across sentences, runs and machines,
        # and different for different words (a weighted sum of character codes gave cat, him and men one vector).
        word_seed = seed * 1_000_003 + zlib.crc32(token.encode("utf-8"))
        g = torch.Generator().manual_seed(word_seed)
        rows.append(torch.randn(d_model, generator=g))
    x = torch.stack(rows)  # (seq, d_model)
    if positions:
        x = x + sinusoidal_positions(len(tokens), d_model)
    return x.unsqueeze(0)  # (1, seq, d_model)
