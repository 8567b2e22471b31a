"""``python -m evaluators --config SPEC.yaml --budget cpu --json``: evaluate one spec.

Prints one JSON object (``--json``) or a short table: status, held-out loss, FID proxy and its
real-vs-real floor, KID, throughput, latency, params, MACs, timings and the loss curve.
"""

from __future__ import annotations

import argparse
import json
import sys

from evaluators.budget import DEFAULT_BUDGETS
from nas.errors import ConfigError, exit_on_config_error

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m evaluators", description=__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", required=True, help="a spec YAML (from `nas.space sample` or `nas.export`)")
    parser.add_argument("--budget", default="cpu",
                        help=f"a budget name: {', '.join(DEFAULT_BUDGETS)}, or one defined by --space")
    parser.add_argument("--space", default=None, help="take budgets (and the dataset) from this space")
    parser.add_argument("--dataset", default=None, help="mnist (embedded), digits, an image folder, an .npz, "
                        "or torchvision:cifar10 (default: the space's, else mnist)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--no-fid", action="store_true", help="skip the FID proxy")
    parser.add_argument("--artifacts", default=None, help="directory for samples.png")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


@exit_on_config_error
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from evaluators.proxy import EvalContext, evaluate
    from nas.spec import UNetSpec

    spec = UNetSpec.from_yaml(args.config if args.config.endswith((".yaml", ".yml")) else args.config + ".yaml")
    budgets, dataset = dict(DEFAULT_BUDGETS), "mnist"
    if args.space:
        from nas.space import load_space

        space = load_space(args.space, check_constraints=False)
        budgets, dataset = space.budgets, space.data.dataset
    if args.budget not in budgets:
        raise ConfigError(f"unknown budget {args.budget!r}; valid budgets are {list(budgets)}", key="--budget")
    context = EvalContext.load(dataset=args.dataset or dataset, image_size=spec.image_size,
                               channels=spec.in_channels, device=args.device, seed=0, fid=not args.no_fid)
    result = evaluate(spec, budget=budgets[args.budget], context=context, seed=args.seed,
                      artifacts_dir=args.artifacts)
    data = result.to_dict()
    if args.json:
        print(json.dumps(data))
    else:
        for key in ("status", "reason", "val_loss", "fid_proxy", "fid_floor", "kid_mean", "kid_std", "throughput",
                    "latency_ms", "params", "macs", "steps", "train_seconds", "sampling_seconds", "timing_seconds",
                    "eval_seconds", "overhead_fraction", "setup_seconds", "device", "dtype"):
            value = data[key]
            print(f"{key:>18}: {value:.6g}" if isinstance(value, float) else f"{key:>18}: {value}")
    return 0 if result.status in ("ok", "pruned") else 1


if __name__ == "__main__":
    sys.exit(main())
