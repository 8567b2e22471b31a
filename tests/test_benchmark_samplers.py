"""benchmarks/sampler_efficiency.py --size quick: the table is built and replayed, and the output
has the documented structure (never the numbers).

``build`` evaluates 4 points at the smoke budget; ``replay`` replays every sampler x 2 seeds x 8
trials on the committed table when the repository has it, else on that 4-point table.  The
light benchmark's surrogate replay (benchmarks/light_benchmark.py replay --size quick) replays
every sampler for one seed of 12 trials on the committed light table.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = "benchmarks/sampler_efficiency.py"
SAMPLERS = ["random", "nsga2", "tpe", "evolution", "rl", "local", "surrogate", "gp"]
LIGHT_SAMPLERS = ["random", "nsga2", "tpe", "tpe-distinct", "evolution", "rl", "local", "surrogate", "gp"]
STATS = {"mean", "std", "min", "max"}
EARLY_KEYS = {"steps_without", "steps_with", "steps_with_share", "steps_saved_share", "train_seconds_without",
              "train_seconds_with", "eval_seconds_without", "eval_seconds_with", "hv_without", "hv_with", "hv_kept",
              "hv_cost", "pruned_trials", "curve_with", "cum_steps_without", "cum_steps_with",
              "hv_without_at_equal_steps", "per_seed", "rung_decisions"}


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, SCRIPT, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_quick_build_and_replay(tmp_path: Path) -> None:
    _run("build", "--size", "quick", "--out", str(tmp_path))
    with (tmp_path / "table.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4
    for key in ("digest", "budget", "base_channels", "level1.conv", "status", "feasible", "val_loss", "fid_proxy",
                "throughput", "params", "macs", "loss_at_step_1", "loss_at_step_2", "steps",
                "train_seconds", "eval_seconds"):
        assert key in rows[0], key
    assert {r["budget"] for r in rows} == {"smoke"}
    assert len({r["digest"] for r in rows}) == 4

    # A second build finds every point done and evaluates nothing (resume).
    again = _run("build", "--size", "quick", "--out", str(tmp_path))
    assert "0 to evaluate" in again.stdout

    # Rows scored against another FID reference (another floor) are not appended to: refused
    # before anything trains, and the table is left as it was.
    other = tmp_path / "other"
    other.mkdir()
    with (other / "table.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**r, "fid_floor": "1.5" if r["fid_floor"] else ""} for r in rows[:-1])
    before = (other / "table.csv").read_text()
    refused = subprocess.run([sys.executable, SCRIPT, "build", "--size", "quick", "--out", str(other)], cwd=REPO,
                             capture_output=True, text=True, timeout=300, check=False)
    assert refused.returncode == 1 and "was scored against another FID reference" in refused.stderr
    assert (other / "table.csv").read_text() == before

    proc = _run("replay", "--size", "quick", "--out", str(tmp_path))
    assert (tmp_path / "sampler_efficiency.png").stat().st_size > 0
    data = json.loads((tmp_path / "sampler_efficiency.json").read_text())
    for key in ("command", "machine", "date", "size", "table", "normalisation", "trials", "seeds",
                "random_final_mean", "samplers", "early_stopping"):
        assert key in data, key
    trials, seeds = data["trials"], data["seeds"]
    assert data["size"] == "quick" and trials == 8 and seeds == [0, 1]
    assert isinstance(data["table"]["budget"], dict) and data["table"]["rows"] >= 4
    assert list(data["samplers"]) == SAMPLERS
    for summary in data["samplers"].values():
        assert set(summary["curve"]) == STATS
        assert all(len(curve) == trials for curve in summary["curve"].values())
        assert set(summary["final"]) == STATS and len(summary["final_per_seed"]) == len(seeds)
        reach = summary["trials_to_reach_random_final"]
        assert reach is None or 1 <= reach <= trials
        assert sum(summary["states"].values()) == trials * len(seeds)
    early = data["early_stopping"]["replays"]
    assert list(early) == ["pareto", "halving"] == list(data["early_stopping"]["layouts"])
    for by_sampler in early.values():
        assert list(by_sampler) == ["random", "evolution", "tpe"]
        for summary in by_sampler.values():
            assert set(summary) == EARLY_KEYS
            assert len(summary["curve_with"]) == trials
    # The README rows: two markdown tables (header, rule, one row per sampler / per layout and sampler).
    table = [line for line in proc.stdout.splitlines() if line.startswith("|")]
    assert len(table) == (2 + len(SAMPLERS)) + (2 + 2 * 3)


def test_bad_input_is_an_argparse_error() -> None:
    proc = subprocess.run([sys.executable, SCRIPT, "replay", "--trials", "0"], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "--trials" in proc.stderr


def test_light_benchmark_draw_is_a_prefix_property() -> None:
    """benchmarks/light_benchmark.py draws a fixed sample of light.yaml: a larger draw keeps the
    smaller one's points first (the table grows without changing its rows), and each row names
    every decision, the level count as a number.  (The build itself is build_table, run above.)"""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from _tabular import decision_values, drawn_points

    from nas.space import load_space

    space = load_space(REPO / "search_spaces" / "light.yaml")
    small, large = drawn_points(space, 2), drawn_points(space, 4)
    assert [s.digest() for s in large[:len(small)]] == [s.digest() for s in small]
    assert len({s.digest() for s in large}) == len(large)
    row = decision_values(space, large[0])
    assert set(row) == {name for name, _ in space.param_names()}
    assert row["levels"] == len(large[0].levels)


@pytest.mark.slow
def test_light_benchmark_surrogate_replay_quick(tmp_path: Path) -> None:
    """The surrogate is cross-validated per figure and every sampler replays on it through the
    search's trial runner; the JSON and the README rows have the documented structure."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "benchmarks/light_benchmark.py", "replay", "--size", "quick",
                           "--out", str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "surrogate_replay.png").stat().st_size > 0
    data = json.loads((tmp_path / "surrogate_replay.json").read_text())
    held_out = data["surrogate"]["held_out"]
    # The objectives and latency, then the held-out loss at each of the table's rung probes.
    probes = ["loss_at_step_6", "loss_at_step_11", "loss_at_step_25", "loss_at_step_33", "loss_at_step_50"]
    assert list(held_out) == ["val_loss", "fid_proxy", "throughput", "latency_ms", *probes]
    for probe in probes:
        assert set(held_out[probe]["rung_vs_final"]) == {"measured", "predicted"}
    for figure in held_out.values():
        assert -1.0 <= figure["spearman"] <= 1.0 and -1.0 <= figure["kendall"] <= 1.0
        assert figure["rows"] == data["trained_rows"] > 100  # the committed table's trained points
    assert set(data["surrogate"]["objectives_counted"]) <= {"val_loss", "fid_proxy", "throughput"}
    assert data["trials"] == 12 and list(data["samplers"]) == LIGHT_SAMPLERS
    assert data["exact_static_costs_counted"] > 0
    for summary in data["samplers"].values():
        assert summary["seeds"] == 1 and len(summary["curve"]["mean"]) == 12
        assert sum(summary["states"].values()) == 12
        assert summary["final"]["mean"] > 0  # predicted points are on the table's scale
        assert isinstance(summary["above_random_by_more_than_its_spread"], bool)
    rows = [line for line in proc.stdout.splitlines() if line.startswith("|")]
    assert len(rows) == 2 + len(LIGHT_SAMPLERS)


