"""The architecture search as a library call: :func:`run_search` with :class:`SearchSettings`.

Proposes candidates with a sampler from :mod:`nas.samplers`, gates, trains and scores each with
the proxy evaluator, stops dominated candidates early at the evaluator's rungs, and keeps the
Pareto front in an Optuna study (``results/<space>.db`` by default).  Running the same search
again continues the study: trials already finished count toward ``trials``.  Where the trials
run is the backend's business (:mod:`nas.backends`); this module resolves the run once
(:class:`nas.context.RunContext`), hands it to the backend, and writes the reports.
``python -m nas.search`` is the command line over it (:mod:`nas.search.__main__`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from nas.backends import Backend, SearchJob, make_backend
from nas.context import RunContext, check_budget_name
from nas.errors import ConfigError
from nas.samplers import DEFAULT_SAMPLER
from nas.search.progress import SearchProgress
from nas.study import StudyCounts, count, quiet_optuna

__all__ = ["SearchOutcome", "SearchSettings", "run_search"]

@dataclass(frozen=True, kw_only=True)
class SearchSettings:
    """What a search is asked for, as the command line names it (defaults as in ``--help``)."""

    space: str = "light.yaml"
    trials: int = 8
    sampler: str = DEFAULT_SAMPLER
    budget: str | None = None  # None: gpu on CUDA, else cpu
    storage: str | None = None  # None: sqlite:///OUT/<space>.db
    study_name: str | None = None  # None: the space's name
    seed: int = 0
    workers: int = 1
    threads: int | None = None  # torch CPU threads per worker; None: chosen per trial from the free cores
    device: str = "auto"
    out: str = "results"
    stopping: str = "halving"  # nas.scheduling.RULES: halving, pareto or none
    timeout: float | None = None  # seconds after which no trial starts
    backend: str = "optuna"
    # --backend ray
    address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None
    max_concurrent: int | None = None


@dataclass
class SearchOutcome:
    """How a search ended and what it left: the exit code (0 done, 1 a backend failure, 130
    interrupted), the study's counts, the report files, and lines for the user."""

    exit_code: int
    context: RunContext
    counts: StudyCounts
    summary: str
    reports: dict[str, Path]
    interrupted: bool = False
    failure: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def dashboard_command(self) -> str:
        """The command that opens the study in optuna-dashboard."""
        return self.context.dashboard_command()


def run_search(settings: SearchSettings, *, backend: Backend | None = None, progress: bool = True) -> SearchOutcome:
    """Run the search, then write the reports and the dashboard note; returns how it ended.

    ``backend`` replaces the one ``settings.backend`` names (tests pass a configured one).
    Every input error is a :class:`ConfigError` raised before any trial starts (and, for Ray,
    before Ray starts).  ``progress`` shows the progress on stderr (:mod:`nas.search.progress`).
    """
    from nas.notes import write_notes
    from nas.reports import write_reports
    from nas.space import load_space

    if settings.trials < 1:
        raise ConfigError(f"expected at least 1, got {settings.trials}", key="--trials")
    quiet_optuna()
    if backend is None:
        backend = make_backend(settings.backend, workers=settings.workers, threads=settings.threads,
                               address=settings.address,
                               cpus_per_trial=settings.cpus_per_trial, gpus_per_trial=settings.gpus_per_trial,
                               max_concurrent=settings.max_concurrent)
    space = load_space(settings.space)  # parsed once for the whole run
    if settings.budget is not None:
        check_budget_name(space, settings.budget)  # before a backend starts anything
    from nas.scheduling import make_rule

    make_rule(settings.stopping)  # an unknown name fails before anything starts
    job = SearchJob(trials=settings.trials, sampler=settings.sampler, stopping=settings.stopping,
                    deadline=time.time() + settings.timeout if settings.timeout else None)
    with backend.session(settings.device) as device:
        context = RunContext.resolve(space=space, budget=settings.budget, device=device, storage=settings.storage,
                                     study_name=settings.study_name, out=settings.out, seed=settings.seed)
        study = context.open_study(settings.sampler)
        shown = SearchProgress(settings.trials, count(study)) if progress else None
        try:
            run = backend.run(context, job, progress=shown.update if shown else None)
        finally:
            if shown is not None:
                shown.close()
    reports = write_reports(study, context.results_dir)
    summary = write_notes(study)  # the study's and every trial's dashboard note
    exit_code = 1 if run.failure else 130 if run.interrupted else 0
    return SearchOutcome(exit_code=exit_code, context=context, counts=count(study), summary=summary,
                         reports=reports, interrupted=run.interrupted, failure=run.failure, notes=run.notes)
