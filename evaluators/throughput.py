"""Measured cost of a denoiser: throughput, batch-1 latency, peak memory and sampling cost.

Implements the ``throughput`` metric of DESIGN.md ("Metric definitions"): images per second of
one denoiser evaluation ``model(x, t)`` at batch ``B`` on a named device and dtype, measured after
warm-up, with device synchronisation around every timed region, as the median of repeats with
their min-max spread.  The cost of an ``N``-step sample is ``N`` times the per-evaluation time
(the "total sampling cost = NFE x per-evaluation cost" of the hardware-aware NAS literature, e.g.
SnapFusion, Li et al. 2023, which also shows why parameter count is no proxy for latency).

The static costs, known without running the network, live elsewhere: parameters in
:func:`nas.unet.count_parameters` and MACs in :func:`nas.cost.count_macs` (both on the ``meta``
device, from the spec).
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

from evaluators.contention import cpu_threads
from evaluators.device import resolve_device, synchronize
from nas.errors import ConfigError, close_match_hint

__all__ = ["CONTENDED_FACTOR", "DTYPES", "TIMING_CAP_S", "ThroughputReport", "measure_throughput", "sampling_cost",
           "timing_figures", "uncontended"]

# Evaluation dtypes; bfloat16 runs under torch.autocast so the weights stay float32.
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}

_MIB = 2**20


# ----- small helpers ----------------------------------------------------------------------------
def _resolve_dtype(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        hint = close_match_hint(str(dtype), DTYPES)
        raise ConfigError(f"unknown dtype {dtype!r}{hint}; expected one of {list(DTYPES)}", key="dtype")
    return DTYPES[dtype]


def _check_shape(input_shape: Any) -> tuple[int, ...]:
    # One sample: an image (C, H, W) or a video clip (C, F, H, W) (UNetSpec.sample_shape).
    ok = (isinstance(input_shape, (tuple, list)) and len(input_shape) in (3, 4)
          and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in input_shape))
    if not ok:
        raise ConfigError(f"expected (channels, height, width) or (channels, frames, height, width) positive ints, "
                          f"got {input_shape!r}", key="input_shape")
    return tuple(input_shape)


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


def _example_inputs(input_shape: tuple[int, ...], batch_size: int,
                    device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded noise batch ``(B, C, H, W)`` and integer timesteps ``(B,)``.

    Timestep 0 is valid for every schedule length and cost does not depend on its value.
    """
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, *input_shape, generator=gen).to(device)
    t = torch.zeros(batch_size, dtype=torch.long, device=device)
    return x, t


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


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


