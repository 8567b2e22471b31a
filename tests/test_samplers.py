"""Tests for the sampler registry and our samplers (evolution, REINFORCE, local, surrogate; no torch).

The benchmark problem is additive: each decision adds a (cost, gain) pair from a fixed table, so
its exact Pareto front is the non-dominated Minkowski sum of the tables, computable without
enumerating the ~20 M architectures.  About half of each table's choices are dominated, which is
what a learning sampler should discover and random search cannot.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from nas.errors import ConfigError
from nas.front import crowding_distance, hypervolume, non_dominated_ranks, pareto_mask
from nas.samplers import SAMPLERS, EvolutionSampler, ReinforceSampler, SurrogateSampler, make_sampler, sampler_names
from nas.samplers._planned import SeenIndex
from nas.samplers._space import contains, network_params
from nas.samplers.encoding import DecisionEncoder
from nas.samplers.evolution import PARENTS_ATTR

optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed trials below log warnings

# -- the synthetic NAS-like problem ---------------------------------------------------------

N_CHOICES = [4, 5, 6, 4, 5, 6, 4, 5]  # per-level decisions, always suggested
CONV = ["standard", "depthwise", "inverted", "fused", "ghost", "shuffle"]  # string choices


def _tables() -> list[np.ndarray]:
    rng = np.random.default_rng(2024)
    tables = []
    for n in N_CHOICES:
        cost = rng.uniform(0.0, 1.0, n)
        loss = 1.0 - cost + rng.uniform(0.0, 0.1, n)  # trade-off: cheaper choices lose more
        dominated = rng.permutation(n)[: n // 2]
        cost[dominated] += rng.uniform(0.3, 0.8, len(dominated))
        loss[dominated] += rng.uniform(0.3, 0.8, len(dominated))
        tables.append(np.stack([cost, loss], axis=1))
    return tables


TABLES = _tables()
EXTRA = np.array([[0.2, 0.9], [0.9, 0.2], [0.8, 0.8], [1.0, 1.1]]) - 0.3  # conditional decision
NO_EXTRA = np.array([0.4, 0.4])
K_STEP = np.array([0.15, -0.15])  # suggest_int("k", 0, 6): cost up, loss down
QUALITY_OFFSET = 10.0  # objective 2 is maximised: quality = offset - loss


def _costs(params: dict[str, Any]) -> np.ndarray:
    total = np.zeros(2)
    for level, table in enumerate(TABLES):
        total += table[CONV.index(params[f"level{level}.conv"])]
    total += EXTRA[params["extra"]] if params["use_extra"] else NO_EXTRA
    return total + K_STEP * params["k"]


def _suggest(trial: optuna.Trial) -> dict[str, Any]:
    params: dict[str, Any] = {
        f"level{level}.conv": trial.suggest_categorical(f"level{level}.conv", CONV[:n])
        for level, n in enumerate(N_CHOICES)
    }
    params["use_extra"] = trial.suggest_categorical("use_extra", [False, True])
    if params["use_extra"]:  # conditional: only relevant when use_extra is on
        params["extra"] = trial.suggest_categorical("extra", [0, 1, 2, 3])
    params["k"] = trial.suggest_int("k", 0, 6)
    return params


def objective(trial: optuna.Trial) -> tuple[float, float]:
    cost, loss = _costs(_suggest(trial))
    return float(cost), float(QUALITY_OFFSET - loss)


def _minkowski_front(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sums = (a[:, None, :] + b[None, :, :]).reshape(-1, 2)
    return sums[pareto_mask(sums)]


def true_front() -> np.ndarray:
    """Exact front (minimised cost, loss): the front of a sum is the front of the fronts' sum."""
    front = np.zeros((1, 2))
    options = [*TABLES, np.vstack([EXTRA, NO_EXTRA]), np.array([K_STEP * k for k in range(7)])]
    for option in options:
        front = _minkowski_front(front, option)
    return front


