"""Notebook 08: what heads learn. A task with two look-ups per position, a tiny one-layer model, its training,
ablations (switching heads off) and the head-count sweep.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import nn

from ..common import OneThread, valid_head_counts
from ..figures import plot_heads
from ..maths.attention import merge_heads, split_heads
from ..maths.mha import MultiHeadAttention
from ..validation import (
    check_axes,
    check_bool,
    check_divisible,
    check_fits,
    check_float_tensor,
    check_fraction,
    check_has_values,
    check_head_numbers,
    check_instance,
    check_int_list,
    check_learning_rate,
    check_positive_int,
    check_seed,
    check_steps,
    check_str,
    check_token_ids,
    check_tokens,
)

#: The two look-ups of the task, in the order of the targets' last axis.
LOOKUP_PATTERNS: tuple[str, str] = ("previous", "first")


#: The value F.cross_entropy ignores: the target of position 0, which has no previous token.
IGNORE_INDEX: int = -100


def lookup_letters(vocab_size: int = 8) -> list[str]:
    """The token names ``["A", "B", ...]`` of the two-look-up task (``vocab_size`` at most 26)."""
    check_positive_int("vocab_size", vocab_size)
    if vocab_size > 26:
        raise ValueError(f"vocab_size must be at most 26 (one letter per token), got vocab_size={vocab_size}")
    return [chr(ord("A") + t) for t in range(vocab_size)]


def two_lookup_targets(tokens: torch.Tensor) -> torch.Tensor:
    """The answers of the two-look-up task for a batch of token ids: ``(batch, seq)`` -> ``(batch, seq, 2)``.

    ``targets[b, i, 0]`` is the previous token ``tokens[b, i-1]`` and ``targets[b, i, 1]`` the first token
    ``tokens[b, 0]``; position 0 has no previous token, so both its targets are ``IGNORE_INDEX`` (-100), which
    ``F.cross_entropy`` skips.
    """
    check_token_ids("tokens", tokens, min_len=2)
    previous = torch.full_like(tokens, IGNORE_INDEX)  # (batch, seq)
    previous[:, 1:] = tokens[:, :-1]  # position i gets token i-1
    first = tokens[:, :1].expand_as(tokens).clone()  # (batch, 1) -> (batch, seq): token 0 everywhere
    first[:, 0] = IGNORE_INDEX
    return torch.stack([previous, first], dim=-1)  # 2 x (batch, seq) -> (batch, seq, 2)


def make_two_lookup_batch(
    batch_size: int, seq_len: int = 8, vocab_size: int = 8, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random sequences and their answers: ``tokens (batch, seq)`` (uniform ids < ``vocab_size``) and
    ``targets (batch, seq, 2)`` from :func:`two_lookup_targets`. Pass a seeded ``generator`` for repeatable data."""
    check_positive_int("batch_size", batch_size)
    check_positive_int("seq_len", seq_len)
    check_positive_int("vocab_size", vocab_size)
    if seq_len < 3:
        raise ValueError(f"seq_len must be at least 3 (so 'previous' and 'first' can differ), got seq_len={seq_len}")
    if not 2 <= vocab_size < 2**63:
        raise ValueError(f"vocab_size must be at least 2 and below 2**63 (token ids are torch.long), got "
                         f"vocab_size={vocab_size}")
    check_fits({"batch_size": batch_size, "seq_len": seq_len}, 40 * batch_size * seq_len, "the batch",
               "notebook 08 uses batches of up to 2000 sequences of 8 tokens")
    tokens = torch.randint(0, vocab_size, (batch_size, seq_len), generator=generator)  # (batch, seq)
    return tokens, two_lookup_targets(tokens)


