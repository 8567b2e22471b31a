"""``python -m nas.train --config best.yaml --out runs/NAME``: train an exported architecture fully.

Full training uses the proxy evaluator's recipe unchanged (:func:`evaluators.training.train`:
AdamW with warm-up, gradient clipping, EMA, bf16 + channels_last on CUDA), only for longer:
by default 8x the budget's steps.  It runs in chunks between progress updates, held-out-loss
evaluations (:class:`~evaluators.heldout.HeldOutProbe`, the search's ``val_loss``) and
checkpoints.  A checkpoint holds everything training carries, so ``--resume`` continues a
killed run from its last checkpoint and, on the CPU, ends with the very weights an
uninterrupted run would have (see :mod:`nas.model_io`).

The run directory receives ``run.json`` (the resolved settings), ``checkpoint.pt``,
``samples.png`` (DDIM samples from the EMA weights), ``final.json`` (held-out loss, FID proxy,
KID, steps, seconds, the evaluation history and the search's proxy metrics for comparison) and
``model.yaml`` (the spec plus ``checkpoint: checkpoint.pt``), which ``nas.load_model`` loads.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.cli import HelpFormatter
from nas.errors import ConfigError, close_match_hint, exit_on_config_error

if TYPE_CHECKING:
    from evaluators.training import TrainState
    from nas.spec import UNetSpec

__all__ = ["RunSettings", "build_parser", "main", "resolve_settings", "run_training"]

TRAIN_MULTIPLIER = 8  # default steps = this x the budget's proxy steps
CHECKPOINT = "checkpoint.pt"
SETTINGS = "run.json"

# on_step(step, state) runs after every chunk (after any evaluation and checkpoint at that step);
# an exception it raises ends the run there, as a crash would.
StepCallback = Callable[[int, "TrainState"], None]


@dataclass(frozen=True)
class RunSettings:
    """Everything that determines a training run's result; stored as ``run.json``."""

    spec: dict[str, Any]
    config: str
    dataset: str
    budget_name: str
    budget: dict[str, Any]
    steps: int
    seed: int
    batch_size: int
    checkpoint_every: int
    eval_every: int
    search_metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)

    # Settings a resumed run may change without changing what has been computed so far.
    MUTABLE = ("steps", "checkpoint_every", "eval_every", "config")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSettings:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


# ----- settings -----------------------------------------------------------------------------
def _budgets(config: dict[str, Any], source: str) -> dict[str, Any]:
    from evaluators.budget import DEFAULT_BUDGETS, parse_budget

    budgets = dict(DEFAULT_BUDGETS)
    raw = config.get("budgets") or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a mapping of budget names, got {raw!r}", key="budgets", source=source)
    for name, fields in raw.items():
        try:
            budgets[name] = parse_budget(fields, base=DEFAULT_BUDGETS.get(name))
        except ConfigError as err:
            raise err.within(source=source, key_prefix=f"budgets.{name}") from None
    return budgets


def _positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ConfigError(f"expected a positive number, got {value}", key=name)


