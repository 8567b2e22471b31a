"""optuna-dashboard in a real headless Chromium, on a finished smoke study with infeasible trials.

Checks what a user sees (``tools/dashboard_check.py``): numeric Pareto axes, EDF plots with data,
the knee's trial page with its note naming the objectives, and ``samples.png`` loading as an
image.  Skips with one line where no Chromium or Playwright is installed, except in CI, which
installs both and sets ``UNET_NAS_REQUIRE_BROWSER=1``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

from nas.search.__main__ import main as search_main

REPO = Path(__file__).resolve().parents[1]
TINY = Path(__file__).parent / "data" / "tiny.yaml"
sys.path.insert(0, str(REPO / "tools"))
from dashboard_check import check, find_browser


def _browser() -> str:
    browser = find_browser()
    missing = "no Chromium on PATH" if browser is None else (
        "the playwright package is not installed" if importlib.util.find_spec("playwright") is None else "")
    if missing:
        if os.environ.get("UNET_NAS_REQUIRE_BROWSER"):
            pytest.fail(f"the browser test is required here but {missing}")
        pytest.skip(f"browser test: {missing}")
    return browser  # type: ignore[return-value]


@pytest.mark.slow
def test_the_dashboard_renders_the_front_the_plots_the_note_and_the_samples(tmp_path: Path) -> None:
    browser = _browser()
    assert search_main(["--space", str(TINY), "--budget", "tiny", "--trials", "6", "--out", str(tmp_path),
                        "--device", "cpu", "--sampler", "random", "--seed", "0",
                        "--stopping", "none"]) == 0  # a stopped trial has no values to plot
    found = check(f"sqlite:///{tmp_path}/tiny.db", "tiny", tmp_path / "tiny" / "artifacts", tmp_path / "shots",
                  browser=browser)
    assert found["infeasible"] >= 1, "the study must hold an infeasible trial (their values broke the plots)"
    assert found["checks"] == {"pareto_axes_numeric": True, "edf_plots_have_data": True,
                               "trial_note_names_objectives": True, "samples_image_loads": True}, found
    assert found["pareto"]["points"] >= 6  # every trial, infeasible ones included, is a numeric point
    assert (tmp_path / "shots" / "overview.png").stat().st_size > 0
