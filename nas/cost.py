"""Static costs of an architecture, known before any training: parameters and MACs.

Both are computed on PyTorch's ``meta`` device, so no memory is allocated and no arithmetic
runs; the search's cheap gate and the space validator use them to reject candidates at no
training cost.  MACs are counted with ``torch.utils.flop_counter`` (FLOPs / 2).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nas.spec import UNetSpec

__all__ = ["count_macs", "meta_macs", "static_costs"]


def meta_macs(build: Callable[[], nn.Module], inputs: Callable[[], tuple[torch.Tensor, ...]]) -> int:
    """Multiply-accumulates of one call ``build()(*inputs())``, both made on the meta device."""
    with torch.device("meta"):
        model, args = build(), inputs()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(*args)
    return counter.get_total_flops() // 2


@functools.lru_cache(maxsize=4096)
def count_macs(spec: UNetSpec) -> int:
    """Multiply-accumulates of one denoiser evaluation of one sample (batch 1: an image, or a
    clip of ``spec.frames`` frames for a video spec)."""
    from nas.unet import build_unet

    return meta_macs(lambda: build_unet(spec),
                     lambda: (torch.zeros(1, *spec.sample_shape), torch.zeros(1, dtype=torch.long)))


def static_costs(spec: UNetSpec, *, needs: set[str] | None = None) -> dict[str, float]:
    """``params`` always; ``macs`` when ``needs`` is None or names ``max_macs``/``macs``."""
    from nas.unet import count_parameters

    costs: dict[str, float] = {"params": float(count_parameters(spec))}
    if needs is None or needs & {"max_macs", "macs"}:
        costs["macs"] = float(count_macs(spec))
    return costs
