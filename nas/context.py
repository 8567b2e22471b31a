"""`RunContext`: everything about one search that is resolved once per process and passed down.

A search command names a space, a budget (or none), a device, a storage, a study and a results
directory.  :meth:`RunContext.resolve` turns those names into the parsed space, the budget and
its name, the device with its precision policy, the storage URL and the results directory, once;
backends hand the same object (it pickles small: the space is already parsed) to their worker
processes and Ray trials, which only adapt it to their own device with :meth:`RunContext.on_device`.
Nothing below this layer re-reads the space file, re-derives the default budget or tests the
device type for the precision rule.
"""

from __future__ import annotations

import dataclasses
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from evaluators.budget import Budget, default_budget_name
from evaluators.device import Precision, pick_device
from nas.errors import ConfigError, close_match_hint
from nas.study import default_storage_url

if TYPE_CHECKING:
    import optuna

    from nas.space import SearchSpace

__all__ = ["RunContext", "check_budget_name", "dashboard_executable"]


def _check_dataset(space: SearchSpace) -> None:
    """An unknown dataset fails here, naming the space file and ``data.dataset``, not in a worker."""
    from evaluators.video_data import check_source

    try:
        check_source(space.data.dataset, frames=space.data.frames)
    except ConfigError as err:
        raise ConfigError(err.message, key="data.dataset", source=space.source) from None


def dashboard_executable() -> str:
    """The ``optuna-dashboard`` script installed beside this Python, else the one on ``PATH``."""
    beside = Path(sys.executable).with_name("optuna-dashboard")
    if beside.is_file():
        return str(beside)
    return shutil.which("optuna-dashboard") or "optuna-dashboard"


def check_budget_name(space: SearchSpace, name: str) -> None:
    """Raise the ``--budget`` error when ``space`` defines no budget ``name``."""
    if name not in space.budgets:
        hint = close_match_hint(name, space.budgets)
        raise ConfigError(f"unknown budget {name!r}{hint}; the space defines {list(space.budgets)}", key="--budget")


@dataclass(frozen=True, kw_only=True)
class RunContext:
    """The resolved pieces of one search (see the module docstring)."""

    space: SearchSpace
    budget_name: str
    budget: Budget
    device: torch.device
    precision: Precision
    study_name: str
    storage_url: str
    out_dir: Path
    seed: int = 0

    @classmethod
    def resolve(cls, *, space: SearchSpace | str | Path, budget: str | None = None,
                device: torch.device | str = "auto", storage: str | None = None, study_name: str | None = None,
                out: str | Path = "results", seed: int = 0) -> RunContext:
        """Resolve a search's names once.

        ``space`` is a parsed space or a path / bundled name.  ``device`` given as text
        (``auto``, ``cpu``, ``cuda:1``) is checked on this machine; a ``torch.device`` is taken as
        the caller decided it (a Ray driver names the device type its trials get, which it may not
        have itself).  Without ``budget`` the device's default (``gpu`` on CUDA, else ``cpu``) is
        used.  Without ``storage`` the study lives in ``sqlite:///OUT/<space>.db``.
        """
        if isinstance(space, (str, Path)):
            from nas.space import load_space

            space = load_space(space)
        _check_dataset(space)
        dev = device if isinstance(device, torch.device) else pick_device(device)
        budget_name = budget or default_budget_name(dev.type)
        check_budget_name(space, budget_name)
        return cls(space=space, budget_name=budget_name, budget=space.budgets[budget_name], device=dev,
                   precision=Precision.for_device(dev), study_name=study_name or space.name,
                   storage_url=storage or default_storage_url(space.name, out), out_dir=Path(out), seed=seed)

    @property
    def results_dir(self) -> Path:
        """``OUT/<study>``: reports, artifacts, Ray's results and the ask lock."""
        return self.out_dir / self.study_name

    @property
    def artifacts_dir(self) -> Path:
        """Where trials' ``spec.yaml`` and ``samples.png`` are stored for optuna-dashboard."""
        return self.results_dir / "artifacts"

    @property
    def ask_lock(self) -> Path:
        """The lock file that makes "is there room for a trial?" and "ask for it" one step."""
        return self.results_dir / ".ask.lock"

    def dashboard_command(self) -> str:
        """The command that opens this study in optuna-dashboard with its artifacts, runnable from
        any shell: the dashboard's own script by absolute path (a virtual environment's ``bin`` need
        not be on ``PATH``), arguments quoted; a password in the storage URL is shown as ``***``."""
        from nas.study import redact_url

        storage = redact_url(self.storage_url) if "@" in self.storage_url else self.storage_url
        return shlex.join([dashboard_executable(), storage, "--artifact-dir", str(self.artifacts_dir)])

    def open_study(self, sampler: str, *, worker: int = 0) -> optuna.Study:
        """Create or load this run's study with the registry sampler ``sampler``.

        Seeded per worker so that parallel workers of Optuna's samplers do not propose the same
        points; ours derive each trial's randomness from (seed, trial number) anyway.
        """
        from nas.samplers import make_sampler
        from nas.study import make_storage, open_search_study

        return open_search_study(self.space, storage=make_storage(self.storage_url), study_name=self.study_name,
                                 sampler=make_sampler(sampler, seed=self.seed + worker))

    def on_device(self, device: torch.device) -> RunContext:
        """The same context on ``device`` (a worker's own GPU), with that device's precision."""
        return dataclasses.replace(self, device=device, precision=Precision.for_device(device))

    def absolute(self) -> RunContext:
        """The same context with absolute paths: Ray trials run in their own directories,
        possibly on other nodes."""
        return dataclasses.replace(self, out_dir=self.out_dir.resolve(),
                                   storage_url=_absolute_storage(self.storage_url))


def _absolute_storage(url: str) -> str:
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        return url if path.is_absolute() else "sqlite:///" + str(path.resolve())
    if "://" not in url:  # a journal file
        prefix = "journal:" if url.startswith("journal:") else ""
        return prefix + str(Path(url.removeprefix("journal:")).resolve())
    return url
