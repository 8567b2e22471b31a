"""Replays on the light benchmark's surrogate in worker processes (``light_benchmark.py``).

Each worker fits the surrogate once (:class:`_surrogate.SurrogateLookup`) and keeps its caches
(exact static costs, predictions) across the replays it is handed; a job is one search: a
sampler, a seed, a trial count and a rung layout of ``_replay.STOPPING`` (None: no stopping).
The result does not depend on how many workers there are.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _replay import Run, layout_rule, quiet, replay_one
from _surrogate import SurrogateLookup
from _tabular import Table, no_skill_scores, read_table, table_budgets

__all__ = ["SPACE", "Job", "run_jobs"]

SPACE = Path(__file__).resolve().parents[1] / "search_spaces" / "light.yaml"


# One lookup per worker process: fitted once, its caches (exact static costs, predictions) shared
# by the worker's replays.
_WORKER: dict[str, Any] = {}


def _start_worker(table_path: str) -> None:
    import torch

    from nas.space import load_space

    quiet()
    torch.set_num_threads(1)  # the workers share the cores; static costs run one small forward each
    space = load_space(SPACE)
    rows = read_table(Path(table_path))
    table = Table.load(rows, space)
    _WORKER.update(space=space, table=table,
                   lookup=SurrogateLookup.fit(space, rows, no_skill=no_skill_scores(space, table.budget_name)))


Job = tuple[str, int, int, str | None]  # sampler, seed, trials, rung layout of STOPPING (None: no stopping)


def _replay_job(job: Job) -> tuple[Job, Run, float, int]:
    import time

    name, seed, trials, layout = job
    table = _WORKER["table"]
    budget, rule = layout_rule(layout, table_budgets()[table.budget_name])
    # The same caches (exact static costs, predictions) under another rung layout.
    lookup = dataclasses.replace(_WORKER["lookup"], budget=budget)
    before, begun = len(lookup._static), time.perf_counter()
    run = replay_one(_WORKER["space"], table, lookup, name, seed, trials, rule=rule)
    return job, run, time.perf_counter() - begun, len(lookup._static) - before


def run_jobs(jobs: list[Job], table_path: Path, processes: int) -> dict[Any, Any]:
    """Every (sampler, seed, trials, layout) replay, in ``processes`` worker processes (1: this
    one); the result does not depend on how many."""
    if processes == 1:
        _start_worker(str(table_path))
        done = [_replay_job(job) for job in jobs]
    else:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(processes, _start_worker, (str(table_path),)) as pool:
            # The model-based samplers' replays take longest: handed out first, they do not finish last.
            slow_first = sorted(jobs, key=lambda job: job[0] not in ("gp", "surrogate"))
            done = pool.map(_replay_job, slow_first, chunksize=1)
    return {job: (run, seconds, counted) for job, run, seconds, counted in done}
