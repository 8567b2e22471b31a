"""Dataset sources: each decodes one kind of data into :class:`RawImages`.

:mod:`evaluators.data` keeps the registry and does the shared processing (split, resize,
channels, scaling).
"""

from __future__ import annotations

from evaluators.datasets.base import RawImages
from evaluators.datasets.builtin import load_digits, load_mnist
from evaluators.datasets.files import load_image_folder, load_npz
from evaluators.datasets.torchvision_data import load_torchvision

__all__ = ["RawImages", "load_digits", "load_image_folder", "load_mnist", "load_npz", "load_torchvision"]
