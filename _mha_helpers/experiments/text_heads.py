"""Notebook 14: which heads of the trained character model (``text_model.py``) do what, and which of them matter.

* :func:`sample_text`: what the model writes, seeded;
* :func:`head_pattern_scores` and :func:`classify_heads`: each head's share of weight on five simple patterns
  (the previous character, itself, the start of the current word, whitespace, the first position), measured on
  real text and compared with what an even spread would give, so a head is named by numbers, not by eye;
* :func:`head_ablation` and :func:`pruning_curve`: the held-out loss with one head switched off, and with the least
  important heads pruned in turn (Michel, Levy & Neubig 2019);
* :func:`text_model_log` and :func:`head_count_sweep_results`: what the maker scripts stored (the training log, and
  the models with 1, 2, 4 and 8 heads), with the figures that draw them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..common import OneThread
from ..validation import check_axes, check_has_values, check_int, check_number, check_positive_int, check_seed
from .text_corpus import check_text
from .text_model import TEXT_MODEL_PATH, TextModel, check_model

#: The patterns :func:`head_pattern_scores` measures, in the order of its result.
PATTERNS: tuple[str, ...] = ("previous", "self", "word start", "whitespace", "first")
WHITESPACE = " \n"
#: A head is named after a pattern when its score is at least this much AND at least twice an even spread's.
MIN_SHARE = 0.3
MAX_SAMPLE_LENGTH = 10_000
SWEEP_PATH = TEXT_MODEL_PATH.with_name("head_count_sweep.json")
LOG_PATH = TEXT_MODEL_PATH.with_name("text_model_log.json")


def sample_text(model: TextModel, prompt: str, length: int = 200, temperature: float = 0.8, seed: int = 0) -> str:
    """``prompt`` followed by ``length`` characters the model writes, each drawn from its softmax at
    ``temperature`` (lower: safer, duller) with a seeded generator. Only the last ``model.context`` characters are
    read at each step."""
    check_model(model)
    check_text("prompt", prompt, minimum=1)
    check_positive_int("length", length)
    if length > MAX_SAMPLE_LENGTH:
        raise ValueError(f"length must be at most {MAX_SAMPLE_LENGTH:,} characters (one forward pass each, about 100 "
                         f"a second on a laptop); got length={length}")
    temperature = check_number("temperature", temperature, minimum=0.05, maximum=5.0,
                               what="a number in [0.05, 5] such as 0.8")
    g = torch.Generator().manual_seed(check_seed("seed", seed))
    ids = model.encode(prompt)  # (len(prompt),)
    with torch.inference_mode(), OneThread(), model.evaluating():  # one small forward a character: 1 thread is enough
        for _ in range(length):
            logits = model(ids[-model.context:][None])[0, -1].double()  # (vocab,) for the next character
            probs = torch.softmax(logits / temperature, dim=-1)  # float64: the draw depends on the seed, not on SIMD
            ids = torch.cat([ids, torch.multinomial(probs, 1, generator=g)])
    return model.decode(ids)


def _check_num_windows(num_windows: object, distinct: int) -> None:
    check_positive_int("num_windows", num_windows)
    if num_windows > distinct:
        raise ValueError(f"num_windows={num_windows} is more than the {distinct} different windows the text holds; "
                         f"pass at most {distinct} (the notebook uses 16 or 32)")


def text_windows(model: TextModel, text: str, num_windows: int = 32) -> torch.Tensor:
    """``num_windows`` evenly spaced windows of ``model.context`` characters of ``text``: ``(num_windows, context)``."""
    check_model(model)
    check_text("text", text, minimum=model.context)
    _check_num_windows(num_windows, len(text) - model.context + 1)
    ids = model.encode(text)  # (n,)
    starts = torch.linspace(0, len(ids) - model.context, num_windows).long()  # (num_windows,)
    return ids[starts[:, None] + torch.arange(model.context)]  # (num_windows, 1) + (context,) -> (windows, context)


def pattern_keys(model: TextModel, rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """For each pattern, which keys it means for each query: ``(windows, T, T)`` 0/1, row = query, column = key.

    "word start" is the first character of the query's word when that is at least 2 characters back (so that it is
    never the query itself or the previous character, already patterns of their own); a window's position 0 counts as
    a word start. "whitespace" is every space and newline up to the query."""
    n, T = rows.shape
    i = torch.arange(T)
    space = torch.tensor([[model.vocab[t] in WHITESPACE for t in row] for row in rows.tolist()])  # (windows, T)
    after_space = torch.cat([torch.ones(n, 1, dtype=torch.bool), space[:, :-1]], dim=1)  # a word starts here
    word_start = torch.cummax(torch.where(after_space, i, 0), dim=1).values  # (windows, T): start of i's word
    word_start = torch.where(word_start <= i - 2, word_start, -1)  # only 2+ back: not "self" or "previous" again
    causal = i[None, :] <= i[:, None]  # (T, T)
    keys = {"previous": i[None, :] == i[:, None] - 1, "self": i[None, :] == i[:, None],
            "word start": i[None, None, :] == word_start[:, :, None], "whitespace": space[:, None, :] & causal,
            "first": (i[None, :] == 0).expand(T, T)}
    return {name: k.expand(n, T, T).float() for name, k in keys.items()}


def head_pattern_scores(model: TextModel, text: str, num_windows: int = 32, skip: int = 16
                        ) -> dict[str, torch.Tensor]:
    """Per pattern of :data:`PATTERNS`, each head's mean share of weight on that pattern's keys, ``(layers, heads)``,
    over the queries at positions ``skip..context-1`` of :func:`text_windows`; and under ``"even"`` the share an
    even spread over the earlier characters would give, ``{pattern: float}`` (the chance level)."""
    rows = text_windows(model, text, num_windows)  # (windows, T)
    check_int("skip", skip, minimum=0)
    if skip >= model.context:
        raise ValueError(f"skip must be less than the context ({model.context}): it leaves out the first skip "
                         f"queries of each window; got skip={skip}")
    maps = model.attention_maps(rows)[..., skip:, :]  # (windows, layers, heads, T - skip, T)
    T = rows.shape[1]
    even = torch.tril(torch.ones(T, T)) / torch.arange(1, T + 1)[:, None]  # (T, T): uniform causal rows
    scores, chance = {}, {}
    for name, keys in pattern_keys(model, rows).items():
        keys = keys[:, skip:]  # (windows, T - skip, T)
        scores[name] = (maps * keys[:, None, None]).sum(-1).mean(dim=(0, 3))  # -> (layers, heads)
        chance[name] = float((even[skip:] * keys).sum(-1).mean())
    return {**scores, "even": chance}


def _check_scores(scores: object) -> torch.Tensor:
    """``scores`` must be :func:`head_pattern_scores`' dict; returns its shares stacked, ``(patterns, layers, heads)``."""
    if not isinstance(scores, dict):
        raise TypeError(f"scores must be the dict returned by head_pattern_scores(model, text), got "
                        f"{type(scores).__name__}")
    missing = [key for key in (*PATTERNS, "even") if key not in scores]
    if missing:
        raise ValueError(f"scores must be the dict returned by head_pattern_scores(model, text), with the keys "
                         f"{list(PATTERNS) + ['even']}; it lacks {missing}")
    return torch.stack([scores[p] for p in PATTERNS])  # (patterns, layers, heads)


