"""Notebook 12: heads that compose. A task only two layers can solve (continue a repeated random segment), a tiny
attention-only model, its training with snapshots, the per-head scores (previous token, induction), ablations and
the figures of the notebook (its replay widget is ``widgets/training_replay.py``).

The circuit is the one of Elhage et al. (2021), "A Mathematical Framework for Transformer Circuits", and Olsson et
al. (2022), "In-context Learning and Induction Heads": a layer-0 head copies "my previous token" into each
position; a layer-1 head's keys read that copy (K-composition), so a query finds the position right after the last
occurrence of its own token and copies the token there.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..common import OneThread
from ..maths.mha import MultiHeadAttention
from ..validation import (
    check_axes,
    check_bool,
    check_fits,
    check_generator,
    check_instance,
    check_int_list,
    check_learning_rate,
    check_list,
    check_positive_int,
    check_seed,
    check_steps,
    check_token_ids,
)
from .lookup import heads_switched_off, lookup_letters

#: The shortest and longest segment of :func:`repeated_sequences` (both included).
PERIOD_RANGE: tuple[int, int] = (3, 8)


def repeated_sequences(
    batch: int, seq_len: int = 24, vocab_size: int = 20, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Sequences of random segments, each said twice: ``(batch, seq_len)`` token ids (torch.long).

    A sequence is ``s1 s1 s2 s2 s3 s3 ...`` cut at ``seq_len``: each segment has its own random length from
    :data:`PERIOD_RANGE` (3..8), and all the tokens of one sequence's segments are DIFFERENT, so "the token after the
    last time I saw this one" is never ambiguous. Because segments start at random places and have random lengths,
    no fixed offset ("look ``P - 1`` back", "copy from position ``k``") can continue them: only the content can.
    Pass a seeded ``generator`` for repeatable data.
    """
    check_positive_int("batch", batch)
    check_positive_int("seq_len", seq_len)
    check_positive_int("vocab_size", vocab_size)
    low, high = PERIOD_RANGE
    if seq_len < 2 * high:
        raise ValueError(f"seq_len must be at least {2 * high} (a longest segment said twice), got seq_len={seq_len}")
    most = seq_len // 2 + high  # the most different tokens a sequence can need
    if vocab_size < most:
        raise ValueError(f"vocab_size must be at least {most} (all the segments of a sequence of seq_len={seq_len} "
                         f"tokens use different tokens), got vocab_size={vocab_size}")
    check_generator("generator", generator)
    check_fits({"batch": batch, "seq_len": seq_len, "vocab_size": vocab_size}, 24 * batch * (vocab_size + seq_len),
               "the sequences", "notebook 12 draws batches of a few hundred sequences of 24 tokens from 20")
    count = seq_len // (2 * low) + 1  # enough segments to fill seq_len
    lengths = torch.randint(low, high + 1, (batch, count), generator=generator)  # (batch, segments)
    distinct = torch.rand(batch, vocab_size, generator=generator).argsort(dim=-1)  # (batch, vocab): a permutation
    ends = (2 * lengths).cumsum(dim=-1)  # (batch, segments): where each segment's second copy ends
    i = torch.arange(seq_len).expand(batch, seq_len).contiguous()  # (batch, seq)
    k = torch.searchsorted(ends, i, right=True)  # (batch, seq): which segment position i belongs to
    start = (ends - 2 * lengths).gather(1, k)  # (batch, seq): where that segment begins
    first_id = (lengths.cumsum(dim=-1) - lengths).gather(1, k)  # (batch, seq): its first token's rank
    index = first_id + (i - start) % lengths.gather(1, k)  # (batch, seq): rank of the token at position i
    return distinct.gather(1, index)  # (batch, seq)


