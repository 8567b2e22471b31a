"""The winner in diffusers: exact structure (``width_change: first_block``), trained weights
exported from a ``nas.train`` run as a ``DDPMPipeline`` folder, the bundled ``diffusers.yaml``
in which every point exports, ties across levels, and Python numbers as timesteps."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

import nas
from nas.diffusers_config import unet2d_config
from nas.diffusers_weights import diffusers_state_dict, diffusers_weight_blockers
from nas.errors import ConfigError
from nas.export.__main__ import main as export_main
from nas.model_io import write_model_yaml
from nas.space import load_space
from nas.spec import LevelSpec, UNetSpec
from nas.train.__main__ import main as train_main
from nas.unet import count_parameters

ROOT = Path(__file__).resolve().parents[1]
DIFFUSERS_SPACE = ROOT / "search_spaces" / "diffusers.yaml"
TINY_BUDGET = {"steps": 4, "batch_size": 4, "fid_samples": 8, "sample_steps": 2, "warmup_steps": 2,
               "val_images": 8, "val_timesteps": 2, "throughput_batch": 4, "rungs": [0.5]}
# Every diffusers feature at once: attention in a level and the bottleneck, ResNet resampling,
# scale-shift time conditioning, the v target and the learned variance.
SPEC = UNetSpec(image_size=28, in_channels=1, base_channels=8, norm_groups=4, head_channels=8,
                levels=(LevelSpec(channel_mult=1, blocks=1, decoder_blocks=2),
                        LevelSpec(channel_mult=2, blocks=1, decoder_blocks=2, attention="full")),
                mid_attention="full", resample="resblock", width_change="first_block", prediction="v",
                variance="learned")


def test_python_numbers_are_timesteps() -> None:
    model = nas.build_unet(SPEC).eval()
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        want = model(x, torch.tensor([3, 3, 3]))
        assert torch.equal(model(x, 3), want)
        assert torch.equal(model(x, 3.0), want)
        assert torch.equal(model(x, torch.tensor(3)), want)


def test_first_block_layout_changes_the_width_in_the_block_not_the_resampler() -> None:
    model = nas.build_unet(SPEC)
    assert model.downsamplers[0].in_norm.num_channels == 8 and model.downsamplers[0].out_conv.out_channels == 8
    assert model.encoder[1][0].block.in_conv.in_channels == 8 and model.encoder[1][0].block.in_conv.out_channels == 16
    # the deepest decoder level's last block takes level 1's input skip, 8 channels wide
    assert model.decoder[1][1].block.in_conv.in_channels == 16 + 8
    resampler = nas.build_unet(replace(SPEC, width_change="resampler"))
    assert resampler.downsamplers[0].out_conv.out_channels == 16
    with pytest.raises(ConfigError, match="width_change = first_block needs skip_fusion = concat"):
        replace(SPEC, skip_fusion="add")


def test_random_weights_give_diffusers_our_output() -> None:
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    for spec in (SPEC, replace(SPEC, resample="conv", time_conditioning="additive", variance="fixed")):
        ours = nas.build_unet(spec).eval()
        for p in ours.parameters():  # zero-initialised layers would hide a wrong mapping
            torch.nn.init.normal_(p, std=0.1)
        theirs = diffusers.UNet2DModel.from_config(unet2d_config(spec)).eval()
        theirs.load_state_dict(diffusers_state_dict(ours.state_dict(), spec), strict=True)
        x = torch.randn(2, 1, 28, 28)
        with torch.no_grad():
            diff = (ours(x, torch.tensor([5, 900])) - theirs(x, torch.tensor([5, 900])).sample).abs().max()
        assert diff < 1e-5


@pytest.mark.slow
def test_every_sampled_diffusers_space_point_has_diffusers_parameter_count() -> None:
    diffusers = pytest.importorskip("diffusers")
    specs = load_space(DIFFUSERS_SPACE).sample(200, seed=0)
    assert len({s.digest() for s in specs}) > 100
    for spec in specs:
        assert diffusers_weight_blockers(spec) == [], spec
        with torch.device("meta"):
            theirs = diffusers.UNet2DModel.from_config(unet2d_config(spec))
        assert sum(p.numel() for p in theirs.parameters()) == count_parameters(spec), spec


def test_blocks_tie_across_levels(tmp_path: Path) -> None:
    text = DIFFUSERS_SPACE.read_text()
    space = load_space(DIFFUSERS_SPACE)
    for spec in space.sample(50, seed=1):
        assert len({lv.blocks for lv in spec.levels}) == 1
        assert all(lv.decoder_blocks == lv.blocks + 1 for lv in spec.levels)
    assert "level0.blocks" in dict(space.param_names()) and "level1.blocks" not in dict(space.param_names())
    for bad, message in (
            ("[{tie: blocks, level: 1}, {int: [1, 2]}, {int: [1, 2]}]", "expected an earlier level"),
            ("[{int: [1, 2]}, {tie: blocks, level: 5}, {int: [1, 2]}]", "ties to level 5, but the space has 3"),
            ("[{int: [1, 2]}, {int: [1, 2, 1], level: 0}, {int: [1, 2]}]", "'level' only applies to a 'tie'"),
            ("[{int: [1, 2]}, {tie: blocks, level: -1}, {int: [1, 2]}]", "expected a level index")):
        broken = text.replace("[{int: [1, 2]}, {tie: blocks, level: 0}, {tie: blocks, level: 0}]", bad)
        assert broken != text
        path = tmp_path / "broken.yaml"
        path.write_text(broken)
        with pytest.raises(ConfigError, match=message) as err:
            load_space(path)
        assert "space.per_level.blocks" in str(err.value)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A nas.train run of SPEC (a few steps), as a user's run directory."""
    root = tmp_path_factory.mktemp("run")
    config = root / "best.yaml"
    write_model_yaml(config, SPEC, sections={"data": {"dataset": "mnist", "image_size": 28, "channels": 1},
                                             "budgets": {"tiny": TINY_BUDGET}})
    out = root / "run"
    assert train_main(["--config", str(config), "--out", str(out), "--budget", "tiny", "--steps", "6",
                       "--device", "cpu", "--no-progress"]) == 0
    return out