def classify_heads(scores: dict[str, torch.Tensor]) -> list[list[str]]:
    """Each head's name, ``[layer][head]``: among the patterns whose share it passes (at least :data:`MIN_SHARE` and
    at least twice an even spread's share), the one it beats the even spread by most; else ``"unexplained"``."""
    stacked = _check_scores(scores)  # (patterns, layers, heads)
    even = torch.tensor([scores["even"][p] for p in PATTERNS])[:, None, None]  # (patterns, 1, 1)
    bar = torch.clamp(2 * even, min=MIN_SHARE)
    passed = torch.where(stacked >= bar, stacked / even, -1.0)  # times what an even spread gives, or -1
    best = passed.argmax(dim=0)  # (layers, heads)
    return [[PATTERNS[b] if passed[b, layer, h] >= 0 else "unexplained" for h, b in enumerate(row)]
            for layer, row in enumerate(best.tolist())]


def scored_windows(model: TextModel, text: str, num_windows: int = 16) -> torch.Tensor:
    """The rows the head studies score: ``num_windows`` evenly spaced windows of ``context + 1`` characters of
    ``text``, ``(num_windows, context + 1)``; the model reads the first ``context`` and is scored on its last
    ``context // 2`` predictions, each made with at least ``context // 2`` characters before it."""
    check_model(model)
    check_text("text", text, minimum=model.context + 1)
    _check_num_windows(num_windows, len(text) - model.context)
    ids = model.encode(text)  # (n,)
    starts = torch.linspace(0, len(ids) - model.context - 1, num_windows).long()  # (num_windows,)
    return ids[starts[:, None] + torch.arange(model.context + 1)]  # -> (num_windows, context + 1)


