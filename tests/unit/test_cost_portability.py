"""Notebook 09's peak-memory measurement where students are: Linux, macOS and Windows.

``measure_peak_memory`` picks one way of reading a process's peak memory (``_memory_method``): the CUDA allocator,
Linux's resettable high-water mark (/proc/self/clear_refs), ``resource.getrusage`` (macOS, Linux without
clear_refs), Windows' peak working set (ctypes, no extra package), or none. These tests simulate the systems this
machine is not, by monkeypatching: no /proc, no ``resource`` module, no ``os.uname``, ``sys.platform`` of Windows or
macOS. Where nothing can be measured, a RuntimeWarning says so and the results are NaN (nothing is silently made up).
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mha_helpers as mh
from _mha_helpers.experiments import memory

ROOT = Path(__file__).resolve().parents[2]
SMALL_JOB = {"method": "sdpa", "batch": 1, "heads": 1, "seq": 64, "head_dim": 8, "threads": 1}


@pytest.fixture
def no_proc(monkeypatch):
    """A system without /proc (Windows, macOS): os.path.exists says no for every /proc path."""
    real_exists = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda p: False if str(p).startswith("/proc") else real_exists(p))


@pytest.fixture
def no_resource(monkeypatch):
    """A system without the ``resource`` module (Windows): importing it fails, find_spec finds nothing."""
    monkeypatch.setitem(sys.modules, "resource", None)  # `import resource` now raises ImportError
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "resource" else
                        real_find_spec(name, *a))


@pytest.fixture
def no_uname(monkeypatch):
    if hasattr(os, "uname"):
        monkeypatch.delattr(os, "uname")  # Windows has no os.uname


def test_linux_here_uses_the_resettable_high_water_mark():
    if not (os.path.exists("/proc/self/clear_refs") and os.access("/proc/self/clear_refs", os.W_OK)):
        pytest.skip("this machine has no writable /proc/self/clear_refs")
    assert memory._memory_method(torch.device("cpu")) == "clear_refs"


def test_windows_is_recognised_without_proc_resource_or_uname(monkeypatch, no_proc, no_resource, no_uname):
    monkeypatch.setattr(sys, "platform", "win32")
    assert memory._memory_method(torch.device("cpu")) == "windows"


def test_macos_uses_resource(monkeypatch, no_proc, no_uname):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert memory._memory_method(torch.device("cpu")) == "ru_maxrss"


def test_ru_maxrss_unit_comes_from_sys_platform_not_uname(monkeypatch, no_uname):
    import resource

    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    monkeypatch.setattr(sys, "platform", "darwin")  # macOS reports bytes
    assert abs(memory._maxrss_bytes() - kib) <= 64 * 2**20  # (a little more may have been allocated since)
    monkeypatch.setattr(sys, "platform", "linux")  # Linux reports kB
    assert memory._maxrss_bytes() >= kib * 1024


def test_cuda_uses_its_allocator_anywhere(no_proc, no_resource):
    assert memory._memory_method(torch.device("cuda")) == "cuda"


def test_the_windows_reader_needs_neither_resource_nor_uname(monkeypatch, no_proc, no_resource, no_uname):
    peaks = itertools.count(100 * 2**20, 3 * 2**20)  # a fake peak working set that grows 3 MiB per reading
    monkeypatch.setattr(memory, "_windows_peak_bytes", lambda: next(peaks))
    measured = memory._measure_in_this_process(dict(SMALL_JOB), torch.device("cpu"), "windows")
    assert measured == 3 * 2**20  # after minus before: the peak the job added


def test_the_macos_reader_measures_a_real_job(monkeypatch, no_proc, no_uname):
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(memory, "_maxrss_bytes", lambda: 1024 * torch.get_num_threads())  # deterministic stand-in
    measured = memory._measure_in_this_process(dict(SMALL_JOB), torch.device("cpu"), "ru_maxrss")
    assert measured == 0.0 and not math.isnan(measured)


def test_no_way_to_measure_degrades_with_a_clear_warning(monkeypatch, no_proc, no_resource, no_uname):
    monkeypatch.setattr(sys, "platform", "emscripten")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("no process should be started"))
    with pytest.warns(RuntimeWarning, match="peak memory cannot be measured on this system"):
        results = mh.measure_peak_memory([SMALL_JOB, SMALL_JOB])
    assert len(results) == 2 and all(math.isnan(r) for r in results)


def test_without_clear_refs_each_job_gets_its_own_process(monkeypatch):
    if importlib.util.find_spec("resource") is None:
        pytest.skip("needs the resource module to measure for real")
    monkeypatch.setattr(memory, "_memory_method", lambda device: "ru_maxrss")  # as on macOS
    started = []
    real_measure = memory._measure_in_a_fresh_process

    def counting(jobs, device, method, *rest):
        started.append({"jobs": jobs, "method": method})
        return real_measure(jobs, device, method, *rest)

    monkeypatch.setattr(memory, "_measure_in_a_fresh_process", counting)
    results = mh.measure_peak_memory([SMALL_JOB, {**SMALL_JOB, "method": "naive"}])
    assert [len(r["jobs"]) for r in started] == [1, 1]
    assert all(r["method"] == "ru_maxrss" for r in started)
    assert all(r >= 0 and math.isfinite(r) for r in results)


WORKER_AS_ON_WINDOWS = """
import itertools, os, sys
import torch  # first: on Linux (only there) numpy's import itself calls os.uname
sys.modules["resource"] = None          # Windows has no resource module ...
del os.uname                            # ... and no os.uname
real_exists = os.path.exists
os.path.exists = lambda p: False if str(p).startswith("/proc") else real_exists(p)   # ... and no /proc
import mha_helpers  # the whole map imports without them
from _mha_helpers.experiments import memory
peaks = itertools.count(0, 2**20)
memory._windows_peak_bytes = lambda: next(peaks)   # stands in for GetProcessMemoryInfo, which only Windows has
memory._memory_worker()
"""


def test_the_measuring_process_runs_where_resource_uname_and_proc_do_not_exist():
    request = {"jobs": [SMALL_JOB, {**SMALL_JOB, "method": "online"}], "device": "cpu", "method": "windows"}
    done = subprocess.run([sys.executable, "-c", WORKER_AS_ON_WINDOWS], input=json.dumps(request), text=True,
                          capture_output=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [2**20, 2**20]

