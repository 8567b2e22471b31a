"""The autoencoder of a latent diffusion search: a small KL-regularised VAE trained once per data set.

Stable Diffusion (Rombach et al., 2022) splits generation into an autoencoder that maps images
to a smaller latent grid and back, and a U-Net that models the latents.  This is that
autoencoder at the scale of the embedded digits: an encoder of 3x3 convolutions (GroupNorm,
SiLU) that halves the resolution ``log2(factor)`` times with strided convolutions and ends in
the mean and log-variance of ``channels`` latent channels, and a mirror-image decoder
(nearest-neighbour upsampling, then convolutions) back to pixels in [-1, 1].  Training minimises
the reconstruction MSE plus ``kl_weight`` times the KL divergence to a unit Gaussian (a light
regularisation, as in LDM's "KL-f4"/"KL-f8" models), deterministically for a seed and thread
count, with AdamW and a one-cycle schedule for a fixed number of steps.  The default recipe
(width 16, 600 steps of 64 images) on the embedded MNIST at 28x28, one CPU thread: factor 4 with 4
channels in 76 s, held-out MSE 0.0129, reconstruction FID proxy 43.4 at 256 samples (floor 6.8);
factor 2 in 52 s, 0.0045 and 12.0 (width 32 and 1,500 steps: 473 s, 0.0013 and 7.4).

A space's ``latent:`` key (:mod:`evaluators.latent`) puts it in front of the U-Nets of a search.

Latents are the encoder's means times ``scale``, the inverse standard deviation of the train
latents (LDM's scale factor), so a diffusion model sees unit-variance inputs; :meth:`decode`
divides it out again.  :func:`get_autoencoder` caches the trained weights, the scale and the
held-out reconstruction error on disk (``$UNET_NAS_CACHE``, atomically and under a file lock,
like the FID reference), keyed by the data set, factor, channels, seed and recipe.
:func:`save_autoencoder` writes a trained one as a self-describing safetensors file (weights,
recipe, scale, pixel shape), which :func:`read_autoencoder` brings back: the file a ``nas.train``
run directory or an export carries, and what a space's ``latent: {autoencoder: PATH}`` names.
:func:`reconstruction_scores` gives the floor a latent U-Net cannot beat: the FID proxy of
reconstructed held-out-sized samples of real images against the held-out images.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evaluators.classifier import deterministic
from evaluators.contention import REFERENCE_THREADS, cpu_threads
from evaluators.data import ImageData
from evaluators.datasets.base import safe_token
from nas.errors import ConfigError
from nas.io import atomic_writer

__all__ = ["AUTOENCODER_CACHE_VERSION", "AutoencoderConfig", "LatentAutoencoder", "TrainedAutoencoder",
           "autoencoder_file_info", "get_autoencoder", "read_autoencoder", "reconstruction_scores",
           "save_autoencoder", "train_autoencoder"]

AUTOENCODER_CACHE_VERSION = 1  # bump when the network or its training change
_BATCH = 256
_FILE_FORMAT = "unet-nas-autoencoder/1"  # the safetensors metadata's "format"


@dataclass(frozen=True)
class AutoencoderConfig:
    """Shape and training recipe of the autoencoder; all of it is part of the cache key."""

    factor: int = 4  # downsampling factor: a power of two
    channels: int = 4  # latent channels
    width: int = 16  # channels of the first stage (doubled at each downsampling, at most 4x)
    steps: int = 600
    batch_size: int = 64
    lr: float = 2e-3
    kl_weight: float = 1e-4

    def __post_init__(self) -> None:
        if isinstance(self.factor, bool) or not isinstance(self.factor, int) or self.factor < 1 or (
                self.factor & (self.factor - 1)):
            raise ConfigError(f"expected a power of two (1, 2, 4, 8), got {self.factor!r}", key="latent.factor")
        if isinstance(self.channels, bool) or not isinstance(self.channels, int) or not 1 <= self.channels <= 64:
            raise ConfigError(f"expected an integer in [1, 64], got {self.channels!r}", key="latent.channels")


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(min(8, cout), cout), nn.SiLU())


class LatentAutoencoder(nn.Module):
    """Encoder ``(N, C, H, W) -> (N, 2 * channels, H / factor, W / factor)`` (mean, log-variance)
    and decoder back (module docstring)."""

    def __init__(self, *, in_channels: int, config: AutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        downs = int(math.log2(config.factor))
        widths = [min(config.width * 2 ** i, 4 * config.width) for i in range(downs + 1)]
        enc: list[nn.Module] = [_block(in_channels, widths[0])]
        for i in range(downs):
            enc += [nn.Conv2d(widths[i], widths[i + 1], 3, stride=2, padding=1), _block(widths[i + 1], widths[i + 1])]
        enc.append(nn.Conv2d(widths[-1], 2 * config.channels, 1))
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(config.channels, widths[-1], 3, padding=1), _block(widths[-1], widths[-1])]
        for i in reversed(range(downs)):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), _block(widths[i + 1], widths[i])]
        dec.append(nn.Conv2d(widths[0], in_channels, 3, padding=1))
        self.decoder = nn.Sequential(*dec)

    def moments(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance (clamped to [-30, 20], as LDM does) of the latent posterior."""
        mean, logvar = self.encoder(images).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Reconstruction from a posterior sample, and the posterior's mean and log-variance."""
        mean, logvar = self.moments(images)
        noise = torch.randn(mean.shape, generator=generator).to(mean.device)
        z = mean + (0.5 * logvar).exp() * noise
        return self.decoder(z), mean, logvar


