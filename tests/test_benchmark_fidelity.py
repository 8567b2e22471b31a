"""benchmarks/proxy_fidelity.py --size quick: every evaluation runs, the output has its structure,
and a rerun resumes from runs.jsonl instead of training again."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The tests' tiny space: the structure is what is checked, and its candidates train in about a second.
TINY = REPO / "tests" / "data" / "tiny.yaml"
CORRELATION_KEYS = {"n", "spearman", "spearman_p", "kendall", "kendall_p"}


def _teacher_config(folder: Path) -> Path:
    """An exported config of a small tiny-space network, for the distilled quarter runs' teacher."""
    from nas.model_io import write_model_yaml
    from nas.spec import LevelSpec, UNetSpec

    spec = UNetSpec(image_size=28, base_channels=8, norm_groups=4, head_channels=8,
                    levels=(LevelSpec(blocks=1, decoder_blocks=2), LevelSpec(channel_mult=2, blocks=1)))
    return write_model_yaml(folder / "teacher.yaml", spec,
                            sections={"data": {"dataset": "mnist", "image_size": 28, "channels": 1}})


def _run(out: Path, teacher: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "benchmarks/proxy_fidelity.py", "--size", "quick", "--out", str(out),
                           "--space", str(TINY), "--distill", str(teacher)],
                          cwd=REPO, capture_output=True, text=True, timeout=400, check=False)


@pytest.mark.slow
def test_quick_size_writes_json_plot_and_resumes(tmp_path: Path) -> None:
    teacher = _teacher_config(tmp_path)
    proc = _run(tmp_path, teacher)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "proxy_fidelity.png").stat().st_size > 0
    data = json.loads((tmp_path / "proxy_fidelity.json").read_text())
    for key in ("command", "machine", "date", "size", "budgets", "correlations", "seed_noise", "architectures"):
        assert key in data
    assert data["size"] == "quick" and "--size quick" in data["command"]
    assert data["budgets"]["reference"]["steps"] == 8 * data["budgets"]["proxy"]["steps"]
    assert data["budgets"]["quarter"]["steps"] < data["budgets"]["proxy"]["steps"]
    assert len(data["architectures"]) == 3
    for arch in data["architectures"]:
        assert {"params", "macs", "digest"} <= set(arch)
        assert set(arch["runs"]) == {"proxy", "quarter", "quarter_distill", "reference"}
        assert arch["runs"]["quarter_distill"]["teacher_seconds"] > 0
    # One correlation per distinct rung step of the proxy budget (short quick budgets merge rungs).
    rungs = sorted(k for k in data["correlations"] if k.startswith("rung"))
    assert {"proxy", "quarter", "quarter_distill"} <= set(data["correlations"]) and rungs
    distillation = data["distillation"]
    assert distillation["teacher"]["steps"] == 8 * data["budgets"]["proxy"]["steps"]  # nas.train's recipe
    assert 0 < distillation["teacher_seconds"] < distillation["train_seconds"]["quarter_distill"]
    assert (tmp_path / "teacher" / "model.yaml").is_file()
    assert rungs == [f"rung{i}" for i in range(len(rungs))]
    for name, metrics in data["correlations"].items():
        for metric, values in metrics.items():
            assert set(values) == CORRELATION_KEYS, (name, metric)
    for metric in ("val_loss", "fid_proxy"):
        noise = data["seed_noise"][metric]
        assert {"seed_std", "architecture_std", "noise_share", "per_architecture"} <= set(noise)
        assert [len(p["values"]) for p in noise["per_architecture"]] == [2, 2]
    runs = (tmp_path / "runs.jsonl").read_text().splitlines()
    assert len(runs) == 3 * 4 + 2  # proxy, quarter, distilled quarter and reference for 3, one more seed for 2
    table = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    # The header, a row per proxy and metric, one per rung (held-out loss) and the loss-against-FID row.
    assert len(table) >= 1 + 2 + 2 + len(rungs) + 1

    again = _run(tmp_path, teacher)  # everything cached: nothing is trained again, the teacher neither
    assert again.returncode == 0, again.stderr[-3000:]
    assert "evaluations to run" not in again.stdout and "training the teacher" not in again.stdout
    assert (tmp_path / "runs.jsonl").read_text().splitlines() == runs
