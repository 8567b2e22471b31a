"""Latent spaces: specs over latents, errors, the autoencoder file, candidates end to end, and the
export -> nas.train -> nas.load_model round trip of a latent model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

import nas
from evaluators.autoencoder import read_autoencoder, save_autoencoder
from evaluators.budget import DEFAULT_BUDGETS
from evaluators.contention import timing_threads
from evaluators.data import load_dataset
from evaluators.device import Precision
from evaluators.latent import LatentConfig, LatentUNet, _decoder_throughput, decoder_macs, load_autoencoder
from evaluators.proxy import EvalContext, evaluate
from nas.errors import ConfigError
from nas.gate import Gate
from nas.space import load_space

REPO = Path(__file__).resolve().parents[1]
# A recipe that trains in a second or two: enough for plumbing, not for quality.
TINY = {"factor": 2, "channels": 4, "width": 8, "steps": 30}


def tiny_space(tmp_path: Path, **latent: object) -> Path:
    path = tmp_path / "tiny_latent.yaml"
    path.write_text(yaml.safe_dump({"name": "tiny_latent", "extends": "latent.yaml", "latent": {**TINY, **latent}}))
    return path


@pytest.fixture(scope="module")
def tiny_latent() -> LatentConfig:
    return LatentConfig.parse(TINY, image_size=28, image_channels=1)


@pytest.fixture(scope="module")
def context(tiny_latent: LatentConfig) -> EvalContext:
    return EvalContext.load(dataset="mnist", image_size=28, channels=1, device="cpu", latent=tiny_latent)


def test_a_latent_space_searches_u_nets_over_latents(tmp_path: Path) -> None:
    space = load_space(tiny_space(tmp_path))
    assert space.data.latent == LatentConfig(factor=2, channels=4, width=8, steps=30, image_size=28, image_channels=1)
    for spec in space.sample(5, seed=0):
        assert (spec.in_channels, spec.image_size) == (4, 14)
    bundled = load_space("latent.yaml")
    assert bundled.data.latent.describe() == "kl autoencoder, factor 2, 4 channel(s): 4x14x14 latents"
    summary = subprocess.run([sys.executable, "-m", "nas.space", "validate", "latent.yaml"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout
    assert "latent: kl autoencoder, factor 2, 4 channel(s): 4x14x14 latents" in summary


def test_the_context_trains_on_cached_latents_and_scores_decoded_pixels(context: EvalContext) -> None:
    assert context.data.train.shape[1:] == (4, 14, 14) and context.data.held_out.shape[1:] == (4, 14, 14)
    assert 0.8 < float(context.data.train.std()) < 1.25  # LDM's scale factor: unit-variance latents
    assert context.reference.image_size == 28  # the FID proxy compares pixels
    pixels = context.to_pixels(context.data.held_out[:3])
    assert pixels.shape == (3, 1, 28, 28) and pixels.min() >= -1 and pixels.max() <= 1
    # Encoded once: a second context reads the latents from the disk cache, bit for bit.
    again = EvalContext.load(dataset="mnist", image_size=28, channels=1, device="cpu", latent=context.latent.config)
    assert torch.equal(again.data.train, context.data.train)


def test_a_latent_candidate_trains_and_samples_end_to_end_at_smoke(tmp_path: Path, context: EvalContext) -> None:
    space = load_space(tiny_space(tmp_path))
    spec = space.sample(1, seed=1)[0]
    result = evaluate(spec, budget=DEFAULT_BUDGETS["smoke"], context=context, artifacts_dir=tmp_path)
    assert result.status == "ok", result.reason
    assert result.val_loss is not None and result.fid_proxy is not None and result.fid_proxy > result.fid_floor
    assert result.reconstruction_fid is not None and result.reconstruction_fid > 0
    assert result.macs_with_decode == result.macs + decoder_macs(context.latent.config) > result.macs
    assert result.throughput_with_decode is not None and result.throughput_with_decode > 0
    with Image.open(tmp_path / "samples.png") as grid:  # smoke's 32 decoded 28x28 digits, 8 a row, 4x enlarged
        assert grid.size == ((8 * 30 + 2) * 4, (4 * 30 + 2) * 4)


def test_the_gate_counts_and_times_the_u_net_alone_and_with_one_decode(tmp_path: Path) -> None:
    space = load_space(tiny_space(tmp_path))
    budget = DEFAULT_BUDGETS["smoke"]
    gate = Gate.timed(space, budget=budget, device=torch.device("cpu"), precision=Precision.for_device("cpu"))
    costs = gate(space.sample(1, seed=0)[0]).costs
    assert costs["macs_with_decode"] == costs["macs"] + decoder_macs(space.data.latent)
    # One U-Net evaluation plus one decode: the per-image times add, the decoder's timed once per setting.
    decode = _decoder_throughput(space.data.latent, budget.throughput_batch, "cpu", "float32",
                                 timing_threads(torch.device("cpu")), budget.timing_repeat_s)
    assert _decoder_throughput.cache_info().hits >= 1  # the gate's own measurement, reused
    assert costs["throughput_with_decode"] == pytest.approx(1 / (1 / costs["throughput"] + 1 / decode))


def test_the_autoencoder_file_round_trips_and_a_space_can_name_it(tmp_path: Path, context: EvalContext) -> None:
    trained = context.latent.autoencoder
    path = save_autoencoder(trained, tmp_path / "ae.safetensors")
    back = read_autoencoder(path)
    assert back.scale == trained.scale and back.config == trained.config and back.identity == trained.identity
    assert all(torch.equal(a, b) for a, b in zip(back.model.state_dict().values(),
                                                 trained.model.state_dict().values(), strict=True))
    named = tmp_path / "named.yaml"
    named.write_text(yaml.safe_dump({"extends": "latent.yaml", "latent": {"autoencoder": str(path)}}))
    latent = load_space(named).data.latent
    assert (latent.factor, latent.channels, latent.width, latent.steps) == (2, 4, 8, 30)  # from the file
    assert load_autoencoder(latent, None).identity == trained.identity
    named.write_text(yaml.safe_dump({"extends": "latent.yaml", "latent": {"autoencoder": str(path), "factor": 4}}))
    with pytest.raises(ConfigError, match=r"latent.factor: the autoencoder file .* has factor 2, not 4"):
        load_space(named)
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    named.write_text(yaml.safe_dump({"extends": "latent.yaml",
                                     "latent": {"autoencoder": str(tmp_path / "foreign.safetensors")}}))
    with pytest.raises(ConfigError, match="is not an autoencoder file of this tool"):
        load_space(named)


def test_one_spec_of_a_latent_space_evaluates_as_python_m_evaluators_does(tmp_path: Path) -> None:
    from evaluators.spec_file import evaluate_spec_file

    space = tiny_space(tmp_path)
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(load_space(space).sample(1, seed=0)[0].to_yaml())
    result = evaluate_spec_file(spec_path, budget="smoke", space=str(space), device="cpu", threads=1)
    assert result.status == "ok", result.reason
    assert result.reconstruction_fid is not None and result.throughput_with_decode is not None


@pytest.mark.slow
def test_a_latent_search_exports_trains_and_loads_with_its_autoencoder(tmp_path: Path) -> None:
    space = tiny_space(tmp_path)
    out = tmp_path / "results"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", *args], cwd=tmp_path, capture_output=True, text=True)

    search = run("nas.search", "--space", str(space), "--trials", "2", "--budget", "smoke", "--out", str(out),
                 "--device", "cpu")
    assert search.returncode == 0, search.stderr[-2000:]
    trials = (out / "tiny_latent" / "trials.csv").read_text().splitlines()
    assert {"reconstruction_fid", "throughput_with_decode", "macs_with_decode"} <= set(trials[0].split(","))
    export = run("nas.export", "--study", "tiny_latent", "--results", str(out), "--out", "best.yaml")
    assert export.returncode == 0, export.stderr
    exported = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert exported["latent"]["autoencoder"] == "best.autoencoder.safetensors"
    assert (tmp_path / "best.autoencoder.safetensors").is_file()
    refused = run("nas.export", "--study", "tiny_latent", "--results", str(out), "--format", "diffusers")
    assert refused.returncode == 2 and "export it as yaml" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1

    # Without its space file the export cannot carry the autoencoder: a one-line error, not a bare U-Net.
    hidden = space.rename(tmp_path / "hidden.yaml")
    orphan = run("nas.export", "--study", "tiny_latent", "--results", str(out), "--out", "orphan.yaml")
    assert orphan.returncode == 2 and "its U-Nets model an autoencoder's latents" in orphan.stderr
    assert not (tmp_path / "orphan.yaml").exists()
    hidden.rename(space)

    untrained = nas.load_model(tmp_path / "best.yaml")
    assert isinstance(untrained, LatentUNet)
    train = run("nas.train", "--config", "best.yaml", "--out", "run", "--budget", "smoke", "--steps", "6")
    assert train.returncode == 0, train.stderr[-2000:]
    run_dir = tmp_path / "run"
    assert (run_dir / "autoencoder.safetensors").is_file()
    final = yaml.safe_load((run_dir / "final.json").read_text())
    assert final["status"] == "ok" and final["reconstruction_fid"] > 0
    model = nas.load_model(run_dir / "model.yaml")
    assert isinstance(model, LatentUNet)
    images = load_dataset("mnist", image_size=28, channels=1).held_out[:2]
    latents = model.encode(images)
    assert latents.shape == (2, 4, 14, 14)
    assert model(latents, torch.zeros(2, dtype=torch.long)).shape == (2, 4, 14, 14)
    assert model.decode(latents).shape == (2, 1, 28, 28)
    # The run's autoencoder is the export's: the same weights, so the run scored what the search did.
    exported_autoencoder = read_autoencoder(tmp_path / "best.autoencoder.safetensors")
    assert read_autoencoder(run_dir / "autoencoder.safetensors").identity == exported_autoencoder.identity

    # The latent-against-pixel benchmark pairs the latent front with a pixel search's trials.
    pixel = run("nas.search", "--space", str(REPO / "tests" / "data" / "tiny.yaml"), "--trials", "2", "--budget",
                "tiny", "--out", str(out), "--device", "cpu", "--sampler", "random")
    assert pixel.returncode == 0, pixel.stderr[-2000:]
    bench = subprocess.run([sys.executable, str(REPO / "benchmarks" / "latent_vs_pixel.py"), "--latent-storage",
                            f"sqlite:///{out}/tiny_latent.db", "--latent-study", "tiny_latent", "--pixel-storage",
                            f"sqlite:///{out}/tiny.db", "--pixel-study", "tiny", "--budget", "smoke", "--rounds", "1",
                            "--out", str(tmp_path / "bench")], cwd=tmp_path, capture_output=True, text=True)
    assert bench.returncode == 0, bench.stderr[-2000:]
    result = json.loads((tmp_path / "bench" / "latent_vs_pixel.json").read_text())
    assert result["pairs"] and (tmp_path / "bench" / "latent_vs_pixel.png").is_file()
    for row in result["pairs"]:
        assert row["latent_sample_ms"] > 0 and row["pixel_sample_ms"] > 0

    # The sampling benchmark scores one trained network with and without the latents' clip.
    sampling = subprocess.run([sys.executable, str(REPO / "benchmarks" / "latent_sampling.py"), "--storage",
                               f"sqlite:///{out}/tiny_latent.db", "--study", "tiny_latent", "--trials", "0",
                               "--steps", "4", "--budget", "smoke", "--out", str(tmp_path / "bench")],
                              cwd=tmp_path, capture_output=True, text=True)
    assert sampling.returncode == 0, sampling.stderr[-2000:]
    rows = json.loads((tmp_path / "bench" / "latent_sampling.json").read_text())["rows"]
    assert [(r["trial"], r["steps"], r["clipped_status"], r["unclipped_status"]) for r in rows] == [(0, 4, "ok", "ok")]
