"""One search trial: spec from the space, cheap gate, duplicate reuse, proxy evaluation, recording.

The flow of :meth:`CandidateRunner.run` (DESIGN.md, "The pipeline"):

1. ``space.suggest(trial)`` -> a `UNetSpec` (an unbuildable point is recorded FAIL ``invalid``);
2. cheap gate: parameters and MACs (meta device), then measured throughput and latency; a
   candidate breaking a constraint is recorded COMPLETE and infeasible with no training step;
3. a spec already evaluated in the study reuses that trial's values (no training);
4. the proxy evaluator, with the Pareto rung rule as its rung hook (stopped -> PRUNED);
5. every metric, the spec YAML and a sample grid go to the trial (user attributes, artifacts).

Constraint values are written both with ``trial.set_constraint`` (Optuna 5, read by the
samplers) and as the list system attribute ``constraints`` that optuna-dashboard 0.21 reads
(it ignores the new per-key form); ``user_attrs["feasible"]`` says it in plain words.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.trial import TrialState

from evaluators.budget import Budget
from evaluators.proxy import EvalContext, EvalResult, evaluate
from nas.errors import ConfigError
from nas.pruning import ParetoRungRule, rung_key
from nas.space import SearchSpace
from nas.spec import UNetSpec

__all__ = ["CandidateRunner", "TrialOutcome", "METRIC_ATTRS"]

# Metrics copied from an evaluation into the trial's user attributes.
METRIC_ATTRS = ("val_loss", "fid_proxy", "fid_floor", "kid_mean", "kid_std", "throughput", "latency_ms",
                "sample_seconds", "params", "macs", "peak_mem_mb", "steps", "batch_size", "train_seconds",
                "sampling_seconds", "timing_seconds", "eval_seconds", "overhead_fraction", "device", "dtype",
                "feature_kind")
FAILED_STATUSES = ("diverged", "oom", "timeout", "invalid", "error")


@dataclass
class TrialOutcome:
    """How a trial ended: its Optuna state, values (COMPLETE only) and our status."""

    state: TrialState
    values: list[float] | None
    status: str
    reason: str = ""


@dataclass
class CandidateRunner:
    """Everything a worker needs to run trials of one study (built once per process)."""

    space: SearchSpace
    budget: Budget
    context: EvalContext
    study: optuna.Study
    artifact_store: FileSystemArtifactStore | None = None
    rule: ParetoRungRule | None = ParetoRungRule()
    seed: int = 0
    budget_name: str = ""

    def run(self, trial: optuna.Trial) -> TrialOutcome:
        """Run one trial end to end and record it on ``trial`` (the caller tells the study)."""
        try:
            spec = self.space.suggest(trial)
        except ConfigError as err:
            return self._fail(trial, "invalid", str(err))
        trial.set_user_attr("spec", spec.to_dict())
        trial.set_user_attr("spec_digest", spec.digest())
        trial.set_user_attr("budget", self.budget_name)
        trial.set_user_attr("seed", self.seed)
        self._upload(trial, "spec.yaml", spec.to_yaml())

        earlier = self._find_duplicate(spec, trial.number)
        if earlier is not None:
            return self._reuse(trial, earlier)

        gate = self._gate(spec, trial)
        if gate is not None:
            return gate

        result = evaluate(spec, budget=self.budget, context=self.context, seed=self.seed,
                          rung_hook=self._rung_hook(trial), measure=False,
                          artifacts_dir=self._artifact_dir(trial))
        self._copy_result(trial, result)
        if result.status == "pruned":
            return TrialOutcome(TrialState.PRUNED, None, "pruned", result.reason)
        if result.status in FAILED_STATUSES:
            return self._fail(trial, result.status, result.reason)
        self._upload_file(trial, self._artifact_dir(trial) / "samples.png")
        return TrialOutcome(TrialState.COMPLETE, self._values(trial.user_attrs), "ok")

    # ----- steps -------------------------------------------------------------------------
    def _gate(self, spec: UNetSpec, trial: optuna.Trial) -> TrialOutcome | None:
        """Static costs, then measured throughput; infeasible -> recorded, no training."""
        from evaluators.throughput import measure_throughput, sampling_cost
        from nas.cost import static_costs
        from nas.unet import build_unet

        try:
            costs = static_costs(spec)
        except Exception as err:  # noqa: BLE001 - an unbuildable spec is a recorded candidate
            return self._fail(trial, "invalid", f"{type(err).__name__}: {err}")
        attrs: dict[str, Any] = {"params": int(costs["params"]), "macs": int(costs["macs"])}
        if not self._record_constraints(trial, attrs, final=False):
            model = build_unet(spec)
            dtype = "bfloat16" if self.context.device.type == "cuda" else "float32"
            started = time.perf_counter()
            report = measure_throughput(model, input_shape=(spec.in_channels, spec.image_size, spec.image_size),
                                        batch_size=self.budget.throughput_batch, device=self.context.device,
                                        dtype=dtype, repeats=5, warmup=1)
            attrs.update(throughput=report.images_per_s, latency_ms=report.latency_ms,
                         peak_mem_mb=report.peak_mem_mb,
                         throughput_spread=list(report.images_per_s_spread),
                         sample_seconds=sampling_cost(report, steps=self.budget.sample_steps)["seconds_per_image"],
                         # the throughput objective's measurement: candidate compute, not search overhead
                         gate_timing_seconds=time.perf_counter() - started)
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        if self._record_constraints(trial, attrs, final=True):
            trial.set_user_attr("status", "infeasible")
            values = [attrs.get(o.metric, math.inf if o.direction == "minimize" else -math.inf)
                      for o in self.space.objectives]
            values = [float(v) if v is not None else math.inf for v in values]
            return TrialOutcome(TrialState.COMPLETE, values, "infeasible")
        return None

    def _record_constraints(self, trial: optuna.Trial, attrs: dict[str, Any], *, final: bool) -> bool:
        """Whether a constraint is broken; on ``final``, write the values (<= 0 is feasible)."""
        values = self.space.constraint_values(attrs)
        broken = any(v > 0 for v in values.values())
        if final:
            for key, value in values.items():
                trial.set_constraint(key, value)
            # optuna-dashboard 0.21 reads only this list form (see the module docstring).
            trial.storage.set_trial_system_attr(trial._trial_id, "constraints", list(values.values()))
            trial.set_user_attr("feasible", not broken)
        return broken

    def _rung_hook(self, trial: optuna.Trial):  # noqa: ANN202 - see evaluators.training.RungHook
        def hook(rung: int, step: int, val_loss: float) -> bool:
            trial.set_user_attr(rung_key(rung), val_loss)
            if self.rule is None:
                return False
            attrs = trial.user_attrs
            return self.rule.check(self.study, trial.number, rung, val_loss, attrs.get("throughput", 0.0),
                                   attrs.get("params", 0.0))

        return hook

    def _copy_result(self, trial: optuna.Trial, result: EvalResult) -> None:
        data = result.to_dict()
        for key in METRIC_ATTRS:
            if key in ("throughput", "latency_ms", "sample_seconds", "peak_mem_mb", "params", "macs"):
                continue  # measured by the gate
            if data.get(key) is not None:
                trial.set_user_attr(key, data[key])
        trial.set_user_attr("status", result.status)
        if result.reason:
            trial.set_user_attr("reason", result.reason)
        # A thinned loss curve (the dashboard truncates long attributes anyway).
        curve = result.curve
        stride = max(1, len(curve) // 25)
        trial.set_user_attr("curve", [[int(s), round(v, 5)] for s, v in curve[::stride]])

    def _values(self, attrs: dict[str, Any]) -> list[float]:
        return [float(attrs[o.metric]) for o in self.space.objectives]

    def _find_duplicate(self, spec: UNetSpec, number: int) -> optuna.trial.FrozenTrial | None:
        digest = spec.digest()
        for other in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if other.number != number and other.user_attrs.get("spec_digest") == digest:
                return other
        return None

    def _reuse(self, trial: optuna.Trial, earlier: optuna.trial.FrozenTrial) -> TrialOutcome:
        for key, value in earlier.user_attrs.items():
            if key not in ("spec", "spec_digest"):
                trial.set_user_attr(key, value)
        trial.set_user_attr("duplicate_of", earlier.number)
        constraints = earlier.constraints
        for key, value in constraints.items():
            if not key.isdigit():
                trial.set_constraint(key, value)
        if "constraints" in earlier.system_attrs:
            trial.storage.set_trial_system_attr(trial._trial_id, "constraints", earlier.system_attrs["constraints"])
        return TrialOutcome(TrialState.COMPLETE, list(earlier.values), earlier.user_attrs.get("status", "ok"),
                            f"same architecture as trial {earlier.number}")

    def _fail(self, trial: optuna.Trial, status: str, reason: str) -> TrialOutcome:
        trial.set_user_attr("status", status)
        trial.set_user_attr("reason", reason[:1000])
        return TrialOutcome(TrialState.FAIL, None, status, reason)

    # ----- artifacts -----------------------------------------------------------------------
    def _artifact_dir(self, trial: optuna.Trial) -> Path:
        return Path(tempfile.gettempdir()) / "unet-nas" / f"{self.study.study_name}-{trial.number}-{trial._trial_id}"

    def _upload(self, trial: optuna.Trial, name: str, text: str) -> None:
        path = self._artifact_dir(trial) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self._upload_file(trial, path)

    def _upload_file(self, trial: optuna.Trial, path: Path) -> None:
        if self.artifact_store is not None and path.is_file():
            upload_artifact(artifact_store=self.artifact_store, file_path=str(path), study_or_trial=trial)