class TinyLookupModel(nn.Module):
    """Token embedding + learned positions -> ONE ``MultiHeadAttention`` layer -> a linear read-out.

    ``forward(tokens (batch, seq)) -> logits (batch, seq, 2, vocab_size)``: for every position one score per letter
    for each of the two look-ups (``LOOKUP_PATTERNS``). There is no residual connection and no MLP on purpose:
    whatever the read-out knows about other positions came through the attention heads, so switching a head off
    shows what it carried. ``return_weights=True`` also returns the per-head attention ``(batch, heads, seq, seq)``.
    The parameter count does not depend on ``num_heads`` (only the split of ``d_model`` does).
    """

    def __init__(self, vocab_size: int = 8, seq_len: int = 8, d_model: int = 8, num_heads: int = 2) -> None:
        super().__init__()
        sizes = {"vocab_size": vocab_size, "seq_len": seq_len, "d_model": d_model, "num_heads": num_heads}
        for name, value in sizes.items():
            check_positive_int(name, value)
        params = (3 * vocab_size + seq_len) * d_model + 4 * d_model * (d_model + 1)
        check_fits(sizes, params * torch.get_default_dtype().itemsize, "the model's weights",
                   "notebook 08 uses vocab_size=8, seq_len=8 and d_model=8")
        self.vocab_size, self.seq_len = vocab_size, seq_len
        self.token_emb = nn.Embedding(vocab_size, d_model)  # id -> (d_model,)
        self.pos_emb = nn.Embedding(seq_len, d_model)  # position -> (d_model,), learned
        self.attn = MultiHeadAttention(d_model, num_heads)  # checks that num_heads divides d_model
        self.readout = nn.Linear(d_model, len(LOOKUP_PATTERNS) * vocab_size)  # d_model -> 2 * vocab

    @property
    def num_heads(self) -> int:
        return self.attn.num_heads

    def forward(self, tokens: torch.Tensor, return_weights: bool = False):
        check_token_ids("tokens", tokens, self.vocab_size)
        check_bool("return_weights", return_weights)
        batch, seq = tokens.shape
        if seq > self.seq_len:
            raise ValueError(f"tokens has {seq} positions but the model learned only seq_len={self.seq_len}")
        positions = torch.arange(seq, device=tokens.device)  # (seq,)
        x = self.token_emb(tokens) + self.pos_emb(positions)  # (batch, seq, d_model) + (seq, d_model)
        out, weights = self.attn(x, need_weights=return_weights, average_attn_weights=False)  # (batch, seq, d_model)
        logits = self.readout(out)  # (batch, seq, 2 * vocab)
        logits = logits.view(batch, seq, len(LOOKUP_PATTERNS), self.vocab_size)  # -> (batch, seq, 2, vocab)
        return (logits, weights) if return_weights else logits


class heads_switched_off:  # lower-case: used like a function, `with mh.heads_switched_off(attn, [0]):`
    """``with heads_switched_off(attn, heads):`` inside the block, ``attn`` works as if those heads found nothing.

    ``attn`` is a :class:`MultiHeadAttention`, ``heads`` a head number or a list of them. A forward pre-hook on
    ``attn.W_o`` zeroes those heads' slices of the concatenated head outputs ``(batch, seq, num_heads * head_dim)``
    just before the output projection mixes them; the hook is removed when the block ends.
    """

    def __init__(self, attn: MultiHeadAttention, heads: int | Sequence[int]) -> None:
        check_instance("attn", attn, MultiHeadAttention, "an mha_helpers.MultiHeadAttention")
        self.attn, self.heads, self.handle = attn, check_head_numbers("heads", heads, attn.num_heads), None

    def __enter__(self) -> heads_switched_off:
        attn = self.attn
        w = attn.W_o.weight
        keep = torch.ones(attn.num_heads, 1, 1, device=w.device, dtype=w.dtype)  # (heads, 1, 1)
        keep[self.heads] = 0.0

        def zero_heads(module, args):
            (merged,) = args  # (batch, seq, num_heads * head_dim)
            heads = split_heads(merged, attn.num_heads)  # -> (batch, heads, seq, head_dim)
            return (merge_heads(heads * keep),)  # switched-off heads -> 0; -> (batch, seq, heads * head_dim)

        self.handle = attn.W_o.register_forward_pre_hook(zero_heads)
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()