FRONT = true_front()
# The usual reference point: the true front's nadir plus 10 % of its range.
REFERENCE = FRONT.max(axis=0) + 0.1 * (FRONT.max(axis=0) - FRONT.min(axis=0))
HV_TRUE = hypervolume(FRONT, REFERENCE)


def found_hv(study: optuna.Study) -> float:
    """Hypervolume of the study's feasible front, as a fraction of the true front's."""
    values = np.array([t.values for t in study.best_trials])
    values[:, 1] = QUALITY_OFFSET - values[:, 1]  # back to minimised loss
    return hypervolume(values, REFERENCE) / HV_TRUE


def _run(sampler: optuna.samplers.BaseSampler, n_trials: int, storage: Any = None) -> optuna.Study:
    study = optuna.create_study(
        directions=["minimize", "maximize"], sampler=sampler, storage=storage
    )
    study.optimize(objective, n_trials=n_trials)
    return study


def _small_objective(trial: optuna.Trial) -> tuple[float, float]:
    """27 architectures, two conflicting objectives."""
    x = [trial.suggest_categorical(f"x{i}", [0, 1, 2]) for i in range(3)]
    return float(x[0] + x[1] - x[2]), float(x[2] - x[0] * x[1])


def _params(study: optuna.Study) -> list[dict[str, Any]]:
    return [t.params for t in sorted(study.trials, key=lambda t: t.number)]


# -- registry -------------------------------------------------------------------------------


def test_registry_names() -> None:
    assert sampler_names() == ["nsga2", "nsga3", "tpe", "tpe-distinct", "random", "evolution", "rl", "local", "surrogate",
                              "gp"]


def test_unknown_sampler_lists_valid_names() -> None:
    with pytest.raises(ConfigError) as err:
        make_sampler("evolutoin", seed=0)
    message = str(err.value)
    assert "evolutoin" in message and "did you mean 'evolution'" in message
    for name in SAMPLERS:
        assert name in message


# Model-based samplers spend a fraction of a second per proposal: their cases run in the full suite.
MODEL_BASED = {"surrogate", "gp"}


def _cases(names: list[str]) -> list[Any]:
    return [pytest.param(n, marks=pytest.mark.slow) if n in MODEL_BASED else n for n in names]


@pytest.mark.parametrize("name", _cases(list(SAMPLERS)))
def test_same_seed_same_trials(name: str) -> None:
    """Every registered sampler is reproducible from its seed (and the seed matters)."""
    # Past NSGA's first generation (20) and the evolution/RL warm-ups; GP fits are slow, and 14
    # trials are 4 past its 10 random start-up trials.
    n_trials = 14 if name == "gp" else 30
    first = _params(_run(make_sampler(name, seed=7), n_trials))
    second = _params(_run(make_sampler(name, seed=7), n_trials))
    other = _params(_run(make_sampler(name, seed=8), n_trials))
    assert first == second
    assert first != other


def test_bad_knobs_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="chebyshev, hypervolume"):
        ReinforceSampler(reward="hv")
    with pytest.raises(ConfigError, match="sample_size"):
        EvolutionSampler(population_size=4, sample_size=8)


# -- search quality -------------------------------------------------------------------------


def test_true_front_is_exact_on_a_small_case() -> None:
    """The Minkowski construction equals brute-force enumeration on three tables."""
    grid = np.array([a + b + c for a in TABLES[0] for b in TABLES[1] for c in TABLES[2]])
    brute = np.unique(grid[pareto_mask(grid)], axis=0)
    front = np.zeros((1, 2))
    for table in TABLES[:3]:
        front = _minkowski_front(front, table)
    np.testing.assert_allclose(np.unique(front, axis=0), brute)


