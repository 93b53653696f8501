"""Train notebook 14's character model from scratch and store it in _mha_helpers/data/.

    python tests/make_text_model.py              # train (about 11 minutes on 2 quiet cores), write the files
    python tests/make_text_model.py --check      # retrain into a temporary folder, compare with the stored model

What it does: builds the training corpus (``pydoc_data.topics`` + the standard library's docstrings, without the
held-out modules; see ``_mha_helpers/text_corpus.py``), keeps its last 5 % as a validation split, trains a
``TextModel`` for a FIXED number of steps (no early stopping, so a run is reproducible), and writes

* ``text_model.pt``: configuration, vocabulary and half-precision weights (``torch.load(..., weights_only=True)``);
* ``text_model_log.json``: every ``--eval-every`` steps the training loss, the validation loss and the held-out
  bits per character, with the wall time; then the final numbers of the STORED (half-precision) model, the
  n-gram baselines, the repeated-string test, and the machine (torch, Python, threads, CPU kernels, load).

Determinism: the seed fixes the initial weights, the batches and dropout; torch runs on ``--threads`` threads (2 by
default, set explicitly with ``torch.set_num_threads``) because the order of float sums depends on it. The same
seed, thread count, CPU kernel family (``torch.backends.cpu.get_cpu_capability()``), Python (the corpus is read from
its standard library) and torch give the same model; elsewhere it differs by float rounding, which ``--check``
tolerates (0.05 bits per character).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from _mha_helpers.experiments import text_corpus as tc
from _mha_helpers.experiments import text_model as tm

DATA = tm.TEXT_MODEL_PATH.parent

#: The stored model's shape and training recipe (the defaults of ``train``).
CONFIG = {"context": 128, "d_model": 128, "num_heads": 8, "num_layers": 4, "d_ff": 512, "dropout": 0.1}
RECIPE = {"steps": 2200, "batch_size": 32, "lr": 3e-3, "min_lr_ratio": 0.1, "warmup": 100, "weight_decay": 0.1,
          "grad_clip": 1.0, "eval_every": 300, "threads": 2}
VALIDATION_SHARE = 0.05  # the corpus' last 5 % is never trained on


def prepare_data() -> dict[str, object]:
    """The corpus as ids, split into training and validation parts, the vocabulary and the held-out text."""
    started = time.perf_counter()
    corpus = tc.training_corpus()
    tokenizer = tc.CharTokenizer.for_corpus(corpus)
    ids = tokenizer.encode(corpus)  # (n,)
    split = int(len(ids) * (1 - VALIDATION_SHARE))
    return {"vocab": tokenizer.vocab, "train": ids[:split], "val": ids[split:], "corpus_chars": len(corpus),
            "heldout": tc.heldout_text(tokenizer.vocab), "heldout_report": tc.heldout_report(tokenizer.vocab),
            "seconds": time.perf_counter() - started}


def batch(ids: torch.Tensor, batch_size: int, context: int, generator: torch.Generator) -> torch.Tensor:
    """``batch_size`` random windows of ``context + 1`` ids: ``(batch_size, context + 1)``."""
    starts = torch.randint(0, len(ids) - context, (batch_size,), generator=generator)  # (batch,)
    return ids[starts[:, None] + torch.arange(context + 1)]  # (batch, 1) + (context + 1,) -> (batch, context + 1)


def loss_bits(model: tm.TextModel, rows: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy in bits of predicting ``rows[:, 1:]`` from ``rows[:, :-1]`` (``rows (batch, T + 1)``)."""
    logits = model(rows[:, :-1])  # (batch, T, vocab)
    return F.cross_entropy(logits.transpose(1, 2), rows[:, 1:]) / math.log(2)  # (batch, vocab, T) vs (batch, T)


def validation_bits(model: tm.TextModel, val: torch.Tensor, windows: int = 64) -> float:
    """Bits per character on ``windows`` evenly spaced, non-overlapping windows of the validation split."""
    context = model.context
    starts = torch.linspace(0, len(val) - context - 1, windows).long()  # (windows,)
    rows = val[starts[:, None] + torch.arange(context + 1)]  # (windows, context + 1)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        bits = float(loss_bits(model, rows))
    model.train(was_training)
    return bits


