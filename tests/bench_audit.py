"""How long ``mh.audit`` takes on the CPU, against its budget of 2 s for a module at d_model 64 with 4 heads.

    python tests/bench_audit.py            # medians over 7 rounds; each case's verdict, time and ratio to the budget

A benchmark, not a test: times depend on the machine and on whatever else runs on it. The first audit in a process
also pays one-off costs (PyTorch's lazy imports, first kernels); it is printed on its own line.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import mha_helpers as mh

sys.path.insert(0, str(Path(__file__).resolve().parent / "unit"))
import audit_cases as C  # noqa: E402  (implementations written the ways tutorials write them)

BUDGET_S = 2.0


def _seconds(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch.manual_seed(0)
    cases = [
        ("mh.MultiHeadAttention(64, 4)", mh.MultiHeadAttention(64, 4), False, False),
        ("nn.MultiheadAttention(64, 4, batch_first=True)", nn.MultiheadAttention(64, 4, batch_first=True), False, False),
        ("mh.GroupedQuerySelfAttention(64, 4, 2)", mh.GroupedQuerySelfAttention(64, 4, 2), True, False),
        ("F.scaled_dot_product_attention", F.scaled_dot_product_attention, False, False),
        ("mh.MultiHeadAttention(64, 4) in float16", mh.MultiHeadAttention(64, 4).half(), False, False),
        ("mh.MultiHeadAttention(64, 4) in bfloat16", mh.MultiHeadAttention(64, 4).bfloat16(), False, False),
        ("query/key/value/out, unnormalised weights", C.build(C.QueryKeyValueOut, 64, 4, bug="unnormalised"), False,
         False),
        ("RoPE module, positions=True", C.build(C.RoPEAttention, 64, 4), False, True),
        ("no num_heads attribute (heads found from the output)", C.build(C.NoHeadCount, 64), False, False),
        ("dropout left on in eval", C.build(C.DropoutInEval, 64, 4), False, False),
        ("nn.Linear(64, 64): not attention", nn.Linear(64, 64), False, False),
        ("mh.TransformerBlock(64, 4): incomplete", mh.TransformerBlock(64, 4), False, False),
        ("nn.MultiheadAttention(512, 8, batch_first=True)", nn.MultiheadAttention(512, 8, batch_first=True), False,
         False),
        ("every bug of the zoo, one after another", None, False, False),
    ]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads (audit itself runs on one); "
          f"medians over {args.rounds} rounds; budget {BUDGET_S:g} s")
    start = time.perf_counter()
    importlib.import_module("torch.nn.attention.bias")  # mh.MultiHeadAttention's first forward imports it
    print(f"one-off: importing torch.nn.attention.bias, as mh.MultiHeadAttention's first forward does: "
          f"{time.perf_counter() - start:.3f} s")
    start = time.perf_counter()
    mh.audit(cases[0][1])
    print(f"one-off: the first audit in this process (first kernels): {time.perf_counter() - start:.3f} s")
    print(f"{'what':<56} {'verdict':<18} {'seconds':>8} {'/ budget':>9}")
    for label, impl, causal, positions in cases:
        if impl is None:
            def run():
                return [mh.audit(mh.broken_attention(name), causal=bug.causal) for name, bug in mh.BUG_ZOO.items()]
            verdict = "12 x failed"
        else:
            def run(impl=impl, causal=causal, positions=positions):
                return mh.audit(impl, causal=causal, positions=positions)
            verdict = run().verdict
        seconds = _seconds(run, args.rounds)
        print(f"{label:<56} {verdict:<18} {seconds:8.3f} {seconds / BUDGET_S:9.3f}")


if __name__ == "__main__":
    main()