def test_evolution_and_rl_beat_random_hypervolume() -> None:
    seeds, n_trials = range(5), 150
    hv: dict[str, list[float]] = {}
    for name in ("random", "evolution", "rl"):
        hv[name] = [found_hv(_run(make_sampler(name, seed=s), n_trials)) for s in seeds]
    summary = ", ".join(f"{name} {np.mean(v):.3f}±{np.std(v):.3f}" for name, v in hv.items())
    print(f"\nHV / true-front HV over {len(seeds)} seeds x {n_trials} trials: {summary}")
    for values in hv.values():
        assert max(values) <= 1.0 + 1e-9  # nothing beats the exact front
    margin = float(np.std(hv["random"]))
    for name in ("evolution", "rl"):
        assert np.mean(hv[name]) > np.mean(hv["random"]) + margin, summary


# -- resuming and parallel workers ----------------------------------------------------------

OURS = ["random", "evolution", "rl", "local", "surrogate"]  # rebuilt from storage, so resumable exactly


def _fewer_if_model_based(name: str, n_trials: int) -> int:
    """Half the trials (at least 20: 10 past the surrogate's start-up) for a sampler that fits a
    model per proposal, whose cost these structural checks do not need more of."""
    return max(20, n_trials // 2) if name in MODEL_BASED else n_trials


@pytest.mark.parametrize("name", _cases(OURS))
def test_resume_from_storage_continues_the_same_search(name: str, tmp_path: Any) -> None:
    """40 trials, then a "new process" (new storage handle, new sampler instance) resumes to 80
    from a journal file: the result equals an uninterrupted run, because population / policy
    are rebuilt from storage.  (A journal file is the multi-process storage we recommend; it is
    also much faster than SQLite here.)"""
    path = str(tmp_path / "study.log")

    def storage() -> optuna.storages.JournalStorage:
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))

    study = optuna.create_study(
        directions=["minimize", "maximize"],
        sampler=make_sampler(name, seed=3),
        storage=storage(),
        study_name="resume",
    )
    half = _fewer_if_model_based(name, 40)
    study.optimize(objective, n_trials=half)
    hv_half = found_hv(study)
    resumed = optuna.load_study(
        study_name="resume", storage=storage(), sampler=make_sampler(name, seed=3)
    )
    resumed.optimize(objective, n_trials=half)
    assert len(resumed.trials) == 2 * half
    assert found_hv(resumed) > hv_half
    assert _params(resumed) == _params(_run(make_sampler(name, seed=3), 2 * half))


@pytest.mark.parametrize("name", _cases(OURS))
def test_one_instance_on_two_studies_keeps_them_apart(name: str) -> None:
    """Per-study caches: reusing an instance on a second (in-memory, also study id 0) study
    gives exactly what a fresh instance gives."""
    sampler = make_sampler(name, seed=2)
    first = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    n = _fewer_if_model_based(name, 60)
    first.optimize(_small_objective, n_trials=n + 10)  # another space, more trials
    assert _params(_run(sampler, n)) == _params(_run(make_sampler(name, seed=2), n))


@pytest.mark.parametrize("name", _cases(OURS))
def test_workers_sharing_a_storage(name: str) -> None:
    """Two workers with their own sampler instances, trials in flight concurrently."""

    def run_once() -> list[dict[str, Any]]:
        storage = optuna.storages.InMemoryStorage()
        study_id = f"workers-{name}"
        workers = [
            optuna.create_study(
                directions=["minimize", "maximize"],
                sampler=make_sampler(name, seed=5),
                storage=storage,
                study_name=study_id,
                load_if_exists=True,
            )
            for _ in range(2)
        ]
        for _ in range(30):
            # Both workers ask before either tells: each sees the other's trial RUNNING.
            trials = [worker.ask() for worker in workers]
            for worker, trial in zip(workers, trials, strict=True):
                worker.tell(trial, objective(trial))
        return _params(workers[0])

    first = run_once()
    assert len(first) == 60
    assert first == run_once()


# -- conditional params, infeasible / failed / pruned trials --------------------------------


