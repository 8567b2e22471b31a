"""FID proxy: Fréchet distance and KID in the feature space of a classifier trained on the
dataset itself (DESIGN.md, "Metric definitions"; FID: Heusel et al., 2017; KID: Bińkowski et
al., 2018).

Feature kinds (:data:`FEATURE_KINDS`):

- ``classifier`` (default for labelled data): the 128-d penultimate layer of the LeNet-style
  :class:`~evaluators.classifier.FeatureNet`, trained deterministically on the train split's
  labels.  Its held-out accuracy is reported as ``reference.accuracy``.
- ``random`` (default for unlabelled data, e.g. an image folder without class subfolders): the
  same network, randomly initialised from the seed, with its BatchNorm statistics set from the
  train images and no training ("random-feature FD").  Still a fixed, deterministic embedding
  that separates blurred, noisy or off-distribution images from real ones, but less
  semantic; ``accuracy`` is ``None``.
- ``inception``: Inception-v3 pool features; opt-in, see :mod:`evaluators.inception`.

The network, its held-out accuracy and the real held-out features (and their mean/covariance)
are cached on disk under ``$UNET_NAS_CACHE`` (default ``~/.cache/unet-nas``), keyed by the
dataset key (source, size, channels, split), seed, feature kind and training recipe; files are
written atomically (:func:`nas.io.atomic_writer`) under a file lock (:func:`nas.io.file_lock`), so
concurrent workers train once.

Scores (:func:`score_samples`): ``fid_proxy`` is the Fréchet distance between the features of N
samples and those of the whole held-out split; ``fid_floor`` is the same distance for N real
*training* images (a seeded draw) in place of the samples, i.e. what a generator that reproduces
the training distribution scores at this N (FD is biased upwards at small N, so compare
``fid_proxy`` with the floor, not with zero); ``kid_mean`` / ``kid_std`` are KID of the samples
against the held-out features over fixed, seeded subsets.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from evaluators.classifier import FeatureNet, TrainConfig, accuracy, build_feature_net, train_classifier
from evaluators.contention import REFERENCE_THREADS, cpu_threads
from evaluators.data import ImageData
from evaluators.datasets.base import safe_token
from evaluators.frechet import feature_stats, frechet_distance, kid
from evaluators.inception import InceptionFeatures, inception_weights_path
from nas.errors import ConfigError, close_match_hint
from nas.io import CACHE_ENV, atomic_writer, cache_root, file_lock

__all__ = [
    "CACHE_ENV",
    "FEATURE_KINDS",
    "FidReference",
    "cache_root",
    "calibrate_batchnorm",
    "extract_features",
    "feature_stats",
    "frechet_distance",
    "get_reference",
    "kid",
    "load_or_build",
    "score_samples",
]

FEATURE_KINDS = ("classifier", "random", "inception")
CACHE_VERSION = 2  # bump when the cached payload, the networks or their training change
_BATCH = 500


class FidReference:
    """A fixed feature extractor plus the real held-out features it is compared against."""

    def __init__(
        self,
        *,
        net: nn.Module,
        feature_kind: str,
        data: ImageData,  # or a VideoData (the same fields) for a clip reference
        real_features: np.ndarray,
        mu: np.ndarray,
        sigma: np.ndarray,
        accuracy: float | None,
        train_seconds: float,
        cache_path: Path | None,
        from_cache: bool,
        device: torch.device,
    ) -> None:
        self.net = net.to(device).eval()
        self.feature_kind = feature_kind
        self.data_key = data.key
        self.image_size = data.image_size
        self.channels = data.channels
        self.real_features = real_features
        self.mu, self.sigma = mu, sigma  # float64 statistics of real_features
        self.accuracy = accuracy
        self.train_seconds = train_seconds
        self.cache_path = cache_path
        self.from_cache = from_cache
        self.device = device
        self._train_images = data.train  # real images (or clips) for the floor
        self._what = "clips" if data.train.ndim == 5 else "images"
        self._floors: dict[tuple[int, int], float] = {}

    def to(self, device: torch.device | str) -> FidReference:
        """Move the extractor to ``device`` (features are returned on the CPU either way)."""
        self.device = torch.device(device)
        self.net.to(self.device)
        return self

    def features(self, images: torch.Tensor, *, batch_size: int = _BATCH) -> np.ndarray:
        """(N, C, H, W) images in [-1, 1] -> float32 features (N, D), batched, eval mode; clips
        (N, C, F, H, W) for a clip reference (:func:`evaluators.video_fid.clip_reference`)."""
        if images.ndim != self._train_images.ndim or images.shape[1] != self.channels:
            layout = "F, H, W" if self._train_images.ndim == 5 else "H, W"
            raise ValueError(f"expected {self._what} (N, {self.channels}, {layout}), got {tuple(images.shape)}")
        if self.feature_kind != "inception" and tuple(images.shape[-2:]) != (self.image_size,) * 2:
            raise ValueError(
                f"expected {self.image_size}x{self.image_size} {self._what}, got {tuple(images.shape)}"
            )
        return extract_features(self.net, images, device=self.device, batch_size=batch_size)

    def distance(self, features: np.ndarray) -> float:
        """Fréchet distance of ``features`` (N, D) to the held-out features."""
        mu, sigma = feature_stats(features)
        return frechet_distance(mu, sigma, self.mu, self.sigma)

    def floor(self, n: int, *, seed: int = 0) -> float:
        """FD of ``n`` real training images (seeded draw) to the held-out set: the score of a
        generator that reproduces the training distribution, at this sample size."""
        if (n, seed) not in self._floors:
            self._floors[(n, seed)] = self.distance(self.features(self.real_sample(n, seed=seed)))
        return self._floors[(n, seed)]

    def real_sample(self, n: int, *, seed: int = 0) -> torch.Tensor:
        """The ``n`` real training images (or clips) the floor scores: a seeded draw, with
        replacement only beyond the pool."""
        pool = len(self._train_images)
        idx = np.random.default_rng(seed).choice(pool, n, replace=n > pool)
        return self._train_images[torch.from_numpy(np.sort(idx))]


@torch.no_grad()
def extract_features(
    net: nn.Module, images: torch.Tensor, *, device: torch.device, batch_size: int = _BATCH
) -> np.ndarray:
    """``net.features`` over ``images`` in batches on ``device``; float32 (N, D) on the CPU."""
    net.eval()
    chunks = [
        net.features(images[start : start + batch_size].to(device, torch.float32)).float().cpu()
        for start in range(0, len(images), batch_size)
    ]
    if not chunks:
        return np.zeros((0, int(net.feature_dim)), np.float32)
    return torch.cat(chunks).numpy()


def _resolve_kind(data: ImageData, feature_kind: str | None) -> str:
    labelled = data.train_labels is not None and (data.num_classes or 0) >= 2
    if feature_kind is None:
        return "classifier" if labelled else "random"
    if feature_kind not in FEATURE_KINDS:
        hint = close_match_hint(feature_kind, FEATURE_KINDS)
        raise ConfigError(f"unknown feature_kind {feature_kind!r}{hint}; valid: {', '.join(FEATURE_KINDS)}")
    if feature_kind == "classifier" and not labelled:
        raise ConfigError(
            f"feature_kind 'classifier' needs labels with >= 2 classes, but dataset {data.name!r} has none; "
            "use 'random' (or give the image folder class subfolders)"
        )
    return feature_kind


def _load_payload(path: Path, fields: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        # A truncated or foreign file: the unpickler can raise almost anything (IndexError on
        # garbage bytes), and the remedy is always the same: recompute and overwrite it.
        warnings.warn(f"ignoring unreadable FID cache {path}: {err}", stacklevel=3)
        return None
    if not isinstance(payload, dict) or payload.get("fields") != fields:
        return None
    return payload


@torch.no_grad()
def calibrate_batchnorm(net: nn.Module, images: torch.Tensor, device: torch.device) -> None:
    """Set BatchNorm running statistics to the exact statistics of ``images`` (no training):
    what makes a randomly initialised feature network a fixed embedding of the data."""
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the batches below
    net.train()
    for start in range(0, len(images), _BATCH):
        net(images[start : start + _BATCH].to(device))
    net.eval()


def _compute(
    data: ImageData, kind: str, *, seed: int, device: torch.device, config: TrainConfig, weights: Path | None
) -> tuple[nn.Module, dict[str, Any]]:
    """Build (and train) the extractor; return it and the cache payload without real features."""
    start = time.perf_counter()
    acc: float | None = None
    num_classes = int(data.num_classes or 1)
    if kind == "classifier":
        assert data.train_labels is not None and data.held_out_labels is not None  # by _resolve_kind
        net: nn.Module = train_classifier(
            data.train, data.train_labels, num_classes=num_classes, seed=seed, device=device, config=config
        )
        acc = accuracy(net, data.held_out, data.held_out_labels)
    elif kind == "random":
        net = build_feature_net(in_channels=data.channels, num_classes=num_classes, seed=seed).to(device)
        calibrate_batchnorm(net, data.train, device)
    else:
        assert weights is not None
        net = InceptionFeatures(weights).to(device)
    payload: dict[str, Any] = {
        "num_classes": num_classes,
        # Inception weights live in their own file; storing them again would only cost disk.
        "state_dict": None if kind == "inception" else {k: v.cpu() for k, v in net.state_dict().items()},
        "accuracy": acc,
        "train_seconds": time.perf_counter() - start,
    }
    return net, payload


def _net_from_payload(kind: str, payload: dict[str, Any], data: ImageData, weights: Path | None) -> nn.Module:
    if kind == "inception":
        assert weights is not None
        return InceptionFeatures(weights)
    net = FeatureNet(in_channels=data.channels, num_classes=int(payload["num_classes"]))
    net.load_state_dict(payload["state_dict"])
    return net


def load_or_build(stem: str, key: dict[str, Any], build: Callable[[], dict[str, Any]], *,
                  cache_dir: str | os.PathLike[str] | None = None) -> tuple[dict[str, Any], Path | None, bool]:
    """A feature reference's payload from the disk cache, or ``build()``'s, written to it.

    ``build`` returns a dict; when it holds ``real_features`` (a tensor (N, D)), their mean and
    covariance are added.  The file is ``<cache>/<stem>-<digest of key>.pt`` and holds ``key``,
    so a changed recipe or data set misses the cache.  A file lock serialises "check cache ->
    build -> save" across processes (Ray workers start together), so concurrent workers build
    once; an unwritable cache only warns.  Returns the payload, the file (None when not cached)
    and whether it came from the cache.
    """
    fields = json.dumps(key, sort_keys=True)
    digest = hashlib.sha1(fields.encode()).hexdigest()[:12]
    root = cache_root(cache_dir)
    path: Path | None = root / f"{stem}-{digest}.pt"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        warnings.warn(f"FID cache dir {root} is not writable ({err}); the reference will not be cached",
                      stacklevel=3)
        path = None
    with file_lock(path.with_name(path.name + ".lock")) if path else contextlib.nullcontext():
        payload = _load_payload(path, fields) if path else None
        if payload is not None:
            return payload, path, True
        payload = build()
        payload["fields"] = fields
        if "real_features" in payload:
            mu, sigma = feature_stats(payload["real_features"].numpy())
            payload.update(mu=torch.from_numpy(mu), sigma=torch.from_numpy(sigma))
        if path is not None:
            try:
                with atomic_writer(path, binary=True) as handle:
                    torch.save(payload, handle)
            except OSError as err:
                warnings.warn(f"could not write FID cache {path}: {err}", stacklevel=3)
    return payload, path, False


def get_reference(
    data: ImageData,
    *,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    feature_kind: str | None = None,
    device: torch.device | str = "cpu",
    train_config: TrainConfig | None = None,
    inception_weights: str | os.PathLike[str] | None = None,
) -> FidReference:
    """The FID reference for ``data``: loaded from the disk cache, or built and cached.

    ``feature_kind`` defaults to ``"classifier"`` for labelled data and ``"random"`` otherwise.
    Training runs on ``device`` (CPU by default, where it is reproducible and takes seconds);
    the cache is valid on any device.  Raises :class:`ConfigError` for an unknown kind, for
    ``"classifier"`` on unlabelled data and for ``"inception"`` without torchvision or weights.
    """
    kind = _resolve_kind(data, feature_kind)
    device = torch.device(device)
    config = train_config or TrainConfig()
    weights = inception_weights_path(inception_weights) if kind == "inception" else None
    key: dict[str, Any] = {
        "version": CACHE_VERSION,
        "data": data.key,
        "image_size": data.image_size,
        "channels": data.channels,
        "seed": seed,
        "kind": kind,
    }
    if kind == "classifier":
        key["train"] = config.as_dict()
    if weights is not None:
        stat = weights.stat()
        key["weights"] = f"{weights.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"

    def build() -> dict[str, Any]:
        # A fixed CPU thread count: the reference must not depend on the machine's load then.
        with cpu_threads(REFERENCE_THREADS if device.type == "cpu" else None):
            net, payload = _compute(data, kind, seed=seed, device=device, config=config, weights=weights)
            real = extract_features(net, data.held_out, device=device)
        payload["real_features"] = torch.from_numpy(real)
        return payload

    payload, path, from_cache = load_or_build(f"fid-{kind}-{safe_token(data.key)}-seed{seed}", key, build,
                                              cache_dir=cache_dir)
    net = _net_from_payload(kind, payload, data, weights).to(device)
    return FidReference(
        net=net,
        feature_kind=kind,
        data=data,
        real_features=payload["real_features"].numpy(),
        mu=payload["mu"].numpy(),
        sigma=payload["sigma"].numpy(),
        accuracy=payload["accuracy"],
        train_seconds=float(payload["train_seconds"]),
        cache_path=path,
        from_cache=from_cache,
        device=device,
    )


def score_samples(
    images: torch.Tensor,
    reference: FidReference,
    *,
    seed: int = 0,
    kid_subsets: int = 50,
    kid_subset_size: int = 1000,
) -> dict[str, float | int | str]:
    """FID proxy, its real-vs-real floor at the same N, and KID for generated ``images``.

    ``images``: (N >= 2, C, H, W) samples in [-1, 1], or clips (N, C, F, H, W) scored frame by
    frame (``N * F`` images); NaNs become 0 and values are clipped to
    [-1, 1] (as a DDPM sampler clips), so a diverged model scores badly instead of failing.
    Returns ``fid_proxy``, ``fid_floor``, ``kid_mean``, ``kid_std``, ``n`` and ``feature_kind``.
    """
    if images.ndim == 5:
        from evaluators.video_data import frames_of

        images = frames_of(images)
    n = len(images)
    if n < 2:
        raise ValueError(f"score_samples needs at least 2 images, got {n}")
    images = torch.nan_to_num(images.float(), nan=0.0, posinf=1.0, neginf=-1.0).clamp(-1.0, 1.0)
    feats = reference.features(images)
    kid_mean, kid_std = kid(
        feats, reference.real_features, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed
    )
    return {
        "fid_proxy": reference.distance(feats),
        "fid_floor": reference.floor(n, seed=seed),
        "kid_mean": kid_mean,
        "kid_std": kid_std,
        "n": n,
        "feature_kind": reference.feature_kind,
    }