def _streams(model: TextModel, rows: torch.Tensor) -> list[torch.Tensor]:
    """The residual stream entering each block (and leaving the last): ``num_layers + 1`` of ``(n, T, d_model)``."""
    T = rows.shape[1] - 1
    x = model.tok_emb(rows[:, :-1]) + model.pos_emb(torch.arange(T))  # (n, T, d_model)
    streams = [x]
    for block in model.blocks:
        x = block(x)[0]
        streams.append(x)
    return streams


def _bits_from(model: TextModel, x: torch.Tensor, rows: torch.Tensor, layer: int, mask: torch.Tensor | None) -> float:
    """Run blocks ``layer..`` on the stream ``x`` (``mask (heads,)`` on block ``layer``) and score the last half."""
    for k, block in enumerate(model.blocks[layer:]):
        x = block(x, mask if k == 0 else None)[0]  # (n, T, d_model)
    logits = F.linear(model.norm_f(x), model.tok_emb.weight)  # (n, T, vocab)
    half = logits.shape[1] // 2
    return cross_entropy_bits(logits[:, half:], rows[:, half + 1:])


def head_ablation(model: TextModel, text: str, num_windows: int = 16) -> tuple[float, torch.Tensor]:
    """The held-out cost of each head on :func:`scored_windows`: ``(bits per character with every head on,
    (layers, heads) of how many bits per character more with that one head switched off)``. Each layer's input is
    computed once and reused (a head changes only what comes after it)."""
    rows = scored_windows(model, text, num_windows)  # (n, context + 1)
    cost = torch.zeros(model.num_layers, model.num_heads)
    with torch.inference_mode(), model.evaluating():
        streams = _streams(model, rows)
        full = _bits_from(model, streams[-1], rows, model.num_layers, None)
        for layer in range(model.num_layers):
            for head in range(model.num_heads):
                mask = torch.ones(model.num_heads)
                mask[head] = 0.0
                cost[layer, head] = _bits_from(model, streams[layer], rows, layer, mask) - full
    return full, cost


def masked_bits(model: TextModel, text: str, head_mask: torch.Tensor | None, num_windows: int = 16) -> float:
    """Bits per character on :func:`scored_windows` with ``head_mask (layers, heads)`` (None: every head on)."""
    rows = scored_windows(model, text, num_windows)  # (n, context + 1)
    with torch.inference_mode(), model.evaluating():
        logits = model(rows[:, :-1], head_mask)  # (n, T, vocab)
    half = logits.shape[1] // 2
    return cross_entropy_bits(logits[:, half:], rows[:, half + 1:])


def _check_cost(cost: object, shape: tuple[int, ...] | None = None) -> None:
    """``cost`` must be :func:`head_ablation`'s finite float table ``(layers, heads)`` (of ``shape`` if given)."""
    what = "the (num_layers, num_heads) float tensor from head_ablation(model, text)"
    if not isinstance(cost, torch.Tensor) or not cost.is_floating_point():
        raise TypeError(f"cost must be {what}, got {type(cost).__name__}"
                        + (f" of dtype {cost.dtype}" if isinstance(cost, torch.Tensor) else ""))
    check_has_values("cost", cost)
    if cost.dim() != 2 or cost.numel() == 0 or (shape is not None and tuple(cost.shape) != shape):
        raise ValueError(f"cost must be {what}{f', shape {shape}' if shape else ''}; got shape {tuple(cost.shape)}")
    if not bool(torch.isfinite(cost).all()):
        raise ValueError("cost holds NaN or infinity; measure it again with head_ablation(model, text)")


