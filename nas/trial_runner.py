"""`TrialRunner`: one search trial from proposal to record, whatever evaluates it.

The flow of :meth:`TrialRunner.run` (DESIGN.md, "The pipeline"):

1. ``space.suggest(trial)`` -> a `UNetSpec` (an unbuildable point is recorded FAIL ``invalid``);
2. a spec already evaluated in the study reuses that trial's values (no training);
3. the cheap gate (:mod:`nas.gate`); a candidate breaking a constraint is recorded COMPLETE and
   infeasible with no training step, at the no-skill point (below);
4. the evaluation, with the early-stopping rule as its rung hook (stopped -> PRUNED);
5. every metric goes to the trial's user attributes; the sample grid and then the spec YAML go
   to its artifacts (in that order, so that views picking the first artifact show samples).

The gate, the evaluation and the no-skill scores are callables given to the runner: the search
passes the live ones (:meth:`TrialRunner.for_search`), the tabular benchmark passes lookups in
its table, and both record trials through this one code path.  The runner never tells the study;
its caller does, with the returned :class:`TrialOutcome`.

An infeasible trial never stores an infinite objective value (optuna-dashboard sends those as
the strings "inf"/"-inf", and its plots then lose their numeric axes): each objective is the
gate's measured figure where it has one (params, MACs, throughput when timed), else the no-skill
score (:mod:`evaluators.no_skill`: the evaluation pipeline run with a network that predicts
zero), else, for an untimed throughput, 0 images/s.  The trial stays COMPLETE with its
constraint values, so samplers that read constraints learn from it, and it never enters a front.

The spec is kept as a trial system attribute (:data:`nas.study.SPEC_ATTR`, read back with
:func:`nas.study.trial_spec`) and as the ``spec.yaml`` artifact, not as a user attribute, which
the dashboard would show as one unwrapped line of JSON.

Constraint values are written both with ``trial.set_constraint`` (Optuna 5, read by the
samplers) and as the list system attribute ``constraints`` that optuna-dashboard 0.21 reads
(it ignores the new per-key form); ``user_attrs["feasible"]`` says it in plain words.
"""

from __future__ import annotations

import functools
import math
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import TrialState

from evaluators.proxy import EvalResult
from evaluators.training import RungHook
from nas.errors import ConfigError
from nas.gate import Gate, GateResult
from nas.metrics import TRIAL_METRICS
from nas.scheduling import StoppingRule, rung_key
from nas.space import SearchSpace
from nas.spec import UNetSpec
from nas.study import FAILED_STATUSES, SPEC_ATTR

if TYPE_CHECKING:
    from evaluators.proxy import EvalContext
    from nas.context import RunContext

__all__ = ["Evaluate", "RungListener", "TrialOutcome", "TrialRunner"]

# evaluate(spec, rung_hook=..., artifacts_dir=...) -> EvalResult; never raises for a bad candidate.
Evaluate = Callable[..., EvalResult]
# Called with (rung, step, val_loss) after the runner records a rung (Ray reports it to its scheduler).
RungListener = Callable[[int, int, float], None]
# no_skill(spec) -> the no-skill scores by metric name (evaluators.no_skill).
NoSkill = Callable[[UNetSpec], dict[str, float]]
# A throughput objective of a candidate that was never timed: it processes no images.
UNTIMED_THROUGHPUT = 0.0
# Training-loss points kept in a trial's "curve" attribute.
_CURVE_POINTS = 10
# The artifacts' media types (optuna-dashboard serves them with these).
_MIME = {"samples.png": "image/png", "spec.yaml": "text/plain"}  # YAML shown as text, not downloaded


@dataclass
class TrialOutcome:
    """How a trial ended: its Optuna state, values (COMPLETE only) and our status."""

    state: TrialState
    values: list[float] | None
    status: str
    reason: str = ""


