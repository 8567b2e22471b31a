"""The CPU load reading that picks a search's torch threads (evaluators.contention.CoreLoad)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from evaluators import contention
from evaluators.contention import CoreLoad, choose_threads

pytestmark = pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="reads /proc/stat")


_REAL_SLEEP = time.sleep


def _sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits of CoreLoad from now on (``contention.time`` is the ``time`` module itself)."""
    waited: list[float] = []

    def sleep(seconds: float) -> None:
        waited.append(seconds)
        _REAL_SLEEP(seconds)

    monkeypatch.setattr(contention.time, "sleep", sleep)
    return waited


def test_first_reading_samples_then_later_ones_read_the_window_since(monkeypatch: pytest.MonkeyPatch) -> None:
    waited = _sleeps(monkeypatch)
    load = CoreLoad(sample_s=0.05)
    assert load.busy() is not None and len(waited) == 1 and 0 < waited[0] <= 0.05
    _REAL_SLEEP(0.08)  # a trial longer than the sample: the next reading needs no wait
    assert load.busy() is not None and len(waited) == 1
    # Read again at once: the window is shorter than the sample, so it waits for the rest.
    load.busy()
    assert len(waited) == 2 and 0 < waited[1] <= 0.05


def test_another_process_busy_during_the_window_is_seen_and_own_work_is_not_counted() -> None:
    load = CoreLoad(sample_s=0.05)
    load.busy()
    # One other process spins for the whole window; this one spins too, which is subtracted.
    spinner = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 1.5\nwhile time.time() < end: pass"])
    try:
        end = time.perf_counter() + 1.0
        while time.perf_counter() < end:
            pass
        busy = load.busy()
    finally:
        spinner.wait()
    # The spinner's core (less its start-up), plus whatever else the machine ran meanwhile.
    assert busy is not None and busy >= 0.6


def test_choose_threads_with_a_load_reading_keeps_within_the_share(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contention, "available_cores", lambda: 4)
    load = CoreLoad(sample_s=0.01)
    monkeypatch.setattr(load, "busy", lambda: 0.2)
    assert choose_threads(workers=2, load=load) == 2  # 4 cores, two workers: two each
    monkeypatch.setattr(load, "busy", lambda: 2.7)
    assert choose_threads(workers=1, load=load) == 1  # 4 - 2.7 rounds to 1 free core
    assert choose_threads(requested=3, load=load) == 3
