"""tpe-distinct: Optuna's TPE drawing its proposal again while it repeats an evaluated architecture."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from optuna.samplers import TPESampler

from nas.samplers import DistinctTPESampler, make_sampler
from nas.samplers._planned import SeenIndex

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _objective(trial: optuna.Trial) -> tuple[float, float]:
    # 18 architectures, every decision asked every time (as the bundled spaces do).
    width = trial.suggest_categorical("width", [8, 16, 32])
    depth = trial.suggest_int("depth", 1, 3)
    conv = trial.suggest_categorical("conv", ["standard", "separable"])
    quality = 1.0 / width + 0.1 * (3 - depth) + (0.05 if conv == "separable" else 0.0)
    return quality, width * depth * (0.5 if conv == "separable" else 1.0)


def _repeats(sampler: optuna.samplers.BaseSampler, n_trials: int) -> int:
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    study.optimize(_objective, n_trials=n_trials)
    trials = sorted(study.trials, key=lambda t: t.number)
    return sum(t.params in SeenIndex(trials[:i]) for i, t in enumerate(trials))


def test_distinct_tpe_repeats_fewer_architectures_than_tpe() -> None:
    plain = _repeats(TPESampler(multivariate=True, constant_liar=True, n_startup_trials=5, seed=1), 14)
    distinct = _repeats(make_sampler("tpe-distinct", seed=1), 14)
    assert plain > 0 and distinct < plain


def test_a_repeat_is_drawn_again_and_redraws_zero_keeps_it(monkeypatch: pytest.MonkeyPatch) -> None:
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial({"width": 8, "depth": 1, "conv": "standard"})
    study.optimize(_objective, n_trials=1)
    proposals = iter([{"width": 8, "depth": 1, "conv": "standard"}, {"width": 16, "depth": 1, "conv": "standard"}])
    monkeypatch.setattr(TPESampler, "sample_relative", lambda self, *args: dict(next(proposals)))
    trial = study.ask()
    space: dict[str, Any] = {}
    assert DistinctTPESampler(seed=0).sample_relative(study, trial._cached_frozen_trial, space) == {
        "width": 16, "depth": 1, "conv": "standard"}
    proposals = iter([{"width": 8, "depth": 1, "conv": "standard"}])
    assert DistinctTPESampler(seed=0, redraws=0).sample_relative(study, trial._cached_frozen_trial, space) == {
        "width": 8, "depth": 1, "conv": "standard"}
    with pytest.raises(ValueError, match="redraws must be at least 0"):
        DistinctTPESampler(redraws=-1)


def test_when_every_redraw_repeats_an_unseen_neighbour_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    for width in (8, 16):  # the repeat itself and one of its neighbours
        study.enqueue_trial({"width": width, "depth": 1, "conv": "standard"})
    study.optimize(_objective, n_trials=2)
    space = {name: dist for name, dist in study.trials[0].distributions.items()}
    repeat = {"width": 8, "depth": 1, "conv": "standard"}
    monkeypatch.setattr(TPESampler, "sample_relative", lambda self, *args: dict(repeat))  # always the repeat
    trial = study.ask()._cached_frozen_trial

    def proposal(seed: int) -> dict[str, Any]:
        return DistinctTPESampler(seed=seed, redraws=3).sample_relative(study, trial, space)

    chosen = proposal(0)
    seen = SeenIndex(study.trials)
    assert chosen not in seen and sum(chosen[k] != repeat[k] for k in repeat) == 1
    assert proposal(0) == chosen  # a function of the seed and the trial number
    # Without an unseen neighbour the repeat is returned (every neighbour taken).
    for neighbour in ({"width": 32, "depth": 1, "conv": "standard"}, {"width": 8, "depth": 2, "conv": "standard"},
                      {"width": 8, "depth": 3, "conv": "standard"}, {"width": 8, "depth": 1, "conv": "separable"}):
        study.enqueue_trial(neighbour)
    study.optimize(_objective, n_trials=4)
    trial = study.ask()._cached_frozen_trial
    assert proposal(0) == repeat
