"""Multi-objective successive halving at the rungs: who is stopped, and who is never stopped."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from nas.errors import ConfigError
from nas.scheduling import ParetoRungRule, SuccessiveHalvingRule, make_rule, rung_key, rung_point, rung_values

OBJECTIVES = ["val_loss", "fid_proxy", "throughput"]


def study_with(points: list[tuple[float, float, float]], rung: int = 0) -> optuna.Study:
    """A study whose trials reported ``rung`` with (loss, throughput, params) each."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["minimize", "minimize", "maximize"])
    study.set_metric_names(OBJECTIVES)
    for loss, throughput, params in points:
        study.add_trial(optuna.trial.create_trial(
            state=TrialState.PRUNED, user_attrs={rung_key(rung): loss, "throughput": throughput, "params": params}))
    return study


def stops(study: optuna.Study, loss: float, throughput: float, params: float, *, eta: float = 3.0) -> bool:
    reason = SuccessiveHalvingRule(eta=eta).check(study, len(study.trials), 0, loss,
                                                  {"throughput": throughput, "params": params})
    return reason is not None


def test_the_first_candidate_at_a_rung_is_never_stopped_without_a_comparison() -> None:
    assert not stops(study_with([]), 9.0, 1.0, 1e9)  # however bad: nothing to compare with


def test_a_clearly_dominated_candidate_is_stopped_even_among_the_first_trials() -> None:
    study = study_with([(0.10, 500.0, 1e4)])  # one earlier candidate: better loss, faster, smaller
    assert stops(study, 0.30, 100.0, 1e5)
    reason = SuccessiveHalvingRule().check(study, 1, 0, 0.30, {"throughput": 100.0, "params": 1e5})
    assert reason == ("successive halving: non-dominated rank 2 among the 2 candidates at the rung "
                      "(dominated by 1); eta 3 keeps the top 1")
    assert not stops(study, 0.05, 100.0, 1e5)  # better loss: not dominated, it is the front's other end


def test_ties_with_the_last_survivor_continue() -> None:
    # Two mutually non-dominated candidates: both boundary points of the front, a tie: both continue.
    assert not stops(study_with([(0.10, 100.0, 1e4)]), 0.20, 900.0, 1e4)


def test_only_the_top_third_of_a_chain_continues() -> None:
    # Nine candidates, each dominated by the one before: ranks 0..8; eta 3 keeps the top 3.
    chain = [(0.1 * (i + 1), 1000.0 - 100 * i, 1e4 * (i + 1)) for i in range(9)]
    for i, point in enumerate(chain):
        study = study_with(chain[:i] + chain[i + 1:])
        assert stops(study, *point) == (i >= 3), i
    # eta 2 keeps the top 5 of 9 (ceil).
    assert not stops(study_with(chain[:4] + chain[5:]), *chain[4], eta=2)
    assert stops(study_with(chain[:5] + chain[6:]), *chain[5], eta=2)


def test_the_rung_point_uses_the_objectives_the_gate_knows() -> None:
    assert rung_point(OBJECTIVES, 0.2, {"throughput": 300.0, "params": 5.0}) == (0.2, -300.0)
    assert rung_point(["val_loss", "params", "macs"], 0.2, {"params": 5.0}) == (0.2, 5.0, float("inf"))


def test_rules_by_name() -> None:
    assert isinstance(make_rule("halving", eta=2), SuccessiveHalvingRule)
    assert isinstance(make_rule("pareto"), ParetoRungRule)
    assert make_rule("none") is None
    with pytest.raises(ConfigError, match="--stopping: unknown stopping rule 'halvin' .did you mean 'halving'"):
        make_rule("halvin")
    with pytest.raises(ValueError, match="eta must be above 1"):
        SuccessiveHalvingRule(eta=1)


def test_rung_values_read_back_what_rung_key_wrote() -> None:
    attrs = {rung_key(1): 0.2, rung_key(0): 0.3, "rung_x_val_loss": 1.0, "val_loss": 0.1}
    assert rung_values(attrs) == {0: 0.3, 1: 0.2}
