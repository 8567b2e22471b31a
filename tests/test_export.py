"""`python -m nas.export`: picks, --where, the commented YAML round trip, errors, diffusers configs."""

from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState

import nas
from nas.diffusers_config import diffusers_blockers, scheduler_config, unet2d_config
from nas.export.__main__ import main
from nas.pareto import candidate_trials, knee_trial
from nas.search.__main__ import main as search_main
from nas.spec import LevelSpec, UNetSpec
from nas.study import trial_spec

TINY = Path(__file__).parent / "data" / "tiny.yaml"


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("search")
    argv = ["--space", str(TINY), "--budget", "tiny", "--trials", "6", "--out", str(out), "--device", "cpu",
            "--sampler", "random", "--stopping", "none"]  # export needs two trained trials, not the scheduler
    assert search_main(argv) == 0
    return out


def storage(out: Path) -> str:
    return f"sqlite:///{out / 'tiny.db'}"


def study_of(out: Path) -> optuna.Study:
    return optuna.load_study(study_name="tiny", storage=storage(out))


def export(out: Path, target: Path, *extra: str) -> dict:
    assert main(["--study", "tiny", "--storage", storage(out), "--out", str(target), *extra]) == 0
    return yaml.safe_load(target.read_text())


def test_round_trip_knee_and_trial(searched: Path, tmp_path: Path) -> None:
    study = study_of(searched)
    feasible = candidate_trials(study)
    assert len(feasible) >= 2, "the tiny search should leave two feasible trials"
    knee = knee_trial(study)
    other = next(t for t in feasible if t.number != knee.number)
    for pick, trial in (("knee", knee), (f"trial:{other.number}", other)):
        path = tmp_path / f"{pick.replace(':', '')}.yaml"
        data = export(searched, path, "--pick", pick)
        assert UNetSpec.from_dict(data["spec"]).to_dict() == trial_spec(trial)
        assert data["provenance"]["trial"] == trial.number
        assert data["provenance"]["space"] == "tiny" and data["provenance"]["budget"] == "tiny"
        assert data["provenance"]["storage"] == storage(searched) and "exported_at" in data["provenance"]
        assert data["metrics"]["val_loss"] == trial.user_attrs["val_loss"]
        assert data["data"]["dataset"] == "mnist" and "tiny" in data["budgets"]
        model = nas.load_model(path)
        assert sum(p.numel() for p in model.parameters()) == trial.user_attrs["params"]
        assert model(torch.randn(3, 1, 28, 28), torch.tensor([1, 50, 999])).shape == (3, 1, 28, 28)


def test_training_the_export_for_the_budget_reproduces_the_trial(searched: Path, tmp_path: Path) -> None:
    """nas.train runs the evaluator's recipe: at the budget's steps it gives the trial's val_loss."""
    from nas.train.__main__ import main as train_main

    knee = knee_trial(study_of(searched))
    export(searched, tmp_path / "best.yaml")
    run = tmp_path / "run"
    assert train_main(["--config", str(tmp_path / "best.yaml"), "--budget", "tiny", "--steps", "4", "--out", str(run),
                       "--device", "cpu", "--no-progress"]) == 0
    final = json.loads((run / "final.json").read_text())
    assert final["val_loss"] == pytest.approx(knee.user_attrs["val_loss"], rel=1e-5)
    assert sum(p.numel() for p in nas.load_model(run / "model.yaml").parameters()) == knee.user_attrs["params"]


def test_every_spec_field_is_documented_by_a_comment(searched: Path, tmp_path: Path) -> None:
    path = tmp_path / "best.yaml"
    export(searched, path)
    lines = path.read_text().splitlines()
    for name in [f.name for f in fields(UNetSpec)]:
        i = lines.index(next(line for line in lines if line.startswith(f"  {name}:")))
        assert lines[i - 1].lstrip().startswith("#"), name
    level_doc = "\n".join(lines)
    for name in [f.name for f in fields(LevelSpec)]:
        assert f"#   {name}: " in level_doc, name
    # the text comes from the docstrings
    assert "# GroupNorm groups; divides every level's width." in level_doc