# ----- timing -----------------------------------------------------------------------------------
def _timed(fn: Callable[[], Any], device: torch.device, iters: int) -> float:
    """Seconds for ``iters`` back-to-back calls of ``fn``, synchronised on both sides."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    synchronize(device)
    return time.perf_counter() - start


def _repeat_times(fn: Callable[[], Any], device: torch.device, *, warmup: int, repeats: int,
                  min_time_s: float, max_repeats: int | None = None, target_spread: float = 0.03,
                  max_seconds: float = float("inf")) -> tuple[list[float], int]:
    """Per-call seconds for each repeat, and the calls per repeat.

    Warm-up calls are timed one by one; the last one sets how many calls a repeat makes so that
    it lasts at least ``min_time_s`` (fast networks would otherwise be measured at the timer's and
    the synchronisation's resolution).  Without warm-up a repeat is a single call.

    With ``max_repeats`` above ``repeats`` the count adapts: after ``repeats`` repeats, more are
    taken until the uncontended repeats agree within ``target_spread`` of their median, or
    ``max_repeats`` are done, or ``max_seconds`` have passed.
    """
    started = time.perf_counter()
    last = 0.0
    for _ in range(warmup):
        last = _timed(fn, device, 1)
    iters = max(1, math.ceil(min_time_s / last)) if (min_time_s > 0 and last > 0) else 1
    times = [_timed(fn, device, iters) / iters for _ in range(repeats)]
    while max_repeats is not None and len(times) < max_repeats and time.perf_counter() - started < max_seconds:
        kept, _ = uncontended(times)
        if (max(kept) - min(kept)) <= target_spread * statistics.median(kept):
            break
        times.append(_timed(fn, device, iters) / iters)
    return times, iters


# The most a throughput (or latency) measurement takes, so that timing never makes a candidate slow.
TIMING_CAP_S = 3.0
# A repeat slower than this multiple of the fastest one was contended (the machine was busy
# elsewhere for part of it: contention only ever adds time) and is left out of the headline.
CONTENDED_FACTOR = 1.25


def uncontended(times: list[float]) -> tuple[list[float], int]:
    """The repeats within :data:`CONTENDED_FACTOR` of the fastest, and how many were dropped."""
    fastest = min(times)
    kept = [t for t in times if t <= CONTENDED_FACTOR * fastest]
    return kept, len(times) - len(kept)


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
    images_per_s_raw: float  # the median of every repeat, contended ones included
    contended_repeats: int  # repeats left out of the headline (see CONTENDED_FACTOR)
    latency_ms: float
    latency_ms_spread: tuple[float, float]
    peak_mem_mb: float | None
    device: str
    device_name: str
    dtype: str
    batch_size: int
    input_shape: tuple[int, ...]
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
    input_shape: tuple[int, ...],
    batch_size: int,
    device: torch.device | str,
    dtype: str = "float32",
    repeats: int = 5,
    warmup: int = 2,
    min_time_s: float = 0.01,
    num_threads: int | None = None,
    max_repeats: int | None = None,
    max_seconds: float = float("inf"),
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

    with (cpu_threads(num_threads), _evaluating(model, dev), torch.inference_mode(),
          _autocast(dev, torch_dtype)):
        threads = torch.get_num_threads() if dev.type == "cpu" else None
        x, t = _example_inputs(shape, batch_size, dev)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        adapt = {"max_repeats": max_repeats, "max_seconds": max_seconds}
        times, iters = _repeat_times(lambda: model(x, t), dev, warmup=warmup, repeats=repeats,
                                     min_time_s=min_time_s, **adapt)
        peak = torch.cuda.max_memory_allocated(dev) / _MIB if dev.type == "cuda" else None
        if batch_size == 1:
            lat_times, lat_iters = times, iters
        else:
            x1, t1 = _example_inputs(shape, 1, dev)
            lat_times, lat_iters = _repeat_times(lambda: model(x1, t1), dev, warmup=warmup,
                                                 repeats=repeats, min_time_s=min_time_s, **adapt)

    kept, contended = uncontended(times)
    lat_kept, _ = uncontended(lat_times)
    ips = [batch_size / s for s in times]
    lat_ms = [1000.0 * s for s in lat_times]
    return ThroughputReport(
        # From the median time, not the median rate: with an even number of kept repeats the two
        # differ, and at batch 1 the latency must be exactly the throughput's reciprocal.
        images_per_s=batch_size / statistics.median(kept),
        images_per_s_spread=(min(ips), max(ips)),
        images_per_s_raw=statistics.median(ips),
        contended_repeats=contended,
        latency_ms=statistics.median(1000.0 * s for s in lat_kept),
        latency_ms_spread=(min(lat_ms), max(lat_ms)),
        peak_mem_mb=peak,
        device=str(dev),
        device_name=_device_name(dev),
        dtype=dtype,
        batch_size=batch_size,
        input_shape=shape,
        repeats=len(times),
        warmup=warmup,
        iters_per_repeat=iters,
        latency_iters_per_repeat=lat_iters,
        num_threads=threads,
    )


# ----- full sampling ----------------------------------------------------------------------------
def timing_figures(model: nn.Module, *, input_shape: tuple[int, ...], batch_size: int, sample_steps: int,
                   device: torch.device, dtype: str, num_threads: int | None,
                   min_repeat_s: float = 0.05) -> dict[str, Any]:
    """The gate's timing figures by metric name (``throughput``, ``latency_ms``, ``peak_mem_mb``,
    ``sample_seconds``) plus how they were measured, from :func:`measure_throughput` with
    ``num_threads`` CPU threads: after a warm-up, repeats of at least ``min_repeat_s``, 3 of them
    and more until the uncontended ones agree within 3% (at most 15, at most
    :data:`TIMING_CAP_S` seconds for each of the two batch sizes), contended repeats left out."""
    # Long enough repeats: a short burst elsewhere on the machine then spoils one repeat, which the
    # headline leaves out, rather than the figure; a quiet machine stops after 3.
    report = measure_throughput(model, input_shape=input_shape, batch_size=batch_size, device=device, dtype=dtype,
                                repeats=3, warmup=1, num_threads=num_threads, min_time_s=min_repeat_s,
                                max_repeats=15, max_seconds=TIMING_CAP_S)
    return {
        "throughput": report.images_per_s,
        "latency_ms": report.latency_ms,
        "peak_mem_mb": report.peak_mem_mb,
        "throughput_spread": list(report.images_per_s_spread),
        "throughput_raw": report.images_per_s_raw,
        "contended_repeats": report.contended_repeats,
        "timing_repeats": report.repeats,
        "timing_threads": report.num_threads,
        "sample_seconds": sampling_cost(report, steps=sample_steps)["seconds_per_image"],
    }


def sampling_cost(report: ThroughputReport, *, steps: int) -> dict[str, Any]:
    """Cost of an ``steps``-step sample estimated as ``steps`` denoiser evaluations.

    Returns seconds per batch of ``report.batch_size`` images, seconds per image, images/s of
    full sampling, and the batch-1 sample latency in seconds.  The sampler's own arithmetic
    (a few element-wise ops per step) and per-step launch overheads are excluded.
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