def _lookup_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over both look-ups: logits ``(batch, seq, 2, vocab)``, targets ``(batch, seq, 2)``."""
    return F.cross_entropy(logits.flatten(0, 2), targets.flatten(), ignore_index=IGNORE_INDEX)  # (B*seq*2, vocab)


def train_lookup_model(
    num_heads: int,
    d_model: int = 8,
    seed: int = 0,
    steps: int = 150,
    batch_size: int = 64,
    lr: float = 0.03,
    seq_len: int = 8,
    vocab_size: int = 8,
    progress: bool = True,
) -> tuple[TinyLookupModel, list[float]]:
    """Train a :class:`TinyLookupModel` on fresh random batches of the two-look-up task; returns ``(model, losses)``.

    Adam, ``steps`` steps of ``batch_size`` new sequences each (so nothing can be memorised). Everything random
    comes from ``seed`` (the weights from ``torch.manual_seed(seed)`` inside a forked RNG, so the caller's random
    state is left alone; the data from its own generator), and training runs on one CPU thread, so the same seed
    gives bit-identical results on every run and at any ``OMP_NUM_THREADS``. ``progress`` shows a tqdm bar.
    The model comes back in eval mode; ``losses`` holds the loss of every step. A run is fully determined by its
    arguments: asking again with the same arguments trains the same model again.
    """
    check_positive_int("num_heads", num_heads)
    check_positive_int("d_model", d_model)
    check_steps("steps", steps)
    check_positive_int("batch_size", batch_size)
    check_seed("seed", seed)
    check_learning_rate("lr", lr, example="0.03")
    check_divisible(d_model, num_heads, d_name="d_model")
    make_two_lookup_batch(batch_size, seq_len, vocab_size, torch.Generator())  # checks the batch's sizes first
    check_bool("progress", progress)
    from tqdm.auto import tqdm

    bar = tqdm(total=steps, desc=f"{num_heads} head{'s' if num_heads > 1 else ''}", disable=not progress, leave=True)
    model, losses = _train_lookup(num_heads, d_model, seed, steps, batch_size, lr, seq_len, vocab_size, bar=bar)
    bar.close()
    return model.eval(), losses


def _train_lookup(num_heads, d_model, seed, steps, batch_size, lr, seq_len, vocab_size, bar=None, every=None,
                  on_check=None):
    """The training loop of :func:`train_lookup_model` (arguments already checked). If ``every`` is given,
    ``on_check(step, model)`` runs after every ``every`` steps (``step`` = steps done so far, model in eval mode);
    when it returns True, training stops there. Returns ``(model, losses)``."""
    data = torch.Generator().manual_seed(10_000 + seed)
    losses: list[float] = []
    # Training records gradients whatever the caller's mode (inside torch.no_grad() or inference_mode() too).
    with OneThread(), torch.random.fork_rng(devices=[]), torch.inference_mode(False), torch.enable_grad():
        torch.manual_seed(seed)
        model = TinyLookupModel(vocab_size, seq_len, d_model, num_heads)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, foreach=True)
        for step in range(steps):
            tokens, targets = make_two_lookup_batch(batch_size, seq_len, vocab_size, generator=data)
            loss = _lookup_loss(model(tokens), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if bar is not None:
                bar.update(1)
                if step % 20 == 0 or step == steps - 1:
                    bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if every is not None and (step + 1) % every == 0:
                stop = on_check(step + 1, model.eval())
                model.train()
                if stop:
                    break
    return model, losses


def steps_to_solve(
    num_heads: int,
    seed: int = 0,
    lr: float = 0.03,
    max_steps: int = 1000,
    d_model: int = 8,
    every: int = 50,
    threshold: float = 0.95,
    num_examples: int = 500,
    progress: bool = False,
) -> dict[str, object]:
    """Train as :func:`train_lookup_model` does (same weights, same data for the same ``seed`` and ``lr``), but
    check "both right" on the first ``num_examples`` test sequences after every ``every`` steps and stop as soon as
    it reaches ``threshold``. Returns ``{"solved_at": step or None, "both": accuracy at the end, "curve": [(step,
    both), ...]}``. This is *how fast* a setting learns the task, not only whether 150 steps suffice. ``progress``
    shows a tqdm bar.
    """
    check_positive_int("num_heads", num_heads)
    check_steps("max_steps", max_steps)
    check_positive_int("every", every)
    if every > max_steps:
        raise ValueError(f"every={every} must be at most max_steps={max_steps}: the accuracy is checked after every "
                         f"`every` steps, so a larger one would never check it")
    check_positive_int("num_examples", num_examples)
    check_seed("seed", seed)
    check_learning_rate("lr", lr, example="0.03")
    check_fraction("threshold", threshold)
    check_bool("progress", progress)
    check_positive_int("d_model", d_model)
    check_divisible(d_model, num_heads, d_name="d_model")
    curve: list[tuple[int, float]] = []

    def check(step: int, model: TinyLookupModel) -> bool:
        curve.append((step, lookup_accuracy(model, num_examples=num_examples)["both"]))
        return curve[-1][1] >= threshold

    from tqdm.auto import tqdm

    bar = tqdm(total=max_steps, desc=f"{num_heads} head{'s' if num_heads > 1 else ''}, lr {lr}", disable=not progress)
    _train_lookup(num_heads, d_model, seed, max_steps, 64, lr, 8, 8, bar=bar, every=every, on_check=check)
    bar.close()
    solved = curve[-1][0] if curve and curve[-1][1] >= threshold else None
    return {"solved_at": solved, "both": curve[-1][1] if curve else float("nan"), "curve": curve}


def lookup_test_set(num_examples: int = 2000, seq_len: int = 8, vocab_size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed test sequences every evaluation uses: ``tokens (n, seq)``, ``targets (n, seq, 2)`` (seed 12345,
    which no training run uses)."""
    check_positive_int("num_examples", num_examples)
    check_positive_int("seq_len", seq_len)
    check_fits({"num_examples": num_examples, "seq_len": seq_len}, 40 * num_examples * seq_len, "the test set",
               "notebook 08 tests on 2000 sequences of 8 tokens")
    return make_two_lookup_batch(num_examples, seq_len, vocab_size, generator=torch.Generator().manual_seed(12345))


