"""Write _mha_helpers/induction_reference.py: the record of notebook 12's 1-layer comparison run.

    python tests/make_induction_reference.py

It trains ``mh.train_induction_model(seed=0, num_layers=1)`` (defaults otherwise; one CPU thread, so the numbers are
the same on every machine that runs this torch) and stores its history's losses and its final losses, which
``mh.stored_one_layer_run()`` hands to the notebook. Run it again whenever the model, the task or the defaults of
``train_induction_model`` change; tests/claims/test_claims_induction.py retrains the run and fails when the stored numbers
are stale.
"""

from __future__ import annotations

from pathlib import Path

import mha_helpers as mh

TARGET = Path(__file__).resolve().parent.parent / "_mha_helpers" / "experiments" / "induction_reference.py"


def reference() -> dict:
    model, history = mh.train_induction_model(seed=0, num_layers=1, progress=False)
    return {"steps": history.steps, "train_loss": history.train_loss, "first_loss": history.first_loss,
            "repeated_loss": history.repeated_loss, "losses": mh.occurrence_losses(model)}


def main() -> None:
    data = reference()
    lines = ['"""The record of notebook 12\'s 1-layer comparison run (see stored_one_layer_run in induction.py).',
             "", "Written by tests/make_induction_reference.py; do not edit by hand.", '"""', "",
             "ONE_LAYER_SEED_0 = {"]
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"    {key!r}: {{" + ", ".join(f"{k!r}: {v!r}" for k, v in value.items()) + "},")
        else:
            lines.append(f"    {key!r}: [")
            for i in range(0, len(value), 6):
                lines.append("        " + ", ".join(repr(v) for v in value[i:i + 6]) + ",")
            lines.append("    ],")
    lines.append("}")
    TARGET.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {TARGET.relative_to(TARGET.parent.parent)}: {len(data['steps'])} snapshots, "
          f"losses {data['losses']}")


if __name__ == "__main__":
    main()