def learning_rate(step: int, recipe: dict) -> float:
    """Linear warm-up over ``warmup`` steps, then linear decay to ``min_lr_ratio * lr`` at the last step."""
    lr, warmup, steps = recipe["lr"], recipe["warmup"], recipe["steps"]
    if step < warmup:
        return lr * (step + 1) / warmup
    done = (step - warmup) / max(1, steps - warmup)
    return lr * (1 - (1 - recipe["min_lr_ratio"]) * done)


def make_optimizer(model: tm.TextModel, recipe: dict) -> torch.optim.AdamW:
    """AdamW; weight decay on the matrices (and embeddings) only, never on biases and LayerNorm gains."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    keep = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": recipe["weight_decay"]}, {"params": keep, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=recipe["lr"], betas=(0.9, 0.99))


def train(data: dict, config: dict = CONFIG, recipe: dict = RECIPE, seed: int = 0, say=print
          ) -> tuple[tm.TextModel, dict]:
    """Train a fresh ``TextModel(**config)`` for ``recipe["steps"]`` steps; returns the model and its history."""
    torch.set_num_threads(recipe["threads"])
    torch.manual_seed(seed)  # initial weights and dropout
    model = tm.TextModel(data["vocab"], **config).train()
    optimizer = make_optimizer(model, recipe)
    generator = torch.Generator().manual_seed(seed + 1_000_003)  # the batches
    history: dict[str, list] = {"step": [], "train_bits": [], "val_bits": [], "heldout_bits": [], "seconds": []}
    recent: list[float] = []
    train_seconds, started = 0.0, time.perf_counter()
    for step in range(recipe["steps"]):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, recipe)
        loss = loss_bits(model, batch(data["train"], recipe["batch_size"], model.context, generator))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe["grad_clip"])
        optimizer.step()
        recent.append(float(loss.detach()))
        done = step + 1
        if done % recipe["eval_every"] == 0 or done == recipe["steps"]:
            train_seconds += time.perf_counter() - started
            history["step"].append(done)
            history["train_bits"].append(sum(recent) / len(recent))  # mean over the steps since the last report
            history["val_bits"].append(validation_bits(model, data["val"]))
            history["heldout_bits"].append(tm.bits_per_char(model, data["heldout"], max_windows=128))
            history["seconds"].append(round(train_seconds, 1))
            say(f"step {done:5d}  train {history['train_bits'][-1]:.3f}  val {history['val_bits'][-1]:.3f}  "
                f"held-out {history['heldout_bits'][-1]:.3f} bits/char  {train_seconds:6.1f} s")
            recent = []
            started = time.perf_counter()
    history["train_seconds"] = round(train_seconds, 1)  # training steps only, evaluations not counted
    history["steps_per_second"] = round(recipe["steps"] / train_seconds, 3)
    return model.eval(), history


def machine() -> dict[str, object]:
    """What the numbers were measured on."""
    return {"torch": str(torch.__version__), "python": platform.python_version(), "threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()]}


def baselines(data: dict) -> dict[str, dict[str, float]]:
    """Smoothed character n-grams (n = 1..4) on the held-out text, trained on pydoc_data.topics alone and on the
    model's own training split: what the model must beat."""
    train_text = tc.CharTokenizer(data["vocab"]).decode(data["train"])
    result: dict[str, dict[str, float]] = {"pydoc_topics": {}, "training_split": {}}
    for n in range(1, 5):
        result["pydoc_topics"][f"{n}-gram"] = round(tc.ngram_bits_per_char(data["heldout"], n), 4)
        result["training_split"][f"{n}-gram"] = round(
            tc.ngram_bits_per_char(data["heldout"], n, train_text=train_text, vocab=data["vocab"]), 4)
    return result


