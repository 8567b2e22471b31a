"""Latent diffusion spaces: U-Nets that model an autoencoder's latents (Stable Diffusion's split).

A space's top-level ``latent:`` key::

    latent: {autoencoder: kl, factor: 2, channels: 4}   # or {autoencoder: PATH/autoencoder.safetensors}

puts the small KL autoencoder of :mod:`evaluators.autoencoder` between the data and the U-Nets:

* ``autoencoder: kl`` (the default) trains it once per data set, recipe and seed and caches it on
  disk (``width`` and ``steps`` set the recipe); a path names a file written by
  :func:`evaluators.autoencoder.save_autoencoder` (every ``nas.train`` run of a latent space and
  every export of one carries it), whose factor and channels then come from the file;
* candidates are U-Nets over ``channels x (image_size / factor)^2`` latents: the space's specs get
  that shape, the train and held-out images are encoded once (means times the latent scale) and
  cached on disk (:func:`encode_dataset`), so training and the held-out loss run on latents;
* their DDIM samples (x0 estimates clipped to the latents' range, :class:`LatentCodec`) are
  decoded to pixels before the FID proxy (:meth:`LatentCodec.to_pixels`),
  which is scored against the real images as in a pixel space, next to the autoencoder's own
  reconstruction FID at the same sample count (``reconstruction_fid``: the floor no latent
  U-Net can beat);
* ``throughput`` and ``macs`` are the U-Net's alone (one denoiser evaluation of a latent, what a
  sampler repeats N times); ``throughput_with_decode`` and ``macs_with_decode`` add one decode
  per image, the decoder timed once per process under the same policy as the candidates.

:class:`LatentUNet` is what ``nas.load_model`` returns for a latent model: the U-Net (its
``forward`` is the U-Net's, over latents) with the autoencoder beside it (``encode``/``decode``).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from evaluators.autoencoder import AutoencoderConfig, LatentAutoencoder, TrainedAutoencoder
from nas.errors import ConfigError, close_match_hint

__all__ = ["BUILT_IN", "LatentCodec", "LatentConfig", "LatentUNet", "decoder_macs", "encode_dataset",
           "load_autoencoder", "macs_with_decode", "throughput_with_decode"]

BUILT_IN = "kl"  # the autoencoder trained here (evaluators.autoencoder), cached per data set
_RECIPE_KEYS = ("width", "steps")  # the built-in's recipe a space may change


@dataclass(frozen=True)
class LatentConfig:
    """A latent space's autoencoder and the pixel data it maps (the module docstring).

    ``image_size`` and ``image_channels`` are the pixel data's (the space's ``data:``), filled in
    by the loader; ``latent_size`` and ``channels`` are the shape the U-Nets model.
    """

    autoencoder: str = BUILT_IN
    factor: int = 4
    channels: int = 4
    width: int = AutoencoderConfig.width
    steps: int = AutoencoderConfig.steps
    image_size: int = 28
    image_channels: int = 1

    @classmethod
    def parse(cls, raw: Any, *, image_size: int, image_channels: int) -> LatentConfig:
        """A space's ``latent:`` mapping, checked against its pixel data; errors name ``latent.<key>``."""
        if not isinstance(raw, dict):
            raise ConfigError(f"expected a mapping {{autoencoder: kl|PATH, factor: F, channels: C}}, got {raw!r}",
                              key="latent")
        valid = ["autoencoder", "factor", "channels", *_RECIPE_KEYS]
        for key in raw:
            if key not in valid:
                raise ConfigError(f"unknown key{close_match_hint(str(key), valid)}; valid keys are {valid}",
                                  key=f"latent.{key}")
        autoencoder = raw.get("autoencoder", BUILT_IN)
        if not isinstance(autoencoder, str) or not autoencoder:
            raise ConfigError(f"expected 'kl' or the path of an autoencoder file, got {autoencoder!r}",
                              key="latent.autoencoder")
        values = {k: raw[k] for k in ("factor", "channels", *_RECIPE_KEYS) if k in raw}
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"expected a positive integer, got {value!r}", key=f"latent.{key}")
        if autoencoder != BUILT_IN:
            values = _from_file(autoencoder, values, image_channels=image_channels)
        recipe = AutoencoderConfig(**{k: values[k] for k in ("factor", "channels", *_RECIPE_KEYS) if k in values})
        config = cls(autoencoder=autoencoder, factor=recipe.factor, channels=recipe.channels, width=recipe.width,
                     steps=recipe.steps, image_size=image_size, image_channels=image_channels)
        if image_size % config.factor:
            raise ConfigError(f"factor {config.factor} does not divide the image size {image_size} (data.image_size)",
                              key="latent.factor")
        return config

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatentConfig:
        """Inverse of :meth:`to_dict` (as an export or a run's settings store it)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as exports and ``run.json`` store it."""
        return asdict(self)

    @property
    def latent_size(self) -> int:
        """Height and width of the latents the U-Nets model."""
        return self.image_size // self.factor

    @property
    def recipe(self) -> AutoencoderConfig:
        """The built-in autoencoder's shape and training recipe."""
        return AutoencoderConfig(factor=self.factor, channels=self.channels, width=self.width, steps=self.steps)

    def describe(self) -> str:
        """One line for summaries: ``kl autoencoder, factor 2, 4 channels: 4x14x14 latents``."""
        source = "kl autoencoder" if self.autoencoder == BUILT_IN else f"autoencoder {self.autoencoder}"
        return (f"{source}, factor {self.factor}, {self.channels} channel(s): "
                f"{self.channels}x{self.latent_size}x{self.latent_size} latents")