@dataclass
class TrialRunner:
    """Runs and records the trials of one study (built once per worker process)."""

    space: SearchSpace
    study: optuna.Study
    gate: Callable[[UNetSpec], GateResult]
    evaluate: Evaluate
    no_skill: NoSkill
    rule: StoppingRule | None = None
    seed: int = 0
    budget_name: str = ""
    artifact_store: FileSystemArtifactStore | None = None
    on_rung: RungListener | None = None

    @classmethod
    def for_search(cls, context: RunContext, study: optuna.Study, *, eval_context: EvalContext,
                   rule: StoppingRule | None = None, on_rung: RungListener | None = None) -> TrialRunner:
        """The search's runner: the timed gate and the proxy evaluator on ``eval_context``'s data,
        artifacts under ``context.artifacts_dir``."""
        from evaluators.no_skill import no_skill_scores
        from evaluators.proxy import evaluate

        context.artifacts_dir.mkdir(parents=True, exist_ok=True)
        return cls(
            space=context.space, study=study,
            gate=Gate.timed(context.space, budget=context.budget, device=eval_context.device,
                            precision=eval_context.precision),
            # The gate measured throughput already: the evaluator does not time it again.
            evaluate=functools.partial(evaluate, budget=context.budget, context=eval_context, seed=context.seed,
                                       measure=False),
            no_skill=functools.partial(no_skill_scores, budget=context.budget, context=eval_context),
            rule=rule, seed=context.seed, budget_name=context.budget_name,
            artifact_store=FileSystemArtifactStore(str(context.artifacts_dir)), on_rung=on_rung)

    def run(self, trial: optuna.Trial) -> TrialOutcome:
        """Run one trial end to end and record it on ``trial`` (the caller tells the study)."""
        try:
            spec = self.space.suggest(trial)
        except ConfigError as err:
            return self._fail(trial, "invalid", str(err))
        except Exception as err:  # noqa: BLE001 - a point the space cannot resolve is a recorded candidate
            return self._fail(trial, "invalid", _describe(err))
        trial.storage.set_trial_system_attr(trial._trial_id, SPEC_ATTR, spec.to_dict())
        trial.set_user_attr("spec_digest", spec.digest())
        trial.set_user_attr("budget", self.budget_name)
        trial.set_user_attr("seed", self.seed)
        # A fresh folder per trial: the evaluation writes samples.png there, then both files go
        # to the artifact store and the folder is removed.
        folder = Path(tempfile.mkdtemp(prefix=f"unet-nas-{trial.number}-")) if self.artifact_store is not None else None
        try:
            return self._run(trial, spec, folder)
        finally:
            if folder is not None:
                self._upload_artifacts(trial, spec, folder)
                shutil.rmtree(folder, ignore_errors=True)

    def _run(self, trial: optuna.Trial, spec: UNetSpec, folder: Path | None) -> TrialOutcome:
        earlier = self._find_duplicate(spec, trial.number)
        if earlier is not None:
            return self._reuse(trial, earlier)

        try:
            gate = self.gate(spec)
        except Exception as err:  # noqa: BLE001 - an unbuildable spec is a recorded candidate
            return self._fail(trial, "invalid", _describe(err))
        self._record_gate(trial, gate)
        if not gate.feasible:
            trial.set_user_attr("status", "infeasible")
            return TrialOutcome(TrialState.COMPLETE, self._infeasible_values(spec, gate), "infeasible")

        try:
            result = self.evaluate(spec, rung_hook=self._rung_hook(trial), artifacts_dir=folder)
        except Exception as err:  # noqa: BLE001 - evaluate() records its own failures; this is the last net
            return self._fail(trial, "error", _describe(err))
        self._copy_result(trial, result)
        if result.status == "pruned":
            return TrialOutcome(TrialState.PRUNED, None, "pruned", result.reason)
        if result.status in FAILED_STATUSES:
            return self._fail(trial, result.status, result.reason)
        return TrialOutcome(TrialState.COMPLETE, [float(trial.user_attrs[o.metric]) for o in self.space.objectives],
                            "ok")

    def _infeasible_values(self, spec: UNetSpec, gate: GateResult) -> list[float]:
        """The finite point an infeasible trial is recorded at (see the module docstring)."""
        no_skill: dict[str, float] | None = None
        values = []
        for objective in self.space.objectives:
            value = gate.costs.get(objective.metric)
            if value is None or not math.isfinite(value):
                if objective.metric == "throughput":
                    value = UNTIMED_THROUGHPUT
                else:
                    no_skill = no_skill if no_skill is not None else self.no_skill(spec)
                    value = no_skill[objective.metric]
            values.append(float(value))
        return values

    # ----- recording ---------------------------------------------------------------------------
    def _record_gate(self, trial: optuna.Trial, gate: GateResult) -> None:
        for key, value in gate.costs.items():
            trial.set_user_attr(key, value)
        for key, value in gate.constraints.items():
            trial.set_constraint(key, value)
        # optuna-dashboard 0.21 reads only this list form (see the module docstring).
        trial.storage.set_trial_system_attr(trial._trial_id, "constraints", list(gate.constraints.values()))
        trial.set_user_attr("feasible", gate.feasible)

    def _rung_hook(self, trial: optuna.Trial) -> RungHook:
        def hook(rung: int, step: int, val_loss: float) -> str | None:
            trial.set_user_attr(rung_key(rung), val_loss)
            if self.on_rung is not None:
                self.on_rung(rung, step, val_loss)
            if self.rule is None:
                return None
            return self.rule.check(self.study, trial.number, rung, val_loss, trial.user_attrs)

        return hook

    def _copy_result(self, trial: optuna.Trial, result: EvalResult) -> None:
        data = result.to_dict()
        for key in TRIAL_METRICS:  # the gate's figures (GATE_METRICS) were recorded by the gate
            if data.get(key) is not None:
                trial.set_user_attr(key, data[key])
        trial.set_user_attr("status", result.status)
        if result.reason:
            trial.set_user_attr("reason", result.reason)
        # The training loss at about ten steps: one attribute line the trial page can show without
        # widening (the dashboard does not wrap attributes; 25 points made pages 3,000 px wide).
        curve = result.curve
        stride = max(1, math.ceil(len(curve) / _CURVE_POINTS))
        points = curve[::stride] + ([curve[-1]] if curve and (len(curve) - 1) % stride else [])
        trial.set_user_attr("curve", [[int(s), round(v, 4)] for s, v in points])

    def _find_duplicate(self, spec: UNetSpec, number: int) -> optuna.trial.FrozenTrial | None:
        digest = spec.digest()
        for other in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if other.number != number and other.user_attrs.get("spec_digest") == digest:
                return other
        return None

    def _reuse(self, trial: optuna.Trial, earlier: optuna.trial.FrozenTrial) -> TrialOutcome:
        for key, value in earlier.user_attrs.items():
            if key not in ("spec", "spec_digest"):  # "spec": a user attribute in studies before 2026-12
                trial.set_user_attr(key, value)
        trial.set_user_attr("duplicate_of", earlier.number)
        for key, value in earlier.constraints.items():
            if not key.isdigit():  # the list form's positions; written again just below
                trial.set_constraint(key, value)
        if "constraints" in earlier.system_attrs:
            trial.storage.set_trial_system_attr(trial._trial_id, "constraints", earlier.system_attrs["constraints"])
        return TrialOutcome(TrialState.COMPLETE, list(earlier.values), earlier.user_attrs.get("status", "ok"),
                            f"same architecture as trial {earlier.number}")

    def _fail(self, trial: optuna.Trial, status: str, reason: str) -> TrialOutcome:
        trial.set_user_attr("status", status)
        trial.set_user_attr("reason", reason[:1000])
        return TrialOutcome(TrialState.FAIL, None, status, reason)

    # ----- artifacts -----------------------------------------------------------------------------
    def _upload_artifacts(self, trial: optuna.Trial, spec: UNetSpec, folder: Path) -> None:
        """``samples.png`` (when the evaluation made one), then ``spec.yaml``: a fixed order."""
        from nas.artifacts import attach_files

        (folder / "spec.yaml").write_text(spec.to_yaml())
        attach_files(trial, [(folder / name, _MIME[name]) for name in ("samples.png", "spec.yaml")],
                     artifact_store=self.artifact_store)



def _describe(err: BaseException) -> str:
    """``Type: first line of the message`` (torch errors carry C++ stacks after it)."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:1000]