def occurrence_masks(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Which predictions are guesses and which can be copied: two boolean masks ``(batch, seq - 1)``.

    Position ``i`` predicts ``tokens[i + 1]``. ``first[b, i]``: the token to predict has not appeared yet (nothing
    can tell it). ``repeated[b, i]``: both the current token and the one to predict appeared before, so the next
    token can be read off the earlier copy. A prediction whose target appeared before but whose current token is
    new (the first token of a second copy) is in neither: nothing announces that the repeat begins.
    """
    check_token_ids("tokens", tokens, min_len=2)
    same = tokens[:, :, None] == tokens[:, None, :]  # (batch, seq, seq): tokens[i] == tokens[j]
    earlier = torch.ones_like(same[0]).tril(-1)  # (seq, seq): j < i
    seen = (same & earlier).any(dim=-1)  # (batch, seq): tokens[i] appeared before position i
    return ~seen[:, 1:], seen[:, 1:] & seen[:, :-1]  # target i+1 new; target and current token i both seen


class InductionModel(nn.Module):
    """An attention-only Transformer: token embedding + learned positions, ``num_layers`` causal
    :class:`MultiHeadAttention` layers, each ADDED to the residual stream, and a linear read-out (unembedding).

    ``forward(tokens (batch, seq)) -> logits (batch, seq, vocab_size)``: at every position a score for each possible
    next token. No MLP and no layer norm, as in Elhage et al. (2021): whatever the read-out knows about other
    positions came through the heads. ``return_weights=True`` also returns the per-head attention
    ``(batch, num_layers, num_heads, seq, seq)``. ``model.layers[l]`` is layer ``l``'s ``MultiHeadAttention``.
    """

    def __init__(self, vocab_size: int = 20, seq_len: int = 24, d_model: int = 64, num_heads: int = 4,
                 num_layers: int = 2) -> None:
        super().__init__()
        sizes = {"vocab_size": vocab_size, "seq_len": seq_len, "d_model": d_model, "num_heads": num_heads,
                 "num_layers": num_layers}
        for name, value in sizes.items():
            check_positive_int(name, value)
        params = (2 * vocab_size + seq_len) * d_model + num_layers * 4 * d_model * (d_model + 1)
        check_fits(sizes, params * torch.get_default_dtype().itemsize, "the model's weights",
                   "notebook 12 uses vocab_size=20, seq_len=24, d_model=64, 4 heads and 2 layers")
        self.vocab_size, self.seq_len, self.num_layers = vocab_size, seq_len, num_layers
        self.token_emb = nn.Embedding(vocab_size, d_model)  # id -> (d_model,)
        self.pos_emb = nn.Embedding(seq_len, d_model)  # position -> (d_model,), learned
        self.layers = nn.ModuleList(MultiHeadAttention(d_model, num_heads) for _ in range(num_layers))
        self.unembed = nn.Linear(d_model, vocab_size)  # d_model -> one score per token

    @property
    def num_heads(self) -> int:
        return self.layers[0].num_heads

    def forward(self, tokens: torch.Tensor, return_weights: bool = False):
        check_token_ids("tokens", tokens, self.vocab_size, min_len=2)
        check_bool("return_weights", return_weights)
        seq = tokens.shape[1]
        if seq > self.seq_len:
            raise ValueError(f"tokens has {seq} positions but the model learned only seq_len={self.seq_len}")
        positions = self.pos_emb(torch.arange(seq, device=tokens.device))  # (seq, d_model), learned
        x = self.token_emb(tokens)  # (batch, seq, d_model): the residual stream holds no positions
        maps = []
        for attn in self.layers:
            where = x + positions  # (batch, seq, d_model): positions steer the queries and keys only
            out, w = attn(where, where, x, need_weights=return_weights, average_attn_weights=False, is_causal=True)
            x = x + out  # the residual stream: each layer adds what its heads found
            maps.append(w)  # (batch, heads, seq, seq) or None
        logits = self.unembed(x)  # (batch, seq, d_model) -> (batch, seq, vocab)
        if not return_weights:
            return logits
        return logits, torch.stack(maps, dim=1)  # layers x (batch, heads, seq, seq) -> (batch, layers, heads, seq, seq)


def induction_maps(model: InductionModel, tokens: torch.Tensor) -> torch.Tensor:
    """Every head's attention on ``tokens (batch, seq)``: ``(batch, num_layers, num_heads, seq, seq)``."""
    check_instance("model", model, InductionModel, "an InductionModel")
    with OneThread(), torch.no_grad():
        return model(tokens, return_weights=True)[1]


def scores_from_maps(maps: torch.Tensor, tokens: torch.Tensor, kind: str) -> torch.Tensor:
    """Every head's score from its maps ``(batch, layers, heads, L, L)`` on ``tokens (batch, L)`` -> ``(layers, heads)``:
    ``kind="previous"`` as :func:`previous_token_scores`, ``"induction"`` as :func:`induction_scores` (no checks)."""
    L = maps.shape[-1]
    if kind == "previous":
        i = torch.arange(1, L)  # queries with a previous token
        return maps[..., i, i - 1].mean(dim=(0, 3))  # (batch, layers, heads, L-1) -> (layers, heads)
    prev = torch.full_like(tokens, -1)  # (batch, L): the token before each key; none before key 0
    prev[:, 1:] = tokens[:, :-1]
    targets = (prev[:, None, :] == tokens[:, :, None]) & torch.ones(L, L, dtype=torch.bool).tril()  # (batch, L, L)
    has = targets.any(dim=-1)  # (batch, L): queries with at least one such key
    if not bool(has.any()):
        raise ValueError("no query in tokens has a key whose previous token equals it (nothing repeats): "
                         "pass repeated sequences, e.g. repeated_sequences(...)")
    share = (maps * targets[:, None, None].to(maps.dtype)).sum(dim=-1)  # (batch, layers, heads, L)
    mask = has[:, None, None, :].to(maps.dtype)  # (batch, 1, 1, L)
    return (share * mask).sum(dim=(0, 3)) / mask.sum(dim=(0, 3))  # (layers, heads)


def previous_token_scores(model: InductionModel, tokens: torch.Tensor) -> torch.Tensor:
    """How much each head looks at the previous token: ``(num_layers, num_heads)``, each in [0, 1].

    The mean weight query ``i`` puts on key ``i - 1``, over the sequences ``tokens (batch, seq)`` and the queries
    ``i = 1 .. seq-1``. 1.0 means the head always looks exactly one position back.
    """
    check_token_ids("tokens", tokens, min_len=2)
    return scores_from_maps(induction_maps(model, tokens), tokens, "previous")


def induction_scores(model: InductionModel, tokens: torch.Tensor) -> torch.Tensor:
    """How much each head looks where an induction head must: ``(num_layers, num_heads)``, each in [0, 1].

    For a query ``i`` whose token appeared before, the total weight it puts on the keys ``j <= i`` whose PREVIOUS
    token equals the current token (``tokens[j - 1] == tokens[i]``): the positions right after the earlier copies,
    which hold the token that comes next. Averaged over the sequences ``tokens (batch, seq)`` and the queries that
    have such a key (the others have nothing to find).
    """
    check_token_ids("tokens", tokens, min_len=2)
    return scores_from_maps(induction_maps(model, tokens), tokens, "induction")


def induction_test_set(num_sequences: int = 256, seq_len: int = 24, vocab_size: int = 20) -> torch.Tensor:
    """The fixed held-out sequences every measurement uses: ``(num_sequences, seq_len)`` (seed 12345, which no
    training run uses)."""
    check_positive_int("num_sequences", num_sequences)
    for name, value in (("seq_len", seq_len), ("vocab_size", vocab_size)):
        check_positive_int(name, value)
    check_fits({"num_sequences": num_sequences, "seq_len": seq_len, "vocab_size": vocab_size},
               24 * num_sequences * (vocab_size + seq_len), "the test set", "notebook 12 tests on 256 sequences")
    return repeated_sequences(num_sequences, seq_len, vocab_size, torch.Generator().manual_seed(12345))


def induction_example(lengths: Sequence[int] = (5, 3, 4), vocab_size: int = 20) -> torch.Tensor:
    """The one sequence the maps show: segments of the given ``lengths``, each said twice, ``(1, 2 * sum(lengths))``
    (with the defaults 24 tokens: 5 + 5, 3 + 3, 4 + 4; all different tokens, drawn with a fixed seed)."""
    lengths = check_int_list("lengths", lengths, minimum=1, allow_empty=False, what="a non-empty list of segment "
                             "lengths (ints >= 1), e.g. [5, 3, 4]")
    check_positive_int("vocab_size", vocab_size)
    check_fits({"vocab_size": vocab_size}, 16 * vocab_size, "a permutation of the vocabulary",
               "notebook 12 uses vocab_size=20")
    if sum(lengths) > vocab_size:
        raise ValueError(f"lengths must be a non-empty list of segment lengths adding up to at most vocab_size="
                         f"{vocab_size}, got {lengths}")
    distinct = torch.randperm(vocab_size, generator=torch.Generator().manual_seed(7)).tolist()
    tokens, used = [], 0
    for n in lengths:
        segment = distinct[used:used + n]
        tokens += segment + segment  # said twice
        used += n
    return torch.tensor([tokens])  # (1, seq)


def induction_letters(tokens: torch.Tensor) -> list[str]:
    """Letters for one sequence's token ids: ``(seq,)`` or ``(1, seq)`` -> ``["C", "K", ...]``."""
    if isinstance(tokens, torch.Tensor) and (tokens.dim() > 2 or tokens.dim() == 2 and tokens.shape[0] != 1):
        raise ValueError(f"tokens must be ONE sequence, (seq,) or (1, seq), got shape {tuple(tokens.shape)}; pick one, "
                         f"e.g. tokens[0]")
    check_token_ids("tokens", tokens.reshape(1, -1) if isinstance(tokens, torch.Tensor) else tokens, 26)
    flat = tokens.reshape(-1)  # (1, seq) -> (seq,)
    letters = lookup_letters(max(int(flat.max()) + 1, 1))
    return [letters[int(t)] for t in flat]


def occurrence_losses(
    model: InductionModel, heads_off: Sequence[tuple[int, int]] = (), tokens: torch.Tensor | None = None
) -> dict[str, float]:
    """Mean next-token loss (cross-entropy, nats) ``{"first": ..., "repeated": ...}`` (see :func:`occurrence_masks`).

    On :func:`induction_test_set` unless ``tokens`` is given. ``heads_off`` lists ``(layer, head)`` pairs to switch off
    for the measurement (:func:`heads_switched_off` on ``model.layers[layer]``).
    """
    check_instance("model", model, InductionModel, "an InductionModel")
    tokens = induction_test_set(seq_len=model.seq_len, vocab_size=model.vocab_size) if tokens is None else tokens
    check_token_ids("tokens", tokens, model.vocab_size, min_len=2)
    rule = f"a list of (layer, head) pairs with layer in 0..{model.num_layers - 1}, e.g. [(0, 2)]"
    pairs = check_list("heads_off", heads_off, tuple, rule)
    for pair in pairs:
        check_list("heads_off", pair, int, rule)  # each pair holds two ints; heads_switched_off checks the head
        if len(pair) != 2 or not 0 <= pair[0] < model.num_layers:
            raise ValueError(f"heads_off must be {rule}, got the pair {pair!r}")
    first, repeated = occurrence_masks(tokens)  # (batch, seq-1) each
    _check_both_occurrences(tokens, first, repeated)
    with OneThread(), torch.no_grad(), contextlib.ExitStack() as stack:
        for layer, head in pairs:
            stack.enter_context(heads_switched_off(model.layers[layer], head))
        logits = model(tokens)[:, :-1]  # (batch, seq-1, vocab): the predictions that have a target
        loss = F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none")  # (batch, seq-1)
    return {"first": loss[first].mean().item(), "repeated": loss[repeated].mean().item()}


def _check_both_occurrences(tokens: torch.Tensor, first: torch.Tensor, repeated: torch.Tensor) -> None:
    """Each loss of :func:`occurrence_losses` is a mean over its predictions: an empty class would give NaN."""
    for name, which in (("first", first), ("repeated", repeated)):
        if not bool(which.any()):
            raise ValueError(f"tokens has no prediction of the kind {name!r} (see occurrence_masks), so its mean "
                             f"loss would be NaN (0/0); pass sequences with both, e.g. repeated_sequences(...)")


@dataclass
class InductionHistory:
    """What :func:`train_induction_model` recorded, at every ``snapshot_every`` steps (and before step 1).

    ``steps`` (n,): the step of each snapshot; ``train_loss``: every step's training loss; ``first_loss`` and
    ``repeated_loss`` (n,): :func:`occurrence_losses` on the evaluation set; ``previous_token`` and ``induction``
    (n, layers, heads): the two scores on the evaluation set; ``maps`` (n, layers, heads, seq, seq): every head's
    attention on :func:`induction_example`, whose token ids are ``example``.
    """

    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    first_loss: list[float] = field(default_factory=list)
    repeated_loss: list[float] = field(default_factory=list)
    previous_token: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    induction: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    maps: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    example: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))

    def __repr__(self) -> str:
        return (f"InductionHistory({len(self.steps)} snapshots of steps 0..{self.steps[-1] if self.steps else 0}, "
                f"maps {tuple(self.maps.shape)})")


