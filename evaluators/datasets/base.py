"""`RawImages`: what a dataset source hands to :func:`evaluators.data.load_dataset`.

A source only decodes; splitting, resizing, channel conversion and scaling to [-1, 1] happen
once, in :mod:`evaluators.data`, so every source gets the same treatment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

__all__ = ["RawImages", "safe_token"]


@dataclass(frozen=True)
class RawImages:
    """Decoded images before any processing.

    ``images`` is ``(N, H, W, C)``, either uint8 in [0, 255] or float32 in [0, 1].
    ``labels`` is ``(N,)`` int64 in ``[0, num_classes)`` or ``None``.
    ``background`` is the background intensity in [0, 1] when the images have a uniform one
    (0.0 for MNIST's black), which allows padding instead of resizing; ``None`` otherwise.
    ``source_id`` names the data for cache keys (filesystem-safe, includes a content
    fingerprint for user files).
    """

    images: np.ndarray
    labels: np.ndarray | None
    num_classes: int | None
    source_id: str
    background: float | None = None


def safe_token(text: str) -> str:
    """``text`` reduced to ``[A-Za-z0-9_.-]`` so that it can sit in a cache file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "data"
