"""Cost of a denoiser: parameters, MACs, throughput, batch-1 latency, peak memory, sampling cost.

Implements the ``throughput`` metric of DESIGN.md ("Metric definitions"): images per second of
one denoiser evaluation ``model(x, t)`` at batch ``B`` on a named device and dtype, measured after
warm-up, with device synchronisation around every timed region, as the median of repeats with
their min-max spread.  The cost of an ``N``-step sample is ``N`` times the per-evaluation time
(the "total sampling cost = NFE x per-evaluation cost" of the hardware-aware NAS literature, e.g.
SnapFusion, Li et al. 2023, which also shows why parameter count is no proxy for latency);
:func:`measure_sampling` times the chained loop directly when that is cheap enough.

MACs come from :class:`torch.utils.flop_counter.FlopCounterMode`, which counts two FLOPs per
multiply-accumulate of matrix products, convolutions (incl. transposed) and attention kernels and
nothing for element-wise work (norms, activations, additions, biases); MACs = FLOPs / 2.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nas.errors import ConfigError, close_match_hint

__all__ = [
    "DEVICE_TYPES",
    "DTYPES",
    "ThroughputReport",
    "count_macs",
    "count_params",
    "measure_sampling",
    "measure_throughput",
    "resolve_device",
    "sampling_cost",
]

# Device types this evaluator knows how to synchronise and measure memory on.
DEVICE_TYPES = ("cpu", "cuda")
# Evaluation dtypes; bfloat16 runs under torch.autocast so the weights stay float32.
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}

_MIB = 2**20


# ----- small helpers ----------------------------------------------------------------------------
def resolve_device(device: torch.device | str) -> torch.device:
    """Parse and check an evaluation device (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...).

    Raises :class:`~nas.errors.ConfigError` for names torch does not parse, for device types
    other than :data:`DEVICE_TYPES`, and for CUDA devices this machine does not have.
    """
    valid = f"expected one of {list(DEVICE_TYPES)} (optionally with an index, e.g. 'cuda:0')"
    if isinstance(device, torch.device):
        dev = device
    else:
        try:
            dev = torch.device(str(device))
        except (RuntimeError, ValueError):
            hint = close_match_hint(str(device), DEVICE_TYPES)
            raise ConfigError(f"unknown device {device!r}{hint}; {valid}", key="device") from None
    if dev.type not in DEVICE_TYPES:
        hint = close_match_hint(dev.type, DEVICE_TYPES)
        raise ConfigError(f"unsupported device {str(dev)!r}{hint}; {valid}", key="device")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {str(dev)!r} requested but CUDA is not available "
                f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}); "
                "use device='cpu' or run on a machine with a GPU", key="device")
        count = torch.cuda.device_count()
        index = torch.cuda.current_device() if dev.index is None else dev.index
        if index >= count:
            raise ConfigError(
                f"device {str(dev)!r} requested but only {count} CUDA device(s) exist "
                f"(valid: {[f'cuda:{i}' for i in range(count)]})", key="device")
        dev = torch.device("cuda", index)  # explicit index: memory stats and sync need one
    return dev


def _resolve_dtype(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        hint = close_match_hint(str(dtype), DTYPES)
        raise ConfigError(f"unknown dtype {dtype!r}{hint}; expected one of {list(DTYPES)}", key="dtype")
    return DTYPES[dtype]


def _check_shape(input_shape: Any) -> tuple[int, int, int]:
    ok = (isinstance(input_shape, (tuple, list)) and len(input_shape) == 3
          and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in input_shape))
    if not ok:
        raise ConfigError(f"expected (channels, height, width) positive ints, got {input_shape!r}",
                          key="input_shape")
    return tuple(input_shape)  # type: ignore[return-value]


def _check_positive(name: str, value: Any, *, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"expected an int >= {minimum}, got {value!r}", key=name)


def _model_device(model: nn.Module) -> torch.device:
    """The single device holding the model's tensors (CPU for a model without any)."""
    devices = {t.device for t in [*model.parameters(), *model.buffers()]}
    if len(devices) > 1:
        raise ValueError(f"model tensors live on several devices {sorted(map(str, devices))}; "
                         "cost measurement needs a model on one device")
    return devices.pop() if devices else torch.device("cpu")


