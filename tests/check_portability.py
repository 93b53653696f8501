"""Do the stored outputs travel? Run nbval as a CPU with other SIMD kernels, another thread count or a headless
matplotlib backend would, all on this machine.

    python tests/check_portability.py                                  # every notebook, every setting
    python tests/check_portability.py notebooks/08_what_heads_learn.ipynb   # before committing one notebook
    python tests/check_portability.py --list                           # the settings, and what each imitates

A stored number that comes out of a training run or a long reduction depends on the last bits of float32 sums,
and those depend on the CPU's vector instructions: AVX-512 (this project's machines), AVX2 (most laptops), or plain
SSE (old or unusual CPUs; Apple's ARM chips differ again). PyTorch picks its kernels at start-up, and
``ATEN_CPU_CAPABILITY`` overrides the pick; the matrix multiplications come from MKL and oneDNN, which have overrides
of their own (``MKL_ENABLE_INSTRUCTIONS``, ``ONEDNN_MAX_CPU_ISA``). Each setting below sets all three, so one
machine can imitate the others. A CPU that lacks an instruction set cannot be asked for it (the request falls back
to what it has); what agrees under ``default`` and ``avx2`` and is printed at the precision its claim needs will
almost surely agree everywhere.

Exit status 0 when every setting passed. ``.ci/run`` runs this after the test lanes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: name -> (environment, pytest-xdist workers, what it imitates). With several workers each uses one thread.
SETTINGS: dict[str, tuple[dict[str, str], str, str]] = {
    "default-2-threads": (
        {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "SSE41",
         "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"},
        "0", "a CPU with no AVX at all, 2 threads"),
    "avx2-2-threads": (
        {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2",
         "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"},
        "0", "a typical laptop (AVX2), 2 threads"),
    "native-2-threads": (
        {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"},
        "0", "this CPU's own kernels, 2 threads"),
    "native-1-thread-Agg": (
        {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"},
        "auto", "one thread, and a headless server's MPLBACKEND=Agg"),
}

#: Variables a setting may set; they are removed from the parent's environment first, so no setting inherits one.
_CONTROLLED = ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS",
               "MKL_NUM_THREADS", "MPLBACKEND")


def run(name: str, notebooks: list[str]) -> tuple[bool, float]:
    """nbval strict over ``notebooks`` under setting ``name``; returns (passed, seconds)."""
    extra, workers, _ = SETTINGS[name]
    env = {k: v for k, v in os.environ.items() if k not in _CONTROLLED}
    env.update(extra)
    command = [sys.executable, "-m", "pytest", *notebooks, "-n", workers, "-p", "no:cacheprovider", "-q",
               "--durations=0"]
    print(f"\n=== {name}: {SETTINGS[name][2]} ({' '.join(f'{k}={v}' for k, v in extra.items())})", flush=True)
    start = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, env=env)
    return result.returncode == 0, time.monotonic() - start


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="notebooks to check (default: all of notebooks/)")
    parser.add_argument("--only", choices=sorted(SETTINGS), action="append", help="run only this setting")
    parser.add_argument("--list", action="store_true", help="list the settings and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, (extra, _, what) in SETTINGS.items():
            print(f"{name:22s} {what}: " + " ".join(f"{k}={v}" for k, v in extra.items()))
        return 0
    notebooks = args.notebooks or ["notebooks"]
    results = {name: run(name, notebooks) for name in (args.only or SETTINGS)}
    print("\nportability of the stored outputs:")
    for name, (passed, seconds) in results.items():
        print(f"  {'pass' if passed else 'FAIL'}  {name:22s} {seconds:6.0f} s")
    return 0 if all(passed for passed, _ in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
