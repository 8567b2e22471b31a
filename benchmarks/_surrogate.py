"""A surrogate of a benchmark table: predicted objectives for any point of the table's space.

The light benchmark's table (``benchmarks/light_benchmark.py``) evaluates 200 of the ~10^5
architectures of ``light.yaml``; a replayed search there proposes mostly points the table does
not hold.  This module fits one model per figure (held-out loss, FID proxy, and the logarithm
of throughput and of latency) on the table's trained rows and answers a replay from it
(NAS-Bench-301's approach, Zela et al., ICLR 2022), with the parameters and MACs counted
exactly (the gate's constraints are decided on real figures, as in a search).

The model is scikit-learn's gradient-boosted regression trees over the decision encoding the
surrogate sampler also uses (:class:`nas.samplers.encoding.DecisionEncoder`) plus the log of
parameters and MACs.  It was picked by 5-fold cross-validated Spearman on the table among a
random forest, extremely randomised trees, histogram gradient boosting and a GP with an ARD RBF
kernel; gradient boosting had the best FID proxy ranking, the figure the front is hardest on.
It is another family than the surrogate sampler's random forest, so the sampler does not simply
learn the benchmark's own model.  :func:`cross_validate` reports the held-out rank correlations
a result is judged by.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tabular import decision_values, stopped_at_rung

__all__ = ["FIGURES", "SurrogateLookup", "cross_validate", "figures", "fit_models", "trained_rows"]

# The figures the surrogate predicts, and whether it models their logarithm (speeds span 10x).
# It predicts the held-out loss at the table's rung probes too (``loss_at_step_N``, see
# :func:`figures`), so a replay can stop candidates early.
FIGURES = {"val_loss": False, "fid_proxy": False, "throughput": True, "latency_ms": True}
PROBE_PREFIX = "loss_at_step_"
FOLDS = 5


def _model() -> Any:
    from sklearn.ensemble import GradientBoostingRegressor

    return GradientBoostingRegressor(n_estimators=400, learning_rate=0.03, max_depth=3, subsample=0.8,
                                     random_state=0)


def figures(rows: list[dict[str, Any]]) -> dict[str, bool]:
    """:data:`FIGURES` plus the rung probes every trained row of ``rows`` holds, in step order."""
    trained = trained_rows(rows)
    probes = [key for key in (trained[0] if trained else {}) if key.startswith(PROBE_PREFIX)
              and all(r.get(key) is not None for r in trained)]
    return {**FIGURES, **{key: False for key in sorted(probes, key=lambda k: int(k[len(PROBE_PREFIX):]))}}


def trained_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with every figure measured (``ok``: trained, scored and timed)."""
    return [r for r in rows if r["status"] == "ok" and all(r.get(f) is not None for f in FIGURES)]


class Features:
    """Decision encoding plus log parameters and log MACs, for rows and for specs alike."""

    def __init__(self, space: Any) -> None:
        from nas.samplers.encoding import DecisionEncoder

        self.space = space
        # An inactive decision's placeholder (head width without attention) is outside the
        # choices, so it encodes as absent.
        self.encoder = DecisionEncoder({name: list(d.values()) for name, d in space.param_names()})

    def of(self, decisions: list[dict[str, Any]], costs: list[tuple[float, float]]) -> np.ndarray:
        """Feature rows of ``decisions`` with their ``(params, macs)``."""
        return np.hstack([self.encoder.encode(decisions), np.log(np.asarray(costs, dtype=float).reshape(-1, 2))])

    def of_rows(self, rows: list[dict[str, Any]]) -> np.ndarray:
        """Feature rows of table rows."""
        names = [name for name, _ in self.space.param_names()]
        return self.of([{n: r[n] for n in names} for r in rows], [(r["params"], r["macs"]) for r in rows])


def _target(rows: list[dict[str, Any]], figure: str) -> np.ndarray:
    values = np.array([float(r[figure]) for r in rows])
    return np.log(values) if FIGURES.get(figure, False) else values