def _example_inputs(input_shape: tuple[int, int, int], batch_size: int,
                    device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded noise batch ``(B, C, H, W)`` and integer timesteps ``(B,)``.

    Timestep 0 is valid for every schedule length and cost does not depend on its value.
    """
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, *input_shape, generator=gen).to(device)
    t = torch.zeros(batch_size, dtype=torch.long, device=device)
    return x, t


def _sync(device: torch.device) -> None:
    # CUDA kernels run asynchronously: without this the clock would stop at launch, not finish.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager[Any]:
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def _evaluating(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Eval mode on ``device``; afterwards every module's training flag and the device are restored."""
    flags = [(m, m.training) for m in model.modules()]
    home = _model_device(model)
    model.eval()
    if home != device:
        model.to(device)
    try:
        yield
    finally:
        if home != device:
            model.to(home)
        for module, training in flags:
            module.training = training


@contextlib.contextmanager
def _cpu_threads(num_threads: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op CPU threads (None leaves them as they are)."""
    if num_threads is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


# ----- static cost ------------------------------------------------------------------------------
def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not); a parameter shared by several modules counts once."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, *, input_shape: tuple[int, int, int], batch_size: int = 1) -> int:
    """Multiply-accumulates of one denoiser evaluation, per image.

    Runs ``model(x, t)`` once under ``no_grad`` and :class:`FlopCounterMode` on the model's
    device (CPU when it has no tensors; a model on the ``meta`` device is counted without
    computing anything), with ``x`` of shape ``(batch_size, *input_shape)`` and integer ``t`` of
    shape ``(batch_size,)``.  FlopCounterMode counts 2 FLOPs per MAC of matmuls, convolutions and
    attention and ignores element-wise ops, so this returns ``FLOPs / 2 / batch_size``.  The
    model's training flags are restored afterwards.
    """
    shape = _check_shape(input_shape)
    _check_positive("batch_size", batch_size)
    device = _model_device(model)
    x, t = _example_inputs(shape, batch_size, device)
    counter = FlopCounterMode(display=False)
    with _evaluating(model, device), torch.no_grad(), counter:
        model(x, t)
    return counter.get_total_flops() // (2 * batch_size)


# ----- timing -----------------------------------------------------------------------------------
def _timed(fn: Callable[[], Any], device: torch.device, iters: int) -> float:
    """Seconds for ``iters`` back-to-back calls of ``fn``, synchronised on both sides."""
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return time.perf_counter() - start


def _repeat_times(fn: Callable[[], Any], device: torch.device, *, warmup: int, repeats: int,
                  min_time_s: float) -> tuple[list[float], int]:
    """Per-call seconds for each repeat, and the calls per repeat.

    Warm-up calls are timed one by one; the last one sets how many calls a repeat makes so that
    it lasts at least ``min_time_s`` (fast networks would otherwise be measured at the timer's and
    the synchronisation's resolution).  Without warm-up a repeat is a single call.
    """
    last = 0.0
    for _ in range(warmup):
        last = _timed(fn, device, 1)
    iters = max(1, math.ceil(min_time_s / last)) if (min_time_s > 0 and last > 0) else 1
    return [_timed(fn, device, iters) / iters for _ in range(repeats)], iters


@dataclass(frozen=True, kw_only=True)
class ThroughputReport:
    """Result of :func:`measure_throughput`.

    Spreads are ``(min, max)`` over the repeats (``spread`` names this); the headline values are
    medians.  ``peak_mem_mb`` is MiB (2**20 bytes) of CUDA memory allocated at the peak of the
    batch-``B`` runs, weights and inputs included; ``None`` on CPU, where the process-wide
    resident-set peak (``resource.getrusage``) never decreases and so cannot attribute memory to
    one network.  ``num_threads`` is torch's intra-op CPU thread count during a CPU measurement
    (``None`` on CUDA).
    """

    images_per_s: float
    images_per_s_spread: tuple[float, float]
    latency_ms: float
    latency_ms_spread: tuple[float, float]
    peak_mem_mb: float | None
    device: str
    device_name: str
    dtype: str
    batch_size: int
    input_shape: tuple[int, int, int]
    repeats: int
    warmup: int
    iters_per_repeat: int
    latency_iters_per_repeat: int
    num_threads: int | None
    torch_version: str = torch.__version__
    spread: str = "min_max"

    @property
    def seconds_per_evaluation(self) -> float:
        """Median seconds of one denoiser evaluation of a batch of ``batch_size`` images."""
        return self.batch_size / self.images_per_s

    def to_dict(self) -> dict[str, Any]:
        """Plain data (tuples as lists) for YAML/JSON and Optuna user attributes."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def measure_throughput(
    model: nn.Module,
    *,
    input_shape: tuple[int, int, int],
    batch_size: int,
    device: torch.device | str,
    dtype: str = "float32",
    repeats: int = 5,
    warmup: int = 2,
    min_time_s: float = 0.01,
    num_threads: int | None = None,
) -> ThroughputReport:
    """Measure images/s of one denoiser evaluation at ``batch_size`` and latency at batch 1.

    The model is put in eval mode and moved to ``device`` for the measurement, then moved back
    with every module's training flag restored.  Forwards run under ``torch.inference_mode``;
    ``dtype="bfloat16"`` wraps them in ``torch.autocast(device.type, dtype=torch.bfloat16)``
    (allowed on CPU too, but float32 is the sensible CPU default).  Each of ``warmup`` untimed
    calls is followed by ``repeats`` timed repeats with ``torch.cuda.synchronize`` around every
    timed region and ``time.perf_counter``; a repeat makes as many calls as needed to last
    ``min_time_s`` (see :func:`_repeat_times`; ``iters_per_repeat`` records it).  At batch 1 the
    batch-``B`` measurement is reused as the latency.

    On CPU, ``num_threads`` sets torch's intra-op threads for the measurement (restored after).
    Give it whenever the CPU is shared, e.g. by parallel Ray trials: torch's default of one
    thread per core oversubscribes a busy machine, and on a loaded 2-core box that made a tiny
    net ~25x slower at batch 1 than with one thread.

    Call count: ``warmup + repeats * iters_per_repeat`` forwards at batch ``B`` plus, when
    ``B > 1``, ``warmup + repeats * latency_iters_per_repeat`` at batch 1.

    Raises:
        ConfigError: unknown dtype or device, CUDA requested but unavailable, bad sizes.
    """
    dev = resolve_device(device)
    torch_dtype = _resolve_dtype(dtype)
    shape = _check_shape(input_shape)
    _check_positive("batch_size", batch_size)
    _check_positive("repeats", repeats)
    _check_positive("warmup", warmup, minimum=0)
    if not isinstance(min_time_s, (int, float)) or min_time_s < 0:
        raise ConfigError(f"expected a number >= 0, got {min_time_s!r}", key="min_time_s")
    if num_threads is not None:
        _check_positive("num_threads", num_threads)

    with (_cpu_threads(num_threads), _evaluating(model, dev), torch.inference_mode(),
          _autocast(dev, torch_dtype)):
        threads = torch.get_num_threads() if dev.type == "cpu" else None
        x, t = _example_inputs(shape, batch_size, dev)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        times, iters = _repeat_times(lambda: model(x, t), dev, warmup=warmup, repeats=repeats,
                                     min_time_s=min_time_s)
        peak = torch.cuda.max_memory_allocated(dev) / _MIB if dev.type == "cuda" else None
        if batch_size == 1:
            lat_times, lat_iters = times, iters
        else:
            x1, t1 = _example_inputs(shape, 1, dev)
            lat_times, lat_iters = _repeat_times(lambda: model(x1, t1), dev, warmup=warmup,
                                                 repeats=repeats, min_time_s=min_time_s)

    ips = [batch_size / s for s in times]
    lat_ms = [1000.0 * s for s in lat_times]
    return ThroughputReport(
        images_per_s=statistics.median(ips),
        images_per_s_spread=(min(ips), max(ips)),
        latency_ms=statistics.median(lat_ms),
        latency_ms_spread=(min(lat_ms), max(lat_ms)),
        peak_mem_mb=peak,
        device=str(dev),
        device_name=_device_name(dev),
        dtype=dtype,
        batch_size=batch_size,
        input_shape=shape,
        repeats=repeats,
        warmup=warmup,
        iters_per_repeat=iters,
        latency_iters_per_repeat=lat_iters,
        num_threads=threads,
    )


# ----- full sampling ----------------------------------------------------------------------------
def sampling_cost(report: ThroughputReport, *, steps: int) -> dict[str, Any]:
    """Cost of an ``steps``-step sample estimated as ``steps`` denoiser evaluations.

    Returns seconds per batch of ``report.batch_size`` images, seconds per image, images/s of
    full sampling, and the batch-1 sample latency in seconds.  The sampler's own arithmetic
    (a few element-wise ops per step) is excluded; :func:`measure_sampling` includes it.
    """
    _check_positive("steps", steps)
    return {
        "steps": steps,
        "batch_size": report.batch_size,
        "seconds_per_batch": steps * report.seconds_per_evaluation,
        "seconds_per_image": steps / report.images_per_s,
        "images_per_s": report.images_per_s / steps,
        "latency_s": steps * report.latency_ms / 1000.0,
        "method": "steps x median per-evaluation time",
    }


def measure_sampling(
    model: nn.Module,
    *,
    input_shape: tuple[int, int, int],
    batch_size: int,
    steps: int,
    device: torch.device | str,
    dtype: str = "float32",
    repeats: int = 3,
    warmup: int = 1,
    num_threads: int | None = None,
) -> dict[str, Any]:
    """Time a full ``steps``-evaluation sampling loop directly (worth it only when cheap).

    Each step feeds the network's output back (``x <- x - out[:, :C] / steps``, a stand-in for a
    DDIM update with the same data dependency and one element-wise op), so the measurement
    includes per-step launch and dependency overheads that :func:`sampling_cost` leaves out.
    ``warmup`` untimed loops precede ``repeats`` timed ones; ``(warmup + repeats) * steps``
    forwards in total; ``num_threads`` as in :func:`measure_throughput`.  Returns medians and
    ``(min, max)`` spreads in the :func:`sampling_cost` keys.
    """
    dev = resolve_device(device)
    torch_dtype = _resolve_dtype(dtype)
    shape = _check_shape(input_shape)
    for name, value in (("batch_size", batch_size), ("steps", steps), ("repeats", repeats)):
        _check_positive(name, value)
    _check_positive("warmup", warmup, minimum=0)
    if num_threads is not None:
        _check_positive("num_threads", num_threads)
    channels = shape[0]

    with (_cpu_threads(num_threads), _evaluating(model, dev), torch.inference_mode(),
          _autocast(dev, torch_dtype)):
        x0, t = _example_inputs(shape, batch_size, dev)

        def sample() -> torch.Tensor:
            x = x0
            for _ in range(steps):
                out = model(x, t)  # (B, C or 2C for learned variance, H, W)
                x = x - out[:, :channels].to(x.dtype) / steps
            return x

        times, _ = _repeat_times(sample, dev, warmup=warmup, repeats=repeats, min_time_s=0.0)
        threads = torch.get_num_threads() if dev.type == "cpu" else None

    seconds = statistics.median(times)
    return {
        "steps": steps,
        "batch_size": batch_size,
        "seconds_per_batch": seconds,
        "seconds_per_batch_spread": (min(times), max(times)),
        "seconds_per_image": seconds / batch_size,
        "images_per_s": batch_size / seconds,
        "device": str(dev),
        "dtype": dtype,
        "repeats": repeats,
        "num_threads": threads,
        "method": "measured chained loop",
    }