def _take_snapshot(model: InductionModel, step: int, history: InductionHistory, evaluation: torch.Tensor,
                   snapshots: dict[str, list[torch.Tensor]]) -> None:
    """Record where ``model`` stands at ``step``: the losses on ``evaluation`` in ``history``; both scores on it and
    every head's map on ``history.example`` in ``snapshots`` (stacked into ``history`` when training ends)."""
    model.eval()
    losses = occurrence_losses(model, tokens=evaluation)
    w = induction_maps(model, evaluation)  # (256, layers, heads, seq, seq)
    history.steps.append(step)
    history.first_loss.append(losses["first"])
    history.repeated_loss.append(losses["repeated"])
    snapshots["previous"].append(scores_from_maps(w, evaluation, "previous"))  # (layers, heads)
    snapshots["induction"].append(scores_from_maps(w, evaluation, "induction"))  # (layers, heads)
    snapshots["maps"].append(induction_maps(model, history.example)[0])  # (layers, heads, seq, seq)
    model.train()


def train_induction_model(
    seed: int = 0,
    num_layers: int = 2,
    steps: int = 200,
    batch_size: int = 128,
    lr: float = 0.01,
    d_model: int = 64,
    num_heads: int = 4,
    seq_len: int = 24,
    vocab_size: int = 20,
    snapshot_every: int = 10,
    progress: bool = True,
) -> tuple[InductionModel, InductionHistory]:
    """Train an :class:`InductionModel` to predict the next token of :func:`repeated_sequences`; returns
    ``(model, history)`` (an :class:`InductionHistory`), the model in eval mode.

    Adam on the next-token loss at every position, ``steps`` steps of ``batch_size`` fresh sequences (nothing can be
    memorised). Everything random comes from ``seed`` (the weights from ``torch.manual_seed(seed)`` in a forked RNG,
    so the caller's random state is untouched; the data from its own generator) and training runs on one CPU
    thread, so a seed gives bit-identical results at any ``OMP_NUM_THREADS``. ``progress`` shows a tqdm bar.
    """
    check_seed("seed", seed)
    for name, value in (("num_layers", num_layers), ("batch_size", batch_size), ("snapshot_every", snapshot_every)):
        check_positive_int(name, value)
    check_steps("steps", steps)
    check_learning_rate("lr", lr)
    check_bool("progress", progress)
    repeated_sequences(1, seq_len, vocab_size, torch.Generator())  # checks seq_len and vocab_size
    check_fits({"batch_size": batch_size, "seq_len": seq_len}, 24 * batch_size * (vocab_size + seq_len),
               "a batch of sequences", "notebook 12 trains on batches of 128 sequences of 24 tokens")
    with torch.random.fork_rng(devices=[]):
        model = InductionModel(vocab_size, seq_len, d_model, num_heads, num_layers)  # checks d_model, num_heads
    from tqdm.auto import tqdm

    data = torch.Generator().manual_seed(20_000 + seed)
    evaluation = induction_test_set(256, seq_len, vocab_size)  # (256, seq)
    history = InductionHistory(example=induction_example(vocab_size=vocab_size)[:, :seq_len])  # example: (1, seq)
    snapshots: dict[str, list[torch.Tensor]] = {"previous": [], "induction": [], "maps": []}
    # Training records gradients whatever the caller's mode (inside torch.no_grad() or inference_mode() too).
    with OneThread(), torch.random.fork_rng(devices=[]), torch.inference_mode(False), torch.enable_grad():
        torch.manual_seed(seed)
        model = InductionModel(vocab_size, seq_len, d_model, num_heads, num_layers)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, foreach=True)
        _take_snapshot(model, 0, history, evaluation, snapshots)
        bar = tqdm(range(1, steps + 1), desc=f"{num_layers}-layer model", disable=not progress, leave=True)
        for step in bar:
            tokens = repeated_sequences(batch_size, seq_len, vocab_size, generator=data)  # (batch, seq)
            logits = model(tokens)[:, :-1]  # (batch, seq-1, vocab): position i predicts token i+1
            loss = F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())  # (batch*(seq-1), vocab)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            history.train_loss.append(loss.item())
            if step % snapshot_every == 0 or step == steps:
                _take_snapshot(model, step, history, evaluation, snapshots)
                bar.set_postfix(first=f"{history.first_loss[-1]:.2f}", repeated=f"{history.repeated_loss[-1]:.2f}")
    history.previous_token = torch.stack(snapshots["previous"])  # (n, layers, heads)
    history.induction = torch.stack(snapshots["induction"])  # (n, layers, heads)
    history.maps = torch.stack(snapshots["maps"])  # (n, layers, heads, seq, seq)
    return model.eval(), history