def test_best_metric_and_where(searched: Path, tmp_path: Path) -> None:
    study = study_of(searched)
    feasible = candidate_trials(study)
    fastest = max(feasible, key=lambda t: t.user_attrs["throughput"])
    smallest = min(feasible, key=lambda t: t.user_attrs["params"])
    assert export(searched, tmp_path / "a.yaml", "--pick", "best:throughput")["provenance"]["trial"] == fastest.number
    assert export(searched, tmp_path / "b.yaml", "--pick", "best:params")["provenance"]["trial"] == smallest.number
    limit = smallest.user_attrs["params"] + 1
    data = export(searched, tmp_path / "c.yaml", "--pick", "best:val_loss", "--where", f"params<{limit}, status==ok")
    assert data["provenance"]["trial"] == smallest.number
    data = export(searched, tmp_path / "d.yaml", "--where", f"params < {limit} and feasible == true")
    assert data["provenance"]["trial"] == smallest.number


@pytest.mark.parametrize("extra, message", [
    (["--study", "nope"], "no study 'nope' in sqlite:///"),
    (["--pick", "best:val-loss"], "unknown metric 'val-loss' (did you mean 'val_loss'?); valid: ["),
    (["--pick", "trial:999"], "study 'tiny' has no trial 999 (trials: 0..5)"),
    (["--pick", "trial:infeasible"], "is infeasible (constraint excess: {'max_params'"),
    (["--pick", "middle"], "unknown pick 'middle'; expected knee, best:<metric> or trial:<N>"),
    (["--where", "params<1"], "no feasible COMPLETE trial matching --where params<1"),
    (["--where", "parms<1"], "unknown key 'parms' (did you mean 'params'?)"),
    (["--where", "params<<1"], "--where: 'params<<1' compares with < but '<1' is not a number"),
    (["--where", "params"], "--where: cannot read 'params'; expected KEY OP VALUE"),
])
def test_errors_are_one_line_and_exit_2(searched: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        extra: list[str], message: str) -> None:
    if "trial:infeasible" in extra:
        bad = next(t for t in study_of(searched).trials if t.user_attrs.get("status") == "infeasible")
        extra = ["--pick", f"trial:{bad.number}"]
    argv = ["--study", "tiny", "--storage", storage(searched), "--out", str(tmp_path / "x.yaml")]
    with pytest.raises(SystemExit) as err:
        main([*argv, *extra])  # a later --study overrides the first
    assert err.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not (tmp_path / "x.yaml").exists()


def test_missing_storage_and_empty_study(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as err:
        main(["--study", "gone", "--storage", f"sqlite:///{tmp_path / 'gone.db'}"])
    assert err.value.code == 2 and "storage file" in capsys.readouterr().err
    assert not (tmp_path / "gone.db").exists()  # looking did not create it
    optuna.create_study(study_name="empty", storage=f"sqlite:///{tmp_path / 'e.db'}")
    with pytest.raises(SystemExit) as err:
        main(["--study", "empty", "--storage", f"sqlite:///{tmp_path / 'e.db'}"])
    assert err.value.code == 2 and "has no feasible COMPLETE trial" in capsys.readouterr().err


# ----- diffusers ------------------------------------------------------------------------------
EXPRESSIBLE = UNetSpec(image_size=16, in_channels=1, base_channels=8, norm_groups=4, head_channels=8,
                       time_conditioning="additive", schedule="linear", mid_attention="full",
                       levels=(LevelSpec(channel_mult=1, blocks=2, decoder_blocks=3),
                               LevelSpec(channel_mult=2, blocks=2, decoder_blocks=3, attention="full"),
                               LevelSpec(channel_mult=2, blocks=2, decoder_blocks=3)))


def test_inexpressible_spec_names_every_reason() -> None:
    bad = replace(EXPRESSIBLE, skip_fusion="add", resample="avgpool", variance="learned", prediction="v",
                  mid_attention="linear",
                  levels=(LevelSpec(channel_mult=1, blocks=2, decoder_blocks=2, conv="inverted_residual", se=True),
                          LevelSpec(channel_mult=2, blocks=1, decoder_blocks=2, attention="transformer")))
    reasons = diffusers_blockers(bad)
    for expected in ("levels[0].conv = inverted_residual", "levels[0].se = true", "levels[0].decoder_blocks = 2",
                     "levels[1].attention = transformer", "levels[1].blocks = 1 differs", "mid_attention = linear",
                     "skip_fusion = add", "resample = avgpool"):
        assert sum(expected in r for r in reasons) == 1, (expected, reasons)
    assert len(reasons) == 8
    assert diffusers_blockers(EXPRESSIBLE) == []
    # diffusers' scheduler has our v and x0 targets and our learned (learned_range) variance
    assert diffusers_blockers(replace(EXPRESSIBLE, variance="learned", prediction="v")) == []
    assert scheduler_config(replace(EXPRESSIBLE, variance="learned", prediction="x0"))["variance_type"] == \
        "learned_range"
    narrow = replace(EXPRESSIBLE, head_channels=32)  # 8- and 16-channel attention: 0 diffusers heads
    assert [r.split(" ")[0] for r in diffusers_blockers(narrow)] == ["levels[1].attention", "mid_attention"]


def _study_with(spec: UNetSpec, path: Path) -> str:
    """A real Optuna study holding one finished, feasible trial of ``spec``."""
    url = f"sqlite:///{path}"
    study = optuna.create_study(study_name="one", storage=url, directions=["minimize"])
    study.set_metric_names(["val_loss"])
    params = sum(p.numel() for p in nas.build_unet(spec).parameters())
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.COMPLETE, values=[0.5],
        user_attrs={"spec": spec.to_dict(), "feasible": True, "status": "ok", "val_loss": 0.5, "params": params}))
    return url


