"""Write _mha_helpers/lookup_reference.py: the record of notebook 08's head-count sweep.

    python tests/make_lookup_reference.py

It runs ``mh.head_count_sweep(d_model=8, seeds=(0, 1, 2, 3, 4))`` (20 training runs of 150 steps, one CPU thread
each: about 8 s) and stores every run's accuracies, which ``mh.stored_head_count_sweep()`` hands to the notebook, so
the notebook spends its seconds on the runs it explains one by one. The numbers are those of the CPU that ran this
script: another CPU's float32 sums differ in the last bits, and a run near a boundary may then get a few test
examples more or fewer right. Run it again whenever the model, the task or the defaults of ``train_lookup_model``
change; tests/claims/test_claims.py retrains the sweep and fails when the stored numbers are stale.
"""

from __future__ import annotations

from pathlib import Path

import mha_helpers as mh

TARGET = Path(__file__).resolve().parents[1] / "_mha_helpers" / "experiments" / "lookup_reference.py"
SEEDS = (0, 1, 2, 3, 4)


def reference() -> dict[int, list[dict[str, float]]]:
    return mh.head_count_sweep(d_model=8, seeds=SEEDS, progress=False)


def main() -> None:
    sweep = reference()
    lines = ['"""The record of notebook 08\'s head-count sweep (see stored_head_count_sweep in lookup.py).', "",
             "Written by tests/make_lookup_reference.py; do not edit by hand. Each run: mh.train_lookup_model(num_heads,",
             f"d_model=8, seed) with the defaults (150 steps, lr 0.03), scored by mh.lookup_accuracy; seeds {SEEDS}.",
             '"""', "", f"SEEDS = {SEEDS!r}", "", "SWEEP_D_MODEL_8 = {"]
    for heads, runs in sweep.items():
        lines.append(f"    {heads}: [")
        lines += [f"        {run!r}," for run in runs]
        lines.append("    ],")
    lines.append("}")
    TARGET.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {TARGET.relative_to(TARGET.parents[1])}: {sum(len(r) for r in sweep.values())} runs")


if __name__ == "__main__":
    main()
