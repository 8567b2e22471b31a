"""The proxy evaluator: brief training of one spec, scored on held-out loss, FID proxy and cost.

:func:`evaluate` takes a spec, data, a budget and a device, and knows nothing of Optuna, so the
same call serves the Optuna search, Ray Tune workers, ``nas.train`` and the benchmarks.  It
never raises for a bad candidate: the result's ``status`` is one of

* ``ok``: trained and scored;
* ``pruned``: a rung hook stopped it (its rung values are kept; it is not scored further);
* ``diverged``: the loss or gradient became NaN/inf (the step is in ``reason``);
* ``oom``: out of memory even after one retry at half the batch size;
* ``timeout``: the budget's wall-clock cap was reached;
* ``invalid``: the spec cannot be built for this data (the message is in ``reason``);
* ``error``: anything else unexpected (the exception text is in ``reason``).

Overhead is reported honestly: ``overhead_seconds`` is the evaluation's wall time minus the time
inside training steps, FID sampling and cost measurement (throughput timing and the MAC count),
that is model build, held-out loss, feature extraction and bookkeeping (``scoring_seconds`` is the
part of it that scores: the held-out losses at the rungs and at the end, the FID proxy's features
and distances); ``setup_seconds`` is the
once-per-process cost of loading data, the FID reference and its real-vs-real floor, which a
search pays once, not per candidate.
"""

from __future__ import annotations

import dataclasses
import math
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from evaluators.budget import Budget
from evaluators.candidate_timing import candidate_timing
from evaluators.contention import compute_clock
from evaluators.device import empty_cache, synchronize
from evaluators.eval_context import EvalContext
from evaluators.heldout import NOISE_SEED, HeldOutProbe
from evaluators.training import RungHook, TrainOutcome, TrainState, is_oom, train
from nas.diffusion import GaussianDiffusion
from nas.errors import ConfigError
from nas.io import atomic_writer
from nas.spec import UNetSpec

__all__ = ["STATUSES", "EvalContext", "EvalResult", "evaluate", "sample_and_score", "save_grid"]

STATUSES = ("ok", "pruned", "diverged", "oom", "timeout", "invalid", "error")
SAMPLE_NOISE_SEED = NOISE_SEED + 1  # the FID proxy's initial noise: fixed for every candidate