def circuit_heads(model: InductionModel, tokens: torch.Tensor | None = None) -> dict[str, int]:
    """The heads of the circuit: ``{"previous": h0, "induction": h1}``, the layer-0 head with the highest
    :func:`previous_token_scores` and the layer-1 head with the highest :func:`induction_scores` (on the
    evaluation set unless ``tokens`` is given)."""
    check_instance("model", model, InductionModel, "an InductionModel")
    if model.num_layers < 2:
        raise ValueError(f"model must have at least 2 layers for a circuit, got num_layers={model.num_layers}")
    tokens = induction_test_set(seq_len=model.seq_len, vocab_size=model.vocab_size) if tokens is None else tokens
    w = induction_maps(model, tokens)
    return {"previous": int(scores_from_maps(w, tokens, "previous")[0].argmax()),
            "induction": int(scores_from_maps(w, tokens, "induction")[1].argmax())}


def induction_ablation(model: InductionModel) -> dict[tuple[int, int] | None, dict[str, float]]:
    """:func:`occurrence_losses` with nothing off (key ``None``) and with each head off in turn (key
    ``(layer, head)``)."""
    table: dict[tuple[int, int] | None, dict[str, float]] = {None: occurrence_losses(model)}
    for layer in range(model.num_layers):
        for head in range(model.num_heads):
            table[(layer, head)] = occurrence_losses(model, [(layer, head)])
    return table