def pruning_curve(model: TextModel, text: str, cost: torch.Tensor, kept: Sequence[int] | None = None,
                  num_windows: int = 16) -> list[tuple[int, float]]:
    """Prune heads in order of :func:`head_ablation`'s ``cost`` (cheapest first) and measure: ``[(heads kept,
    bits per character)]`` on :func:`scored_windows` for each count in ``kept`` (default: 32, 24, 16, 8, 4, 0
    for 32 heads: every quarter, then the last few)."""
    check_model(model)
    total = model.num_layers * model.num_heads
    _check_cost(cost, (model.num_layers, model.num_heads))
    if kept is None:
        kept = sorted({total, 3 * total // 4, total // 2, total // 4, total // 8, 0}, reverse=True)
    if isinstance(kept, (str, bytes)) or not isinstance(kept, Sequence):
        raise TypeError(f"kept must be a list of head counts such as [32, 16, 0], got {type(kept).__name__}")
    if not kept:
        raise ValueError("kept must hold at least one head count, e.g. [32, 16, 0]")
    kept = [check_int("kept", k, minimum=0) for k in kept]
    if any(k > total for k in kept):
        raise ValueError(f"kept must hold counts in 0..{total} (the model has {total} heads), got {kept}")
    order = cost.flatten().argsort()  # cheapest head first: (layers * heads,)
    curve = []
    for k in kept:
        mask = torch.ones(total)
        mask[order[: total - k]] = 0.0  # switch off the total - k cheapest heads
        mask = mask.view(model.num_layers, model.num_heads)  # (layers * heads,) -> (layers, heads)
        curve.append((k, masked_bits(model, text, mask, num_windows)))
    return curve


def text_model_log() -> dict:
    """What ``tests/make_text_model.py`` recorded when it trained the stored model (losses, baselines, times)."""
    return json.loads(LOG_PATH.read_text(encoding="utf-8"))


def head_count_sweep_results() -> dict:
    """What ``tests/make_head_count_sweep.py`` stored: models with 1, 2, 4 and 8 heads, several seeds each."""
    return json.loads(SWEEP_PATH.read_text(encoding="utf-8"))


def cross_entropy_bits(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean cross-entropy in bits of ``logits (batch, T, vocab)`` against ``targets (batch, T)``."""
    return float(F.cross_entropy(logits.transpose(1, 2), targets) / math.log(2))


def plot_pattern_scores(scores: dict[str, torch.Tensor], labels: list[list[str]], fig: Figure | None = None
                        ) -> Figure:
    """One heat map per pattern of each head's share (layers as rows), the bar it must pass in the title; a head's
    cell in the map of the pattern that names it is outlined and marked."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    stacked = _check_scores(scores)  # (patterns, layers, heads)
    layers, heads = stacked.shape[1:]
    if not isinstance(labels, list) or [len(row) if isinstance(row, list) else None for row in labels] != [heads] * layers:
        raise TypeError(f"labels must be classify_heads(scores): {layers} lists of {heads} names")
    if fig is not None and not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure or None, got {type(fig).__name__}")
    fig = fig or plt.figure(figsize=(13, 2.9))
    axes = fig.subplots(1, len(PATTERNS), sharey=True)
    for k, (pattern, ax) in enumerate(zip(PATTERNS, axes, strict=True)):
        image = ax.imshow(stacked[k].numpy(), vmin=0, vmax=1, cmap="viridis")
        bar = max(MIN_SHARE, 2 * scores["even"][pattern])
        ax.set(title=f"{pattern}\n(named at >= {bar:.2f})", xlabel="head", xticks=range(0, heads, 2))
        for layer, head in [(y, x) for y in range(layers) for x in range(heads) if labels[y][x] == pattern]:
            ax.add_patch(Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, edgecolor="#d62728", linewidth=2))
    axes[0].set(ylabel="layer", yticks=range(layers))
    fig.colorbar(image, ax=list(axes), label="share of attention weight", fraction=0.02)
    fig.suptitle("Each head's share of weight on five patterns (red box: the pattern that names it)", fontsize=11)
    return fig


def plot_head_ablation(cost: torch.Tensor, ax: Axes | None = None) -> Axes:
    """:func:`head_ablation`'s cost of each head as a heat map (layers as rows), the bits written in each cell."""
    import matplotlib.pyplot as plt

    _check_cost(cost)
    check_axes("ax", ax)
    ax = ax or plt.subplots(figsize=(9, 3.2))[1]
    image = ax.imshow(cost.numpy(), cmap="magma_r", vmin=0, aspect="auto")
    for (layer, head), value in zip(torch.cartesian_prod(*map(torch.arange, cost.shape)).tolist(), cost.flatten(), strict=True):
        ax.text(head, layer, f"{float(value):.2f}", ha="center", va="center", fontsize=8,
                color="w" if value > cost.max() / 2 else "k")
    ax.set(xticks=range(cost.shape[1]), yticks=range(cost.shape[0]), xlabel="head", ylabel="layer",
           title="Held-out loss added by switching one head off (bits per character)")
    ax.figure.colorbar(image, ax=ax, label="bits per character added")
    return ax


def plot_pruning_curve(curve: list[tuple[int, float]], full: float, none: float, ax: Axes | None = None) -> Axes:
    """Bits per character against heads kept (the cheapest pruned first), with the model's loss with every head
    (``full``) and with none (``none``) as dashed lines."""
    import matplotlib.pyplot as plt

    if not isinstance(curve, list) or not curve or not all(isinstance(p, tuple) and len(p) == 2 for p in curve):
        raise TypeError("curve must be the list of (heads kept, bits) pairs from pruning_curve(model, text, cost)")
    full = check_number("full", full, what="a number of bits per character such as 2.1")
    none = check_number("none", none, what="a number of bits per character such as 5.0")
    check_axes("ax", ax)
    ax = ax or plt.subplots(figsize=(6.5, 3.6))[1]
    kept, bits = zip(*curve, strict=True)
    ax.plot(kept, bits, "o-", label="cheapest heads pruned first")
    ax.axhline(full, ls="--", color="tab:green", label=f"all heads on ({full:.2f})")
    ax.axhline(none, ls="--", color="tab:red", label=f"all heads off ({none:.2f})")
    ax.set(xlabel="heads kept (of 32)", ylabel="held-out bits per character", title="Pruning heads one by one")
    ax.invert_xaxis()
    ax.legend(fontsize=8)
    return ax


def plot_head_count_sweep(sweep: dict, ax: Axes | None = None) -> Axes:
    """Held-out bits per character of every run of the head-count sweep (one dot per seed), by number of heads, and
    the runs at the full budget (``"long_runs"``, stars) if the sweep has them."""
    import matplotlib.pyplot as plt

    if not isinstance(sweep, dict):
        raise TypeError(f"sweep must be the dict from head_count_sweep_results(), got {type(sweep).__name__}")
    if not {"runs", "summary", "budget"} <= set(sweep):
        raise ValueError("sweep must be the dict from head_count_sweep_results(), with 'runs', 'summary' and 'budget'")
    check_axes("ax", ax)
    ax = ax or plt.subplots(figsize=(6.5, 3.6))[1]
    for run in sweep["runs"]:
        ax.plot(run["num_heads"], run["heldout_bits"], "o", color="tab:blue", alpha=0.7)
    heads = sorted({run["num_heads"] for run in sweep["runs"]})
    means = [sweep["summary"][str(h)]["heldout_bits_mean"] for h in heads]
    ax.plot(heads, means, "-", color="tab:blue", label=f"{sweep['budget']['steps']} steps: each seed, and the mean")
    long = sweep.get("long_runs", [])
    if long:
        ax.plot([r["num_heads"] for r in long], [r["heldout_bits"] for r in long], "*", color="tab:red", markersize=12,
                label=f"{long[0]['steps']:,} steps (seed 0)")
    ax.set_xscale("log", base=2)
    ax.minorticks_off()
    ax.set(xticks=heads, xticklabels=[str(h) for h in heads], xlabel="heads (d_model 128 throughout)",
           ylabel="held-out bits per character", title="Same d_model, same budget for every run: 1 to 8 heads")
    ax.legend(fontsize=8)
    return ax