def _from_file(path: str, given: dict[str, Any], *, image_channels: int) -> dict[str, Any]:
    """The shape and recipe of the autoencoder file at ``path``; given keys must agree with it."""
    from evaluators.autoencoder import autoencoder_file_info

    info = autoencoder_file_info(path)
    stored = {k: getattr(info["config"], k) for k in ("factor", "channels", *_RECIPE_KEYS)}
    for key, value in given.items():
        if stored[key] != value:
            raise ConfigError(f"the autoencoder file {path!r} has {key} {stored[key]}, not {value}; leave "
                              f"latent.{key} out to use the file's", key=f"latent.{key}")
    if info["image_channels"] != image_channels:
        raise ConfigError(f"the autoencoder file {path!r} maps images of {info['image_channels']} channel(s); the "
                          f"space's data have {image_channels}", key="latent.autoencoder")
    return stored


def load_autoencoder(latent: LatentConfig, data: Any, *, device: torch.device | str = "cpu",
                     cache_dir: str | Path | None = None) -> TrainedAutoencoder:
    """The trained autoencoder of ``latent`` for pixel ``data``: the built-in from the disk cache (or
    trained on ``data``'s train split, then cached), or read from the named file."""
    from evaluators.autoencoder import get_autoencoder, read_autoencoder

    if latent.autoencoder == BUILT_IN:
        return get_autoencoder(data, config=latent.recipe, seed=0, cache_dir=cache_dir, device=device)
    return read_autoencoder(latent.autoencoder, device=device)


def encode_dataset(data: Any, autoencoder: TrainedAutoencoder, *, cache_dir: str | Path | None = None) -> Any:
    """``data`` (an :class:`~evaluators.data.ImageData`) with its train and held-out images replaced
    by their scaled latents, encoded once and cached on disk (labels and split kept)."""
    import dataclasses

    from evaluators.fid import load_or_build

    key = {"data": data.key, "autoencoder": autoencoder.identity}

    def build() -> dict[str, Any]:
        return {"train": autoencoder.encode(data.train), "held_out": autoencoder.encode(data.held_out)}

    digest = hashlib.sha1(autoencoder.identity.encode()).hexdigest()[:8]  # a short, stable file-name part
    payload, _path, _cached = load_or_build(f"latents-{digest}", key, build, cache_dir=cache_dir)
    return dataclasses.replace(data, name=f"{data.name}-latent", train=payload["train"],
                               held_out=payload["held_out"], key=f"{data.key}-latent{digest}")


