"""The latent search's autoencoder: shapes, learning, the latent scale, errors and the disk cache."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from evaluators.autoencoder import AutoencoderConfig, LatentAutoencoder, get_autoencoder, train_autoencoder
from evaluators.data import load_dataset
from nas.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
TINY = AutoencoderConfig(factor=2, channels=2, width=8, steps=40, batch_size=16, lr=4e-3)


@pytest.mark.parametrize(("factor", "channels"), [(1, 3), (2, 4), (4, 4)])
def test_encoder_and_decoder_round_trip_shapes(factor: int, channels: int) -> None:
    model = LatentAutoencoder(in_channels=1, config=AutoencoderConfig(factor=factor, channels=channels, width=8))
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    recon, mean, logvar = model(x)
    assert mean.shape == logvar.shape == (3, channels, 28 // factor, 28 // factor)
    assert recon.shape == x.shape


def test_a_tiny_run_lowers_the_reconstruction_loss_and_is_deterministic() -> None:
    images = load_dataset("mnist", image_size=28, channels=1).train[:256]
    model, curve = train_autoencoder(images, config=TINY, seed=0)
    assert len(curve) == TINY.steps and not model.training
    assert sum(curve[-5:]) / 5 < 0.6 * sum(curve[:5]) / 5, curve
    again, curve_again = train_autoencoder(images, config=TINY, seed=0)
    assert curve_again == curve
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values(),
                                                 strict=True))


def test_bad_factors_and_sizes_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match=r"expected a power of two \(1, 2, 4, 8\), got 3") as err:
        AutoencoderConfig(factor=3)
    assert err.value.key == "latent.factor"
    with pytest.raises(ConfigError, match="expected an integer in \\[1, 64\\], got 0"):
        AutoencoderConfig(channels=0)
    with pytest.raises(ConfigError, match=r"latent.factor 8 must divide the image size; got images of shape "
                                          r"\(4, 1, 28, 28\)"):
        train_autoencoder(torch.zeros(4, 1, 28, 28), config=AutoencoderConfig(factor=8, steps=1))


def test_the_cached_autoencoder_has_unit_scale_latents_and_is_reused_by_another_process(tmp_path: Path) -> None:
    data = load_dataset("mnist", image_size=28, channels=1)
    cache = tmp_path / "cache"
    first = get_autoencoder(data, config=TINY, cache_dir=cache)
    assert not first.from_cache and first.held_out_mse > 0
    latents = first.encode(data.train[:512])
    assert latents.shape == (512, 2, 14, 14) and 0.8 < float(latents.std()) < 1.25  # LDM's scale factor
    decoded = first.decode(latents[:4])
    assert decoded.shape == (4, 1, 28, 28) and decoded.min() >= -1 and decoded.max() <= 1
    code = ("from evaluators.autoencoder import AutoencoderConfig, get_autoencoder; "
            "from evaluators.data import load_dataset; "
            "cfg = AutoencoderConfig(factor=2, channels=2, width=8, steps=40, batch_size=16, lr=4e-3); "
            f"ae = get_autoencoder(load_dataset('mnist', image_size=28, channels=1), config=cfg, "
            f"cache_dir={str(cache)!r}); print(ae.from_cache, repr(ae.scale))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    from_cache, scale = out.stdout.split()
    assert from_cache == "True" and float(scale) == first.scale