# ---- figures ------------------------------------------------------------------------------------------------


def plot_occurrence_losses(two_layers: InductionHistory, one_layer: InductionHistory | None = None,
                           vocab_size: int = 20, ax=None):
    """The loss on first and on repeated occurrences during training (from :class:`InductionHistory`), for the
    2-layer model and, if given, the 1-layer one; the dotted line is blind guessing, ``ln(vocab_size)``.
    Returns the ``Axes``."""
    import matplotlib.pyplot as plt

    check_instance("two_layers", two_layers, InductionHistory, "an InductionHistory (from train_induction_model)")
    check_instance("one_layer", one_layer, InductionHistory, "an InductionHistory", allow_none=True)
    check_positive_int("vocab_size", vocab_size)
    check_axes("ax", ax)
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4.2))
    ax.plot(two_layers.steps, two_layers.first_loss, color="tab:grey", lw=2, label="2 layers: first occurrences")
    ax.plot(two_layers.steps, two_layers.repeated_loss, color="tab:red", lw=2.5, label="2 layers: repeated tokens")
    if one_layer is not None:
        ax.plot(one_layer.steps, one_layer.repeated_loss, color="tab:blue", lw=2, ls="--",
                label="1 layer: repeated tokens")
    ax.axhline(math.log(vocab_size), color="black", lw=1, ls=":", label=f"blind guess: ln {vocab_size}")
    ax.set_xlabel("training step")
    ax.set_ylabel("next-token loss (nats)")
    ax.set_ylim(bottom=0)
    ax.set_title("Loss on held-out sequences: first occurrences vs repeated tokens")
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(alpha=0.3)
    ax.figure.tight_layout()
    return ax