def _check_shape(images: Tensor, factor: int) -> None:
    if images.ndim != 4 or images.shape[-1] % factor or images.shape[-2] % factor:
        raise ConfigError(f"latent.factor {factor} must divide the image size; got images of shape "
                          f"{tuple(images.shape)}", key="latent.factor")


def train_autoencoder(images: Tensor, *, config: AutoencoderConfig, seed: int = 0,
                      device: torch.device | str = "cpu") -> tuple[LatentAutoencoder, list[float]]:
    """Train a :class:`LatentAutoencoder` on ``images`` (N, C, H, W) in [-1, 1]; returns it in eval
    mode and the reconstruction MSE of each step (the training curve)."""
    _check_shape(images, config.factor)
    device = torch.device(device)
    with torch.random.fork_rng(devices=[]):  # a seeded initialisation that leaves the caller's RNG alone
        torch.manual_seed(seed)
        model = LatentAutoencoder(in_channels=images.shape[1], config=config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.steps)
    generator = torch.Generator().manual_seed(seed)
    curve = []
    with deterministic():
        model.train()
        for _ in range(config.steps):
            idx = torch.randint(0, len(images), (config.batch_size,), generator=generator)
            x = images[idx].to(device)
            recon, mean, logvar = model(x, generator)
            mse = F.mse_loss(recon, x)
            kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=(1, 2, 3)).mean() / x[0].numel()
            loss = mse + config.kl_weight * kl
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            curve.append(float(mse.detach()))
    return model.eval(), curve


class TrainedAutoencoder:
    """A trained autoencoder with its latent scale, as a latent search uses it."""

    def __init__(self, model: LatentAutoencoder, *, scale: float, held_out_mse: float, train_seconds: float,
                 from_cache: bool, device: torch.device, identity: str, image_channels: int) -> None:
        self.model = model.to(device).eval().requires_grad_(False)
        self.config = model.config
        self.identity = identity  # names these weights in cache keys (the encoded data's)
        self.image_channels = image_channels
        self.scale = scale
        self.held_out_mse = held_out_mse
        self.train_seconds = train_seconds
        self.from_cache = from_cache
        self.device = device

    @torch.no_grad()
    def encode(self, images: Tensor, *, batch_size: int = _BATCH) -> Tensor:
        """Images (N, C, H, W) in [-1, 1] -> scaled latents (N, channels, H / factor, W / factor), on the CPU."""
        _check_shape(images, self.config.factor)
        chunks = [self.model.moments(images[i:i + batch_size].to(self.device))[0].cpu()
                  for i in range(0, len(images), batch_size)]
        return torch.cat(chunks) * self.scale

    @torch.no_grad()
    def decode(self, latents: Tensor, *, batch_size: int = _BATCH) -> Tensor:
        """Scaled latents -> images in [-1, 1] (clamped), on the CPU."""
        chunks = [self.model.decoder(latents[i:i + batch_size].to(self.device) / self.scale).clamp(-1, 1).cpu()
                  for i in range(0, len(latents), batch_size)]
        return torch.cat(chunks)


