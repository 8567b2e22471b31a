"""benchmarks/searched_vs_hand.py: the hand designs are what their names say and fit light.yaml;
``--size quick`` searches, picks, trains and times with the documented structure (never the numbers),
and a rerun reuses every finished run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = "benchmarks/searched_vs_hand.py"
HAND = ["ddpm", "adm", "lightweight"]


def test_hand_designs_are_expressible_in_light_yaml() -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from searched_vs_hand import HAND_DESIGNS, hand_spec

    from nas.cost import static_costs
    from nas.space import load_space

    space = load_space("light.yaml")
    specs = {name: hand_spec(space, decisions) for name, decisions in HAND_DESIGNS.items()}
    assert list(specs) == HAND
    ddpm, adm, light = specs["ddpm"], specs["adm"], specs["lightweight"]
    # DDPM: standard residual blocks, attention at 14x14 (level 1 of 28x28) and in the bottleneck.
    assert [lv.attention for lv in ddpm.levels] == ["none", "full", "none"] and ddpm.mid_attention == "full"
    assert {lv.conv for lv in ddpm.levels} == {"standard"} and ddpm.resample == "conv"
    # ADM: scale-shift conditioning, residual-block resampling, attention at several levels.
    assert adm.time_conditioning == "scale_shift" and adm.resample == "resblock"
    assert sum(lv.attention != "none" for lv in adm.levels) == 2
    # The seed chapter's lightweight design: depthwise-separable blocks with SE, fewer parameters.
    assert {lv.conv for lv in light.levels} == {"depthwise_separable"} and all(lv.se for lv in light.levels)
    assert static_costs(light)["params"] < 0.5 * static_costs(ddpm)["params"]


@pytest.mark.slow
def test_quick_run_structure_and_resume(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run() -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, SCRIPT, "--size", "quick", "--out", str(tmp_path)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=600, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    first = run()
    data = json.loads((tmp_path / "searched_vs_hand.json").read_text())
    for key in ("command", "machine", "date", "size", "budget", "search_trials", "picks", "hand_designs", "designs",
                "comparison"):
        assert key in data, key
    assert set(data["picks"]) == {"knee", "best_fid_proxy", "fastest_within_10pct_fid"}
    searched = [n for n, d in data["designs"].items() if "hand" not in d["roles"]]
    assert searched and all(n.startswith("searched-trial") for n in searched)
    assert {role for n in searched for role in data["designs"][n]["roles"]} == set(data["picks"])
    assert [n for n, d in data["designs"].items() if "hand" in d["roles"]] == HAND
    for design in data["designs"].values():
        assert len(design["statuses"]) == 2  # two training seeds
        assert design["throughput"] > 0 and len(design["throughput_rounds"]) == 2
        assert design["params"] > 0 and design["macs"] > 0
    assert list(data["comparison"]) == HAND
    assert (tmp_path / "searched_vs_hand.png").stat().st_size > 0
    rows = [line for line in first.stdout.splitlines() if line.startswith("|")]
    assert len(rows) == (2 + len(data["designs"])) + (2 + len(HAND))
    assert "training" in first.stdout
    # A rerun finds the study complete and every run finished: nothing trains again.
    assert "training" not in run().stdout