def plot_head_scores(history: InductionHistory):
    """Two panels over training: every layer-0 head's previous-token score and every layer-1 head's induction
    score (:func:`previous_token_scores`, :func:`induction_scores` on the evaluation set). Returns the Figure."""
    import matplotlib.pyplot as plt

    check_instance("history", history, InductionHistory, "an InductionHistory (from train_induction_model)")
    if history.previous_token.dim() != 3 or history.previous_token.shape[1] < 2:
        raise ValueError("plot_head_scores needs the history of a model with 2 layers")
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for ax, scores, layer, what in ((axes[0], history.previous_token, 0, "previous-token score"),
                                    (axes[1], history.induction, 1, "induction score")):
        for h in range(scores.shape[2]):
            ax.plot(history.steps, scores[:, layer, h].tolist(), lw=2, label=f"L{layer}.H{h}")
        ax.axhline(0.5, color="grey", lw=1, ls=":")
        ax.set_title(f"layer {layer}: {what} of each head")
        ax.set_xlabel("training step")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=2)
    axes[0].set_ylabel("score (0 = never, 1 = always)")
    fig.tight_layout()
    return fig


def draw_map(ax, w: torch.Tensor, labels: Sequence[str], title: str, outline: torch.Tensor | None = None,
              ticks: bool = True) -> None:
    """One head's ``(L, L)`` map on ``ax``: queries down, keys across, 0..1 colour scale, cells outlined."""
    from matplotlib.patches import Rectangle

    ax.imshow(w.numpy(), cmap="viridis", vmin=0, vmax=1)
    if outline is not None:
        for i, j in outline.nonzero().tolist():
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", lw=1.2))
    L = w.shape[0]
    if ticks:
        ax.set_xticks(range(L), labels, fontsize=6)
        ax.set_yticks(range(L), labels, fontsize=6)
        ax.set_xlabel("key (looked at)", fontsize=8)
        ax.set_ylabel("query (looking)", fontsize=8)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_title(title, fontsize=9)