@pytest.mark.slow
def test_light_benchmark_replay_on_other_seeds_replays_random_search_there(tmp_path: Path) -> None:
    """``replay --first-seed`` replays the named samplers and random search on seeds FIRST.. into
    its own file, random search's final mean there the target."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "benchmarks/light_benchmark.py", "replay", "--size", "quick",
                           "--first-seed", "5", "--samplers", "tpe-distinct", "--out", str(tmp_path)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (tmp_path / "surrogate_replay.json").exists()
    data = json.loads((tmp_path / "surrogate_replay_seeds5-5.json").read_text())
    assert data["first_seed"] == 5 and list(data["samplers"]) == ["random", "tpe-distinct"]
    assert data["random_final_mean"] == data["samplers"]["random"]["final"]["mean"]
    assert (tmp_path / "surrogate_replay_seeds5-5.png").stat().st_size > 0


@pytest.mark.slow
def test_light_benchmark_stopping_quick(tmp_path: Path) -> None:
    """The early-stopping replay on the light surrogate: random search and the default sampler,
    without stopping and with each rung layout.  Random search proposes the same candidates
    whatever happened to earlier ones, so with it no layout spends more steps than no stopping (a
    model-based sampler's proposals change with the stops, and can cost more); stopped trials
    are counted."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "benchmarks/light_benchmark.py", "stopping", "--size", "quick",
                           "--out", str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "early_stopping.png").stat().st_size > 0
    data = json.loads((tmp_path / "early_stopping.json").read_text())
    assert data["samplers"] == ["random", "tpe"] and data["trials"] == 12
    replays = data["early_stopping"]["replays"]
    assert list(replays) == ["pareto", "halving"]
    for by_sampler in replays.values():
        for e in by_sampler.values():
            assert set(e) == EARLY_KEYS
            assert len(e["curve_with"]) == 12
            # Every stopped trial is one "stopped" rung decision (one seed here).
            assert e["rung_decisions"]["stopped"] == round(e["pruned_trials"]["mean"])
            assert e["rung_decisions"]["first"] <= 2  # at most one first candidate per rung and seed
        assert by_sampler["random"]["steps_with"]["mean"] <= by_sampler["random"]["steps_without"]["mean"]
    # At 12 trials halving stops something for at least one of the two samplers (the first
    # candidate at a rung is never stopped, the second on is judged).
    assert any(e["pruned_trials"]["mean"] > 0 for e in replays["halving"].values())
    rows = [line for line in proc.stdout.splitlines() if line.startswith("|")]
    assert len(rows) == 2 + 2 * 2


