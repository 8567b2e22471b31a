"""Devices and the one precision policy: where a candidate trains and is timed, and in which precision.

The rule "bfloat16 autocast and channels_last on CUDA, float32 on the CPU" is written once, in
:meth:`Precision.for_device`; every trainer, evaluator and timer asks a :class:`Precision` for
its autocast context, its model and batch layout and its dtype name instead of testing the
device type itself.  bf16 autocast keeps the weights in float32 (mixed precision), which is
what modern diffusion training on GPUs does; on the CPU, float32 is faster and reproducible.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nas.errors import ConfigError, close_match_hint

__all__ = ["DEVICE_TYPES", "Precision", "empty_cache", "pick_device", "resolve_device", "synchronize",
           "worker_device"]

# Device types the evaluator knows how to synchronise and measure memory on.
DEVICE_TYPES = ("cpu", "cuda")


def resolve_device(device: torch.device | str, *, key: str = "device") -> torch.device:
    """Parse and check an evaluation device (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...).

    Raises :class:`~nas.errors.ConfigError` (keyed ``key``: ``--device`` where a flag gave it) for
    names torch does not parse, for device types other than :data:`DEVICE_TYPES`, and for CUDA
    devices this machine does not have.
    """
    valid = f"expected one of {list(DEVICE_TYPES)} (optionally with an index, e.g. 'cuda:0')"
    if isinstance(device, torch.device):
        dev = device
    else:
        try:
            dev = torch.device(str(device))
        except (RuntimeError, ValueError):
            hint = close_match_hint(str(device), DEVICE_TYPES)
            raise ConfigError(f"unknown device {device!r}{hint}; {valid}", key=key) from None
    if dev.type not in DEVICE_TYPES:
        hint = close_match_hint(dev.type, DEVICE_TYPES)
        raise ConfigError(f"unsupported device {str(dev)!r}{hint}; {valid}", key=key)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {str(dev)!r} requested but CUDA is not available "
                f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}); "
                "use device='cpu' or run on a machine with a GPU", key=key)
        count = torch.cuda.device_count()
        index = torch.cuda.current_device() if dev.index is None else dev.index
        if index >= count:
            raise ConfigError(
                f"device {str(dev)!r} requested but only {count} CUDA device(s) exist "
                f"(valid: {[f'cuda:{i}' for i in range(count)]})", key=key)
        dev = torch.device("cuda", index)  # explicit index: memory stats and sync need one
    return dev


def pick_device(device: str | torch.device = "auto", *, key: str = "device") -> torch.device:
    """``auto`` is CUDA when available, else the CPU; other names are checked by :func:`resolve_device`."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return resolve_device(device, key=key)


def worker_device(device: torch.device, worker: int, *, gpu_count: int | None = None) -> torch.device:
    """The device worker number ``worker`` of a search trains on.

    A CUDA device without an index (``--device auto`` or ``cuda``) spreads the workers over the
    visible GPUs round-robin, so with more workers than GPUs several share one: tiny U-Nets are
    launch-bound and one of them leaves a large GPU mostly idle.  A device with an index
    (``cuda:1``) and the CPU are used as given by every worker.
    """
    if device.type != "cuda" or device.index is not None:
        return device
    count = torch.cuda.device_count() if gpu_count is None else gpu_count
    return torch.device("cuda", worker % max(1, count))


def synchronize(device: torch.device) -> None:
    """Wait for ``device``'s queued work: CUDA kernels run asynchronously, so a clock read without
    this would stop at the launch, not at the end."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def empty_cache(device: torch.device) -> None:
    """Return cached CUDA memory between candidates (a no-op elsewhere)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()


@dataclass(frozen=True)
class Precision:
    """How tensors are computed on one device: the autocast dtype (None: plain float32) and
    whether images use the channels_last memory layout."""

    autocast_dtype: torch.dtype | None = None
    channels_last: bool = False

    @classmethod
    def for_device(cls, device: torch.device | str) -> Precision:
        """The policy: bf16 autocast + channels_last on CUDA, float32 elsewhere."""
        if torch.device(device).type == "cuda":
            return cls(autocast_dtype=torch.bfloat16, channels_last=True)
        return cls()

    @property
    def dtype_name(self) -> str:
        """``bfloat16`` or ``float32``: the name results record and the timer takes."""
        return "bfloat16" if self.autocast_dtype == torch.bfloat16 else "float32"

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager[object]:
        """The autocast context for forward passes on ``device`` (a no-op in float32)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.autocast_dtype)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """``model`` in this policy's memory layout (in place, like ``Module.to``)."""
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def prepare_batch(self, images: Tensor) -> Tensor:
        """A batch of images ``(B, C, H, W)`` in this policy's memory layout."""
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images
