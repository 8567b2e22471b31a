"""Searching video U-Nets: the space's ``frames``, the evaluator's video path, export and training."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch
from PIL import Image

from evaluators.budget import Budget
from evaluators.proxy import EvalContext, evaluate
from nas.errors import ConfigError
from nas.samplers import make_sampler, sampler_names
from nas.search.__main__ import main as search_main
from nas.space import load_space
from nas.spec import LevelSpec, UNetSpec
from nas.study import finished_trials, trial_spec

DATA = Path(__file__).parent / "data"
TINY_VIDEO = DATA / "tiny_video.yaml"
TINY_BUDGET = Budget(steps=4, batch_size=2, fid_samples=4, sample_steps=2, warmup_steps=1, val_images=4,
                     val_timesteps=2, throughput_batch=2, timing_repeat_s=0.01)


def test_a_video_space_resolves_video_specs() -> None:
    space = load_space(TINY_VIDEO)
    assert space.data.frames == 4
    specs = space.sample(12, seed=0)
    assert {s.frames for s in specs} == {4} and {s.sample_shape for s in specs} == {(1, 4, 28, 28)}
    assert {lv.temporal for s in specs for lv in s.levels} == {"none", "conv1d", "attention"}
    bundled = load_space("video.yaml")
    assert bundled.data.frames == 8 and bundled.data.dataset == "moving_mnist"


def test_video_space_errors_name_the_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY_VIDEO.read_text().replace("frames: 4", "frames: 0"))
    with pytest.raises(ConfigError, match=r"bad\.yaml.*data\.frames: expected a value in \[1, 64\], got 0"):
        load_space(bad)
    images = tmp_path / "images.yaml"
    images.write_text(TINY_VIDEO.read_text().replace(", frames: 4", "").replace("moving_mnist", "mnist"))
    with pytest.raises(ConfigError, match=r"images\.yaml.*space\.per_level\.temporal: level 0 can have a temporal "
                                          r"layer, which needs video data: set data\.frames above 1"):
        load_space(images)
    frames_key = tmp_path / "frames_key.yaml"
    frames_key.write_text(TINY_VIDEO.read_text().replace("  base_channels: 8", "  frames: 4\n  base_channels: 8"))
    with pytest.raises(ConfigError, match=r"space\.frames: unknown key.*frames come from 'data:'"):
        load_space(frames_key)


@pytest.mark.slow  # builds both video references (the clip classifier trains once per session)
def test_a_video_candidate_trains_samples_and_scores_frame_by_frame(tmp_path: Path) -> None:
    context = EvalContext.load(dataset="moving_mnist", image_size=28, channels=1, frames=4, device="cpu")
    assert context.data.train.shape[1:] == (1, 4, 28, 28)
    assert context.reference.feature_kind == "classifier"  # the embedded digits' classifier, per frame
    spec = UNetSpec(image_size=28, frames=4, base_channels=8, head_channels=8, norm_groups=4,
                    levels=(LevelSpec(blocks=1, decoder_blocks=2, temporal="conv1d"),
                            LevelSpec(channel_mult=2, blocks=1, decoder_blocks=2, temporal="attention")))
    result = evaluate(spec, budget=TINY_BUDGET, context=context, artifacts_dir=tmp_path)
    assert result.status == "ok", result.reason
    assert result.val_loss is not None and result.fid_proxy is not None and result.fid_floor is not None
    assert result.throughput > 0 and result.macs > 0
    # The temporal score, on the clip classifier trained on the embedded clips, with its floor.
    assert context.clip_reference.feature_kind == "clip_classifier"
    assert result.fvd_proxy is not None and result.fvd_floor is not None and result.fvd_proxy > result.fvd_floor
    # The frame strip: one row per clip (4 clips), one column per frame, 2 px gaps, 4x scale.
    with Image.open(tmp_path / "samples.png") as strip:
        assert strip.size == ((4 * 30 + 2) * 4, (4 * 30 + 2) * 4)
    # A spec for other data is refused with its reason, not run.
    image_spec = UNetSpec(image_size=28, base_channels=8, head_channels=8, norm_groups=4,
                          levels=(LevelSpec(blocks=1, decoder_blocks=2), LevelSpec(channel_mult=2, blocks=1)))
    refused = evaluate(image_spec, budget=TINY_BUDGET, context=context)
    assert refused.status == "invalid" and "the spec expects images of shape (1, 28, 28)" in refused.reason


@pytest.mark.slow
def test_video_search_exports_and_trains(tmp_path: Path) -> None:
    from nas.export.__main__ import main as export_main
    from nas.model_io import load_model
    from nas.train import TrainRequest, train

    out = tmp_path / "search"
    assert search_main(["--space", str(TINY_VIDEO), "--budget", "tiny", "--trials", "3", "--out", str(out),
                        "--device", "cpu", "--sampler", "random"]) == 0
    study = optuna.load_study(study_name="tiny_video", storage=f"sqlite:///{out / 'tiny_video'}.db")
    trials = finished_trials(study)
    assert len(trials) == 3
    specs = [trial_spec(t) for t in trials]
    assert all(s["frames"] == 4 for s in specs if s is not None) and any(s is not None for s in specs)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE and "fid_proxy" in t.user_attrs]
    assert complete, [t.user_attrs.get("reason") for t in trials]
    assert all(t.user_attrs["fvd_proxy"] > t.user_attrs["fvd_floor"] > 0 for t in complete)
    header = (out / "tiny_video" / "trials.csv").read_text().splitlines()[0].split(",")
    assert "fvd_proxy" in header and "fvd_floor" in header
    config = tmp_path / "best.yaml"
    assert export_main(["--study", "tiny_video", "--results", str(out), "--out", str(config)]) == 0
    assert "frames: 4" in config.read_text()
    run = tmp_path / "run"
    train(TrainRequest(config=config, out=run, budget="tiny", steps=4, device="cpu"), progress=False)
    model = load_model(run / "model.yaml")
    assert model(torch.randn(1, 1, 4, 28, 28), torch.tensor([5])).shape == (1, 1, 4, 28, 28)


def test_the_frame_strip_puts_one_clip_per_row_and_its_frames_in_order(tmp_path: Path) -> None:
    from evaluators.proxy import save_grid

    clips = torch.full((3, 1, 4, 2, 2), -1.0)
    for clip in range(3):
        for frame in range(4):
            clips[clip, :, frame] = -1.0 + 0.1 * (4 * clip + frame + 1)  # a distinct grey per (clip, frame)
    with Image.open(save_grid(clips, tmp_path / "strip.png", scale=1)) as strip:
        pixels = strip.load()
        for clip in range(3):
            for frame in range(4):
                value = pixels[2 + frame * 4, 2 + clip * 4]  # the first pixel of each 2x2 tile, 2 px gaps
                assert abs(value - 0.1 * (4 * clip + frame + 1) * 127.5) <= 1  # 8-bit rounding


@pytest.mark.parametrize("name", sampler_names())
def test_every_sampler_proposes_video_specs_from_the_bundled_space(name: str) -> None:
    """The samplers see video.yaml's temporal decisions as any others: each proposes legal 8-frame
    specs and explores the temporal layers (a synthetic objective stands in for training)."""
    space = load_space("video.yaml")
    specs: list[UNetSpec] = []

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        spec = space.suggest(trial)
        specs.append(spec)
        temporal = sum(lv.temporal != "none" for lv in spec.levels)
        return float(spec.base_channels * len(spec.levels)), float(temporal)

    study = optuna.create_study(directions=["minimize", "maximize"], sampler=make_sampler(name, seed=0))
    study.optimize(objective, n_trials=12)
    assert len(specs) == 12 and {s.frames for s in specs} == {8}
    assert all(lv.temporal in ("none", "conv1d", "attention") for s in specs for lv in s.levels)
    assert any(lv.temporal != "none" for s in specs for lv in s.levels)
    assert len({s.digest() for s in specs}) >= 6  # it explores, rather than repeating one clip network
