"""Full training of an exported architecture with the proxy evaluator's recipe, resumable.

:func:`run_training` uses :func:`evaluators.training.train` unchanged (AdamW with warm-up,
gradient clipping, EMA, the device's precision policy), only for longer, in chunks between
progress updates, held-out-loss evaluations (:class:`~evaluators.heldout.HeldOutProbe`, the
search's ``val_loss``) and checkpoints.  A checkpoint holds everything training carries, so a
resumed run continues from its last checkpoint and, on the CPU, ends with the very weights an
uninterrupted run would have (see :mod:`nas.model_io`).

The run directory receives ``run.json`` (the resolved settings), ``checkpoint.pt``,
``samples.png`` (DDIM samples from the EMA weights), ``final.json`` (held-out loss, FID proxy,
KID, steps, seconds, the evaluation history and the search's proxy metrics for comparison) and
``model.yaml`` (the spec plus ``checkpoint: checkpoint.pt``), which ``nas.load_model`` loads.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.errors import ConfigError
from nas.io import write_json
from nas.train.settings import AUTOENCODER, CHECKPOINT, SETTINGS, RunSettings

if TYPE_CHECKING:
    from evaluators.training import TrainState
    from nas.spec import UNetSpec

__all__ = ["StepCallback", "run_training"]

# on_step(step, state) runs after every chunk (after any evaluation and checkpoint at that step);
# an exception it raises ends the run there, as a crash would.
StepCallback = Callable[[int, "TrainState"], None]


def _next_stop(step: int, total: int, *every: int) -> int:
    return min([total] + [(step // e + 1) * e for e in every])


def run_training(settings: RunSettings, out: str | Path, *, device: str = "auto", resume: bool = False,
                 progress: bool = True, on_step: StepCallback | None = None) -> dict[str, Any]:
    """Train ``settings.spec`` into the run directory ``out``; returns the ``final.json`` data.

    With ``resume`` and a ``checkpoint.pt`` in ``out``, training continues from it.  A NaN loss
    ends the run with ``status: diverged`` (the last checkpoint is kept).
    """
    import torch
    from tqdm import tqdm

    from evaluators.budget import Budget
    from evaluators.heldout import HeldOutProbe
    from evaluators.latent import LatentConfig
    from evaluators.proxy import EvalContext, EvalResult, sample_and_score
    from evaluators.training import TrainState, is_oom, train
    from nas.diffusion import GaussianDiffusion
    from nas.model_io import load_checkpoint, restore_train_state, save_checkpoint
    from nas.spec import UNetSpec
    from nas.unet import build_unet

    started = time.perf_counter()
    out = Path(out)
    spec = UNetSpec.from_dict(settings.spec, source=settings.config)
    budget = dataclasses.replace(Budget(**settings.budget),
                                 steps=settings.steps, batch_size=settings.batch_size)
    latent = LatentConfig.from_dict(settings.latent) if settings.latent else None
    # A latent model's data are its autoencoder's pixels (encoded by EvalContext.load).
    image_size, channels = (latent.image_size, latent.image_channels) if latent else (spec.image_size, spec.in_channels)
    context = EvalContext.load(dataset=settings.dataset, image_size=image_size, channels=channels,
                               frames=spec.frames, device=device, seed=0, fid=budget.fid_samples > 0, latent=latent)
    dev, precision = context.device, context.precision
    teacher = None
    if budget.distill is not None:  # the search's budget distilled its candidates: so does their full training
        from evaluators.distill import check_teacher, load_teacher

        check_teacher(budget.distill.teacher, image_size=spec.image_size, channels=spec.in_channels,
                      frames=spec.frames, latent=latent is not None)
        teacher = load_teacher(budget.distill, device=dev)

    torch.manual_seed(settings.seed)  # the same initial weights as the search's trial
    model = precision.prepare_model(build_unet(spec).to(dev))
    state = TrainState.create(model, budget=budget, seed=settings.seed)
    log: dict[str, Any] = {"history": [], "train_seconds": 0.0, "wall_seconds": 0.0, "resumed_from": []}
    checkpoint = out / CHECKPOINT
    if resume and checkpoint.is_file():
        payload = load_checkpoint(checkpoint)
        if payload["step"] > settings.steps:
            raise ConfigError(f"the checkpoint is at step {payload['step']}, past --steps {settings.steps}",
                              key="--steps")
        restore_train_state(state, payload)
        log = payload["extra"]
        log["resumed_from"].append(state.step)
    # Written once data and checkpoint load, so a bad --dataset or --steps leaves nothing behind.
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / SETTINGS, settings.to_dict())
    wall_before = log["wall_seconds"]

    diffusion = GaussianDiffusion.from_spec(spec).to(dev)
    probe = HeldOutProbe.build(context.data.held_out, images=budget.val_images, timesteps=budget.val_timesteps,
                               diffusion_steps=spec.diffusion_steps)

    def save() -> None:
        log["wall_seconds"] = wall_before + time.perf_counter() - started
        save_checkpoint(checkpoint, state, spec=spec, extra=log)

    status, reason = "ok", ""
    bar = tqdm(total=settings.steps, initial=state.step, unit="step", desc="train", dynamic_ncols=True,
               file=sys.stderr, disable=not progress)
    progress_every = max(1, min(25, settings.steps // 100))
    try:
        while state.step < settings.steps:
            stop = _next_stop(state.step, settings.steps, settings.checkpoint_every, settings.eval_every,
                              progress_every)
            try:
                outcome = train(state, diffusion, context.data.train, budget=budget, device=dev,
                                precision=precision, until_step=stop,
                                teacher=teacher.target if teacher is not None else None)
            except Exception as err:
                if is_oom(err):
                    raise ConfigError(f"out of memory at batch size {settings.batch_size} on {dev}; "
                                      "pass a smaller --batch-size", key="--batch-size") from None
                raise
            log["train_seconds"] += outcome.train_seconds
            bar.update(state.step - bar.n)
            if outcome.curve:
                bar.set_postfix(loss=f"{sum(v for _, v in outcome.curve) / len(outcome.curve):.4f}")
            if outcome.status != "ok":
                status, reason = outcome.status, outcome.reason
                break
            if state.step % settings.eval_every == 0 or state.step == settings.steps:
                val, _ = probe.loss(state.ema.model, diffusion, device=dev, precision=precision)
                log["history"].append({"step": state.step, "val_loss": val,
                                       "train_loss": outcome.curve[-1][1] if outcome.curve else None})
                bar.write(f"step {state.step}: held-out loss {val:.5f}", file=sys.stderr)
            if state.step % settings.checkpoint_every == 0 or state.step == settings.steps:
                save()
            if on_step is not None:
                on_step(state.step, state)
    finally:
        bar.close()

    final: dict[str, Any] = {
        "status": status, "reason": reason, "steps": state.step, "params": sum(p.numel() for p in model.parameters()),
        "dataset": settings.dataset, "budget": settings.budget_name, "batch_size": settings.batch_size,
        "seed": settings.seed, "device": str(dev), "dtype": precision.dtype_name,
        "spec_digest": spec.digest(), "resumed_from": log["resumed_from"],
    }
    if status == "ok":
        result = EvalResult(status="ok")
        result.val_loss, result.val_loss_by_t = probe.loss(state.ema.model, diffusion, device=dev,
                                                           precision=precision)
        if context.reference is not None:
            sample_and_score(spec, budget=budget, context=context, diffusion=diffusion, model=state.ema.model,
                             result=result, artifacts_dir=out)
        final.update({k: getattr(result, k) for k in ("val_loss", "val_loss_by_t", "fid_proxy", "fid_floor",
                                                       "kid_mean", "kid_std", "fvd_proxy", "fvd_floor",
                                                       "reconstruction_fid", "feature_kind")})
        final.update(fid_samples=budget.fid_samples if context.reference is not None else 0,
                     sample_steps=budget.sample_steps, sampling_seconds=result.sampling_seconds)
    log["wall_seconds"] = wall_before + time.perf_counter() - started
    final.update(train_seconds=log["train_seconds"], seconds=log["wall_seconds"], history=log["history"],
                 search_metrics=settings.search_metrics)
    write_json(out / "final.json", final)
    if status == "ok":
        latent_file = None
        if context.latent is not None:  # the run carries its autoencoder, so the run directory is the model
            from evaluators.autoencoder import save_autoencoder

            latent_file = save_autoencoder(context.latent.autoencoder, out / AUTOENCODER).name
        _write_model_yaml(out, spec, settings, final, latent_file=latent_file)
    return final


def _write_model_yaml(out: Path, spec: UNetSpec, settings: RunSettings, final: dict[str, Any], *,
                      latent_file: str | None = None) -> Path:
    from nas.metrics import METRICS
    from nas.model_io import write_model_yaml

    # The registry's figures that the run measured (device and dtype go to the provenance).
    metrics = {k: final[k] for k, m in METRICS.items() if m.kind == "number" and final.get(k) is not None}
    provenance = {**settings.provenance, "trained_from": settings.config, "dataset": settings.dataset,
                  "budget": settings.budget_name, "seed": settings.seed, "batch_size": settings.batch_size,
                  "device": final["device"], "dtype": final["dtype"]}
    header = ("U-Net trained by nas.train; nas.load_model(PATH) returns it with the EMA weights of "
              "checkpoint.pt.")
    sections: dict[str, Any] = {"checkpoint": CHECKPOINT, "metrics": metrics, "provenance": provenance}
    if latent_file is not None:
        sections["latent"] = {**(settings.latent or {}), "autoencoder": latent_file}
        header += " A latent model: it comes with its autoencoder (encode/decode), autoencoder.safetensors."
    return write_model_yaml(out / "model.yaml", spec, header=header, sections=sections)
