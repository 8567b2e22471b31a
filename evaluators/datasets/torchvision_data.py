"""``torchvision:<name>`` datasets, used only when torchvision is importable and the files are
already on disk (never downloaded: the search machines may be offline).

Root folder: environment variable ``TORCHVISION_DATA``, else ``~/.cache/torchvision``.  The
official training split is the pool that :mod:`evaluators.data` splits into train/held-out, so
every source is split the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from evaluators.datasets.base import RawImages
from nas.errors import ConfigError

__all__ = ["TORCHVISION_DATASETS", "load_torchvision", "torchvision_root"]

# name -> (torchvision class name, number of classes, background intensity or None)
TORCHVISION_DATASETS: dict[str, tuple[str, int, float | None]] = {
    "cifar10": ("CIFAR10", 10, None),
    "mnist": ("MNIST", 10, 0.0),
}


def torchvision_root() -> Path:
    """The folder torchvision datasets are read from."""
    return Path(os.environ.get("TORCHVISION_DATA") or "~/.cache/torchvision").expanduser()


def load_torchvision(name: str, *, image_size: int, channels: int) -> RawImages:
    """The training split of ``torchvision:<dataset>`` from :func:`torchvision_root`."""
    short = name.split(":", 1)[1]
    if short not in TORCHVISION_DATASETS:
        valid = ", ".join(f"torchvision:{k}" for k in sorted(TORCHVISION_DATASETS))
        raise ConfigError(f"unknown dataset {name!r}; valid torchvision datasets: {valid}")
    class_name, num_classes, background = TORCHVISION_DATASETS[short]
    try:
        import torchvision.datasets as tvd
    except ImportError:
        raise ConfigError(
            f"dataset {name!r} needs torchvision, which is not importable; install it or use 'mnist'"
        ) from None
    root = torchvision_root()
    try:
        dataset = getattr(tvd, class_name)(root=str(root), train=True, download=False)
    except RuntimeError as err:  # torchvision's "Dataset not found or corrupted"
        raise ConfigError(
            f"dataset {name!r} not found under {root} ({err}); download it there first "
            "or set TORCHVISION_DATA"
        ) from None
    data = dataset.data
    images = np.asarray(data.numpy() if hasattr(data, "numpy") else data, dtype=np.uint8)
    if images.ndim == 3:
        images = images[..., None]  # MNIST: (N, 28, 28) -> (N, 28, 28, 1)
    targets = dataset.targets
    labels = np.asarray(targets.numpy() if hasattr(targets, "numpy") else targets, dtype=np.int64)
    return RawImages(images, labels, num_classes, source_id=f"tv-{short}", background=background)