def _messy_objective(trial: optuna.Trial) -> tuple[float, float]:
    params = _suggest(trial)
    if params["level1.conv"] == "standard":
        raise RuntimeError("out of memory")  # FAIL
    if params["level2.conv"] == "standard":
        raise optuna.TrialPruned()  # PRUNED
    cost, loss = _costs(params)
    # Infeasible two ways: an Optuna 5 constraint, or the user attribute.
    trial.set_constraint("params", 1.0 if params["level0.conv"] == "standard" else -1.0)
    if params.get("extra") == 3:
        trial.set_user_attr("feasible", False)
    return float(cost), float(QUALITY_OFFSET - loss)


def _run_messy(sampler: optuna.samplers.BaseSampler, n_trials: int) -> optuna.Study:
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=sampler)
    study.optimize(_messy_objective, n_trials=n_trials, catch=(RuntimeError,))
    return study


def _is_infeasible(trial: optuna.trial.FrozenTrial) -> bool:
    return trial.user_attrs.get("feasible") is False or any(
        v > 0 for v in trial.constraints.values()
    )


def test_evolution_parents_are_complete_and_feasible() -> None:
    study = _run_messy(EvolutionSampler(seed=0, population_size=10, min_completed=10), 120)
    states = {t.state for t in study.trials}
    assert {TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED} <= states
    children = [t for t in study.trials if PARENTS_ATTR in t.system_attrs]
    assert len(children) > 30
    by_number = {t.number: t for t in study.trials}
    for child in children:
        for number in child.system_attrs[PARENTS_ATTR]:
            parent = by_number[number]
            assert parent.state == TrialState.COMPLETE and not _is_infeasible(parent)
            assert number < child.number
    # The conditional decision is inherited / mutated when present, and otherwise absent.
    with_extra = [t for t in study.trials if "extra" in t.params]
    assert with_extra and all(t.params["use_extra"] for t in with_extra)
    assert len({t.params["extra"] for t in with_extra}) > 1
    # Learning from parents that are never infeasible: fewer infeasible proposals later on.
    early = [t for t in study.trials[:40] if t.state == TrialState.COMPLETE]
    late = [t for t in study.trials[-40:] if t.state == TrialState.COMPLETE]
    rate = lambda ts: sum(map(_is_infeasible, ts)) / max(1, len(ts))
    assert rate(late) < rate(early)


def test_rl_learns_to_avoid_infeasible_choices_including_conditional_ones() -> None:
    sampler = ReinforceSampler(seed=0)
    study = _run_messy(sampler, 120)
    policy = sampler.policy(study)
    distributions = study.trials[-1].distributions
    level0 = sampler.probabilities(policy, "level0.conv", distributions["level0.conv"])
    assert level0 is not None
    # "standard" at level 0 violates the constraint: the worst reward pushes it down.
    assert level0[CONV.index("standard")] < 1.0 / len(level0)
    # The conditional "extra" got gradients only from trials that had it; 3 is infeasible.
    extra_dist = next(t.distributions["extra"] for t in study.trials if "extra" in t.params)
    extra = sampler.probabilities(policy, "extra", extra_dist)
    assert extra is not None and extra[3] < 0.25
    # FAIL and PRUNED trials are skipped, not learnt from: the replay covers COMPLETE only.
    complete = [t.number for t in study.trials if t.state == TrialState.COMPLETE]
    assert policy.replayed == tuple(complete)


def test_rl_hypervolume_reward_runs_and_learns() -> None:
    study = _run(ReinforceSampler(seed=1, reward="hypervolume"), 100)
    assert 0.0 < found_hv(study) <= 1.0
    study = _run_messy(ReinforceSampler(seed=1, reward="hypervolume"), 60)
    assert any(t.state == TrialState.COMPLETE for t in study.trials)


