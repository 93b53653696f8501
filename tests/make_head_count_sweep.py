"""The head-count trade-off, measured: train notebook 14's character model with 1, 2, 4 and 8 heads at the same
d_model (so the same parameter count), the same budget and several seeds, and time a training step of each.

    python tests/make_head_count_sweep.py                 # 4 head counts x 3 seeds x 400 steps: ~30 min, 2 cores
    python tests/make_head_count_sweep.py --steps 100 --seeds 0 --out /tmp/sweep.json   # a quick try
    python tests/make_head_count_sweep.py --long 1       # add 1 head at the stored model's full budget (~10 min)

Every run uses tests/make_text_model.py's model and recipe with only ``num_heads``, the seed and the number of
steps changed (the learning-rate schedule is stretched over the steps in the same way for every run). A run
records its held-out bits per character (the 256-window subset of ``bits_per_char``), its corpus-validation loss
and its training loss at a few checkpoints, so a reader can see whether it was still improving when the budget
ran out: "did not learn it in N steps" is not "cannot learn it".

The seconds per step of the runs themselves depend on what else the machine was doing. The fair comparison is
measured at the end, in one process, side by side: after warm-up, ``--timing-rounds`` rounds that each time one
training step of every head count in turn; the median is stored.

Writes ``_mha_helpers/data/head_count_sweep.json`` (after every run, so an interrupted sweep keeps what it did).

``--long H ...`` adds, to an existing file, head counts trained at the stored model's FULL budget (its recipe,
seed 0) under ``"long_runs"``, beside the stored 8-head model itself: does the ranking at the reduced budget hold
when every run has trained as long as the model the notebook studies?
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import make_text_model as mk
import torch

from _mha_helpers.experiments import text_model as tm

TARGET = mk.DATA / "head_count_sweep.json"


def one_run(data: dict, num_heads: int, seed: int, recipe: dict) -> dict:
    """Train one model and summarise it; the checkpoints are every ``recipe["eval_every"]`` steps."""
    model, history = mk.train(data, {**mk.CONFIG, "num_heads": num_heads}, recipe, seed,
                              say=lambda line: print(f"  heads {num_heads} seed {seed}: {line}", flush=True))
    return {"num_heads": num_heads, "head_dim": model.head_dim, "seed": seed, "steps": recipe["steps"],
            "parameters": sum(p.numel() for p in model.parameters()),
            "heldout_bits": round(tm.bits_per_char(model, data["heldout"]), 4),
            "val_bits": round(history["val_bits"][-1], 4), "final_train_bits": round(history["train_bits"][-1], 4),
            "seconds_per_step_in_run": round(history["train_seconds"] / recipe["steps"], 4),
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "checkpoints": {key: [round(x, 4) for x in history[key]] if key != "step" else history[key]
                            for key in ("step", "train_bits", "val_bits", "heldout_bits")}}


def step_timing(data: dict, heads: list[int], recipe: dict, rounds: int, warmup: int = 3) -> dict:
    """Median seconds of one training step (forward, backward, AdamW) per head count, measured interleaved."""
    torch.set_num_threads(recipe["threads"])
    generator = torch.Generator().manual_seed(0)
    rows = mk.batch(data["train"], recipe["batch_size"], mk.CONFIG["context"], generator)  # one fixed batch
    models = {h: tm.TextModel(data["vocab"], **{**mk.CONFIG, "num_heads": h}).train() for h in heads}
    optimizers = {h: mk.make_optimizer(m, recipe) for h, m in models.items()}
    times: dict[int, list[float]] = {h: [] for h in heads}
    for round_ in range(warmup + rounds):
        for h in heads:
            started = time.perf_counter()
            loss = mk.loss_bits(models[h], rows)
            optimizers[h].zero_grad(set_to_none=True)
            loss.backward()
            optimizers[h].step()
            if round_ >= warmup:
                times[h].append(time.perf_counter() - started)
    return {"rounds": rounds, "warmup_rounds": warmup,
            "median_seconds_per_step": {str(h): round(statistics.median(t), 4) for h, t in times.items()},
            "min_seconds_per_step": {str(h): round(min(t), 4) for h, t in times.items()},
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def summary(runs: list[dict], heads: list[int]) -> dict:
    """Mean and spread over the seeds of each head count."""
    table = {}
    for h in heads:
        mine = [r for r in runs if r["num_heads"] == h]
        if mine:
            bits = [r["heldout_bits"] for r in mine]
            table[str(h)] = {"seeds": len(mine), "heldout_bits_mean": round(statistics.mean(bits), 4),
                             "heldout_bits_min": min(bits), "heldout_bits_max": max(bits),
                             "val_bits_mean": round(statistics.mean(r["val_bits"] for r in mine), 4)}
    return table


def long_runs(data: dict, heads: list[int], out: Path) -> None:
    """Train ``heads`` at the full recipe (seed 0) and store them, with the stored model, under ``"long_runs"``."""
    result = json.loads(out.read_text(encoding="utf-8"))
    stored = tm.load_text_model()
    runs = [{"num_heads": stored.num_heads, "seed": 0, "steps": mk.RECIPE["steps"], "stored_model": True,
             "heldout_bits": round(tm.bits_per_char(stored, data["heldout"]), 4)}]
    for h in heads:
        model, history = mk.train(data, {**mk.CONFIG, "num_heads": h}, mk.RECIPE, 0,
                                  say=lambda line, h=h: print(f"  long run, heads {h}: {line}", flush=True))
        runs.append({"num_heads": h, "seed": 0, "steps": mk.RECIPE["steps"], "stored_model": False,
                     "heldout_bits": round(tm.bits_per_char(model, data["heldout"]), 4),
                     "checkpoints": {key: [round(x, 4) for x in history[key]] if key != "step" else history[key]
                                     for key in ("step", "train_bits", "val_bits", "heldout_bits")},
                     "seconds_per_step_in_run": round(history["train_seconds"] / mk.RECIPE["steps"], 4)})
        result["long_runs"] = runs
        out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(runs, indent=1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--heads", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--timing-rounds", type=int, default=20)
    parser.add_argument("--out", type=Path, default=TARGET)
    parser.add_argument("--long", type=int, nargs="*", default=None, help="head counts to add at the full budget")
    args = parser.parse_args(argv)
    data = mk.prepare_data()
    if args.long is not None:
        long_runs(data, args.long, args.out)
        return
    recipe = {**mk.RECIPE, "steps": args.steps, "warmup": max(1, args.steps // 10), "eval_every": args.steps // 4}
    result = {"about": "head-count sweep of notebook 14's character model; see tests/make_head_count_sweep.py",
              "budget": {"steps": args.steps, "batch_size": recipe["batch_size"], "context": mk.CONFIG["context"],
                         "chars_per_step": recipe["batch_size"] * mk.CONFIG["context"], "recipe": recipe},
              "config": {k: v for k, v in mk.CONFIG.items() if k != "num_heads"}, "machine": mk.machine(),
              "runs": []}
    started = time.perf_counter()
    for seed in args.seeds:
        for h in args.heads:
            result["runs"].append(one_run(data, h, seed, recipe))
            result["summary"] = summary(result["runs"], args.heads)
            result["sweep_seconds"] = round(time.perf_counter() - started, 1)
            args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    result["step_timing"] = step_timing(data, args.heads, recipe, args.timing_rounds)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result["summary"], indent=1), json.dumps(result["step_timing"], indent=1))


if __name__ == "__main__":
    main()
