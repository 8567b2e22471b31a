"""The interface every search backend implements, and what a backend is asked to do.

A backend runs the trials of one resolved search (:class:`nas.context.RunContext`) until the
study has ``job.trials`` finished trials: the local backend in worker processes on this
machine (:mod:`nas.backends.local`), the Ray backend as Ray Tune trials on a cluster
(:mod:`nas.backends.ray`).  Both ask for trials with :func:`nas.study.ask_if_room` and record
them with :class:`nas.trial_runner.TrialRunner`, so a study looks the same whichever filled it.

The search (:func:`nas.search.run_search`) drives a backend in three steps:

1. :meth:`Backend.check` validates the backend's own options before anything starts;
2. :meth:`Backend.session` starts what the backend needs (Ray) and says which device the trials
   train on, so that the budget's default can follow it;
3. :meth:`Backend.run` runs the trials inside that session and says how it ended.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nas.samplers import DEFAULT_SAMPLER

if TYPE_CHECKING:
    import torch

    from nas.context import RunContext
    from nas.study import StudyCounts

__all__ = ["Backend", "BackendRun", "Progress", "SearchJob"]

# Called with the study's counts after every finished trial (the progress bar).
Progress = Callable[["StudyCounts"], None]


@dataclass(frozen=True, kw_only=True)
class SearchJob:
    """What every backend is asked for: how many finished trials, proposed by which sampler,
    stopped early by which rule (:data:`nas.scheduling.RULES`), starting no trial after
    ``deadline`` (a ``time.time()`` value)."""

    trials: int
    sampler: str = DEFAULT_SAMPLER
    stopping: str = "halving"
    deadline: float | None = None


@dataclass
class BackendRun:
    """How a backend's run ended: ``interrupted`` (Ctrl-C, or trials cut short), ``failure`` (a
    one-line reason the backend stopped early; the search exits 1), and ``notes`` for the user."""

    interrupted: bool = False
    failure: str = ""
    notes: list[str] = field(default_factory=list)


class Backend(abc.ABC):
    """A way to run a search's trials (see the module docstring); subclasses hold their options."""

    name: str = ""

    def check(self) -> None:  # noqa: B027 - optional: a backend without options has nothing to check
        """Raise :class:`nas.errors.ConfigError` for an invalid option, before anything starts."""

    @contextlib.contextmanager
    def session(self, device: str) -> Iterator[torch.device]:
        """Start what the backend needs and yield the device type trials train on; ``device`` is
        the user's ``--device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``).  ``auto`` and ``cuda``
        give CUDA without an index: each worker then takes its GPU
        (:func:`evaluators.device.worker_device`)."""
        import torch

        from evaluators.device import pick_device

        chosen = pick_device(device, key="--device")
        yield torch.device("cuda") if chosen.type == "cuda" and device in ("auto", "cuda") else chosen

    @abc.abstractmethod
    def run(self, context: RunContext, job: SearchJob, *, progress: Progress | None = None) -> BackendRun:
        """Run trials until the study has ``job.trials`` finished ones (or the deadline passes)."""