def _targets(tokens: torch.Tensor, kind: str) -> torch.Tensor:
    """The cells a perfect head of ``kind`` fills for one sequence ``(1, L)``: ``(L, L)`` booleans."""
    L = tokens.shape[-1]
    if kind == "previous":
        return torch.ones(L, L, dtype=torch.bool).tril(-1) & ~torch.ones(L, L, dtype=torch.bool).tril(-2)
    t = tokens.reshape(-1)  # (L,)
    prev = torch.cat([torch.tensor([-1]), t[:-1]])  # (L,): the token before each key
    return (prev[None, :] == t[:, None]) & torch.ones(L, L, dtype=torch.bool).tril()  # (L, L)


def plot_circuit_maps(model: InductionModel, tokens: torch.Tensor | None = None):
    """The two heads of the circuit (:func:`circuit_heads`) on one sequence (default :func:`induction_example`),
    with token labels; red boxes: where a perfect previous-token head (key ``i - 1``) and a perfect induction head
    (the key right after the earlier copy of the query's token) look. Returns the Figure."""
    import matplotlib.pyplot as plt

    check_instance("model", model, InductionModel, "an InductionModel")
    tokens = induction_example(vocab_size=model.vocab_size)[:, :model.seq_len] if tokens is None else tokens
    check_token_ids("tokens", tokens, model.vocab_size, min_len=2)
    heads = circuit_heads(model)
    maps = induction_maps(model, tokens[:1])[0]  # (layers, heads, L, L)
    labels = induction_letters(tokens[:1])
    fig, axes = plt.subplots(1, 2, figsize=(12, 6.2))
    draw_map(axes[0], maps[0, heads["previous"]], labels, f"layer 0, head {heads['previous']}: previous-token head",
              _targets(tokens[:1], "previous"))
    draw_map(axes[1], maps[1, heads["induction"]], labels, f"layer 1, head {heads['induction']}: induction head",
              _targets(tokens[:1], "induction"))
    fig.suptitle("The two heads of the circuit after training (red boxes: where each must look)")
    fig.tight_layout()
    return fig


