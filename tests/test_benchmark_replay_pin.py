"""The committed sampler-efficiency figures are what the replay computes from the committed table.

The replay answers every trial from ``results/benchmarks/sampler_efficiency/table.csv`` through
the search's own study, samplers and trial runner, so it is deterministic (two seeds of it take about a minute): a
change to the runner, the samplers or the early-stopping rule that changes a figure in the
README shows up here (rerun ``python benchmarks/sampler_efficiency.py replay --size cpu`` and
commit the new JSON, plot and README rows when the change is meant).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "results" / "benchmarks" / "sampler_efficiency"


@pytest.mark.slow
def test_replay_reproduces_the_committed_figures(tmp_path: Path) -> None:
    # The first two of the committed ten seeds, every sampler but Optuna's GP (a GP fit per
    # proposal: the slowest to replay, and its figures are Optuna's, not ours): the per-seed
    # final shares and the early-stopping runs' steps and shares must be the committed ones.
    seeds = 2
    pinned = ["random", "nsga2", "tpe", "evolution", "rl", "local", "surrogate"]
    cmd = [sys.executable, str(REPO / "benchmarks" / "sampler_efficiency.py"), "replay", "--size", "cpu",
           "--out", str(tmp_path), "--table", str(COMMITTED / "table.csv"), "--seeds", str(seeds),
           "--samplers", *pinned]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads((tmp_path / "sampler_efficiency.json").read_text())
    want = json.loads((COMMITTED / "sampler_efficiency.json").read_text())
    assert list(got["samplers"]) == pinned
    assert got["trials"] == want["trials"]
    for name in pinned:
        assert got["samplers"][name]["final_per_seed"] == pytest.approx(
            want["samplers"][name]["final_per_seed"][:seeds], rel=1e-9, abs=1e-12), f"{name} differs"
    for layout, replays in got["early_stopping"]["replays"].items():
        for name, replay in replays.items():
            committed = want["early_stopping"]["replays"][layout][name]["per_seed"]
            assert replay["per_seed"]["steps_with"] == committed["steps_with"][:seeds], f"{name} + {layout}"
            assert replay["per_seed"]["hv_with"] == pytest.approx(committed["hv_with"][:seeds], rel=1e-9,
                                                                   abs=1e-12), f"{name} + {layout}"
