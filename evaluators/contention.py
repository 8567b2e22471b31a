"""Sharing the CPU without corrupting what is measured: the thread policy and the compute clock.

On a machine shared with other work, torch's default of one thread per core is the worst choice:
its threads wait for each other at every parallel region, and a forward pass that ran at 281
images/s with 2 threads on a quiet 2-core machine ran at 43 with one other busy process (206 with
1 thread).  So:

* :func:`choose_threads` picks torch's CPU threads from the cores actually free: the cores this
  process may run on (its affinity, capped by ``OMP_NUM_THREADS``), less those other processes
  keep busy (read from ``/proc/stat``; in a search, over the trial that just ran:
  :class:`CoreLoad`), and never more than this worker's share when several workers split the
  machine; an explicit count (``--threads``) wins.  Every trial records the count it trained with.
* :func:`compute_clock` is the clock of the evaluation's wall-clock cap: on the CPU the process's
  own CPU time per thread, so time lost waiting for a busy machine does not turn a candidate into
  ``timeout``; on CUDA, wall time (the GPU's work is not CPU time).
* Throughput on the CPU is timed with :data:`TIMING_THREADS` (one) thread, whatever the training
  uses: another process on another core then leaves the figure nearly unchanged, and every trial
  of a study is timed alike however the load changed (``nas.gate``).
* The FID reference (its classifier) is trained with :data:`REFERENCE_THREADS` (one) thread: the
  thread count changes the order of torch's reductions and so the trained weights, and the cached
  reference every FID proxy is read against must not depend on how busy the machine was when the
  first candidate built it.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

__all__ = ["REFERENCE_THREADS", "TIMING_THREADS", "CoreLoad", "available_cores", "choose_threads", "compute_clock",
           "core_share", "cpu_threads", "timing_threads"]

# CPU threads of a throughput measurement (see the module docstring).
TIMING_THREADS = 1
# CPU threads that train the FID reference's feature network (see the module docstring).
REFERENCE_THREADS = 1
# How long /proc/stat is sampled to see how busy the other cores are (10 clock ticks per core).
_SAMPLE_S = 0.1


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform has one), capped by
    ``OMP_NUM_THREADS`` when that is set to a positive integer: the usual way a cluster job or a
    user says how many threads a process may use, which torch itself starts from."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    limit = os.environ.get("OMP_NUM_THREADS", "").strip()
    if limit.isdigit() and int(limit) > 0:
        return min(cores, int(limit))
    return cores


def _cpu_jiffies() -> tuple[float, float] | None:
    try:
        with open("/proc/stat") as fh:
            fields = [float(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields), idle


class CoreLoad:
    """How many cores other processes keep busy, read from ``/proc/stat`` over the time since the
    previous reading.

    A search reads it before every trial, so the window is the trial that just ran: no waiting,
    and an average over the load the next trial most likely meets, where a fresh sample of
    ``sample_s`` would both wait and catch a passing burst.  The first reading, or one sooner than
    ``sample_s`` after the last, waits for the rest of ``sample_s``.
    """

    def __init__(self, sample_s: float = _SAMPLE_S) -> None:
        self.sample_s = sample_s
        self._mark: tuple[tuple[float, float], float, float] | None = None

    @staticmethod
    def _read() -> tuple[tuple[float, float], float, float] | None:
        jiffies = _cpu_jiffies()
        return None if jiffies is None else (jiffies, time.process_time(), time.perf_counter())

    def busy(self) -> float | None:
        """Cores busy with other work since the last reading (None where unknown): the machine's
        busy time minus this process's own CPU time over the same interval."""
        before = self._mark if self._mark is not None else self._read()
        if before is None:
            return None
        wait = self.sample_s - (time.perf_counter() - before[2])
        if wait > 0:
            time.sleep(wait)
        after = self._read()
        self._mark = after
        if after is None:
            return None
        (total0, idle0), own0, wall0 = before
        (total1, idle1), own1, wall1 = after
        total, idle = total1 - total0, idle1 - idle0
        if total <= 0:
            return 0.0
        machine_busy = (total - idle) / total * (os.cpu_count() or 1)
        own = (own1 - own0) / max(wall1 - wall0, 1e-6)
        return max(0.0, machine_busy - own)


def core_share(workers: int) -> int:
    """An equal share of this process's cores for each of ``workers`` processes (at least 1)."""
    return max(1, available_cores() // max(1, workers))


def choose_threads(*, requested: int | None = None, workers: int = 1, sample_s: float = _SAMPLE_S,
                   load: CoreLoad | None = None) -> int:
    """Torch CPU threads for the next candidate (see the module docstring); ``load`` (kept across a
    worker's trials) reads the other processes' load since its last reading instead of sampling."""
    if requested is not None:
        return max(1, int(requested))
    cores = available_cores()
    share = core_share(workers)
    busy = (load or CoreLoad(sample_s)).busy()
    if busy is None:
        return share
    # A core counts as free when less than half of it is busy with other work.
    free = max(1, math.floor(cores - busy + 0.5))
    return max(1, min(share, free))


@contextmanager
def cpu_threads(num_threads: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op CPU threads (None leaves them as they are)."""
    if num_threads is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def timing_threads(device: torch.device) -> int | None:
    """Threads of a throughput measurement on ``device``: :data:`TIMING_THREADS` on the CPU."""
    return TIMING_THREADS if device.type == "cpu" else None


def compute_clock(device: torch.device) -> Callable[[], float]:
    """Seconds of this evaluation's own compute, for its cap (see the module docstring)."""
    if device.type != "cpu":
        return time.perf_counter
    threads = max(1, torch.get_num_threads())
    return lambda: time.process_time() / threads