def plot_snapshot_strip(history: InductionHistory, steps: Sequence[int] | None = None, heads: dict | None = None):
    """The static replay: the previous-token head (top) and the induction head (bottom) at a few training steps
    (default five, evenly spaced), on :func:`induction_example`. ``heads`` is :func:`circuit_heads`' dict (default:
    the heads with the highest final scores). Returns the Figure."""
    import matplotlib.pyplot as plt

    check_instance("history", history, InductionHistory, "an InductionHistory (from train_induction_model)")
    if steps is not None:
        check_int_list("steps", steps)
    check_instance("heads", heads, dict, "circuit_heads' dict {'previous': head, 'induction': head}", allow_none=True)
    if heads is not None and not {"previous", "induction"} <= set(heads):
        raise ValueError(f"heads must be circuit_heads' dict {{'previous': head, 'induction': head}}, got {heads!r}")
    steps = list(steps) if steps is not None else [history.steps[round(k * (len(history.steps) - 1) / 4)]
                                                   for k in range(5)]
    missing = [s for s in steps if s not in history.steps]
    if missing:
        raise ValueError(f"steps {missing} have no snapshot; snapshots exist at {history.steps}")
    if heads is None:
        heads = {"previous": int(history.previous_token[-1, 0].argmax()),
                 "induction": int(history.induction[-1, 1].argmax())}
    labels = induction_letters(history.example)
    fig, axes = plt.subplots(2, len(steps), figsize=(2.6 * len(steps), 5.6), squeeze=False)
    for c, step in enumerate(steps):
        k = history.steps.index(step)
        for r, (layer, kind) in enumerate(((0, "previous"), (1, "induction"))):
            title = f"step {step}: loss on repeats {history.repeated_loss[k]:.2f}" if r == 0 else ""
            draw_map(axes[r][c], history.maps[k, layer, heads[kind]], labels, title, ticks=False)
            if c == 0:
                axes[r][c].set_ylabel(f"L{layer}.H{heads[kind]} ({kind})", fontsize=9)
    fig.suptitle("Training replayed: previous-token head (top) and induction head (bottom)")
    fig.tight_layout()
    return fig


def stored_one_layer_run() -> tuple[InductionHistory, dict[str, float]]:
    """The record of ``train_induction_model(seed=0, num_layers=1)`` with every other argument at its default,
    stored so that notebook 12 need not spend ~8 s training its comparison model: ``(history, losses)``, the
    history without maps, and :func:`occurrence_losses` of the trained model.

    The stored numbers live in ``induction_reference.py``, written by ``python tests/make_induction_reference.py``;
    ``tests/claims/test_claims_induction.py`` retrains the model and checks that it gives the same numbers.
    """
    from .induction_reference import ONE_LAYER_SEED_0

    stored = ONE_LAYER_SEED_0
    history = InductionHistory(steps=list(stored["steps"]), train_loss=list(stored["train_loss"]),
                               first_loss=list(stored["first_loss"]), repeated_loss=list(stored["repeated_loss"]))
    return history, dict(stored["losses"])
