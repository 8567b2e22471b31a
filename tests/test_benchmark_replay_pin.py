"""The committed sampler-efficiency figures are what the replay computes from the committed table.

The replay answers every trial from ``results/benchmarks/sampler_efficiency/table.csv`` through
the search's own study, samplers and trial runner, so it is deterministic and takes seconds: a
change to the runner, the samplers or the early-stopping rule that changes a figure in the
README shows up here (rerun ``python benchmarks/sampler_efficiency.py replay --size cpu`` and
commit the new JSON, plot and README rows when the change is meant).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "results" / "benchmarks" / "sampler_efficiency"


@pytest.mark.slow
def test_replay_reproduces_the_committed_figures(tmp_path: Path) -> None:
    cmd = [sys.executable, str(REPO / "benchmarks" / "sampler_efficiency.py"), "replay", "--size", "cpu",
           "--out", str(tmp_path), "--table", str(COMMITTED / "table.csv")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads((tmp_path / "sampler_efficiency.json").read_text())
    want = json.loads((COMMITTED / "sampler_efficiency.json").read_text())
    for key in ("samplers", "early_stopping", "trials", "seeds", "random_final_mean"):
        assert _leaves(got[key]) == pytest.approx(_leaves(want[key]), rel=1e-9, abs=1e-12), \
            f"{key} differs from the committed replay"


def _leaves(value: Any, path: str = "") -> dict[str, Any]:
    """``value``'s numbers by their path in the nested dicts and lists.  Compared to a relative
    1e-9: the hypervolume sums of another numpy or Optuna release differ in the last bit, a
    changed sampler or rule by far more."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _leaves(item, f"{path}/{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _leaves(item, f"{path}[{i}]").items()}
    return {path: value}
