"""Notebook 09, measuring the peak memory of attention calls where students are: Linux, macOS and Windows, on the
CPU or CUDA. Each measurement runs in a fresh process (``_memory_worker``), so earlier allocations do not count.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from ..maths.attention import causal_mask, scaled_dot_product_attention
from ..maths.mha import MultiHeadAttention
from ..validation import check_bool, check_choice, check_device, check_list, check_positive_int, check_positive_number

#: The attention calls :func:`measure_peak_memory` can measure (a job's ``method``).
MEMORY_METHODS = ("naive", "online", "sdpa", "mha_weights", "mha_fast")


# ---- peak memory: one way of reading a process's high-water mark per system ------------------------------------------
#
#   "cuda"        the CUDA allocator's own peak (any system);
#   "clear_refs"  Linux: reset the kernel's high-water mark through /proc/self/clear_refs, read VmHWM from
#                 /proc/self/status; all jobs share one process;
#   "ru_maxrss"   Linux without a writable clear_refs, macOS, BSD: resource.getrusage's peak resident size (it never
#                 goes down, so each job gets its own process);
#   "windows"     Windows: the peak working set from GetProcessMemoryInfo (ctypes, nothing to install), one
#                 process per job;
#   "none"        none of these (e.g. an unusual platform): nothing is measured, measure_peak_memory says so.


def _memory_method(device: torch.device) -> str:
    """How the peak memory of a job on ``device`` can be read on this system (see the table above)."""
    import importlib.util

    if device.type == "cuda":
        return "cuda"
    if os.path.exists("/proc/self/clear_refs") and os.access("/proc/self/clear_refs", os.W_OK):
        return "clear_refs"
    if sys.platform == "win32":
        return "windows"
    try:
        has_resource = importlib.util.find_spec("resource") is not None
    except (ImportError, ValueError):
        has_resource = False
    return "ru_maxrss" if has_resource else "none"


def _windows_peak_bytes() -> int:
    """The peak working set of this process, in bytes (Windows only: psapi's GetProcessMemoryInfo)."""
    import ctypes
    from ctypes import wintypes

    class Counters(ctypes.Structure):
        _fields_ = [("cb", wintypes.DWORD), ("PageFaultCount", wintypes.DWORD)] + [
            (name, ctypes.c_size_t) for name in (
                "PeakWorkingSetSize", "WorkingSetSize", "QuotaPeakPagedPoolUsage", "QuotaPagedPoolUsage",
                "QuotaPeakNonPagedPoolUsage", "QuotaNonPagedPoolUsage", "PagefileUsage", "PeakPagefileUsage")]

    counters = Counters()
    counters.cb = ctypes.sizeof(Counters)
    process = ctypes.windll.kernel32.GetCurrentProcess()
    if not ctypes.windll.psapi.GetProcessMemoryInfo(process, ctypes.byref(counters), counters.cb):
        raise OSError("GetProcessMemoryInfo failed")
    return int(counters.PeakWorkingSetSize)


def _maxrss_bytes() -> int:
    """resource.getrusage's peak resident size in bytes: the field is in bytes on macOS and in kB elsewhere."""
    import resource

    unit = 1 if sys.platform == "darwin" else 1024  # sys.platform, not os.uname(): the latter is Unix-only
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit


def _proc_status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # the kernel reports kB
    raise RuntimeError(f"{field} not found in /proc/self/status")


def _run_memory_job(job: dict, device: torch.device):
    """Build the inputs of one job and return a function that runs it once (forward, or forward + backward)."""
    g = torch.Generator(device="cpu").manual_seed(0)
    batch, heads, seq, head_dim = job["batch"], job["heads"], job["seq"], job["head_dim"]
    backward, is_causal = job.get("backward", False), job.get("is_causal", False)
    method = job["method"]
    if method.startswith("mha"):
        d_model = heads * head_dim
        layer = MultiHeadAttention(d_model, heads, device=device)
        x = torch.randn(batch, seq, d_model, generator=g).to(device).requires_grad_(backward)

        def call():
            out, _ = layer(x, x, x, need_weights=method == "mha_weights", average_attn_weights=False,
                           is_causal=is_causal, attn_mask=~causal_mask(seq, device=device) if is_causal else None)
            return out
    else:
        # Imported here, before the measurement: the worker then starts without matplotlib (online_softmax draws too).
        from ..maths.online_softmax import online_softmax_attention

        q, k, v = (torch.randn(batch, heads, seq, head_dim, generator=g).to(device).requires_grad_(backward)
                   for _ in range(3))

        def call():
            if method == "naive":
                return scaled_dot_product_attention(q, k, v, is_causal=is_causal)[0]
            if method == "online":
                return online_softmax_attention(q, k, v, block_size=job.get("block_size", 1024), is_causal=is_causal)
            return F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)

    def run():
        if backward:
            call().sum().backward()
        else:
            with torch.no_grad():
                call()
    return run


def _measure_in_this_process(job: dict, device: torch.device, method: str) -> float:
    """Peak bytes above the starting point while the job runs once (after a small warm-up of the same method);
    ``method`` is one of :func:`_memory_method`'s answers."""
    torch.set_num_threads(job.get("threads", torch.get_num_threads()))
    _run_memory_job({**job, "seq": min(job["seq"], 64)}, device)()  # warm-up: lazy initialisation, thread pools
    run = _run_memory_job(job, device)  # (the previous job's tensors are gone: nothing refers to them any more)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        run()
        torch.cuda.synchronize()
        return float(torch.cuda.max_memory_allocated() - before)
    if method == "clear_refs":
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the high-water mark to the current resident size
        before = _proc_status_bytes("VmRSS")
        run()
        return float(_proc_status_bytes("VmHWM") - before)
    # A peak that only ever grows: what the job adds on top of the peak so far (the warm-up was small).
    peak = _windows_peak_bytes if method == "windows" else _maxrss_bytes
    before = peak()
    run()
    return float(peak() - before)