def lookup_accuracy(
    model: TinyLookupModel, heads_off: Sequence[int] = (), num_examples: int = 2000, start: int = 2
) -> dict[str, float]:
    """Accuracy on the fixed test set: ``{"previous": ..., "first": ..., "both": ...}``, each a fraction in [0, 1].

    Scored at positions ``start..seq-1`` (default 2: at position 1 the previous token IS the first token, so one
    look-up would answer both). ``"both"`` counts a position as right only when both look-ups are right.
    ``heads_off`` switches those heads off (see :func:`heads_switched_off`) for the measurement.
    """
    check_instance("model", model, TinyLookupModel, "a TinyLookupModel (from train_lookup_model)")
    check_positive_int("num_examples", num_examples)
    check_positive_int("start", start)
    if start >= model.seq_len:  # no position left to score: the mean of nothing would be NaN
        raise ValueError(f"start must be a position 1..{model.seq_len - 1} (the model's seq_len is {model.seq_len}), "
                         f"got start={start}")
    heads_off = check_head_numbers("heads_off", heads_off, model.num_heads)
    tokens, targets = lookup_test_set(num_examples, model.seq_len, model.vocab_size)
    with OneThread(), torch.no_grad(), heads_switched_off(model.attn, heads_off):
        predicted = model(tokens).argmax(dim=-1)  # (n, seq, 2, vocab) -> (n, seq, 2)
    right = (predicted == targets)[:, start:]  # (n, seq - start, 2)
    return {
        LOOKUP_PATTERNS[0]: right[..., 0].float().mean().item(),
        LOOKUP_PATTERNS[1]: right[..., 1].float().mean().item(),
        "both": right.all(dim=-1).float().mean().item(),
    }