def test_evolution_avoids_duplicate_children() -> None:
    study = optuna.create_study(
        directions=["minimize", "minimize"],
        sampler=EvolutionSampler(seed=0, population_size=5, sample_size=3, min_completed=5),
    )
    study.optimize(_small_objective, n_trials=15)
    children = [tuple(t.params.values()) for t in study.trials if PARENTS_ATTR in t.system_attrs]
    earlier = [tuple(t.params.values()) for t in study.trials[:5]]
    assert len(children) == 10
    assert len(set(children)) == len(children) and not set(children) & set(earlier)


@pytest.mark.parametrize("name", _cases(["local", "surrogate"]))
def test_new_samplers_propose_feasible_distinct_specs_from_a_resumed_study(name: str, tmp_path: Any) -> None:
    """40 trials with failures, stopped and infeasible ones, then a new process resumes for 30:
    every resumed proposal is a legal architecture none of the 70 repeats, and fewer of them
    fail or break a constraint than in the uniform start."""
    path = str(tmp_path / "study.log")

    def storage() -> optuna.storages.JournalStorage:
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))

    first = optuna.create_study(directions=["minimize", "maximize"], sampler=make_sampler(name, seed=0),
                                storage=storage(), study_name="messy")
    first.optimize(_messy_objective, n_trials=40, catch=(RuntimeError,))
    resumed = optuna.load_study(study_name="messy", storage=storage(), sampler=make_sampler(name, seed=0))
    resumed.optimize(_messy_objective, n_trials=30, catch=(RuntimeError,))
    trials = sorted(resumed.trials, key=lambda t: t.number)
    assert len(trials) == 70
    for i, trial in enumerate(trials[40:], start=40):
        assert trial.params not in SeenIndex(trials[:i]), f"trial {i} repeats an earlier architecture"
        assert all(contains(trial.distributions[n], v) for n, v in trial.params.items())
        assert ("extra" in trial.params) == trial.params["use_extra"]  # the conditional decision

    def bad(ts: list[optuna.trial.FrozenTrial]) -> float:
        return sum(t.state != TrialState.COMPLETE or _is_infeasible(t) for t in ts) / len(ts)

    assert bad(trials[40:]) < bad(trials[:10])


def test_seen_index_matches_on_the_decisions_a_trial_made() -> None:
    seen = SeenIndex([])
    seen.add({"use_extra": False, "k": 1})
    # Same made decisions: the same architecture, whatever an unasked conditional decision holds.
    assert {"use_extra": False, "k": 1} in seen
    assert {"use_extra": False, "k": 1, "extra": 2} in seen
    assert {"use_extra": True, "k": 1, "extra": 2} not in seen
    assert {"use_extra": False, "k": 2} not in seen
    assert {"use_extra": 0, "k": 1} not in seen  # False == 0, but not the same choice


def test_decision_encoder_columns_and_absent_decisions() -> None:
    encoder = DecisionEncoder({"mult": [1, 2, 4], "conv": ["standard", "ghost"], "attn": [True, False]})
    assert encoder.columns == ["attn=True", "attn=False", "attn:absent", "conv=standard", "conv=ghost",
                               "conv:absent", "mult", "mult:absent"]
    rows = encoder.encode([{"mult": 4, "conv": "ghost", "attn": False}, {"mult": 2}])
    np.testing.assert_array_equal(rows[0], [0, 1, 0, 0, 1, 0, 4, 0])
    # Absent decisions: no one-hot bit, the absent flag, and a numeric value below every choice.
    np.testing.assert_array_equal(rows[1], [0, 0, 1, 0, 0, 1, 2, 0])
    assert encoder.encode([{"conv": "depthwise"}])[0, 5] == 1.0  # outside the choices: absent


# -- Pareto helpers -------------------------------------------------------------------------