@dataclass
class EvalResult:
    """Metrics of one evaluation; ``to_dict()`` is the CLI's JSON object."""

    status: str
    reason: str = ""
    val_loss: float | None = None
    val_loss_by_t: list[float] = field(default_factory=list)
    fid_proxy: float | None = None
    fid_floor: float | None = None
    kid_mean: float | None = None
    kid_std: float | None = None
    fvd_proxy: float | None = None  # video searches only
    fvd_floor: float | None = None
    feature_kind: str | None = None
    reconstruction_fid: float | None = None  # latent searches only: the autoencoder's floor
    throughput: float | None = None
    throughput_spread: list[float] = field(default_factory=list)
    throughput_with_decode: float | None = None  # latent searches: one U-Net evaluation plus one decode
    latency_ms: float | None = None
    sample_seconds: float | None = None  # one image's full N-step sample, at the timing batch
    params: int | None = None
    macs: int | None = None
    macs_with_decode: int | None = None
    peak_mem_mb: float | None = None
    steps: int = 0
    batch_size: int = 0
    curve: list[list[float]] = field(default_factory=list)
    rungs: list[dict[str, float]] = field(default_factory=list)
    distill_curve: list[list[float]] = field(default_factory=list)  # a distilled candidate's MSE toward the teacher
    distill_loss: float | None = None
    teacher_seconds: float | None = None
    train_seconds: float = 0.0
    sampling_seconds: float = 0.0
    scoring_seconds: float = 0.0  # held-out losses (at the rungs and the final one), FID features and distances
    timing_seconds: float = 0.0
    eval_seconds: float = 0.0
    overhead_seconds: float = 0.0
    overhead_fraction: float = 0.0
    setup_seconds: float = 0.0
    device: str = ""
    dtype: str = ""
    seed: int = 0
    spec_digest: str = ""
    budget: dict[str, Any] = field(default_factory=dict)

    TIMING_FIELDS = ("throughput", "throughput_spread", "throughput_with_decode", "latency_ms", "sample_seconds",
                     "peak_mem_mb", "train_seconds", "sampling_seconds", "scoring_seconds", "timing_seconds",
                     "eval_seconds", "overhead_seconds", "overhead_fraction", "setup_seconds")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable data (NaN and inf become None)."""
        data = dataclasses.asdict(self)
        for key, value in data.items():
            if isinstance(value, float) and not math.isfinite(value):
                data[key] = None
        return data

    def deterministic_part(self) -> dict[str, Any]:
        """Everything except the timing fields: equal for equal seeds on CPU."""
        return {k: v for k, v in self.to_dict().items() if k not in self.TIMING_FIELDS}


def evaluate(spec: UNetSpec, *, budget: Budget, context: EvalContext, seed: int = 0,
             rung_hook: RungHook | None = None, artifacts_dir: str | Path | None = None,
             compile_model: bool = False, measure: bool = True) -> EvalResult:
    """Train ``spec`` briefly under ``budget`` and score it; never raises for a bad candidate.

    ``rung_hook(rung, step, val_loss) -> reason | None`` runs at the budget's rungs; a reason stops the run.
    ``artifacts_dir`` receives ``samples.png`` (a grid of FID-proxy samples).
    ``measure=False`` skips the throughput timing (e.g. when the caller measured it already).
    """
    context.prepare(budget)  # once per process and budget, so it is setup rather than overhead
    started = time.perf_counter()
    device = context.device
    result = EvalResult(status="ok", seed=seed, spec_digest=spec.digest(), budget=budget.to_dict(),
                        device=str(device), dtype=context.precision.dtype_name, setup_seconds=context.setup_seconds)
    try:
        _run(spec, budget=budget, context=context, seed=seed, rung_hook=rung_hook, result=result,
             artifacts_dir=artifacts_dir, compile_model=compile_model, measure=measure, started=started)
    except (ConfigError, ValueError) as err:
        if result.status == "ok":
            result.status, result.reason = "invalid", _first_line(err)
    except Exception as err:  # noqa: BLE001 - a bad candidate must never stop the search
        if is_oom(err):
            result.status, result.reason = "oom", f"out of memory: {_first_line(err)}"
        else:
            frame = traceback.extract_tb(err.__traceback__)[-1]
            result.status = "error"
            # The first line only: torch appends its C++ stack to many messages.
            result.reason = f"{type(err).__name__}: {_first_line(err)} ({Path(frame.filename).name}:{frame.lineno})"
    finally:
        empty_cache(device)
    result.eval_seconds = time.perf_counter() - started
    productive = result.train_seconds + result.sampling_seconds + result.timing_seconds
    result.overhead_seconds = max(0.0, result.eval_seconds - productive)
    result.overhead_fraction = result.overhead_seconds / result.eval_seconds if result.eval_seconds else 0.0
    return result


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else ""


def _check_data(spec: UNetSpec, data: Any) -> None:
    shape = tuple(data.train.shape[1:])
    if shape != spec.sample_shape:
        what = "clips" if spec.is_video else "images"
        raise ConfigError(f"the spec expects {what} of shape {spec.sample_shape}, the data has {shape}",
                          key="frames" if spec.is_video or len(shape) == 4 else "image_size")


def _run(spec: UNetSpec, *, budget: Budget, context: EvalContext, seed: int, rung_hook: RungHook | None,
         result: EvalResult, artifacts_dir: str | Path | None, compile_model: bool, measure: bool,
         started: float) -> None:
    from nas.cost import count_macs
    from nas.unet import build_unet

    device, data, precision = context.device, context.data, context.precision
    _check_data(spec, data)
    diffusion = GaussianDiffusion.from_spec(spec).to(device)
    t0 = time.perf_counter()
    result.macs = count_macs(spec)  # cached when the search's gate counted it already
    if context.latent is not None:
        from evaluators.latent import macs_with_decode

        result.macs_with_decode = macs_with_decode(result.macs, context.latent.config)
    result.timing_seconds += time.perf_counter() - t0
    # The cap counts the evaluation's own compute, so a busy machine alone does not time it out.
    clock = compute_clock(device)
    deadline = clock() + budget.time_limit_s

    batch_size = budget.batch_size
    teacher = None
    if budget.distill is not None:
        from evaluators.distill import load_teacher

        teacher = load_teacher(budget.distill, device=device)  # once per process: later calls reuse it
        teacher_before = teacher.seconds
    for attempt in range(2):  # out of memory: retry once at half the batch
        result.batch_size = batch_size
        torch.manual_seed(seed)
        model = build_unet(spec)
        result.params = sum(p.numel() for p in model.parameters())
        model = precision.prepare_model(model.to(device))
        try:
            if measure and attempt == 0:
                _measure(model, spec, budget, context, result)
            forward_model = torch.compile(model) if compile_model else model
            state = TrainState.create(model, budget=budget, seed=seed)
            if forward_model is not model:
                state.model = forward_model
            # Rungs only rank candidates against each other at the same rung, so a quarter of the
            # held-out images (the same ones for everyone) is enough and keeps early stopping cheap.
            rung_probe = HeldOutProbe.build(data.held_out, images=max(16, budget.val_images // 4),
                                            timesteps=budget.val_timesteps, diffusion_steps=spec.diffusion_steps)
            outcome = train(state, diffusion, data.train, budget=budget, device=device, precision=precision,
                            batch_size=batch_size,
                            deadline=deadline, clock=clock, probe=rung_probe, rung_hook=rung_hook,
                            curve_every=max(1, budget.steps // 200),
                            teacher=teacher.target if teacher is not None else None)
            break
        except Exception as err:
            if not is_oom(err) or attempt == 1 or batch_size < 2:
                raise
            del model
            empty_cache(device)
            batch_size //= 2
    _record_training(outcome, result, batch_size)
    if teacher is not None:
        result.distill_curve = [[step, loss] for step, loss in outcome.distill_curve]
        result.distill_loss = outcome.distill_curve[-1][1] if outcome.distill_curve else None
        result.teacher_seconds = teacher.seconds - teacher_before
    if outcome.status != "ok":
        # A stopped candidate reports its rungs' held-out losses, which is all the scheduler
        # needed; scoring it on the full probe too would cost four rungs' worth.
        return
    t0 = time.perf_counter()
    probe = HeldOutProbe.build(data.held_out, images=budget.val_images, timesteps=budget.val_timesteps,
                               diffusion_steps=spec.diffusion_steps)
    result.val_loss, result.val_loss_by_t = probe.loss(state.ema.model, diffusion, device=device,
                                                       precision=precision)
    result.scoring_seconds += time.perf_counter() - t0
    if context.reference is None or budget.fid_samples == 0:
        return
    if clock() > deadline:
        result.status, result.reason = "timeout", "compute-time cap reached before the FID proxy"
        return
    sample_and_score(spec, budget=budget, context=context, diffusion=diffusion, model=state.ema.model, result=result,
                     artifacts_dir=artifacts_dir)


def _record_training(outcome: TrainOutcome, result: EvalResult, batch_size: int) -> None:
    result.status, result.reason = outcome.status, outcome.reason
    result.steps, result.batch_size = outcome.steps, batch_size
    result.curve = [[step, loss] for step, loss in outcome.curve]
    result.rungs = outcome.rungs
    result.train_seconds = outcome.train_seconds
    result.scoring_seconds += outcome.rung_seconds  # the rungs' held-out losses: the scheduler's scoring


def _measure(model: torch.nn.Module, spec: UNetSpec, budget: Budget, context: EvalContext,
             result: EvalResult) -> None:
    t0 = time.perf_counter()
    figures = candidate_timing(model, input_shape=spec.sample_shape, budget=budget, device=context.device,
                               dtype=result.dtype, latent=context.latent.config if context.latent else None)
    for key in ("throughput", "throughput_spread", "throughput_with_decode", "latency_ms", "peak_mem_mb",
                "sample_seconds"):
        setattr(result, key, figures.get(key))
    result.timing_seconds += time.perf_counter() - t0


def sample_and_score(spec: UNetSpec, *, budget: Budget, context: EvalContext, diffusion: GaussianDiffusion,
                     model: torch.nn.Module, result: EvalResult, artifacts_dir: str | Path | None = None) -> None:
    """Generate ``budget.fid_samples`` DDIM samples from ``model`` (fixed noise seeds) and write the
    FID proxy, its floor and KID (and for clips the temporal score and its floor) into ``result``;
    ``artifacts_dir`` receives ``samples.png``."""
    from evaluators.fid import score_samples

    device = context.device
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(SAMPLE_NOISE_SEED)
    noise = torch.randn((budget.fid_samples, *spec.sample_shape), generator=gen)
    chunks = []
    chunk = max(budget.batch_size, 64)
    pixels = context.latent is None  # latents are decoded to pixels below, not clamped to [-1, 1]
    with context.precision.autocast(device):
        for start in range(0, len(noise), chunk):
            x = diffusion.ddim_sample(model, noise[start:start + chunk].to(device), steps=budget.sample_steps,
                                      clip=context.sample_clip)
            chunks.append((x.float().clamp(-1, 1) if pixels else x.float()).cpu())
    samples = context.to_pixels(torch.cat(chunks))  # a latent search scores decoded images
    synchronize(device)
    result.sampling_seconds = time.perf_counter() - t0
    result.reconstruction_fid = context.reconstruction_fid(budget.fid_samples)
    t0 = time.perf_counter()
    scores = score_samples(samples, context.reference, seed=0)
    result.scoring_seconds += time.perf_counter() - t0
    result.fid_proxy = float(scores["fid_proxy"])
    result.fid_floor = float(scores["fid_floor"])
    result.kid_mean = float(scores["kid_mean"])
    result.kid_std = float(scores["kid_std"])
    result.feature_kind = getattr(context.reference, "feature_kind", None)
    if context.clip_reference is not None and samples.ndim == 5:
        from evaluators.video_fid import temporal_scores

        t0 = time.perf_counter()
        clip_scores = temporal_scores(samples, context.clip_reference, seed=0)
        result.scoring_seconds += time.perf_counter() - t0
        result.fvd_proxy = float(clip_scores["fvd_proxy"])
        result.fvd_floor = float(clip_scores["fvd_floor"])
    if artifacts_dir is not None:  # 64 images, or 8 clips as a frame strip
        save_grid(samples[:64] if samples.ndim == 4 else samples[:8], Path(artifacts_dir) / "samples.png")


def save_grid(images: torch.Tensor, path: Path, *, columns: int = 8, scale: int = 4) -> Path:
    """Save images in [-1, 1] (N, C, H, W) as one PNG grid, each pixel ``scale`` x ``scale``
    (nearest neighbour: 28x28 digits become 112x112, large enough to judge); returns the path.
    Clips (N, C, F, H, W) become a frame strip: one clip per row, its frames left to right."""
    from PIL import Image

    if images.ndim == 5:
        from evaluators.video_data import frames_of

        columns = images.shape[2]
        images = frames_of(images)

    n, c, h, w = images.shape
    rows = math.ceil(n / columns)
    grid = torch.full((c, rows * (h + 2) + 2, columns * (w + 2) + 2), -1.0)
    for i, img in enumerate(images):
        r, col = divmod(i, columns)
        grid[:, 2 + r * (h + 2):2 + r * (h + 2) + h, 2 + col * (w + 2):2 + col * (w + 2) + w] = img
    array = ((grid.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    array = array[0] if c == 1 else array.permute(1, 2, 0)
    image = Image.fromarray(array.numpy())
    image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    with atomic_writer(path, binary=True) as handle:
        image.save(handle, format="PNG")
    return path