def _memory_worker() -> None:
    """Entry point of the measuring subprocess: reads {"jobs": [...], "device": ..., "reset": ...} from stdin."""

    request = json.load(sys.stdin)
    device = torch.device(request["device"])
    results = []
    for job in request["jobs"]:
        results.append(_measure_in_this_process(job, device, request["method"]))
        print("job done", file=sys.stderr, flush=True)  # the parent's progress bar counts these lines
    print(json.dumps(results))


def measure_peak_memory(jobs: Sequence[dict], device: torch.device | str = "cpu", fresh_process_each: bool = False,
                        timeout: float = 600.0, progress: bool = False) -> list[float]:
    """Measure the peak memory (MiB above the starting point) of attention calls, each run once in a fresh process.

    Each job is a dict: ``method`` (one of :data:`MEMORY_METHODS`: "naive" = :func:`scaled_dot_product_attention`,
    "online" = :func:`online_softmax_attention`, "sdpa" = ``F.scaled_dot_product_attention``, "mha_weights" /
    "mha_fast" = :class:`MultiHeadAttention` with ``need_weights`` True / False), ``batch``, ``heads``, ``seq``,
    ``head_dim`` (d_model = heads·head_dim for the mha methods), and optionally ``backward`` (forward + backward),
    ``is_causal``, ``block_size``, ``threads``. The inputs (and, for mha, the weights) are allocated before the
    measurement starts; the output, the saved tensors and the gradients count.

    On Linux all jobs share one fresh process and the peak is reset between them; ``fresh_process_each=True`` (and
    any system without /proc/self/clear_refs: macOS reads ``resource``'s peak, Windows its peak working set) starts
    one process per job, about 2 s each for Python and torch to start (up to 4 run at once). On CUDA the
    allocator's peak is used, and its jobs share one process. Where
    none of these exists, a warning says so and every result is NaN (nothing was measured). ``progress`` shows a
    tqdm bar that advances as each job is measured.
    """
    jobs = _checked_jobs(jobs)
    check_device("device", device)
    check_bool("fresh_process_each", fresh_process_each)
    check_positive_number("timeout", timeout, example="600.0 (seconds)")
    check_bool("progress", progress)
    device = torch.device(device)
    method = _memory_method(device)
    if method == "none":
        warnings.warn(
            f"peak memory cannot be measured on this system ({sys.platform}: no /proc/self/clear_refs, no resource "
            f"module, not Windows, no CUDA); every result is NaN. The notebook's text quotes the numbers measured "
            f"on Linux.", RuntimeWarning, stacklevel=2,
        )
        return [float("nan")] * len(jobs)
    shared = method in ("clear_refs", "cuda") and not fresh_process_each  # the peak can be reset between jobs
    batches = [jobs] if shared else [[job] for job in jobs]
    # One process per job (macOS, Windows): most of each one's time is starting Python and torch, so a few run at
    # once. Each process has its own peak, so they do not disturb each other's numbers.
    from concurrent.futures import ThreadPoolExecutor

    workers = 1 if shared or device.type == "cuda" else max(1, min(4, (os.cpu_count() or 1) // 2))
    from tqdm.auto import tqdm

    with tqdm(total=len(jobs), desc="peak memory", unit="call", disable=not progress) as bar, \
            ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda batch: _measure_in_a_fresh_process(batch, device, method, timeout, bar.update),
                           batches)
        return [mib for batch in results for mib in batch]


def _checked_jobs(jobs: object) -> list[dict]:
    """:func:`measure_peak_memory`'s jobs, checked, as copies with ``threads`` filled in."""
    jobs = [dict(job) for job in check_list("jobs", jobs, dict, "a list of dicts, e.g. [dict(method='sdpa', batch=1, "
                                                                  "heads=1, seq=256, head_dim=64)]")]
    for i, job in enumerate(jobs):
        check_choice(f"jobs[{i}]['method']", job.get("method"), MEMORY_METHODS)
        for name in ("batch", "heads", "seq", "head_dim"):
            check_positive_int(f"jobs[{i}][{name!r}]", job.get(name))
        job.setdefault("threads", torch.get_num_threads())
    return jobs


def _measure_in_a_fresh_process(jobs: list[dict], device: torch.device, method: str, timeout: float,
                                on_job_done: Callable[[], object] = lambda: None) -> list[float]:
    """Run ``jobs`` in a new Python process (:func:`_memory_worker`); their peaks in MiB. ``on_job_done`` is called
    as the process reports each job measured."""
    request = json.dumps({"jobs": jobs, "device": str(device), "method": method})
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}
    worker = subprocess.Popen(
        [sys.executable, "-c", "from _mha_helpers.experiments.memory import _memory_worker; _memory_worker()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),  # the project root
    )
    timer = threading.Timer(timeout, worker.kill)  # a hung worker is killed, and then fails below
    timer.start()
    try:
        worker.stdin.write(request)
        worker.stdin.close()
        errors = []
        for line in worker.stderr:  # ends when the worker exits; stdout holds one short line, read after
            if line.strip() == "job done":
                on_job_done()
            else:
                errors.append(line)
        stdout = worker.stdout.read()
        worker.wait()
    finally:
        timer.cancel()
    if worker.returncode != 0:
        raise RuntimeError(f"the measuring process failed (exit {worker.returncode}):\n{''.join(errors)[-2000:]}")
    return [b / 2**20 for b in json.loads(stdout.strip().splitlines()[-1])]
