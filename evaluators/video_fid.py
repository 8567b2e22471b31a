"""The per-frame FID proxy of a video search: every generated frame against the held-out frames.

A video candidate's samples are clips ``(N, C, F, H, W)``; :func:`evaluators.fid.score_samples`
scores them frame by frame (``N * F`` images) against the held-out clips' frames, with the
real-vs-real floor drawn from the train clips' frames at the same count.  The feature network:

- for ``moving_mnist``, the digit classifier of the embedded MNIST digits at the clips' size and
  channel count (the image searches' reference, trained once and cached), so a video search's
  FID proxy reads on the same features as an image search's;
- for a user's clips (no labels), the random-feature network :func:`evaluators.fid.get_reference`
  uses for unlabelled images, built on the clips' frames and cached by their content key.

The per-frame score sees each frame alone: a shuffled or frozen clip of good frames scores as
well as a real one.  A temporal score over clip features is still to come (issue 17).
"""

from __future__ import annotations

import os

import torch

from evaluators.data import ImageData, load_dataset
from evaluators.fid import FidReference, feature_stats, get_reference
from evaluators.video_data import VideoData, frames_of

__all__ = ["frame_reference"]


def frame_reference(data: VideoData, *, seed: int = 0, cache_dir: str | os.PathLike[str] | None = None,
                    device: torch.device | str = "cpu") -> FidReference:
    """The FID reference that scores ``data``'s generated clips frame by frame (module docstring)."""
    frames = ImageData(name=f"{data.name}-frames", train=frames_of(data.train), train_labels=None,
                       held_out=frames_of(data.held_out), held_out_labels=None, num_classes=None,
                       key=f"{data.key}-frames")
    if data.name != "moving_mnist":
        return get_reference(frames, seed=seed, cache_dir=cache_dir, device=device)
    digits = load_dataset("mnist", image_size=data.image_size, channels=data.channels, seed=seed)
    classifier = get_reference(digits, seed=seed, cache_dir=cache_dir, device=device)
    real = classifier.features(frames.held_out)
    mu, sigma = feature_stats(real)
    return FidReference(net=classifier.net, feature_kind=classifier.feature_kind, data=frames, real_features=real,
                        mu=mu, sigma=sigma, accuracy=classifier.accuracy, train_seconds=classifier.train_seconds,
                        cache_path=classifier.cache_path, from_cache=classifier.from_cache,
                        device=torch.device(device))