def get_autoencoder(data: ImageData, *, config: AutoencoderConfig | None = None, seed: int = 0,
                    cache_dir: str | os.PathLike[str] | None = None,
                    device: torch.device | str = "cpu") -> TrainedAutoencoder:
    """The autoencoder for ``data``: from the disk cache, or trained on its train split and cached."""
    from evaluators.fid import load_or_build

    config = config or AutoencoderConfig()
    device = torch.device(device)
    key: dict[str, Any] = {"version": AUTOENCODER_CACHE_VERSION, "data": data.key, "seed": seed, **asdict(config)}

    def build() -> dict[str, Any]:
        started = time.perf_counter()
        # One thread: the cached weights must not depend on how busy the machine was.
        with cpu_threads(REFERENCE_THREADS if device.type == "cpu" else None):
            model, curve = train_autoencoder(data.train, config=config, seed=seed, device=device)
            with torch.no_grad():
                train_means = torch.cat([model.moments(data.train[i:i + _BATCH].to(device))[0].cpu()
                                         for i in range(0, len(data.train), _BATCH)])
                scale = float(1.0 / train_means.std())
                recon = torch.cat([model.decoder(model.moments(data.held_out[i:i + _BATCH].to(device))[0]).cpu()
                                   for i in range(0, len(data.held_out), _BATCH)])
        return {"state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "scale": scale,
                "held_out_mse": float(F.mse_loss(recon.clamp(-1, 1), data.held_out)), "curve": curve,
                "train_seconds": time.perf_counter() - started}

    stem = f"vae-f{config.factor}c{config.channels}-{safe_token(data.key)}-seed{seed}"
    payload, _path, from_cache = load_or_build(stem, key, build, cache_dir=cache_dir)
    model = LatentAutoencoder(in_channels=data.channels, config=config)
    model.load_state_dict(payload["state_dict"])
    identity = f"{stem}-{hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]}"
    return TrainedAutoencoder(model, scale=float(payload["scale"]), held_out_mse=float(payload["held_out_mse"]),
                              train_seconds=float(payload["train_seconds"]), from_cache=from_cache, device=device,
                              identity=identity, image_channels=data.channels)


# ----- the autoencoder file ---------------------------------------------------------------------
def save_autoencoder(autoencoder: TrainedAutoencoder, path: str | os.PathLike[str]) -> Path:
    """Write ``autoencoder`` to ``path`` (safetensors: the weights, and as metadata its recipe,
    latent scale, pixel channels and held-out MSE), atomically; returns the path."""
    from safetensors.torch import save

    metadata = {"format": _FILE_FORMAT, "config": json.dumps(asdict(autoencoder.config)),
                "scale": repr(autoencoder.scale), "held_out_mse": repr(autoencoder.held_out_mse),
                "train_seconds": repr(autoencoder.train_seconds), "image_channels": str(autoencoder.image_channels),
                "identity": autoencoder.identity}
    tensors = {k: v.detach().cpu().contiguous() for k, v in autoencoder.model.state_dict().items()}
    with atomic_writer(Path(path), binary=True) as handle:
        handle.write(save(tensors, metadata=metadata))
    return Path(path)


def autoencoder_file_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata of an autoencoder file (``config`` as an :class:`AutoencoderConfig`), without
    reading its weights; a missing or foreign file is a :class:`ConfigError` naming it."""
    from safetensors import safe_open

    if not Path(path).is_file():
        raise ConfigError(f"no autoencoder file at {str(path)!r}: expected 'kl' (trained here and cached) or the "
                          "path of an autoencoder.safetensors file (a nas.train run of a latent space writes one)",
                          key="latent.autoencoder")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as err:  # noqa: BLE001 - a truncated or foreign file
        raise ConfigError(f"{str(path)!r} is not a safetensors file ({type(err).__name__})",
                          key="latent.autoencoder") from None
    if metadata.get("format") != _FILE_FORMAT:
        raise ConfigError(f"{str(path)!r} is not an autoencoder file of this tool (metadata format "
                          f"{metadata.get('format')!r}, expected {_FILE_FORMAT!r})", key="latent.autoencoder")
    return {"config": AutoencoderConfig(**json.loads(metadata["config"])), "scale": float(metadata["scale"]),
            "held_out_mse": float(metadata["held_out_mse"]), "train_seconds": float(metadata["train_seconds"]),
            "image_channels": int(metadata["image_channels"]), "identity": metadata["identity"]}


def read_autoencoder(path: str | os.PathLike[str], *, device: torch.device | str = "cpu") -> TrainedAutoencoder:
    """The autoencoder :func:`save_autoencoder` wrote to ``path``."""
    from safetensors.torch import load_file

    info = autoencoder_file_info(path)
    model = LatentAutoencoder(in_channels=info["image_channels"], config=info["config"])
    model.load_state_dict(load_file(str(path)))
    return TrainedAutoencoder(model, scale=info["scale"], held_out_mse=info["held_out_mse"],
                              train_seconds=info["train_seconds"], from_cache=True, device=torch.device(device),
                              identity=info["identity"], image_channels=info["image_channels"])


def reconstruction_scores(autoencoder: TrainedAutoencoder, reference: Any, n: int, *,
                          seed: int = 0) -> dict[str, float]:
    """The floor of a latent search at ``n`` samples: the FID proxy of ``n`` real train images
    after an encode-decode round trip (the same seeded draw as the reference's real-vs-real
    floor), next to that floor itself (:class:`evaluators.fid.FidReference`)."""
    from evaluators.fid import score_samples

    recon = autoencoder.decode(autoencoder.encode(reference.real_sample(n, seed=seed)))
    scores = score_samples(recon, reference, seed=seed)
    return {"reconstruction_fid": float(scores["fid_proxy"]), "fid_floor": float(scores["fid_floor"]),
            "held_out_mse": autoencoder.held_out_mse}