def lookup_attention(model: TinyLookupModel, tokens: torch.Tensor) -> torch.Tensor:
    """The trained model's per-head attention for some sequences: ``(batch, seq)`` -> ``(batch, heads, seq, seq)``."""
    check_instance("model", model, TinyLookupModel, "a TinyLookupModel (from train_lookup_model)")
    with OneThread(), torch.no_grad():
        _, weights = model(tokens, return_weights=True)
    return weights


def attention_shares(weights: torch.Tensor, start: int = 2) -> torch.Tensor:
    """How much of each head's attention lands where each look-up needs it: ``(batch, heads, L, S)`` -> ``(heads, 2)``.

    Column 0: the mean weight query ``i`` gives key ``i-1`` (the previous token); column 1: the mean weight it gives
    key 0 (the first token). Averaged over the batch and the queries ``i >= start`` (default 2: from there on the two
    look-ups point at different positions). 1.0 means the head looks only there.
    """
    check_float_tensor("weights", weights, ranks=(4,))
    L = weights.shape[-2]
    check_positive_int("start", start)
    if not 1 <= start < L:
        raise ValueError(f"start must be in 1..{L - 1} (a query with a previous token), got start={start}")
    queries = torch.arange(start, L, device=weights.device)  # (n_q,)
    previous = weights[:, :, queries, queries - 1]  # (batch, heads, n_q): w[b, h, i, i-1]
    first = weights[:, :, queries, 0]  # (batch, heads, n_q): w[b, h, i, 0]
    return torch.stack([previous.mean(dim=(0, 2)), first.mean(dim=(0, 2))], dim=-1)  # (heads, 2)


def ablation_table(model: TinyLookupModel, num_examples: int = 2000) -> dict[str, dict[str, float]]:
    """Accuracy with every head on (key ``"none"``) and with each head switched off in turn (keys ``"head 0"``, ...).

    Each value is :func:`lookup_accuracy`'s dict ``{"previous", "first", "both"}``.
    """
    table = {"none": lookup_accuracy(model, (), num_examples)}
    for h in range(model.num_heads):
        table[f"head {h}"] = lookup_accuracy(model, (h,), num_examples)
    return table


def head_count_sweep(
    d_model: int = 8, seeds: Sequence[int] = (0, 1, 2, 3, 4), progress: bool = True, **train_kwargs
) -> dict[int, list[dict[str, float]]]:
    """Train one model per (head count, seed) at fixed ``d_model``; head counts are every divisor of ``d_model``.

    Returns ``{num_heads: [lookup_accuracy(...) for each seed]}``. The models have the same parameter count and the
    same computation (only the split of d_model into heads changes), as in Vaswani et al. (2017), Table 3 rows (A).
    ``train_kwargs`` go to :func:`train_lookup_model`; one tqdm bar counts the runs.
    """
    check_positive_int("d_model", d_model)
    seeds = check_int_list("seeds", seeds, allow_empty=False, what="a non-empty list of seeds (ints >= 0)")
    check_bool("progress", progress)
    from tqdm.auto import tqdm

    runs = [(h, s) for h in valid_head_counts(d_model) for s in seeds]
    results: dict[int, list[dict[str, float]]] = {h: [] for h in valid_head_counts(d_model)}
    for h, s in tqdm(runs, desc=f"sweep at d_model={d_model}", disable=not progress):
        model, _ = train_lookup_model(h, d_model=d_model, seed=s, progress=False, **train_kwargs)
        results[h].append(lookup_accuracy(model))
    return results


