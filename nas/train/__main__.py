"""``python -m nas.train --config best.yaml --out runs/NAME``: train an exported architecture fully.

See :mod:`nas.train`: the search's recipe for 8x the budget's steps by default, held-out
evaluations, atomic checkpoints, and ``--resume`` after a crash or Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nas.cli import ArgumentParser, configure_logging, positive_int, run_cli
from nas.train.settings import TRAIN_MULTIPLIER, TrainRequest

__all__ = ["build_parser", "main", "request_from_args"]


def build_parser() -> argparse.ArgumentParser:
    """The training run's flags, with defaults shown in ``--help``."""
    parser = ArgumentParser(prog="python -m nas.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="a spec YAML, e.g. as nas.export writes it")
    parser.add_argument("--out", required=True, help="run directory (refused if it exists, unless --resume)")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"optimiser steps (default: {TRAIN_MULTIPLIER}x the budget's steps)")
    parser.add_argument("--budget", default=None, help="recipe from the config's budgets or the built-in "
                        "ones (default: gpu on CUDA, else cpu)")
    parser.add_argument("--dataset", default=None, help="dataset name or path (default: the config's data)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="torch CPU threads (default: chosen from the cores other processes leave free)")
    parser.add_argument("--seed", type=int, default=None, help="training seed (default: the trial's)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the budget's")
    parser.add_argument("--checkpoint-every", type=int, default=None, help="steps (default: a tenth of the run)")
    parser.add_argument("--eval-every", type=int, default=None,
                        help="steps between held-out losses (default: a tenth of the run)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def request_from_args(args: argparse.Namespace) -> TrainRequest:
    """The typed :class:`~nas.train.TrainRequest` for parsed flags."""
    return TrainRequest(config=args.config, out=args.out, steps=args.steps, budget=args.budget, dataset=args.dataset,
                        device=args.device, seed=args.seed, batch_size=args.batch_size,
                        checkpoint_every=args.checkpoint_every, eval_every=args.eval_every, resume=args.resume)


@run_cli
def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: 0 when trained, 1 when training diverged, 2 on a user error."""
    import torch

    from evaluators.contention import choose_threads
    from evaluators.device import pick_device
    from nas.train import plan_run, run_training

    args = build_parser().parse_args(argv)
    configure_logging()
    torch.set_num_threads(choose_threads(requested=args.threads))
    request = request_from_args(args)
    device = pick_device(request.device, key="--device")
    settings, resuming = plan_run(request, device_type=device.type)
    out = Path(args.out)
    if args.resume and not resuming:
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
