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
well as a real one.  The temporal score, ``fvd_proxy`` (:func:`clip_reference`,
:func:`temporal_scores`), is the FVD recipe (Unterthiner et al., 2018) at small scale: the
Fréchet distance between features of whole clips, generated against held-out, from the 3D CNN of
:mod:`evaluators.clip_classifier`:

- for ``moving_mnist``, trained once on labelled one-digit clips of the embedded digits (their
  motion and their class; a generator stream of their own and train digits only) and cached on
  disk like the image classifier (``clip_classifier``);
- for a user's clips, the same network randomly initialised from the seed with its BatchNorm
  statistics set from the train clips (``clip_random``), the video analogue of ``random``.

``fvd_floor`` is the same distance for real train clips at the same count (seeded draw).  How
clearly it separates real clips from frame-shuffled and frozen ones is measured by
``benchmarks/temporal_score.py``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import torch

from evaluators.classifier import TrainConfig
from evaluators.clip_classifier import build_clip_net, clip_accuracy, train_clip_classifier
from evaluators.contention import REFERENCE_THREADS, cpu_threads
from evaluators.data import ImageData, load_dataset
from evaluators.datasets.base import safe_token
from evaluators.fid import (
    FidReference,
    calibrate_batchnorm,
    extract_features,
    feature_stats,
    get_reference,
    load_or_build,
)
from evaluators.video_data import VideoData, frames_of, moving_mnist_labelled

__all__ = ["CLIP_TRAIN", "CLIP_TRAIN_CLIPS", "clip_reference", "frame_reference", "temporal_scores"]

CLIP_CACHE_VERSION = 1  # bump when the clip network, its data or its training change
CLIP_TRAIN_CLIPS = 3000  # labelled clips the clip classifier trains on (500 more measure its accuracy)
CLIP_CHECK_CLIPS = 500
# 400 steps of 64 clips (about 9 passes over the clips): 72-74 s on one CPU thread for 8 x 32 x 32 clips
# (2-core machine, quiet, two builds), motion accuracy 0.852 and digit accuracy 0.948 on 500 clips it
# has not seen (300 and 600 steps with two threads: 0.82 / 0.93 and 0.84 / 0.96).
CLIP_TRAIN = TrainConfig(epochs=100, batch_size=64, lr=4e-3, weight_decay=1e-4, max_shift=2, max_steps=400)


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


def clip_reference(data: VideoData, *, seed: int = 0, cache_dir: str | os.PathLike[str] | None = None,
                   device: torch.device | str = "cpu") -> FidReference:
    """The reference of the temporal score for ``data``: a clip feature network (trained on labelled
    Moving MNIST clips, or random for a user's clips; module docstring) and the features of the
    held-out clips.  The network comes from the disk cache or is built and cached: the trained
    one is keyed by the clips' frames, size and channels (not by how many clips ``data`` has, so
    every Moving MNIST variant of that shape shares it), the random one by ``data`` itself.  Its
    ``accuracy`` is the motion accuracy on unseen labelled clips (None for random features)."""
    device = torch.device(device)
    kind = "clip_classifier" if data.name == "moving_mnist" else "clip_random"
    key: dict[str, Any] = {"version": CLIP_CACHE_VERSION, "kind": kind, "seed": seed}
    if kind == "clip_classifier":
        key.update(frames=data.frames, image_size=data.image_size, channels=data.channels,
                   train=CLIP_TRAIN.as_dict(), clips=CLIP_TRAIN_CLIPS)
        stem = f"fvd-{kind}-{data.frames}f-{data.image_size}px-c{data.channels}-seed{seed}"
    else:
        key["data"] = data.key
        stem = f"fvd-{kind}-{safe_token(data.key)}-seed{seed}"

    def build() -> dict[str, Any]:
        started = time.perf_counter()
        accuracy: tuple[float, float] | None = None
        # A fixed CPU thread count: the reference must not depend on the machine's load then.
        with cpu_threads(REFERENCE_THREADS if device.type == "cpu" else None):
            if kind == "clip_classifier":
                clips, motion, content = moving_mnist_labelled(
                    CLIP_TRAIN_CLIPS + CLIP_CHECK_CLIPS, frames=data.frames, image_size=data.image_size,
                    channels=data.channels, seed=seed)
                train, check = slice(0, CLIP_TRAIN_CLIPS), slice(CLIP_TRAIN_CLIPS, None)
                net = train_clip_classifier(clips[train], motion[train], content[train], seed=seed, device=device,
                                            config=CLIP_TRAIN)
                accuracy = clip_accuracy(net, clips[check], motion[check], content[check])
            else:
                net = build_clip_net(in_channels=data.channels, seed=seed).to(device)
                calibrate_batchnorm(net, data.train, device)
        return {"state_dict": {k: v.cpu() for k, v in net.state_dict().items()},
                "accuracy": None if accuracy is None else accuracy[0],
                "content_accuracy": None if accuracy is None else accuracy[1],
                "train_seconds": time.perf_counter() - started}

    payload, path, from_cache = load_or_build(stem, key, build, cache_dir=cache_dir)
    net = build_clip_net(in_channels=data.channels, seed=seed).to(device)
    net.load_state_dict(payload["state_dict"])
    with cpu_threads(REFERENCE_THREADS if device.type == "cpu" else None):
        real = extract_features(net, data.held_out, device=device, batch_size=200)  # a fraction of a second
    mu, sigma = feature_stats(real)
    return FidReference(net=net, feature_kind=kind, data=data, real_features=real, mu=mu, sigma=sigma,
                        accuracy=payload["accuracy"], train_seconds=float(payload["train_seconds"]),
                        cache_path=path, from_cache=from_cache, device=device)


def temporal_scores(clips: torch.Tensor, reference: FidReference, *, seed: int = 0) -> dict[str, float | int]:
    """``fvd_proxy`` (Fréchet distance of generated ``clips`` (N >= 2, C, F, H, W) in [-1, 1] to the
    held-out clips in ``reference``'s clip feature space) and ``fvd_floor`` (real train clips at the
    same N).  NaNs become 0 and values are clipped to [-1, 1], as for the FID proxy."""
    if clips.ndim != 5 or len(clips) < 2:
        raise ValueError(f"temporal_scores needs at least 2 clips (N, C, F, H, W), got {tuple(clips.shape)}")
    clips = torch.nan_to_num(clips.float(), nan=0.0, posinf=1.0, neginf=-1.0).clamp(-1.0, 1.0)
    return {"fvd_proxy": reference.distance(reference.features(clips, batch_size=200)),
            "fvd_floor": reference.floor(len(clips), seed=seed), "n": len(clips)}
