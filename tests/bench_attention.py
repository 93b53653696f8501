"""Benchmark: naive attention vs mha_helpers.online_softmax_attention vs F.scaled_dot_product_attention.

Run by hand (not collected by pytest):

    python tests/bench_attention.py                  # n = 1024, 4096, 8192, 16384 (a few minutes on 2 cores)
    python tests/bench_attention.py --quick          # n = 1024, 4096
    python tests/bench_attention.py --device cuda    # on a GPU (peak memory from torch.cuda.max_memory_allocated)

One head, head_dim 64, float32, batch 1, no mask: query, key, value of shape (1, 1, n, 64). "naive" is the series'
reference mha_helpers.scaled_dot_product_attention (notebook 02: the whole n x n matrix of scores and weights);
"online" is mha_helpers.online_softmax_attention (notebook 09: blocks of keys and queries, its own backward);
"sdpa" is torch.nn.functional.scaled_dot_product_attention (on the CPU, PyTorch's flash kernel).

For every n, in forward (under torch.no_grad) and forward+backward (.sum().backward()):
  * time: the median and the best (minimum) of --repeats runs, the three methods interleaved round by round in this
    one process (on a busy machine the best run is the better estimate of what each method costs);
  * peak memory: measured in a fresh subprocess per measurement (mha_helpers.measure_peak_memory): the rise of the
    resident set (Linux VmHWM) above what the inputs already take, or the CUDA allocator's peak; it includes the
    output and, with backward, the saved tensors and the gradients;
  * max |online - naive| over the output and (forward+backward) the three gradients.
Ratios: time / sdpa's time, memory / naive's memory. The CPU is shared: timings are noisy, rerun on a quiet machine.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
import torch.nn.functional as F

import mha_helpers as mh

METHODS = ("naive", "online", "sdpa")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _attention(method: str, q, k, v, block_size: int):
    if method == "naive":
        return mh.scaled_dot_product_attention(q, k, v)[0]
    if method == "online":
        return mh.online_softmax_attention(q, k, v, block_size=block_size)
    return F.scaled_dot_product_attention(q, k, v)


def _run(method: str, q, k, v, block_size: int, backward: bool):
    """One call; returns the output and, with backward, the gradients of q, k, v (then cleared)."""
    if not backward:
        with torch.no_grad():
            return _attention(method, q, k, v, block_size), ()
    out = _attention(method, q, k, v, block_size)
    out.sum().backward()
    grads = tuple(t.grad for t in (q, k, v))
    for t in (q, k, v):
        t.grad = None
    return out.detach(), grads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seqs", type=int, nargs="+", default=[1024, 4096, 8192, 16384])
    parser.add_argument("--quick", action="store_true", help="only n = 1024, 4096")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--block-size", type=int, default=1024, help="key block of online_softmax_attention")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (after one warm-up round)")
    args = parser.parse_args()
    seqs = [1024, 4096] if args.quick else args.seqs
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    print(f"torch {torch.__version__} on {device.type} ({where}), {torch.get_num_threads()} CPU threads")
    print(f"one head, head_dim={args.head_dim}, float32, online block_size={args.block_size}; time over "
          f"{args.repeats} runs (median, best); peak memory = fresh subprocess per measurement\n")
    header = (f"{'n':>6}  {'pass':<8} {'method':<7} {'median ms':>10} {'x sdpa':>7} {'best ms':>9} {'x sdpa':>7} "
              f"{'peak MiB':>9} {'/ naive':>8} {'max |diff|':>10}")
    print(header)
    print("-" * len(header))
    summary = {}
    start_all = time.perf_counter()
    for n in seqs:
        g = torch.Generator().manual_seed(0)
        base = [torch.randn(1, 1, n, args.head_dim, generator=g).to(device) for _ in range(3)]
        for backward in (False, True):
            q, k, v = (t.clone().requires_grad_(backward) for t in base)
            # Accuracy (and the warm-up round): each method once.
            results = {m: _run(m, q, k, v, args.block_size, backward) for m in METHODS}
            ref_out, ref_grads = results["naive"]
            diff = {m: max([float((o - ref_out).abs().max())] +
                           [float((a - b).abs().max()) for a, b in zip(gr, ref_grads, strict=True)])
                    for m, (o, gr) in results.items()}
            del results, ref_out, ref_grads
            # Time: the methods interleaved round by round, so drifts in machine load hit all three.
            times = {m: [] for m in METHODS}
            for _ in range(args.repeats):
                for m in METHODS:
                    sync()
                    t0 = time.perf_counter()
                    _run(m, q, k, v, args.block_size, backward)
                    sync()
                    times[m].append(time.perf_counter() - t0)
            del q, k, v
            median = {m: sorted(ts)[len(ts) // 2] * 1e3 for m, ts in times.items()}
            best = {m: min(ts) * 1e3 for m, ts in times.items()}
            jobs = [dict(method=m, batch=1, heads=1, seq=n, head_dim=args.head_dim, backward=backward,
                         block_size=args.block_size) for m in METHODS]
            peak = dict(zip(METHODS, mh.measure_peak_memory(jobs, device=device, fresh_process_each=True), strict=True))
            mode = "fwd+bwd" if backward else "fwd"
            for m in METHODS:
                print(f"{n:>6}  {mode:<8} {m:<7} {median[m]:>10.1f} {median[m] / median['sdpa']:>7.2f} "
                      f"{best[m]:>9.1f} {best[m] / best['sdpa']:>7.2f} {peak[m]:>9.1f} {peak[m] / peak['naive']:>8.1%} "
                      f"{diff[m]:>10.1e}", flush=True)
            summary[n, mode] = (median, best, peak, diff)
    print(f"\n(total {time.perf_counter() - start_all:.0f} s)")

    print("\nonline_softmax_attention against the targets of issue 6:")
    checks = [
        (16384, "fwd", "peak memory <= 4 % of naive's",
         lambda med, best, pk, df: (pk["online"] / pk["naive"], f"{pk['online'] / pk['naive']:.2%}", 0.04)),
        (16384, "fwd", "time <= 2x sdpa's (median; best)",
         lambda med, best, pk, df: (med["online"] / med["sdpa"],
                                    f"{med['online'] / med['sdpa']:.2f}x; {best['online'] / best['sdpa']:.2f}x", 2.0)),
        (8192, "fwd+bwd", "peak memory <= 10 % of naive's",
         lambda med, best, pk, df: (pk["online"] / pk["naive"], f"{pk['online'] / pk['naive']:.2%}", 0.10)),
        (8192, "fwd+bwd", "output and gradients within 1e-5 of naive",
         lambda med, best, pk, df: (df["online"], f"{df['online']:.1e}", 1e-5)),
    ]
    for n, mode, what, measure in checks:
        if (n, mode) not in summary:
            print(f"  n={n:<6} {mode:<8} {what}: not measured (add {n} to --seqs)")
            continue
        value, shown, limit = measure(*summary[n, mode])
        print(f"  n={n:<6} {mode:<8} {what}: {shown}  {'PASS' if value <= limit else 'FAIL'}")


if __name__ == "__main__":
    main()
