"""benchmarks/overhead.py --size quick: a real run has the documented structure; the Ray run's command.

The end-to-end run is the Optuna backend's (smoke budget, 2 trials).  The Ray half of the quick
size is left out here: its private Ray start-up took 150-250 s (over 400 s once) beside the
suite's other workers, the longest single test of the suite, and the Ray backend's searches are
tested end to end in tests/test_tune.py; what overhead.py adds for Ray, its command line, is
checked below, and the decomposition is the same code for both backends.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The tests' tiny space: the structure is what is checked, and its candidates train in about a second.
TINY = REPO / "tests" / "data" / "tiny.yaml"
RUN_KEYS = {"backend": str, "budget": str, "workers": int, "trials": int, "wall_s": float, "compute_s": float,
            "evaluator_overhead_s": float, "other_s": float, "compute_share": float,
            "evaluator_overhead_share": float, "other_share": float, "overhead_share": float,
            "trial_span_s": float, "fixed_startup_s": float, "other_in_span_s": float,
            "overhead_per_trial_s": float, "scoring_s": float, "tool_overhead_share": float,
            "tool_overhead_per_trial_s": float, "statuses": dict, "per_trial": list}
TRIAL_KEYS = {"number", "state", "status", "duplicate_of", "compute_s", "scoring_s", "eval_s", "outside_eval_s",
              "span_s"}


@pytest.mark.slow
def test_quick_size_writes_json_and_plot(tmp_path: Path) -> None:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.run([sys.executable, "benchmarks/overhead.py", "--size", "quick", "--out", str(tmp_path),
                           "--space", str(TINY), "--backends", "optuna"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "overhead.png").stat().st_size > 0
    data = json.loads((tmp_path / "overhead.json").read_text())
    for key in ("command", "machine", "date", "size", "sampler", "seed", "device", "workers", "runs", "table"):
        assert key in data
    assert data["bytecode_cache"] is True  # timed as a user's installation runs (see search_env)
    assert data["size"] == "quick"
    runs = data["runs"]
    assert [(r["backend"], r["budget"]) for r in runs] == [("optuna", "smoke")]
    for run in runs:
        for key, kind in RUN_KEYS.items():
            assert isinstance(run[key], kind), (run["backend"], key, run[key])
        assert run["trials"] == 2 and len(run["per_trial"]) == 2
        assert sum(run["statuses"].values()) == 2
        for trial in run["per_trial"]:
            assert set(trial) == TRIAL_KEYS
        # The three shares split the wall time (an identity of the decomposition, not a measurement).
        total = run["compute_share"] + run["evaluator_overhead_share"] + run["other_share"]
        assert abs(total - 1.0) < 1e-9
        # Scoring is part of the evaluator's overhead; the tool cut counts it as work instead.
        assert 0.0 <= run["scoring_s"] <= run["evaluator_overhead_s"] + 1e-9
        assert run["tool_overhead_share"] <= run["overhead_share"]
    # The markdown table: a header, a rule and one row per run.
    table = [line for line in proc.stdout.splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(runs)


def test_the_ray_run_is_the_same_search_on_the_ray_backend(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from overhead import search_command

    common = dict(space="tiny.yaml", budget="smoke", trials=2, seed=0, workers=2, device="cpu", out=tmp_path)
    optuna_cmd, ray_cmd = search_command(backend="optuna", **common), search_command(backend="ray", **common)
    assert optuna_cmd[-2:] == ["--workers", "2"]
    # The same search, with Ray running as many trials at once as the Optuna backend's workers.
    assert ray_cmd == [*optuna_cmd[:-2], "--backend", "ray", "--max-concurrent", "2"]
