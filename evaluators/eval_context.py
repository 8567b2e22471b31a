"""`EvalContext`: what every candidate of a study shares, loaded once per process.

The data (images, clips, or a latent search's encoded latents), the FID reference (and a video
search's clip reference), a latent search's autoencoder, the device and its precision policy,
and the values that depend on the budget but not on the candidate (floors, computed once).
:func:`evaluators.proxy.evaluate` takes one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from evaluators.budget import Budget
from evaluators.device import Precision, pick_device

__all__ = ["EvalContext"]


@dataclass
class EvalContext:
    """What every candidate of a study shares: data, FID reference, device and precision.

    Build it once per process with :meth:`load` (about a second with a cached reference) and
    pass it to every :func:`evaluate` call.
    """

    data: Any  # evaluators.data.ImageData, or evaluators.video_data.VideoData for a video search
    reference: Any  # evaluators.fid.FidReference, or None to skip the FID proxy
    device: torch.device
    # The temporal score's clip reference (evaluators.video_fid.clip_reference) of a video search.
    clip_reference: Any = None
    # A latent search's autoencoder (evaluators.latent.LatentCodec): ``data`` then holds latents,
    # ``reference`` is the pixel images', and samples are decoded before they are scored.
    latent: Any = None
    precision: Precision = field(default_factory=Precision)
    setup_seconds: float = 0.0
    # Values that depend on the budget but not on the candidate, computed once (evaluators.no_skill).
    memo: dict[Any, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, *, dataset: str = "mnist", image_size: int, channels: int, frames: int = 1,
             device: str | torch.device = "auto", seed: int = 0, fid: bool = True,
             cache_dir: str | Path | None = None, latent: Any = None) -> EvalContext:
        """Load the dataset (clips of ``frames`` frames when more than one) and (when ``fid``)
        the cached FID reference for it (per frame for clips, plus the temporal score's clip
        reference: :mod:`evaluators.video_fid`).  With ``latent`` (an
        :class:`evaluators.latent.LatentConfig`; ``image_size`` and ``channels`` are then the
        pixel data's) the data are encoded by its autoencoder (:mod:`evaluators.latent`)."""
        started = time.perf_counter()
        dev = pick_device(device)
        reference = clip_ref = codec = None
        if frames > 1:
            from evaluators.video_data import load_video_dataset

            data = load_video_dataset(dataset, frames=frames, image_size=image_size, channels=channels, seed=seed)
            if fid:
                from evaluators.video_fid import clip_reference, frame_reference

                reference = frame_reference(data, seed=seed, cache_dir=cache_dir, device=dev)
                clip_ref = clip_reference(data, seed=seed, cache_dir=cache_dir, device=dev)
        else:
            from evaluators.data import load_dataset

            data = load_dataset(dataset, image_size=image_size, channels=channels, seed=seed)
            if fid:
                from evaluators.fid import get_reference

                reference = get_reference(data, seed=seed, cache_dir=cache_dir, device=dev)
            if latent is not None:
                from evaluators.latent import LatentCodec, encode_dataset, load_autoencoder

                autoencoder = load_autoencoder(latent, data, device=dev, cache_dir=cache_dir)
                data = encode_dataset(data, autoencoder, cache_dir=cache_dir)
                codec = LatentCodec(latent, autoencoder, clip=float(data.train.abs().max()))
        return cls(data=data, reference=reference, device=dev, clip_reference=clip_ref, latent=codec,
                   precision=Precision.for_device(dev), setup_seconds=time.perf_counter() - started)

    @property
    def sample_clip(self) -> bool | float:
        """The sampler's bound on x0 estimates: ``[-1, 1]`` for pixels, the latents' range in a latent search."""
        return self.latent.clip if self.latent is not None else True

    def to_pixels(self, samples: torch.Tensor) -> torch.Tensor:
        """Generated samples as images to score: decoded in a latent search, else as they are."""
        return self.latent.to_pixels(samples) if self.latent is not None else samples

    def reconstruction_fid(self, n: int) -> float | None:
        """A latent search's floor at ``n`` samples: the FID proxy of real images after an
        encode-decode round trip (computed once per count; None outside latent searches)."""
        if self.latent is None or self.reference is None or n < 2:
            return None
        key = ("reconstruction_fid", n)
        if key not in self.memo:
            from evaluators.autoencoder import reconstruction_scores

            self.memo[key] = reconstruction_scores(self.latent.autoencoder, self.reference, n)["reconstruction_fid"]
        return self.memo[key]

    def prepare(self, budget: Budget) -> None:
        """Compute what depends on the budget but not on the candidate (the FID proxy's
        real-vs-real floor at ``budget.fid_samples``, and the temporal score's), once; its time
        counts as setup."""
        if self.reference is None or budget.fid_samples < 2:
            return
        started = time.perf_counter()
        for reference in (self.reference, self.clip_reference):
            if reference is not None:
                reference.floor(budget.fid_samples, seed=0)  # cached by the reference
        self.reconstruction_fid(budget.fid_samples)
        self.setup_seconds += time.perf_counter() - started
