"""benchmarks/load_robustness.py --size quick: both phases run and the output has its structure
(the figures themselves are the benchmark's business, not a timed test's)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The tests' tiny space: the structure is what is checked, and its candidates train in about a second.
TINY = REPO / "tests" / "data" / "tiny.yaml"


@pytest.mark.slow
def test_quick_size_writes_json_and_plot(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "benchmarks/load_robustness.py", "--size", "quick", "--out", str(tmp_path),
                           "--space", str(TINY)],
                          cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "load_robustness.json").read_text())
    for key in ("command", "machine", "date", "throughput", "spearman", "loaded_over_quiet", "evaluation",
                "evaluation_slowdown"):
        assert key in data
    for way in ("policy", "default"):
        assert len(data["throughput"][way]["quiet"]) == len(data["throughput"][way]["loaded"]) == 2
        assert -1.0 <= data["spearman"][way] <= 1.0
    assert data["evaluation"]["quiet"]["status"] == data["evaluation"]["loaded"]["status"] == "ok"
    assert (tmp_path / "load_robustness.png").stat().st_size > 0