def resolve_settings(args: argparse.Namespace, *, cuda: bool) -> RunSettings:
    """The run's settings from ``--config`` and the flags (defaults filled in)."""
    from nas.model_io import read_model_yaml

    for name in ("steps", "checkpoint_every", "eval_every", "batch_size"):
        _positive(f"--{name.replace('_', '-')}", getattr(args, name))
    spec, config = read_model_yaml(args.config)
    budgets = _budgets(config, args.config)
    name = args.budget or ("gpu" if cuda else "cpu")
    if name not in budgets:
        hint = close_match_hint(name, budgets)
        raise ConfigError(f"unknown budget {name!r}{hint}; valid: {sorted(budgets)}", key="--budget")
    budget = budgets[name]
    steps = args.steps or TRAIN_MULTIPLIER * budget.steps
    data = config.get("data") or {}
    provenance = config.get("provenance") or {}
    seed = args.seed if args.seed is not None else int(provenance.get("seed") or 0)
    return RunSettings(
        spec=spec.to_dict(), config=str(args.config), dataset=args.dataset or data.get("dataset") or "mnist",
        budget_name=name, budget=budget.to_dict(), steps=steps, seed=seed,
        batch_size=args.batch_size or budget.batch_size,
        checkpoint_every=args.checkpoint_every or max(1, steps // 10),
        eval_every=args.eval_every or max(1, steps // 10),
        search_metrics=dict(config.get("metrics") or {}), provenance=dict(provenance))


def _merge_resume(stored: RunSettings, given: RunSettings, args: argparse.Namespace) -> RunSettings:
    """The stored settings, with the mutable ones the user passed; other differences are errors."""
    explicit = {"steps": args.steps, "checkpoint_every": args.checkpoint_every, "eval_every": args.eval_every,
                "seed": args.seed, "dataset": args.dataset, "batch_size": args.batch_size,
                "budget": args.budget}
    conflicts = []
    if given.spec != stored.spec:
        conflicts.append(f"--config {given.config} holds a different spec than the run's ({stored.config})")
    for key in ("seed", "dataset", "batch_size"):
        if explicit[key] is not None and getattr(given, key) != getattr(stored, key):
            conflicts.append(f"--{key.replace('_', '-')} {getattr(given, key)} (the run used {getattr(stored, key)})")
    if explicit["budget"] is not None and given.budget_name != stored.budget_name:
        conflicts.append(f"--budget {given.budget_name} (the run used {stored.budget_name})")
    if conflicts:
        raise ConfigError("cannot resume with other settings: " + "; ".join(conflicts), key="--resume")
    changes = {k: getattr(given, k) for k in stored.MUTABLE if k == "config" or explicit.get(k) is not None}
    return dataclasses.replace(stored, **changes)


# ----- the run ------------------------------------------------------------------------------
def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    os.replace(tmp, path)


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


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
    from evaluators.proxy import EvalContext, EvalResult, _score_samples
    from evaluators.training import TrainState, is_oom, train
    from nas.diffusion import GaussianDiffusion
    from nas.model_io import load_checkpoint, restore_train_state, save_checkpoint
    from nas.spec import UNetSpec
    from nas.unet import build_unet

    started = time.perf_counter()
    out = Path(out)
    spec = UNetSpec.from_dict(settings.spec, source=settings.config)
    budget = dataclasses.replace(Budget(**{**settings.budget, "rungs": tuple(settings.budget["rungs"])}),
                                 steps=settings.steps, batch_size=settings.batch_size)
    context = EvalContext.load(dataset=settings.dataset, image_size=spec.image_size, channels=spec.in_channels,
                               device=device, seed=0, fid=budget.fid_samples > 0)
    dev = context.device
    cuda = dev.type == "cuda"

    torch.manual_seed(settings.seed)  # the same initial weights as the search's trial
    model = build_unet(spec).to(dev)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
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
    _write_json(out / SETTINGS, settings.to_dict())
    wall_before = log["wall_seconds"]

    diffusion = GaussianDiffusion.from_spec(spec).to(dev)
    probe = HeldOutProbe.build(context.data.held_out, images=budget.val_images, timesteps=budget.val_timesteps,
                               diffusion_steps=spec.diffusion_steps)
    autocast = torch.bfloat16 if cuda else None

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
                                until_step=stop)
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
                val, _ = probe.loss(state.ema.model, diffusion, device=dev, autocast_dtype=autocast)
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
        "seed": settings.seed, "device": str(dev), "dtype": "bfloat16" if cuda else "float32",
        "spec_digest": spec.digest(), "resumed_from": log["resumed_from"],
    }
    if status == "ok":
        result = EvalResult(status="ok")
        result.val_loss, result.val_loss_by_t = probe.loss(state.ema.model, diffusion, device=dev,
                                                           autocast_dtype=autocast)
        if context.reference is not None:
            _score_samples(spec, budget, context, diffusion, state.ema.model, result, artifacts_dir=out)
        final.update({k: getattr(result, k) for k in ("val_loss", "val_loss_by_t", "fid_proxy", "fid_floor",
                                                       "kid_mean", "kid_std", "feature_kind")})
        final.update(fid_samples=budget.fid_samples if context.reference is not None else 0,
                     sample_steps=budget.sample_steps, sampling_seconds=result.sampling_seconds)
    log["wall_seconds"] = wall_before + time.perf_counter() - started
    final.update(train_seconds=log["train_seconds"], seconds=log["wall_seconds"], history=log["history"],
                 search_metrics=settings.search_metrics)
    _write_json(out / "final.json", final)
    if status == "ok":
        _write_model_yaml(out, spec, settings, final)
    return final