def test_diffusers_export_refuses_an_inexpressible_trial(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = replace(EXPRESSIBLE, skip_fusion="add", resample="pixel_shuffle")
    url = _study_with(spec, tmp_path / "one.db")
    with pytest.raises(SystemExit) as err:
        main(["--study", "one", "--storage", url, "--format", "diffusers", "--out", str(tmp_path / "d")])
    line = capsys.readouterr().err.strip()
    assert err.value.code == 2 and "\n" not in line
    assert "skip_fusion = add" in line and "resample = pixel_shuffle" in line
    assert not (tmp_path / "d").exists()


def test_diffusers_config_builds_the_same_structure(tmp_path: Path) -> None:
    diffusers = pytest.importorskip("diffusers")
    url = _study_with(EXPRESSIBLE, tmp_path / "one.db")
    out = tmp_path / "unet"
    assert main(["--study", "one", "--storage", url, "--format", "diffusers", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config == unet2d_config(EXPRESSIBLE)
    theirs = diffusers.UNet2DModel.from_config(config)
    ours = nas.load_model(out / "spec.yaml")
    spec = EXPRESSIBLE
    assert list(theirs.config.block_out_channels) == list(spec.level_channels)
    assert len(theirs.down_blocks) == len(spec.levels) == len(theirs.up_blocks)
    for i, level in enumerate(spec.levels):
        down, up = theirs.down_blocks[i], theirs.up_blocks[len(spec.levels) - 1 - i]
        assert len(down.resnets) == level.blocks and len(up.resnets) == level.decoder_blocks
        has_attention = level.attention == "full"
        assert (len(getattr(down, "attentions", [])) == level.blocks) is has_attention
        assert (len(getattr(up, "attentions", [])) == level.decoder_blocks) is has_attention
        if has_attention:
            assert down.attentions[0].heads == spec.attention_heads(spec.level_channels[i])
    assert len(theirs.mid_block.attentions) == 1 and theirs.mid_block.attentions[0] is not None
    assert theirs.time_embedding.linear_2.out_features == ours.time_embed.mlp[2].out_features
    n_theirs = sum(p.numel() for p in theirs.parameters())
    n_ours = sum(p.numel() for p in ours.parameters())
    assert abs(n_theirs - n_ours) / n_ours < 0.05  # same architecture up to the channel-change placement
    x = torch.randn(2, 1, 16, 16)
    assert theirs(x, torch.tensor([3, 700])).sample.shape == ours(x, torch.tensor([3, 700])).shape
    # the schedule: diffusers' betas equal ours
    from nas.diffusion import make_betas

    scheduler = diffusers.DDPMScheduler.from_config(json.loads((out / "scheduler_config.json").read_text()))
    assert torch.allclose(scheduler.betas.double(), make_betas("linear", 1000), atol=1e-7)
    cosine = diffusers.DDPMScheduler.from_config(scheduler_config(replace(spec, schedule="cosine")))
    assert torch.allclose(cosine.betas.double(), make_betas("cosine", 1000), atol=1e-6)
