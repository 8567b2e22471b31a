"""`python -m nas.train`: full training with checkpoints, resume (in-process and after SIGKILL), outputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import nas
from nas.model_io import load_checkpoint, write_model_yaml
from nas.spec import LevelSpec, UNetSpec
from nas.train import run_training
from nas.train.__main__ import build_parser, main, request_from_args
from nas.train.settings import resolve_settings

ROOT = Path(__file__).resolve().parents[1]
TINY_BUDGET = {"steps": 4, "batch_size": 4, "fid_samples": 8, "sample_steps": 2, "warmup_steps": 2,
               "val_images": 8, "val_timesteps": 2, "throughput_batch": 4, "rungs": [0.5]}
# Dropout > 0 so that resuming must restore torch's global RNG to reproduce the same weights.
SPEC = UNetSpec(image_size=28, in_channels=1, base_channels=8, norm_groups=4, head_channels=8, dropout=0.1,
                levels=(LevelSpec(channel_mult=1, blocks=1, decoder_blocks=2),
                        LevelSpec(channel_mult=2, blocks=1, decoder_blocks=2, attention="full")),
                mid_attention="none")


class Crash(Exception):
    """Stands in for a process dying between two checkpoints."""


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "best.yaml"
    write_model_yaml(path, SPEC, sections={"metrics": {"val_loss": 1.0},
                                           "provenance": {"seed": 3, "budget": "tiny"},
                                           "data": {"dataset": "mnist", "image_size": 28, "channels": 1},
                                           "budgets": {"tiny": TINY_BUDGET}})
    return path


def args(config: Path, out: Path, *extra: str) -> list[str]:
    return ["--config", str(config), "--out", str(out), "--budget", "tiny", "--steps", "12",
            "--checkpoint-every", "4", "--eval-every", "4", "--device", "cpu", "--no-progress", *extra]


@pytest.fixture(scope="module")
def uninterrupted(config: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "full"
    assert main(args(config, out)) == 0
    return out


def test_run_writes_outputs_and_learns(uninterrupted: Path) -> None:
    final = json.loads((uninterrupted / "final.json").read_text())
    assert final["status"] == "ok" and final["steps"] == 12 and final["seed"] == 3  # seed from provenance
    assert final["params"] == sum(p.numel() for p in nas.build_unet(SPEC).parameters())
    assert [h["step"] for h in final["history"]] == [4, 8, 12]
    assert final["history"][-1]["val_loss"] < final["history"][0]["val_loss"]  # it learns
    assert final["val_loss"] == pytest.approx(final["history"][-1]["val_loss"])
    for key in ("fid_proxy", "fid_floor", "kid_mean", "kid_std", "train_seconds", "seconds"):
        assert final[key] is not None
    assert final["search_metrics"] == {"val_loss": 1.0}
    assert (uninterrupted / "samples.png").stat().st_size > 0
    settings = json.loads((uninterrupted / "run.json").read_text())
    assert settings["steps"] == 12 and settings["budget"]["warmup_steps"] == 2


def test_model_yaml_loads_the_ema_weights(uninterrupted: Path) -> None:
    model = nas.load_model(uninterrupted / "model.yaml")
    ema = load_checkpoint(uninterrupted / "checkpoint.pt")["ema"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in ema.items())
    assert not model.training
    out = model(torch.randn(2, 1, 28, 28), torch.tensor([10, 500]))
    assert out.shape == (2, 1, 28, 28) and out.abs().sum() > 0  # trained: output conv no longer zero


def test_resume_after_a_crash_gives_the_uninterrupted_weights(config: Path, uninterrupted: Path,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "run"
    parser = build_parser()
    settings = resolve_settings(request_from_args(parser.parse_args(args(config, out))), device_type="cpu")

    def crash(step: int, state: object) -> None:
        if step == 6:  # after the checkpoint at 4, before the one at 8
            raise Crash

    with pytest.raises(Crash):
        run_training(settings, out, device="cpu", progress=False, on_step=crash)
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 4

    with pytest.raises(SystemExit) as err:  # the run directory is never overwritten silently
        main(args(config, out))
    assert err.value.code == 2
    assert main(args(config, out, "--resume")) == 0

    final = json.loads((out / "final.json").read_text())
    reference = json.loads((uninterrupted / "final.json").read_text())
    assert final["resumed_from"] == [4] and final["steps"] == 12
    assert [h["step"] for h in final["history"]] == [4, 8, 12]
    assert final["val_loss"] == reference["val_loss"]
    resumed, full = load_checkpoint(out / "checkpoint.pt"), load_checkpoint(uninterrupted / "checkpoint.pt")
    for part in ("model", "ema"):
        assert all(torch.equal(resumed[part][k], full[part][k]) for k in full[part]), part


def test_resume_after_sigkill(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "nas.train", *args(config, out)]
    cmd[cmd.index("12")] = "100000"  # long enough to be killed mid-run
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not (out / "checkpoint.pt").exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.time() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    step = load_checkpoint(out / "checkpoint.pt")["step"]  # a complete file, whenever the kill landed
    assert step >= 4 and step % 4 == 0
    assert main(args(config, out, "--resume", "--steps", str(step + 4))) == 0
    final = json.loads((out / "final.json").read_text())
    assert final["resumed_from"] == [step] and final["steps"] == step + 4


@pytest.mark.parametrize("extra, message", [
    (["--budget", "huge"], "unknown budget 'huge'"),
    (["--steps", "0"], "--steps: expected a positive number"),
    (["--dataset", "mnits"], "unknown dataset 'mnits' (did you mean 'mnist'?)"),
])
def test_user_errors_exit_2_with_one_line(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          extra: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as err:
        main([*args(config, tmp_path / "run"), *extra])
    assert err.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not (tmp_path / "run").exists()  # nothing left that would need --resume


def test_resume_refuses_other_settings(config: Path, uninterrupted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as err:
        main(args(config, uninterrupted, "--resume", "--seed", "9"))
    assert err.value.code == 2
    assert "cannot resume with other settings: --seed 9 (the run used 3)" in capsys.readouterr().err
    before = (uninterrupted / "run.json").read_text()
    with pytest.raises(SystemExit) as err:
        main(args(config, uninterrupted, "--resume", "--steps", "8"))
    assert err.value.code == 2
    assert "the checkpoint is at step 12, past --steps 8" in capsys.readouterr().err
    assert (uninterrupted / "run.json").read_text() == before
