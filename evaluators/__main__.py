"""``python -m evaluators --config SPEC.yaml --budget cpu --json``: evaluate one spec.

Prints one JSON object (``--json``) or a short table: status, held-out loss, FID proxy and its
real-vs-real floor, KID, throughput, latency, params, MACs, timings and the loss curve.
"""

from __future__ import annotations

import argparse
import json
import sys

from evaluators.budget import DEFAULT_BUDGETS
from nas.cli import ArgumentParser, positive_int, run_cli

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The evaluator's flags, with defaults shown in ``--help``."""
    parser = ArgumentParser(prog="python -m evaluators", description=__doc__)
    parser.add_argument("--config", required=True, help="a spec YAML (from `nas.space sample` or `nas.export`)")
    parser.add_argument("--budget", default="cpu",
                        help=f"a budget name: {', '.join(DEFAULT_BUDGETS)}, or one defined by --space")
    parser.add_argument("--space", default=None, help="take budgets (and the dataset) from this space")
    parser.add_argument("--dataset", default=None, help="mnist (embedded), digits, an image folder, an .npz, "
                        "or torchvision:cifar10 (default: the space's, else mnist)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="torch CPU threads (default: chosen from the cores other processes leave free)")
    parser.add_argument("--no-fid", action="store_true", help="skip the FID proxy")
    parser.add_argument("--artifacts", default=None, help="directory for samples.png")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


@run_cli
def main(argv: list[str] | None = None) -> int:
    """Evaluate the spec and print the result; 0 when trained (or stopped), 1 when the candidate failed."""
    from evaluators.spec_file import evaluate_spec_file
    from nas.metrics import METRICS

    args = build_parser().parse_args(argv)
    result = evaluate_spec_file(args.config, budget=args.budget, space=args.space, dataset=args.dataset,
                                device=args.device, seed=args.seed, fid=not args.no_fid, artifacts=args.artifacts,
                                threads=args.threads)
    data = result.to_dict()
    if args.json:
        print(json.dumps(data))
    else:
        for key in ("status", "reason", *(name for name in METRICS if name in data)):
            value = data[key]
            print(f"{key:>18}: {value:.6g}" if isinstance(value, float) else f"{key:>18}: {value}")
    if result.status not in ("ok", "pruned"):
        print(f"candidate {result.status}: {result.reason}", file=sys.stderr)  # the JSON has it too
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