@dataclass
class LatentCodec:
    """A latent search's autoencoder, as the evaluator uses it: decode samples before scoring.

    ``clip`` bounds the sampler's x0 estimates, as ``[-1, 1]`` bounds a pixel search's: the
    largest absolute value of the encoded train latents.  Unclipped, a briefly trained U-Net's
    first DDIM steps (where the cosine schedule's signal level is near 0) blow x0 estimates up:
    ``benchmarks/latent_sampling.py`` measured the FID proxy 17-136 worse without the clip on two
    latent.yaml candidates at 100 and 300 steps.
    """

    config: LatentConfig
    autoencoder: TrainedAutoencoder
    clip: float = 1.0

    def to_pixels(self, latents: Tensor) -> Tensor:
        """Sampled latents (N, C, h, w) -> images in [-1, 1] on the CPU."""
        return self.autoencoder.decode(latents.float())


# ----- the cost of one decode ---------------------------------------------------------------------
class _DecodeOnly(nn.Module):
    """The decoder with a denoiser's call signature, so the candidates' timing code times it."""

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.decoder(x)


def _decoder(latent: LatentConfig) -> nn.Module:
    # The cost does not depend on the weights: a freshly built decoder of the same shape.
    return LatentAutoencoder(in_channels=latent.image_channels, config=latent.recipe).decoder


@functools.lru_cache(maxsize=16)
def decoder_macs(latent: LatentConfig) -> int:
    """Multiply-accumulates of decoding one latent (:func:`nas.cost.meta_macs`)."""
    from nas.cost import meta_macs

    return meta_macs(lambda: _decoder(latent),
                     lambda: (torch.zeros(1, latent.channels, latent.latent_size, latent.latent_size),))


@functools.lru_cache(maxsize=16)
def _decoder_throughput(latent: LatentConfig, batch_size: int, device: str, dtype: str, num_threads: int | None,
                        min_repeat_s: float) -> float:
    from evaluators.throughput import timing_figures

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        decoder = _DecodeOnly(_decoder(latent))
    figures = timing_figures(decoder, input_shape=(latent.channels, latent.latent_size, latent.latent_size),
                             batch_size=batch_size, sample_steps=1, device=torch.device(device), dtype=dtype,
                             num_threads=num_threads, min_repeat_s=min_repeat_s)
    return float(figures["throughput"])


def macs_with_decode(macs: int, latent: LatentConfig) -> int:
    """A U-Net's ``macs`` (one evaluation of a latent) plus one decode of it to pixels."""
    return int(macs) + decoder_macs(latent)


def throughput_with_decode(throughput: float, latent: LatentConfig, *, batch_size: int, device: torch.device,
                           dtype: str, num_threads: int | None, min_repeat_s: float) -> float:
    """Images/s of one U-Net evaluation (at ``throughput``) plus one decode per image: the two
    per-image times added, the decoder timed once per process and setting like a candidate."""
    decode = _decoder_throughput(latent, batch_size, str(device), dtype, num_threads, min_repeat_s)
    return 1.0 / (1.0 / float(throughput) + 1.0 / decode)


# ----- the loaded model ---------------------------------------------------------------------------
class LatentUNet(nn.Module):
    """A latent model as ``nas.load_model`` returns it: ``forward(x, t)`` is the U-Net's over
    scaled latents; :meth:`encode` and :meth:`decode` map images in [-1, 1] to latents and back."""

    def __init__(self, unet: nn.Module, autoencoder: TrainedAutoencoder, latent: LatentConfig) -> None:
        super().__init__()
        self.unet = unet
        self.autoencoder = autoencoder.model
        self.scale = autoencoder.scale
        self.latent = latent

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.unet(x, t)

    def _device(self) -> torch.device:
        return next(self.autoencoder.parameters()).device

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """Images (N, C, H, W) in [-1, 1] -> scaled latents (the encoder's means)."""
        return self.autoencoder.moments(images.to(self._device()))[0] * self.scale

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """Scaled latents -> images in [-1, 1]."""
        return self.autoencoder.decoder(latents.to(self._device()) / self.scale).clamp(-1, 1)