@pytest.mark.slow
def test_tpe_startup_sweep_quick(tmp_path: Path) -> None:
    """benchmarks/tpe_startup.py replays the registry's TPE with other start-up counts on the light
    surrogate; the count changes the proposals (a start-up of 2 leaves uniform draws after 2 trials)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "benchmarks/tpe_startup.py", "--startups", "2", "10", "--seeds", "1",
                           "--trials", "12", "--out", str(tmp_path)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "tpe_startup.json").read_text())
    assert list(data["startups"]) == ["2", "10"] and data["trials"] == 12
    assert data["random_final_mean"] is None  # the committed replay is of 100 trials, not 12
    curves = [data["startups"][n]["curve_mean"] for n in ("2", "10")]
    assert all(len(c) == 12 for c in curves) and curves[0] != curves[1]


@pytest.mark.slow
def test_tpe_startup_on_held_out_seeds_replays_random_search_there(tmp_path: Path) -> None:
    """``--first-seed`` checks a start-up count on other seeds: random search is replayed on the same
    seeds and its final mean is the target."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "benchmarks/tpe_startup.py", "--startups", "5", "--seeds", "2",
                           "--first-seed", "7", "--trials", "8", "--out", str(tmp_path)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "tpe_startup_seeds7-8.json").read_text())
    assert data["seeds"] == [7, 8] and data["random_from"] == "replayed on the same seeds"
    assert data["random_final_mean"] == data["random"]["final"]["mean"] and len(data["random"]["curve_mean"]) == 8
    reach = data["startups"]["5"]["trials_to_reach_random_final"]
    assert reach is None or 1 <= reach <= 8
    refused = subprocess.run([sys.executable, "benchmarks/tpe_startup.py", "--first-seed", "-1"], cwd=REPO,
                             env=env, capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 2 and "--first-seed: expected at least 0, got -1" in refused.stderr


def test_tpe_startup_pools_held_out_seeds_with_the_first_ones(tmp_path: Path) -> None:
    """A held-out run's figures pooled with the seeds-from-0 run: the mean of the two mean curves
    (equal seed counts) against random search's pooled final mean; unequal counts are not pooled."""
    first = {"trials": 3, "seeds": [0, 1], "startups": {"5": {"curve_mean": [0.1, 0.5, 0.9]}}}
    committed = {"trials": 3, "samplers": {"random": {"seeds": 2, "curve": {"mean": [0.1, 0.3, 0.6]}}}}
    held_out = {"trials": 3, "seeds": [20, 21], "random": {"curve_mean": [0.2, 0.4, 0.8]},
                "startups": {"5": {"curve_mean": [0.3, 0.9, 0.9]}, "7": {"curve_mean": [0.0, 0.0, 0.0]}}}
    (tmp_path / "first.json").write_text(json.dumps(first))
    (tmp_path / "random.json").write_text(json.dumps(committed))
    (tmp_path / "held.json").write_text(json.dumps(held_out))
    code = ("import json, sys; sys.path.insert(0, 'benchmarks'); from pathlib import Path; import tpe_startup as t; "
            f"d = Path({str(tmp_path)!r}); "
            "print(json.dumps(t._pooled(json.loads((d / 'held.json').read_text()), d / 'first.json', d / 'random.json')))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pooled = json.loads(proc.stdout.strip().splitlines()[-1])
    assert pooled["seeds"] == [0, 1, 20, 21] and pooled["random_final_mean"] == pytest.approx(0.7)
    # (0.1+0.3)/2, (0.5+0.9)/2 = 0.7 reaches 0.7 at trial 2; "7" has no seeds-from-0 run.
    assert pooled["startups"] == {"5": {"final_mean": pytest.approx(0.9), "trials_to_reach_random_final": 2}}
    first["seeds"] = [0]  # unequal seed counts: not pooled
    (tmp_path / "first.json").write_text(json.dumps(first))
    again = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                           check=False)
    assert again.returncode == 0 and again.stdout.strip().splitlines()[-1] == "null"
