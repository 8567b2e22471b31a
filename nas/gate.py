"""The cheap gate: a candidate's costs and constraint values, known before a single training step.

:func:`run_gate` is the one gate: static costs first (parameters and MACs, counted on PyTorch's
``meta`` device, so nothing is allocated); only when they meet the space's constraints is the
network built and timed (throughput at the budget's timing batch, latency at batch 1, peak
memory on CUDA, the cost of a full sample), and the constraints are checked again with the
measured figures.  A candidate that breaks a constraint is recorded infeasible and never trained.

A space whose objectives include a timing figure other than throughput (latency, sample cost,
peak memory) has every candidate timed, feasible or not: an infeasible trial then records a
measured value for it, since no stand-in is honest for those (an untimed candidate's throughput
is 0 images/s, and its quality is the no-skill point, :mod:`evaluators.no_skill`).

The two measuring steps are callables so that the same gate runs on live networks
(:func:`static_costs` and :class:`ThroughputTiming`) and on a benchmark's table of recorded
figures (``benchmarks/_tabular.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from evaluators.budget import Budget
from evaluators.candidate_timing import candidate_timing
from evaluators.device import Precision
from nas.front import constraints_met
from nas.spec import UNetSpec

if TYPE_CHECKING:
    from evaluators.latent import LatentConfig
    from nas.space import SearchSpace

__all__ = ["Gate", "GateResult", "LatentStaticCosts", "ThroughputTiming", "run_gate", "static_costs"]

# Both return figures by metric name (nas.metrics); the gate merges them.
CostFn = Callable[[UNetSpec], dict[str, Any]]
# Timed figures with no stand-in for an untimed candidate (see the module docstring).
TIMED_WITHOUT_STAND_IN = ("latency_ms", "sample_seconds", "peak_mem_mb")


@dataclass(frozen=True)
class GateResult:
    """What the gate found: figures by metric name and each constraint's value (``<= 0`` met)."""

    costs: dict[str, Any]
    constraints: dict[str, float]

    @property
    def feasible(self) -> bool:
        """Whether every constraint is met."""
        return constraints_met(self.constraints.values())


def static_costs(spec: UNetSpec) -> dict[str, Any]:
    """``params`` and ``macs`` (per image), counted without building real tensors."""
    from nas.cost import static_costs as count

    costs = count(spec)
    return {"params": int(costs["params"]), "macs": int(costs["macs"])}


@dataclass(frozen=True)
class LatentStaticCosts:
    """:func:`static_costs` of a latent space's U-Net, plus ``macs_with_decode`` (:mod:`evaluators.latent`)."""

    latent: LatentConfig

    def __call__(self, spec: UNetSpec) -> dict[str, Any]:
        from evaluators.latent import macs_with_decode

        costs = static_costs(spec)
        return {**costs, "macs_with_decode": macs_with_decode(costs["macs"], self.latent)}


@dataclass(frozen=True)
class ThroughputTiming:
    """Times a freshly built network as the ``throughput`` metric defines (after warm-up, the
    median of 3 to 15 synchronised repeats, more until they agree, at most about 3 s; contended
    repeats left out), in the run's precision, on the CPU with one thread
    (:mod:`evaluators.contention`).  This is the candidate's one timing: the evaluator reuses it."""

    budget: Budget
    device: torch.device
    precision: Precision
    latent: LatentConfig | None = None  # a latent space's: throughput_with_decode too

    def __call__(self, spec: UNetSpec) -> dict[str, Any]:
        """The measured figures of ``spec``, and the seconds the measurement took."""
        from nas.unet import build_unet

        model = build_unet(spec)
        started = time.perf_counter()
        figures = candidate_timing(model, input_shape=spec.sample_shape, budget=self.budget, device=self.device,
                                   dtype=self.precision.dtype_name, latent=self.latent)
        if spec.is_video:  # throughput counts clips; frames per second is the figure video work quotes
            figures["frames_per_second"] = figures["throughput"] * spec.frames
        # The throughput objective's measurement: candidate compute, not search overhead.
        return {**figures, "gate_timing_seconds": time.perf_counter() - started}


def run_gate(spec: UNetSpec, *, space: SearchSpace, static: CostFn = static_costs, timing: CostFn,
             time_always: bool = False) -> GateResult:
    """Static costs, then (when they meet the constraints, or ``time_always``) the timed ones."""
    costs = dict(static(spec))
    if time_always or constraints_met(space.constraint_values(costs).values()):
        costs.update(timing(spec))
    return GateResult(costs=costs, constraints=space.constraint_values(costs))


@dataclass(frozen=True)
class Gate:
    """:func:`run_gate` bound to a space and its two measuring steps: ``gate(spec) -> GateResult``."""

    space: SearchSpace
    timing: CostFn
    static: CostFn = static_costs

    @classmethod
    def timed(cls, space: SearchSpace, *, budget: Budget, device: torch.device, precision: Precision) -> Gate:
        """The search's gate: meta-device static costs and a live throughput measurement."""
        latent = space.data.latent
        timing = ThroughputTiming(budget=budget, device=device, precision=precision, latent=latent)
        return cls(space=space, timing=timing, static=LatentStaticCosts(latent) if latent is not None else static_costs)

    @property
    def time_always(self) -> bool:
        """Whether every candidate is timed (an objective has no stand-in; see the module docstring)."""
        return any(o.metric in TIMED_WITHOUT_STAND_IN for o in self.space.objectives)

    def __call__(self, spec: UNetSpec) -> GateResult:
        return run_gate(spec, space=self.space, static=self.static, timing=self.timing, time_always=self.time_always)
