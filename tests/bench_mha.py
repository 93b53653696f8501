"""Benchmark: mha_helpers.MultiHeadAttention(need_weights=False) against torch.nn.MultiheadAttention.

Run by hand (not collected by pytest):  python tests/bench_mha.py [--seqs 64 256 1024] [--repeats 7]
                                         python tests/bench_mha.py --config llms-from-scratch

Both modules hold the same weights (copied with from_torch). For each sequence length it times, interleaved in one
run with torch.utils.benchmark: the forward pass in eval mode under torch.inference_mode(), and forward+backward in
train mode (dropout 0). It prints medians in ms and the ratio ours / PyTorch's (below 1 = ours is faster).

``--config llms-from-scratch`` is the configuration of the multi-head attention benchmark in Sebastian Raschka's
"LLMs from scratch" (ch03/02_bonus_efficient-multihead-attention): batch 8, 1024 tokens, d_model 768, 12 heads,
causal mask, no Q/K/V bias, dropout 0, forward and forward+backward; so our numbers can be set beside its published
table. (There every implementation gets a causal mask; here both modules get the same boolean ``attn_mask``, True =
masked out, with ``is_causal=True`` as the hint. Without Q/K/V biases PyTorch skips its inference fast path.)
"""

from __future__ import annotations

import argparse
import platform

import torch
import torch.utils.benchmark as benchmark
from torch import nn

import mha_helpers as mh


def _forward_eval(module, x, mask=None):
    with torch.inference_mode():
        module(x, x, x, need_weights=False, **_mask_kwargs(mask))


def _forward_backward(module, x, mask=None):
    out, _ = module(x, x, x, need_weights=False, **_mask_kwargs(mask))
    out.sum().backward()


def _mask_kwargs(mask):
    return {} if mask is None else {"attn_mask": mask, "is_causal": True}


#: Named configurations: (batch, d_model, heads, seqs, causal, bias).
CONFIGS = {
    "default": (8, 512, 8, [64, 256, 1024], False, True),
    "llms-from-scratch": (8, 768, 12, [1024], True, False),  # Raschka, LLMs from scratch, ch03 bonus benchmark
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="default",
                        help="a named configuration; the options below override its values")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--d-model", type=int)
    parser.add_argument("--heads", type=int)
    parser.add_argument("--seqs", type=int, nargs="+")
    parser.add_argument("--causal", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--repeats", type=int, default=7, help="rounds; each round times both modules once")
    args = parser.parse_args()
    batch, d_model, heads, seqs, causal, bias = CONFIGS[args.config]
    batch = args.batch or batch
    d_model = args.d_model or d_model
    heads = args.heads or heads
    seqs = args.seqs or seqs
    causal = causal if args.causal is None else args.causal

    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(d_model, heads, bias=bias, batch_first=True)
    ours = mh.MultiHeadAttention.from_torch(theirs)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print(f"config {args.config}: batch={batch}, d_model={d_model}, heads={heads}, causal={causal}, bias={bias}; "
          f"medians over {args.repeats} rounds\n")
    header = f"{'seq':>6} {'mode':<22} {'ours ms':>10} {'torch ms':>10} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for seq in seqs:
        x = torch.randn(batch, seq, d_model)
        mask = ~mh.causal_mask(seq) if causal else None  # nn.MultiheadAttention's convention: True = masked out
        for mode, fn, train in (("eval forward", _forward_eval, False), ("train forward+backward", _forward_backward, True)):
            ours.train(train)
            theirs.train(train)
            times = {"ours": [], "torch": []}
            for _ in range(args.repeats):  # interleave so that drifts in machine load hit both equally
                for name, module in (("ours", ours), ("torch", theirs)):
                    t = benchmark.Timer("fn(module, x, mask)", globals={"fn": fn, "module": module, "x": x, "mask": mask},
                                        num_threads=torch.get_num_threads())
                    times[name].append(t.blocked_autorange(min_run_time=0.2).median)
            med = {k: sorted(v)[len(v) // 2] * 1e3 for k, v in times.items()}
            print(f"{seq:>6} {mode:<22} {med['ours']:>10.2f} {med['torch']:>10.2f} {med['ours'] / med['torch']:>7.3f}")


if __name__ == "__main__":
    main()