def cross_validate(space: Any, rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Held-out Spearman and Kendall rank correlation per figure (:func:`figures`), 5-fold
    (shuffled, seed 0): every trained row predicted by a model that never saw it.  For each rung
    probe also the Spearman of its loss against the final held-out loss, measured and predicted
    (``rung_vs_final``): a surrogate whose rungs agree with its final loss more than the
    measurements do would flatter early stopping."""
    from scipy.stats import kendalltau, spearmanr
    from sklearn.model_selection import KFold

    rows = trained_rows(rows)
    x = Features(space).of_rows(rows)
    out: dict[str, dict[str, float]] = {}
    held_out: dict[str, np.ndarray] = {}
    for figure in figures(rows):
        y = _target(rows, figure)
        predicted = np.zeros(len(y))
        for train, test in KFold(FOLDS, shuffle=True, random_state=0).split(x):
            predicted[test] = _model().fit(x[train], y[train]).predict(x[test])
        held_out[figure] = predicted
        out[figure] = {"spearman": float(spearmanr(predicted, y)[0]), "kendall": float(kendalltau(predicted, y)[0]),
                       "rows": len(y)}
        if figure.startswith(PROBE_PREFIX):
            out[figure]["rung_vs_final"] = {
                "measured": float(spearmanr(y, _target(rows, "val_loss"))[0]),
                "predicted": float(spearmanr(predicted, held_out["val_loss"])[0])}
    return out


def fit_models(space: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One fitted model per figure (:func:`figures`), on every trained row."""
    wanted = figures(rows)
    rows = trained_rows(rows)
    x = Features(space).of_rows(rows)
    return {figure: _model().fit(x, _target(rows, figure)) for figure in wanted}


@dataclass
class SurrogateLookup:
    """Predicted figures in place of live measurement and training, for the search's trial runner
    (the same interface as ``_tabular.TableLookup``).

    ``static`` counts parameters and MACs exactly (``nas.gate.static_costs``, cached by digest);
    ``timing`` and ``evaluate`` return the models' predictions.  Every evaluated point costs the
    table's median steps and seconds (the replay reports trials, not seconds); with a rung layout
    ``budget`` a point stopped at a rung costs the steps up to it (``_tabular.stopped_at_rung``,
    over the predicted rung-probe losses).
    """

    space: Any
    models: dict[str, Any]
    no_skill: Any  # spec -> the no-skill scores (_tabular.no_skill_scores)
    typical: dict[str, Any]  # steps, train_seconds, eval_seconds of a typical trained point
    budget: Any = None  # the replayed rung layout (its rungs among the probes the models predict)
    _features: Features | None = None
    _static: dict[str, dict[str, Any]] = field(default_factory=dict)
    _predicted: dict[str, dict[str, float]] = field(default_factory=dict)

    @classmethod
    def fit(cls, space: Any, rows: list[dict[str, Any]], *, no_skill: Any) -> SurrogateLookup:
        """Fit the models on ``rows``' trained points."""
        trained = trained_rows(rows)
        typical = {key: float(np.median([float(r[key] or 0.0) for r in trained]))
                   for key in ("steps", "train_seconds", "eval_seconds")}
        return cls(space=space, models=fit_models(space, rows), no_skill=no_skill, typical=typical)

    def static(self, spec: Any) -> dict[str, Any]:
        """Exact parameters and MACs."""
        from nas.gate import static_costs

        digest = spec.digest()
        if digest not in self._static:
            self._static[digest] = static_costs(spec)
        return self._static[digest]

    def predict(self, spec: Any) -> dict[str, float]:
        """Every figure of :data:`FIGURES` for ``spec`` (cached by digest)."""
        digest = spec.digest()
        if digest not in self._predicted:
            if self._features is None:
                self._features = Features(self.space)
            costs = self.static(spec)
            x = self._features.of([decision_values(self.space, spec)], [(costs["params"], costs["macs"])])
            self._predicted[digest] = {
                figure: float(np.exp(value) if FIGURES.get(figure, False) else value)
                for figure, model in self.models.items() for value in model.predict(x)
            }
        return self._predicted[digest]

    def timing(self, spec: Any) -> dict[str, Any]:
        """Predicted throughput and latency."""
        figures = self.predict(spec)
        return {"throughput": figures["throughput"], "latency_ms": figures["latency_ms"]}

    def row(self, digest: str) -> dict[str, Any] | None:
        """A typical trained point's steps and seconds, for points the replay evaluated."""
        if digest not in self._predicted:
            return None
        return {"digest": digest, **self.typical}

    def gate(self, space: Any) -> Any:
        """The search's gate over exact static costs and predicted timing."""
        from nas.gate import Gate

        return Gate(space=space, static=self.static, timing=self.timing)

    def runner(self, space: Any, study: Any, *, rule: Any = None, budget_name: str = "") -> Any:
        """The search's trial runner, answered from the surrogate."""
        from nas.trial_runner import TrialRunner

        return TrialRunner(space=space, study=study, gate=self.gate(space), evaluate=self.evaluate,
                           no_skill=self.no_skill, rule=rule, seed=0, budget_name=budget_name)

    def evaluate(self, spec: Any, *, rung_hook: Any = None, artifacts_dir: Any = None) -> Any:
        """The predicted held-out loss and FID proxy as an evaluation result, or the PRUNED result
        of the first rung of ``budget`` where ``rung_hook`` stops the predicted rung losses."""
        from evaluators.proxy import EvalResult

        figures = self.predict(spec)
        stopped = stopped_at_rung(self.budget, figures, rung_hook)
        if stopped is not None:
            return stopped
        result = EvalResult(status="ok", val_loss=figures["val_loss"], fid_proxy=figures["fid_proxy"],
                            steps=int(self.typical["steps"]))
        result.train_seconds = self.typical["train_seconds"]
        result.eval_seconds = self.typical["eval_seconds"]
        return result
