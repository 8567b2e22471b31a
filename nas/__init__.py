"""Neural architecture search for diffusion U-Nets.

Public API: :func:`load_space`, :class:`UNetSpec`, :func:`build_unet`, :func:`load_model`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nas.spec import LevelSpec, UNetSpec

if TYPE_CHECKING:
    from pathlib import Path

    import torch

__all__ = ["LevelSpec", "UNetSpec", "build_unet", "load_model", "load_space"]


def load_space(name_or_path: str | Path, **kwargs: Any) -> Any:
    """Load a search space (a path or a bundled name such as ``light.yaml``); see :mod:`nas.space`."""
    from nas.space import load_space as _load_space

    return _load_space(name_or_path, **kwargs)


def build_unet(spec: UNetSpec) -> torch.nn.Module:
    """Build the U-Net a spec describes; see :mod:`nas.unet`."""
    from nas.unet import build_unet as _build_unet

    return _build_unet(spec)


def load_model(path: str | Path) -> torch.nn.Module:
    """A plain ``torch.nn.Module`` from a spec YAML (as ``nas.export`` writes it).

    The spec may sit at the top level or under ``spec:``.  When the file names a checkpoint
    (``checkpoint: PATH``, as ``nas.train`` records it), its EMA weights are loaded.
    """
    from nas.model_io import load_model as _load_model

    return _load_model(path)
