"""Benchmark: mha_helpers.MultiHeadAttention(need_weights=False) against torch.nn.MultiheadAttention.

Run by hand (not collected by pytest):  python tests/bench_mha.py [--seqs 64 256 1024] [--repeats 7]

Both modules hold the same weights (copied with from_torch). For each sequence length it times, interleaved in one
run with torch.utils.benchmark: the forward pass in eval mode under torch.inference_mode(), and forward+backward in
train mode (dropout 0). It prints medians in ms and the ratio ours / PyTorch's (below 1 = ours is faster).
"""

from __future__ import annotations

import argparse
import platform

import torch
import torch.utils.benchmark as benchmark
from torch import nn

import mha_helpers as mh


def _forward_eval(module, x):
    with torch.inference_mode():
        module(x, x, x, need_weights=False)


def _forward_backward(module, x):
    out, _ = module(x, x, x, need_weights=False)
    out.sum().backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--d-model", type=int, default=512)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--seqs", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--repeats", type=int, default=7, help="rounds; each round times both modules once")
    args = parser.parse_args()

    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(args.d_model, args.heads, batch_first=True)
    ours = mh.MultiHeadAttention.from_torch(theirs)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print(f"batch={args.batch}, d_model={args.d_model}, heads={args.heads}; medians over {args.repeats} rounds\n")
    header = f"{'seq':>6} {'mode':<22} {'ours ms':>10} {'torch ms':>10} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for seq in args.seqs:
        x = torch.randn(args.batch, seq, args.d_model)
        for mode, fn, train in (("eval forward", _forward_eval, False), ("train forward+backward", _forward_backward, True)):
            ours.train(train)
            theirs.train(train)
            times = {"ours": [], "torch": []}
            for _ in range(args.repeats):  # interleave so that drifts in machine load hit both equally
                for name, module in (("ours", ours), ("torch", theirs)):
                    t = benchmark.Timer(
                        "fn(module, x)", globals={"fn": fn, "module": module, "x": x}, num_threads=torch.get_num_threads()
                    )
                    times[name].append(t.blocked_autorange(min_run_time=0.2).median)
            med = {k: sorted(v)[len(v) // 2] * 1e3 for k, v in times.items()}
            print(f"{seq:>6} {mode:<22} {med['ours']:>10.2f} {med['torch']:>10.2f} {med['ours'] / med['torch']:>7.3f}")


if __name__ == "__main__":
    main()