def stored_head_count_sweep() -> dict[int, list[dict[str, float]]]:
    """The record of ``head_count_sweep(d_model=8, seeds=(0, 1, 2, 3, 4))`` with every other argument at its
    default, in the same form (a fresh copy each call), so that notebook 08 need not spend ~8 s on 20 runs.

    The numbers live in ``lookup_reference.py``, written by ``python tests/make_lookup_reference.py`` on one CPU;
    ``tests/claims/test_claims.py`` retrains the sweep and checks that it gives the same results.
    """
    from .lookup_reference import SWEEP_D_MODEL_8

    return {heads: [dict(run) for run in runs] for heads, runs in SWEEP_D_MODEL_8.items()}


#: "Solved" means at least this share of test positions with both look-ups right.
SOLVED_AT: float = 0.95


def _check_sweep_results(results: object) -> None:
    """``results`` as :func:`head_count_sweep` returns it: ``{num_heads: [one dict per seed]}``, not empty."""
    if not isinstance(results, dict) or not all(isinstance(r, list) for r in results.values()):
        raise TypeError(
            f"results must be head_count_sweep's dict {{num_heads: [per-seed dicts]}}, got {type(results).__name__}"
        )
    if not results or not all(results.values()):
        raise ValueError("results is empty: run head_count_sweep first")


def sweep_summary(
    results: dict[int, list[dict[str, float]]], key: str = "both", threshold: float = SOLVED_AT
) -> list[dict[str, float]]:
    """One row per head count: ``num_heads``, ``mean``, ``min``, ``max`` of ``key`` accuracy over the seeds, and
    ``solved``, how many seeds reached ``threshold`` (of ``runs``). A result that is either solved or stuck (the
    usual case here) is better described by ``solved`` and the per-seed values than by its mean."""
    _check_sweep_results(results)
    check_str("key", key, "one of the accuracy names, e.g. 'both', 'previous', 'first'")
    if any(key not in r for runs in results.values() for r in runs):
        raise ValueError(f"key must be one of the accuracy names, e.g. 'both', 'previous', 'first', got {key!r}")
    check_fraction("threshold", threshold)
    rows = []
    for h, runs in results.items():
        values = torch.tensor([r[key] for r in runs], dtype=torch.float64)
        rows.append({"num_heads": h, "mean": float(values.mean()), "min": float(values.min()),
                     "max": float(values.max()), "solved": int((values >= threshold).sum()), "runs": len(runs)})
    return rows


