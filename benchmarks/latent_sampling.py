"""A latent search's sampling and recipe choices, measured on trials of a finished latent study.

For each named trial and each step count, the proxy evaluator trains the trial's architecture
(the study's budget with ``--steps`` training steps, warm-up scaled alike) and scores it twice:
as a search does, with the sampler's x0 estimates clipped to the encoded latents' range
(:class:`evaluators.latent.LatentCodec`), and unclipped.  Training is deterministic, so both
scores are of the same network.  It also reports the autoencoder's own figures: its training
time (as recorded when it was trained and cached), held-out MSE, the clip bound and the
reconstruction FID proxy at the budget's sample count.

Writes ``OUT/latent_sampling.json`` and prints the README rows.  The default is the committed
``latent.yaml`` study and the two trials that ``search_spaces/latent.yaml`` cites.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, output_dir, write_result

from nas.cli import positive_int

NAME = "latent_sampling"


def measure(storage: str, study_name: str, *, trials: list[int], steps: list[int], budget_name: str) -> dict[str, Any]:
    """Every (trial, steps) pair's held-out loss and FID proxy, clipped and unclipped."""
    from evaluators.proxy import EvalContext, evaluate
    from nas.space import load_space
    from nas.spec import UNetSpec
    from nas.study import load_existing_study, trial_spec

    study = load_existing_study(study_name, storage)
    space = load_space(study.user_attrs["space_source"], check_constraints=False)
    latent = space.data.latent
    if latent is None:
        raise SystemExit(f"error: study {study_name!r} is not of a latent space")
    data = space.data
    clipped = EvalContext.load(dataset=data.dataset, image_size=data.image_size, channels=data.channels,
                               device="cpu", seed=0, latent=latent)
    unclipped = dataclasses.replace(clipped, latent=dataclasses.replace(clipped.latent, clip=math.inf), memo={})
    base = space.budgets[budget_name]
    rows = []
    for number in trials:
        spec = UNetSpec.from_dict(trial_spec(study.trials[number]))
        for n in steps:
            budget = dataclasses.replace(base, steps=n, warmup_steps=round(base.warmup_steps * n / base.steps))
            row: dict[str, Any] = {"trial": number, "steps": n}
            for name, context in (("clipped", clipped), ("unclipped", unclipped)):
                result = evaluate(spec, budget=budget, context=context, measure=False)
                row[f"{name}_status"] = result.status
                row[f"{name}_fid_proxy"] = result.fid_proxy
                row["val_loss"] = result.val_loss
            rows.append(row)
            print(f"trial {number}, {n} steps: FID proxy {row['clipped_fid_proxy']:.1f} clipped, "
                  f"{row['unclipped_fid_proxy']:.1f} unclipped", flush=True)
    autoencoder = clipped.latent.autoencoder
    return {"study": study_name, "budget": budget_name, "latent": latent.to_dict(),
            "autoencoder": {"train_seconds": autoencoder.train_seconds, "held_out_mse": autoencoder.held_out_mse,
                            "clip": clipped.latent.clip, "fid_samples": base.fid_samples,
                            "reconstruction_fid": clipped.reconstruction_fid(base.fid_samples),
                            "fid_floor": float(clipped.reference.floor(base.fid_samples, seed=0))},
            "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    """The README table."""
    lines = ["| trial | steps | held-out loss | FID proxy, x0 clipped | FID proxy, unclipped |",
             "|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['trial']} | {r['steps']} | {r['val_loss']:.4f} | {r['clipped_fid_proxy']:.1f} "
                     f"| {r['unclipped_fid_proxy']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--storage", default=f"sqlite:///{RESULTS / 'latent_search' / 'latent.db'}")
    parser.add_argument("--study", default="latent")
    parser.add_argument("--trials", type=int, nargs="+", default=[2, 5], help="trial numbers of the study")
    parser.add_argument("--steps", type=positive_int, nargs="+", default=[100, 300], help="training steps")
    parser.add_argument("--budget", default="cpu", help="the study's budget (its recipe, FID samples)")
    parser.add_argument("--out", default=None, help="output folder (default results/benchmarks/latent_search)")
    args = parser.parse_args(argv)
    result = measure(args.storage, args.study, trials=args.trials, steps=args.steps, budget_name=args.budget)
    write_result(output_dir("latent_search", args.out) / f"{NAME}.json", result)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