def evaluate(model: tm.TextModel, data: dict) -> dict[str, object]:
    """The numbers the notebook and the tests rely on, measured on the model as stored (half precision)."""
    heldout, val_text = data["heldout"], model.decode(data["val"])
    off = torch.zeros(model.num_layers, model.num_heads)
    scores = tm.head_scores(model)
    best = int(scores["induction"].argmax())
    return {
        "heldout_bits_full": round(tm.bits_per_char(model, heldout, max_windows=None), 4),
        "heldout_bits": round(tm.bits_per_char(model, heldout), 4),  # the 256-window subset the tests use
        "heldout_bits_all_heads_off_full": round(tm.bits_per_char(model, heldout, off, max_windows=None), 4),
        "heldout_bits_all_heads_off": round(tm.bits_per_char(model, heldout, off), 4),
        "val_bits_full": round(tm.bits_per_char(model, val_text, max_windows=None), 4),
        "repeated_strings": {k: round(v, 4) for k, v in tm.repeated_string_losses(model).items()},
        "head_scores": {k: [[round(x, 4) for x in row] for row in v.tolist()] for k, v in scores.items()},
        "best_induction_head": [best // model.num_heads, best % model.num_heads],
    }


def make(out: Path, seed: int, steps: int) -> dict:
    """Train, store the model and its log in ``out``; returns the log."""
    out.mkdir(parents=True, exist_ok=True)
    load_before = [round(x, 2) for x in os.getloadavg()]
    data = prepare_data()
    print(f"corpus {data['corpus_chars']:,} chars ({len(data['train']):,} train, {len(data['val']):,} validation), "
          f"vocabulary {len(data['vocab'])}, held-out {len(data['heldout']):,} chars; {data['seconds']:.1f} s")
    recipe = {**RECIPE, "steps": steps}
    started = time.perf_counter()
    model, history = train(data, CONFIG, recipe, seed)
    extra = {"seed": seed, "steps": steps, "recipe": recipe, "python": platform.python_version(),
             "torch": str(torch.__version__), "corpus_chars": data["corpus_chars"], "validation_share": VALIDATION_SHARE}
    tm.save_text_model(model, out / "text_model.pt", extra)
    stored = tm.load_text_model(out / "text_model.pt")
    log = {"config": {**CONFIG, "vocab_size": len(data["vocab"])}, "recipe": recipe, "seed": seed,
           "parameters": sum(p.numel() for p in model.parameters()), "history": history,
           "final": evaluate(stored, data), "baselines": baselines(data), "heldout_report": data["heldout_report"],
           "corpus_chars": data["corpus_chars"], "train_chars": len(data["train"]), "val_chars": len(data["val"]),
           "heldout_chars": len(data["heldout"]), "script_seconds": round(time.perf_counter() - started, 1),
           "machine": {**machine(), "load_average_before": load_before}}
    (out / "text_model_log.json").write_text(json.dumps(log, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(log["final"] | {"baselines": log["baselines"]}, indent=1)[:3000])
    print(f"wrote {out / 'text_model.pt'} ({(out / 'text_model.pt').stat().st_size:,} bytes) and "
          f"{out / 'text_model_log.json'}; {log['script_seconds']} s")
    return log


def check(seed: int, steps: int) -> int:
    """Retrain into a temporary folder and compare the held-out bits per character with the stored model's."""
    stored_log = json.loads((DATA / "text_model_log.json").read_text(encoding="utf-8"))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = make(Path(tmp), seed, steps)
    ours, theirs = fresh["final"]["heldout_bits_full"], stored_log["final"]["heldout_bits_full"]
    ok = abs(ours - theirs) <= 0.05
    print(f"held-out bits/char: retrained {ours:.4f}, stored {theirs:.4f}, difference {ours - theirs:+.4f} "
          f"({'within' if ok else 'OUTSIDE'} 0.05); {time.perf_counter() - started:.0f} s")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=RECIPE["steps"])
    parser.add_argument("--out", type=Path, default=DATA, help="folder to write into (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="retrain into a temporary folder and compare")
    args = parser.parse_args(argv)
    if args.check:
        return check(args.seed, args.steps)
    make(args.out, args.seed, args.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