def _write_model_yaml(out: Path, spec: UNetSpec, settings: RunSettings, final: dict[str, Any]) -> Path:
    from nas.model_io import write_model_yaml

    metrics = {k: final[k] for k in ("val_loss", "fid_proxy", "fid_floor", "kid_mean", "kid_std", "params",
                                     "steps", "train_seconds") if final.get(k) is not None}
    provenance = {**settings.provenance, "trained_from": settings.config, "dataset": settings.dataset,
                  "budget": settings.budget_name, "seed": settings.seed, "batch_size": settings.batch_size,
                  "device": final["device"], "dtype": final["dtype"]}
    header = ("U-Net trained by nas.train; nas.load_model(PATH) returns it with the EMA weights of "
              "checkpoint.pt.")
    return write_model_yaml(out / "model.yaml", spec, header=header,
                            sections={"checkpoint": CHECKPOINT, "metrics": metrics, "provenance": provenance})


# ----- command line -------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nas.train", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--config", required=True, help="a spec YAML, e.g. as nas.export writes it")
    parser.add_argument("--out", required=True, help="run directory (refused if it exists, unless --resume)")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"optimiser steps (default: {TRAIN_MULTIPLIER}x the budget's steps)")
    parser.add_argument("--budget", default=None, help="recipe from the config's budgets or the built-in "
                        "ones (default: gpu on CUDA, else cpu)")
    parser.add_argument("--dataset", default=None, help="dataset name or path (default: the config's data)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=None, help="training seed (default: the trial's)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the budget's")
    parser.add_argument("--checkpoint-every", type=int, default=None, help="steps (default: a tenth of the run)")
    parser.add_argument("--eval-every", type=int, default=None,
                        help="steps between held-out losses (default: a tenth of the run)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


@exit_on_config_error
def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: 0 when trained, 1 when training diverged, 2 on a user error."""
    from evaluators.proxy import pick_device

    args = build_parser().parse_args(argv)
    device = pick_device(args.device)
    given = resolve_settings(args, cuda=device.type == "cuda")
    out = Path(args.out)
    stored_path = out / SETTINGS
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a directory", key="--out")
    if out.is_dir() and any(out.iterdir()) and not args.resume:
        raise ConfigError(f"run directory {out} already exists; pass --resume to continue it or choose "
                          "another --out", key="--out")
    settings = given
    if args.resume and stored_path.is_file():
        settings = _merge_resume(RunSettings.from_dict(json.loads(stored_path.read_text())), given, args)
    elif args.resume:
        print(f"note: no run in {out} yet; starting one", file=sys.stderr)
    try:
        final = run_training(settings, out, device=str(device), resume=args.resume, progress=not args.no_progress)
    except KeyboardInterrupt:
        print("\ninterrupted: continue from the last checkpoint with the same command and --resume",
              file=sys.stderr)
        return 130
    if final["status"] != "ok":
        print(f"training {final['status']}: {final['reason']} (see {out / 'final.json'})", file=sys.stderr)
        return 1
    shown = {k: final.get(k) for k in ("steps", "val_loss", "fid_proxy", "kid_mean")}
    print("trained: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()))
    print(f"wrote {out / 'model.yaml'} (nas.load_model), {out / 'final.json'}, {out / 'samples.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
