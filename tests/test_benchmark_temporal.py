"""benchmarks/temporal_score.py: the sanity check of the temporal score writes its figures, and on
real clips a shuffled or frozen clip fails the temporal score while the per-frame score cannot tell."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from temporal_score import CONDITIONS, broken, main


def test_broken_clips_are_what_their_names_say() -> None:
    clips = torch.arange(2 * 5, dtype=torch.float32).view(2, 1, 5, 1, 1).expand(2, 1, 5, 2, 2).contiguous()
    rng = np.random.default_rng(0)
    assert torch.equal(broken(clips, "real", rng), clips)
    assert torch.equal(broken(clips, "reversed", rng), clips.flip(2))
    static = broken(clips, "static", rng)
    assert torch.equal(static, clips[:, :, :1].expand_as(clips))
    shuffled = broken(clips, "shuffled", rng)
    for clip, original in zip(shuffled, clips, strict=True):  # the same frames, never in their order
        order = clip[0, :, 0, 0]
        assert sorted(order.tolist()) == original[0, :, 0, 0].tolist() and not torch.equal(order, original[0, :, 0, 0])


@pytest.mark.slow
def test_quick_run_writes_the_table_and_the_temporal_score_separates(tmp_path: Path) -> None:
    assert main(["--size", "quick", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "temporal_score.json").read_text())
    assert result["size"] == "quick" and result["clip_feature_kind"] == "clip_classifier"
    assert {"command", "machine", "date"} <= set(result)
    summary = {s["condition"]: s for s in result["summary"]}
    assert set(summary) == set(CONDITIONS) and len(result["rows"]) == len(CONDITIONS) * result["draws"]
    real = summary["real"]
    assert summary["shuffled"]["fvd_mean"] > 2 * real["fvd_mean"] and summary["static"]["fvd_mean"] > 2 * real["fvd_mean"]
    assert summary["reversed"]["fvd_mean"] < 1.5 * real["fvd_mean"]  # bouncing digits run backwards just as well
    # Per frame, a shuffled clip is a real one (the same frames; only the summation order differs).
    assert summary["shuffled"]["fid_mean"] == pytest.approx(real["fid_mean"], rel=1e-6)
    table = (tmp_path / "table.md").read_text()
    assert table.startswith("| N clips | clips | fvd_proxy |") and "| 16 | shuffled |" in table