def plot_lookup_heads(
    weights: torch.Tensor, labels: Sequence[str], title: str = "What each head looks at", annot: bool = True
) -> Figure:
    """Per-head maps ``(num_heads, L, L)`` (or ``(1, num_heads, L, L)``) of a :class:`TinyLookupModel`, with the cells
    each look-up needs outlined: key ``i-1`` for "previous" (red, solid) and key 0 for "first" (blue, dashed),
    for the queries ``i >= 2``. Each head's title gives its :func:`attention_shares` on the sequences drawn (pass
    one sequence, ``(1, heads, L, L)``, for a readable map). Returns the Figure."""
    from matplotlib.patches import Patch, Rectangle

    check_float_tensor("weights", weights, ranks=(3, 4), layout="(num_heads, L, L) or (1, num_heads, L, L)")
    check_has_values("weights", weights)
    check_tokens("labels", labels)
    check_str("title", title)
    check_bool("annot", annot)
    w = weights.detach()
    if w.dim() == 4 and w.shape[0] == 1:
        w = w[0]
    check_float_tensor("weights", w, ranks=(3,))
    num_heads, L, _ = w.shape
    shares = attention_shares(w.unsqueeze(0))  # (heads, 2)
    fig = plot_heads(w, labels, title=title, annot=annot)
    cols = min(4, num_heads)
    fig.set_size_inches(4.6 * cols + 0.4, 4.4 * math.ceil(num_heads / cols) + 0.9)
    for h in range(num_heads):
        ax = fig.axes[h]
        for i in range(2, L):  # cell (row i, column j) spans x in [j, j+1], y in [i, i+1]
            ax.add_patch(Rectangle((i - 1, i), 1, 1, fill=False, edgecolor="red", lw=2.2))
            ax.add_patch(Rectangle((0.04, i + 0.04), 0.92, 0.92, fill=False, edgecolor="deepskyblue", lw=2.2, ls="--"))
        ax.set_title(f"head {h}, on this example: {shares[h, 0]:.0%} on previous, {shares[h, 1]:.0%} on first",
                     fontsize=10)
    fig.legend(
        handles=[Patch(fill=False, edgecolor="red", lw=2, label="where 'previous' must look: key i-1"),
                 Patch(fill=False, edgecolor="deepskyblue", lw=2, ls="--", label="where 'first' must look: key 0")],
        loc="lower center", ncol=2 if num_heads > 1 else 1, fontsize=9, frameon=False,
    )
    fig.tight_layout(rect=(0, 0.05 if num_heads > 1 else 0.09, 1, 1))
    return fig


def plot_head_sweep(results: dict[int, list[dict[str, float]]], d_model: int | None = None, ax: Axes | None = None,
                    steps: int | None = None) -> Axes:
    """Accuracy against the number of heads, from :func:`head_count_sweep`'s results: every seed's "both look-ups
    right" as a dot (a result that is solved or stuck is not summarised by a mean), "k of n solved" above each
    column (:data:`SOLVED_AT`), and the 1-in-8 guessing level. ``steps`` (the training budget) goes into the title.
    Returns the ``Axes``."""
    import matplotlib.pyplot as plt

    _check_sweep_results(results)
    for name, value in (("d_model", d_model), ("steps", steps)):
        if value is not None:
            check_positive_int(name, value)
    check_axes("ax", ax)
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 5.2))
    heads = list(results)
    xs = list(range(len(heads)))  # evenly spaced, labelled with the head counts
    rows = sweep_summary(results)
    for x, h, row in zip(xs, heads, rows, strict=True):
        runs = results[h]
        offsets = [0.05 * (k - (len(runs) - 1) / 2) for k in range(len(runs))]  # side by side, one per seed
        # two columns per head count, so that neither hides the other: "both" left, "previous" right
        ax.scatter([x - 0.14 + o for o in offsets], [100 * r["both"] for r in runs], color="tab:blue", s=28, zorder=3,
                   label="both right: one seed" if x == 0 else None)
        ax.scatter([x + 0.14 + o for o in offsets], [100 * r["previous"] for r in runs], facecolors="none",
                   edgecolors="tab:orange", marker="D", s=26, lw=1.4, zorder=3,
                   label="'previous' right: one seed" if x == 0 else None)
        ax.text(x, 103, f"{row['solved']} of {row['runs']} solved", ha="center", fontsize=9)
    ax.axhline(100 * SOLVED_AT, color="tab:blue", lw=0.8, ls=":", label=f"solved: both right ≥ {SOLVED_AT:.0%}")
    ax.axhline(100 / 8, color="grey", lw=1, ls="-.", label="guessing one look-up: 1 in 8")
    d_model = d_model if d_model is not None else heads[-1]
    ax.set_xticks(xs, [f"{h}\n(head_dim {d_model // h})" for h in heads])
    ax.set_xlim(-0.5, len(heads) - 0.5)
    ax.set_xlabel(f"number of heads at d_model = {d_model}")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 110)
    budget = f" after {steps} training steps" if steps is not None else ""
    ax.set_title(f"Same model size, different number of heads{budget}")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    ax.figure.tight_layout()
    return ax