def test_pareto_helpers_on_a_hand_example() -> None:
    values = np.array([[1.0, 4.0], [2.0, 2.0], [4.0, 1.0], [3.0, 3.0], [4.0, 4.0]])
    assert non_dominated_ranks(values).tolist() == [0, 0, 0, 1, 2]
    front = values[:3]
    crowding = crowding_distance(front)
    assert math.isinf(crowding[0]) and math.isinf(crowding[2])
    assert crowding[1] == pytest.approx((4 - 1) / 3 + (4 - 1) / 3)
    # Exact 2-D staircase area under (5, 5), strip by strip along x: 1*1 + 2*3 + 1*4 = 11.
    assert hypervolume(front, np.array([5.0, 5.0])) == pytest.approx(11.0)
    assert hypervolume(values, np.array([0.5, 0.5])) == 0.0


def test_evolution_counts_stopped_trials_as_members_ranked_below_completed_ones() -> None:
    # One completed candidate and three the scheduler stopped: with them the population is full
    # and evolution starts; the completed one wins every tournament over the whole population.
    choice = CategoricalDistribution([0, 1, 2, 3])
    study = optuna.create_study(directions=["minimize", "minimize"],
                                sampler=EvolutionSampler(seed=0, population_size=4, sample_size=4, min_completed=4))
    study.add_trial(optuna.trial.create_trial(params={"x": 2}, distributions={"x": choice}, values=[1.0, 1.0]))
    for x in (0, 1, 3):
        study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED, params={"x": x},
                                                  distributions={"x": choice}))
    trial = study.ask()
    trial.suggest_categorical("x", [0, 1, 2, 3])
    assert set(study._storage.get_trial_system_attrs(trial._trial_id)[PARENTS_ATTR]) == {0}  # crossover: [0, 0]
    # Stopped trials alone do not start evolution: there is nothing completed to rank them below.
    lone = optuna.create_study(directions=["minimize", "minimize"],
                               sampler=EvolutionSampler(seed=0, population_size=2, sample_size=2, min_completed=2))
    for x in (0, 1):
        lone.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED, params={"x": x}, distributions={"x": choice}))
    trial = lone.ask()
    trial.suggest_categorical("x", [0, 1, 2, 3])
    assert PARENTS_ATTR not in lone._storage.get_trial_system_attrs(trial._trial_id)


def test_moves_of_a_level_the_network_lacks_are_the_same_architecture() -> None:
    """The fixed-length encoding asks level 2's decisions at depth 2 as well: moving one of them
    changes nothing, so the index (and every sampler that uses it) counts it as seen."""
    seen = SeenIndex([])
    seen.add({"levels": 2, "level0.conv": "standard", "level1.conv": "standard", "level2.conv": "standard"})
    assert {"levels": 2, "level0.conv": "standard", "level1.conv": "standard", "level2.conv": "depthwise"} in seen
    assert {"levels": 3, "level0.conv": "standard", "level1.conv": "standard", "level2.conv": "depthwise"} not in seen
    assert {"levels": 2, "level0.conv": "standard", "level1.conv": "depthwise", "level2.conv": "standard"} not in seen
    assert network_params({"levels": 1, "level0.se": True, "level1.se": False, "base": 8}) == {
        "levels": 1, "level0.se": True, "base": 8}
    assert network_params({"level3.se": True}) == {"level3.se": True}  # no depth decision: nothing to drop


def test_surrogate_learns_where_candidates_are_stopped() -> None:
    """Stopped trials have no objectives for the model to fit, but the surrogate sampler learns
    from them where not to look: on a grid where every x >= 4 is stopped (and a larger x looks
    better), it proposes few such candidates once the model is on (3 of 30 here; 18 of 30 when
    the stopped trials were ignored, as before)."""

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        x = trial.suggest_categorical("x", list(range(8)))
        y = trial.suggest_categorical("y", list(range(8)))
        if x >= 4:
            raise optuna.TrialPruned()
        return -x, y

    study = optuna.create_study(directions=["minimize", "minimize"], sampler=SurrogateSampler(seed=0, n_startup=10))
    study.optimize(objective, n_trials=40)
    late = [t for t in study.trials if t.number >= 10]
    assert sum(t.state == TrialState.PRUNED for t in late) <= 8