@pytest.mark.slow
def test_trained_run_round_trips_through_a_ddpm_pipeline(trained: Path, tmp_path: Path) -> None:
    diffusers = pytest.importorskip("diffusers")
    out = tmp_path / "pipeline"
    assert export_main(["--run", str(trained), "--format", "diffusers", "--out", str(out)]) == 0
    for name in ("model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                 "scheduler/scheduler_config.json", "spec.yaml"):
        assert (out / name).is_file(), name
    pipe = diffusers.DDPMPipeline.from_pretrained(out)
    assert pipe.scheduler.config.variance_type == "learned_range"
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    ours = nas.load_model(trained / "model.yaml")  # the EMA weights
    assert nas.load_model(out / "spec.yaml").spec == ours.spec
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        diff = (ours(x, 417) - pipe.unet(x, 417).sample).abs().max()
    assert diff < 1e-5
    images = pipe(batch_size=2, num_inference_steps=3, generator=torch.Generator().manual_seed(0),
                  output_type="np").images
    assert images.shape == (2, 28, 28, 1) and images.min() >= 0 and images.max() <= 1


def test_run_exports_name_their_blockers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "model.yaml"
    write_model_yaml(config, replace(SPEC, width_change="resampler"), sections={"checkpoint": "checkpoint.pt"})
    with pytest.raises(SystemExit) as err:
        export_main(["--run", str(config), "--format", "diffusers", "--out", str(tmp_path / "d")])
    line = capsys.readouterr().err.strip()
    assert err.value.code == 2 and "\n" not in line
    assert "width_change = resampler" in line and "search_spaces/diffusers.yaml" in line
    assert not (tmp_path / "d").exists()
    untrained = tmp_path / "untrained.yaml"
    write_model_yaml(untrained, SPEC)
    for argv, message in (([str(untrained), "--format", "diffusers"], "has no checkpoint"),
                          ([str(tmp_path / "nowhere"), "--format", "diffusers"], "does not exist"),
                          ([str(untrained), "--format", "yaml"], "use --format diffusers")):
        with pytest.raises(SystemExit) as err:
            export_main(["--run", *argv, "--out", str(tmp_path / "e")])
        line = capsys.readouterr().err.strip()
        assert err.value.code == 2 and message in line and "\n" not in line, line
