"""Notebook 14: heads in a real language model. A small character-level decoder-only Transformer, trained on the
CPU on Python's own documentation (``text_corpus.py``), stored in ``data/text_model.pt`` and loaded, never trained,
by the notebook and the tests; the bits per character it scores with heads switched off; its attention maps; and
the repeated-string test for induction heads.

The model is GPT-2's layout at toy size: token embedding + learned positions, ``num_layers`` pre-norm blocks
(LayerNorm -> causal self-attention -> residual, LayerNorm -> MLP -> residual), a final LayerNorm, and the token
embedding reused as the read-out (tied unembedding). Attention is the series' own: each block holds a
:class:`MultiHeadAttention` for its ``W_q, W_k, W_v, W_o`` and splits and merges heads with ``split_heads`` and
``merge_heads``. ``tests/make_text_model.py`` trains it and says how.

Choices, and why:

* 8 heads of 16 dimensions (d_model 128, 4 layers, context 128): 32 heads give the head studies something to find;
  ``tests/make_head_count_sweep.py`` measures what 1, 2, 4 or 8 heads cost and buy at this size.
* Learned positions: every training window is a full ``context`` long, so every position's vector is trained;
  simple, and GPT-2's choice.
* Tied unembedding (the read-out is ``tok_emb.weight``): a head's output can be read in the same space as the
  characters it came from; it saves ``vocab_size * d_model`` parameters (GPT-2 and nanoGPT do the same).
* Dropout on the embeddings and on each sub-layer's output, not on the attention weights: the maps stay those of
  the model, and training keeps PyTorch's fused attention kernel.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..maths.attention import merge_heads, scaled_dot_product_attention, split_heads
from ..maths.mha import MultiHeadAttention
from ..validation import check_divisible, check_fits, check_int, check_number, check_positive_int, check_seed
from .text_corpus import CharTokenizer, check_text

#: Where the trained model lives: half-precision weights, the configuration and the vocabulary, in one file.
TEXT_MODEL_PATH: Path = Path(__file__).resolve().parents[1] / "data" / "text_model.pt"

FORMAT = "mha-notebooks text model 1"  # the stored file's "format" entry


class TextBlock(nn.Module):
    """One pre-norm decoder block: ``x + W_o(heads(LN(x)))``, then ``x + MLP(LN(x))``; ``(batch, T, d_model)`` in
    and out. ``attn`` is a :class:`MultiHeadAttention` whose ``W_q, W_k, W_v, W_o`` the block uses with causal
    attention; the MLP is ``Linear(d_model, d_ff) -> GELU -> Linear(d_ff, d_model)``."""

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, num_heads)  # holds W_q, W_k, W_v, W_o (each d_model -> d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))
        self.drop = nn.Dropout(dropout)  # on each sub-layer's output, before it joins the residual stream

    def heads(self, x: torch.Tensor, need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every head's causal attention result on ``LN(x)``: ``(batch, T, d_model) -> (batch, heads, T, head_dim)``,
        and with ``need_weights`` the maps ``(batch, heads, T, T)`` (computed step by step, so a little slower)."""
        h = self.norm1(x)  # (batch, T, d_model)
        q = split_heads(self.attn.W_q(h), self.num_heads)  # (batch, T, d_model) -> (batch, heads, T, head_dim)
        k = split_heads(self.attn.W_k(h), self.num_heads)  # (batch, T, d_model) -> (batch, heads, T, head_dim)
        v = split_heads(self.attn.W_v(h), self.num_heads)  # (batch, T, d_model) -> (batch, heads, T, head_dim)
        if need_weights:
            return scaled_dot_product_attention(q, k, v, is_causal=True)  # (batch, heads, T, head_dim), (.., T, T)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True), None  # PyTorch's fused kernel, same maths

    def forward(self, x: torch.Tensor, head_mask: torch.Tensor | None = None, need_weights: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x (batch, T, d_model)`` -> ``(batch, T, d_model)`` and the maps (or None). ``head_mask (num_heads,)``
        scales each head's result before ``W_o``: 0 switches a head off, 1 leaves it as it is."""
        heads, weights = self.heads(x, need_weights)  # (batch, heads, T, head_dim)
        if head_mask is not None:
            heads = heads * head_mask.view(1, -1, 1, 1)  # (heads,) -> (1, heads, 1, 1): one factor per head
        x = x + self.drop(self.attn.W_o(merge_heads(heads)))  # (batch, heads, T, head_dim) -> (batch, T, d_model)
        x = x + self.drop(self.mlp(self.norm2(x)))  # (batch, T, d_model), position by position
        return x, weights


class TextModel(nn.Module):
    """A character-level decoder-only Transformer over the characters of ``vocab``.

    ``TextModel(vocab, context=128, d_model=128, num_heads=8, num_layers=4, d_ff=4 * d_model, dropout=0.1)``

    ``model(ids)`` with ``ids`` a ``(batch, T)`` LongTensor of character ids, ``1 <= T <= context``, returns the
    logits ``(batch, T, vocab_size)``: at each position a score for every possible next character.
    ``model(ids, head_mask=m)`` with ``m`` a float ``(num_layers, num_heads)`` tensor multiplies each head's result
    by its entry before that layer's ``W_o`` (1 = on, 0 = off, fractions in between); all ones gives exactly the
    logits of no mask. ``model.attention_maps(ids)`` returns every head's map ``(batch, num_layers, num_heads, T, T)``.
    ``model.encode(text)`` / ``model.decode(ids)`` convert between text and ids (see :class:`CharTokenizer`).
    """

    def __init__(self, vocab: str, context: int = 128, d_model: int = 128, num_heads: int = 8,
                 num_layers: int = 4, d_ff: int | None = None, dropout: float = 0.1) -> None:
        super().__init__()
        self.tokenizer = CharTokenizer(vocab)
        for name, value in (("context", context), ("d_model", d_model), ("num_heads", num_heads),
                            ("num_layers", num_layers)):
            check_positive_int(name, value)
        d_ff = 4 * d_model if d_ff is None else check_positive_int("d_ff", d_ff)
        weights = len(vocab) * d_model + context * d_model + num_layers * (4 * d_model * d_model + 2 * d_model * d_ff)
        check_fits({"context": context, "d_model": d_model, "num_layers": num_layers, "d_ff": d_ff}, 8 * weights,
                   "the model's weights (and their gradients)", "the stored model has d_model=128, 4 layers")
        check_divisible(d_model, num_heads, d_name="d_model")
        check_number("dropout", dropout, minimum=0, maximum=1, below_maximum=True,
                     what="a probability in [0, 1) such as 0.1 (1 would drop everything)")
        self.vocab, self.vocab_size, self.context = vocab, len(vocab), context
        self.d_model, self.num_heads, self.head_dim, self.num_layers = d_model, num_heads, d_model // num_heads, num_layers
        self.d_ff, self.dropout = d_ff, float(dropout)
        self.tok_emb = nn.Embedding(self.vocab_size, d_model)  # id -> (d_model,); also the read-out (tied)
        self.pos_emb = nn.Embedding(context, d_model)  # position -> (d_model,), learned
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(TextBlock(d_model, num_heads, d_ff, dropout) for _ in range(num_layers))
        self.norm_f = nn.LayerNorm(d_model)
        self._init_weights()

    def _init_weights(self) -> None:
        """GPT-2's initialisation: every matrix (embeddings, ``W_q, W_k, W_v``, MLP) normal with std 0.02, the two
        projections that write into the residual stream (``W_o`` and the MLP's second layer) with std
        ``0.02 / sqrt(2 * num_layers)``, biases 0. It replaces :class:`MultiHeadAttention`'s Xavier initialisation:
        in a 300-step trial it reached 3.55 bits per character held out, against 3.76 with the module's own."""
        for name, p in self.named_parameters():
            if p.dim() == 2:
                writes = name.endswith(("W_o.weight", "mlp.2.weight"))
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * self.num_layers) if writes else 0.02)
            elif not name.startswith("norm") and ".norm" not in name:
                nn.init.zeros_(p)  # biases; LayerNorm gains stay 1 and their biases 0

    def config(self) -> dict[str, object]:
        """The arguments that rebuild this model: ``TextModel(**model.config())``."""
        return {"vocab": self.vocab, "context": self.context, "d_model": self.d_model, "num_heads": self.num_heads,
                "num_layers": self.num_layers, "d_ff": self.d_ff, "dropout": self.dropout}

    def extra_repr(self) -> str:
        return (f"vocab_size={self.vocab_size}, context={self.context}, d_model={self.d_model}, num_heads="
                f"{self.num_heads}, head_dim={self.head_dim}, num_layers={self.num_layers}, d_ff={self.d_ff}")

    def encode(self, text: str) -> torch.Tensor:
        """``text`` -> its character ids ``(len(text),)``; ``model(model.encode(text)[None])`` reads it."""
        return self.tokenizer.encode(text)

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        """Character ids ``(T,)`` (a LongTensor or a list of ints) -> the text."""
        return self.tokenizer.decode(ids)

    def _check_ids(self, ids: object) -> None:
        if not isinstance(ids, torch.Tensor):
            raise TypeError(f"ids must be a (batch, T) torch.LongTensor of character ids, e.g. "
                            f"model.encode('def f(x):')[None], got {type(ids).__name__}")
        if ids.dtype != torch.long:
            raise TypeError(f"ids must be a LongTensor (torch.int64) of character ids, got dtype {ids.dtype}; "
                            f"convert it with ids.long()")
        if ids.dim() != 2 or ids.shape[0] == 0 or ids.shape[1] == 0:
            raise ValueError(f"ids must be (batch, T) with batch >= 1 and T >= 1, got shape {tuple(ids.shape)}; "
                             f"for one text use model.encode(text)[None], of shape (1, T)")
        if ids.shape[1] > self.context:
            raise ValueError(f"ids has T={ids.shape[1]} characters, but the model reads at most context="
                             f"{self.context}; pass the last {self.context}, ids[:, -{self.context}:]")
        if ids.device != self.tok_emb.weight.device:
            raise ValueError(f"ids is on {ids.device} but the model is on {self.tok_emb.weight.device}; "
                             f"move it with ids.to('{self.tok_emb.weight.device}')")
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or high >= self.vocab_size:
            raise ValueError(f"ids must be character ids in 0..{self.vocab_size - 1} (the vocabulary's size is "
                             f"{self.vocab_size}), got ids from {low} to {high}")

    def _check_head_mask(self, head_mask: object) -> None:
        shape = (self.num_layers, self.num_heads)
        if not isinstance(head_mask, torch.Tensor):
            raise TypeError(f"head_mask must be a float tensor of shape (num_layers, num_heads) = {shape}, e.g. "
                            f"torch.ones{shape}, or None; got {type(head_mask).__name__}")
        if not head_mask.is_floating_point():
            raise TypeError(f"head_mask must be a floating-point tensor (1 = head on, 0 = off), got dtype "
                            f"{head_mask.dtype}; convert it with head_mask.float()")
        if tuple(head_mask.shape) != shape:
            raise ValueError(f"head_mask must have shape (num_layers, num_heads) = {shape}, got "
                             f"{tuple(head_mask.shape)}")
        if head_mask.device != self.tok_emb.weight.device:
            raise ValueError(f"head_mask is on {head_mask.device} but the model is on {self.tok_emb.weight.device}")
        if not bool(torch.isfinite(head_mask).all()):
            raise ValueError("head_mask holds NaN or infinity; use 1.0 for a head that stays on, 0.0 for one "
                             "switched off (fractions scale a head's output)")

    def _run(self, ids: torch.Tensor, head_mask: torch.Tensor | None, need_weights: bool
             ) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """Checked ``ids (batch, T)`` -> logits ``(batch, T, vocab_size)`` and each layer's maps (or Nones)."""
        self._check_ids(ids)
        if head_mask is not None:
            self._check_head_mask(head_mask)
            head_mask = head_mask.to(self.tok_emb.weight.dtype)
        T = ids.shape[1]
        positions = self.pos_emb(torch.arange(T, device=ids.device))  # (T, d_model)
        x = self.drop(self.tok_emb(ids) + positions)  # (batch, T, d_model)
        maps = []
        for layer, block in enumerate(self.blocks):
            x, weights = block(x, None if head_mask is None else head_mask[layer], need_weights)
            maps.append(weights)  # (batch, heads, T, T) or None
        x = self.norm_f(x)  # (batch, T, d_model)
        return F.linear(x, self.tok_emb.weight), maps  # (batch, T, d_model) @ (d_model, vocab) -> (batch, T, vocab)

    def forward(self, ids: torch.Tensor, head_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``ids (batch, T)`` -> logits ``(batch, T, vocab_size)``; see the class docstring for ``head_mask``."""
        return self._run(ids, head_mask, need_weights=False)[0]

    @contextlib.contextmanager
    def evaluating(self) -> Iterator[None]:
        """``with model.evaluating():`` runs the block in eval mode (no dropout), then restores the mode it found."""
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    def attention_maps(self, ids: torch.Tensor, head_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Every head's attention on ``ids (batch, T)``: ``(batch, num_layers, num_heads, T, T)``, rows summing to 1
        (row = query position, column = key position; the layout of notebook 12's ``induction_maps``); in eval
        mode whatever mode the model is in."""
        with torch.no_grad(), self.evaluating():
            maps = self._run(ids, head_mask, need_weights=True)[1]
        return torch.stack(maps, dim=1)  # layers x (batch, heads, T, T) -> (batch, layers, heads, T, T)


def save_text_model(model: TextModel, path: str | Path, extra: dict | None = None) -> None:
    """Store ``model`` in one file readable with ``torch.load(path, weights_only=True)``: its configuration, its
    vocabulary and its weights in half precision (float16), plus ``extra`` (plain numbers and strings)."""
    if not isinstance(model, TextModel):
        raise TypeError(f"model must be a TextModel, got {type(model).__name__}")
    state = {name: tensor.detach().to("cpu", torch.float16) for name, tensor in model.state_dict().items()}
    torch.save({"format": FORMAT, "config": model.config(), "state_dict": state, "extra": dict(extra or {})}, path)


class ModelFileNotFoundError(FileNotFoundError, ValueError):
    """No model file at the path given: Python's FileNotFoundError, and a ValueError as every wrong value here."""


def load_text_model(path: str | Path | None = None) -> TextModel:
    """The trained character model (default: :data:`TEXT_MODEL_PATH`), in eval mode, float32, on the CPU.

    Each call reads the file again and returns a new model (nothing is cached). ``model.trained`` holds what the
    maker script recorded (steps, seed, losses, Python and torch versions)."""
    path = TEXT_MODEL_PATH if path is None else path
    if not isinstance(path, (str, Path)):
        raise TypeError(f"path must be a str or pathlib.Path (or None for the stored model), got {type(path).__name__}")
    if not Path(path).is_file():
        raise ModelFileNotFoundError(f"path={str(path)!r} is no file; the stored model is {TEXT_MODEL_PATH} (pass "
                                     f"path=None for it), made by tests/make_text_model.py")
    stored = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(stored, dict) or stored.get("format") != FORMAT:
        raise ValueError(f"{path} is not a text model saved by save_text_model (format {FORMAT!r})")
    model = TextModel(**stored["config"])
    model.load_state_dict({name: tensor.float() for name, tensor in stored["state_dict"].items()})
    model.trained = stored["extra"]
    return model.eval()


def check_model(model: object) -> None:
    if not isinstance(model, TextModel):
        raise TypeError(f"model must be a TextModel, e.g. load_text_model(), got {type(model).__name__}")


def _windows(n: int, context: int) -> tuple[int, list[tuple[int, int]]]:
    """How :func:`token_losses` cuts ``n`` ids: the window width and, per window, ``(start, first)``.

    Windows of ``width = min(context, n - 1)`` ids start every ``width // 2`` ids, the last one flush with the end;
    window ``k`` reads ``ids[start:start + width]`` and scores the predictions no earlier window made, those of
    ``ids[first + 1:start + width + 1]`` (``first = 0`` for the first window, else where window ``k - 1`` ended).
    So every character after the first is predicted once, and all but the first ``width`` of them with at least
    ``width // 2`` characters before it.
    """
    width = min(context, n - 1)
    last = n - 1 - width
    starts = sorted(set(range(0, last, max(1, width // 2))) | {last})
    firsts = [0] + [start + width for start in starts[:-1]]
    return width, list(zip(starts, firsts, strict=True))


def _window_losses(model: TextModel, ids: torch.Tensor, width: int, windows: list[tuple[int, int]],
                   head_mask: torch.Tensor | None, batch_size: int = 64) -> list[torch.Tensor]:
    """Each window's scored losses in bits (see :func:`_windows`), in eval mode and batched."""
    rows = torch.stack([ids[start:start + width + 1] for start, _ in windows])  # (windows, width + 1)
    scored = []
    with torch.inference_mode(), model.evaluating():
        for b in range(0, len(windows), batch_size):
            chunk = rows[b:b + batch_size]  # (batch, width + 1)
            logits = model(chunk[:, :-1], head_mask)  # (batch, width, vocab)
            nats = F.cross_entropy(logits.transpose(1, 2), chunk[:, 1:], reduction="none")  # (batch, width)
            for row, (start, first) in enumerate(windows[b:b + batch_size]):
                scored.append(nats[row, first - start:] / math.log(2))
    return scored


def token_losses(model: TextModel, text: str, head_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The loss in bits of every prediction in ``text``: ``(len(text) - 1,)``, entry ``i`` for character ``i + 1``.

    The text is read in windows of ``model.context`` characters overlapping by half (see :func:`_windows`): every
    character is predicted once, all but the first ``context`` of them with at least ``context // 2`` characters
    before it. Deterministic, in eval mode. It costs two forward passes per character (several seconds per 100,000
    characters on 2 CPU cores); :func:`bits_per_char` estimates the mean from a fixed subset of the windows.
    """
    check_model(model)
    check_text("text", text)
    ids = model.encode(text)  # (n,)
    width, windows = _windows(len(ids), model.context)
    return torch.cat(_window_losses(model, ids, width, windows, head_mask))


def bits_per_char(model: TextModel, text: str, head_mask: torch.Tensor | None = None,
                  max_windows: int | None = 256) -> float:
    """The model's cross-entropy on ``text`` in bits per character: how many yes/no questions, on average, it
    still needs to pin down each next character (log2 of the vocabulary's size, ~6.8, is a blind guess).

    The windows are those of :func:`token_losses`. If there are more than ``max_windows`` of them, a fixed, evenly
    spaced subset of ``max_windows`` windows is scored (always the same ones for the same text), so a call takes
    well under a second (256 windows = 16,384 scored characters, the rest of a long text standing by); the first
    and the last window are always in it. ``max_windows=None`` scores every character (the mean of
    :func:`token_losses`).
    """
    check_model(model)
    check_text("text", text)
    if max_windows is not None:
        check_int("max_windows", max_windows, minimum=2)
    ids = model.encode(text)  # (n,)
    width, windows = _windows(len(ids), model.context)
    if max_windows is not None and len(windows) > max_windows:
        picks = torch.linspace(0, len(windows) - 1, max_windows).round().long().tolist()  # evenly spaced, distinct
        windows = [windows[k] for k in picks]
    return float(torch.cat(_window_losses(model, ids, width, windows, head_mask)).mean())


def repeated_strings(model: TextModel, num_strings: int = 100, length: int = 40, seed: int = 0) -> torch.Tensor:
    """Random strings said twice: ``(num_strings, 2 * length)`` ids. Each string is ``length`` DIFFERENT letters
    (a-z, A-Z, drawn without replacement with a fixed ``seed``), then the same letters again, so every letter of
    the second copy occurs exactly once before and "what followed it last time" is never ambiguous."""
    check_model(model)
    check_positive_int("num_strings", num_strings)
    check_seed("seed", seed)
    check_fits({"num_strings": num_strings}, num_strings * 2 * model.context * (model.vocab_size + 4 * model.d_model) * 4,
               "the strings' logits and activations", "the notebook uses 100 strings")
    letters = [ch for ch in model.vocab if ch.isascii() and ch.isalpha()]
    check_positive_int("length", length)
    if not 2 <= length <= len(letters) or 2 * length > model.context:
        raise ValueError(f"length must be in 2..{min(len(letters), model.context // 2)} (distinct letters, said twice "
                         f"within context={model.context}), got length={length}")
    ids = torch.tensor([model.vocab.index(ch) for ch in letters])  # (52,)
    g = torch.Generator().manual_seed(seed)
    first = ids[torch.rand(num_strings, len(letters), generator=g).argsort(dim=-1)[:, :length]]  # (num_strings, length)
    return torch.cat([first, first], dim=1)  # (num_strings, 2 * length)


def repeated_string_losses(model: TextModel, num_strings: int = 100, length: int = 40, seed: int = 0,
                           head_mask: torch.Tensor | None = None) -> dict[str, float]:
    """The induction test: bits per character on the first and on the second copy of :func:`repeated_strings`.

    ``"first"``: the mean loss on letters 2..length of the first copy (each new: only a guess is possible).
    ``"second"``: on letters 2..length of the second copy, each of which can be copied from the first (the first
    letter of the second copy is left out of both: nothing announces that the repeat begins). A model that copies
    (an induction head) makes ``"second"`` far smaller than ``"first"``.
    """
    ids = repeated_strings(model, num_strings, length, seed)  # (num_strings, 2 * length)
    with torch.inference_mode(), model.evaluating():
        logits = model(ids[:, :-1], head_mask)  # (num_strings, 2 * length - 1, vocab)
    bits = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none") / math.log(2)  # (num_strings, 2L-1)
    # Prediction i is of character i + 1: the first copy's letters 2..L are i = 0..L-2, the second's i = L..2L-2.
    return {"first": float(bits[:, : length - 1].mean()), "second": float(bits[:, length:].mean())}


def head_scores(model: TextModel, num_strings: int = 100, length: int = 40, seed: int = 0
                ) -> dict[str, torch.Tensor]:
    """Per head ``(num_layers, num_heads)``, measured on :func:`repeated_strings` over the queries of the second
    copy (positions ``length .. 2 * length - 1``):

    * ``"previous"``: the mean weight a query ``i`` puts on key ``i - 1`` (1.0: always one step back);
    * ``"induction"``: the mean weight on key ``i - length + 1``, the position right after the earlier copy of the
      current letter, which holds the letter that comes next (1.0: a perfect induction head);
    * ``"same"``: on key ``i - length``, the earlier copy of the current letter itself.
    """
    ids = repeated_strings(model, num_strings, length, seed)  # (num_strings, 2 * length)
    maps = model.attention_maps(ids)  # (num_strings, layers, heads, 2L, 2L)
    i = torch.arange(length, 2 * length)  # the second copy's queries
    return {"previous": maps[..., i, i - 1].mean(dim=(0, 3)),  # (num_strings, layers, heads, L) -> (layers, heads)
            "induction": maps[..., i[:-1], i[:-1] - length + 1].mean(dim=(0, 3)),
            "same": maps[..., i, i - length].mean(dim=(0, 3))}
