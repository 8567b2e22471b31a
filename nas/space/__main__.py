"""``python -m nas.space validate|sample SPACE``: check a space and draw specs from it.

``SPACE`` is a path or the name of a bundled space (``light.yaml``), from any directory.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from nas.errors import exit_on_config_error
from nas.space.decisions import Choice, IntRange, Tie
from nas.space.loader import load_space

__all__ = ["main"]


def _describe(decision: object) -> str:
    if isinstance(decision, Choice):
        text = "choice " + ", ".join(map(str, decision.options))
    elif isinstance(decision, IntRange):
        step = f" step {decision.step}" if decision.step != 1 else ""
        text = f"int {decision.low}..{decision.high}{step}"
    elif isinstance(decision, Tie):
        text = f"tie {decision.target}" + (f" {decision.offset:+d}" if decision.offset else "")
    else:
        text = f"fixed {decision.value}"  # type: ignore[attr-defined]
    when = getattr(decision, "when", None)
    return text + (f"  (when {when.text})" if when else "")


def validate(args: argparse.Namespace) -> int:
    """Print the space's name, decisions, exact cardinality and parameter-count range."""
    from nas.unet import count_parameters

    space = load_space(args.space)
    print(f"space: {space.name}  ({space.source})")
    if space.description:
        print(f"  {space.description}")
    print(f"data: {space.data.dataset}, {space.data.image_size}x{space.data.image_size}, "
          f"{space.data.channels} channel(s)")
    print("objectives: " + ", ".join(f"{o.metric} ({o.direction})" for o in space.objectives))
    if space.constraints:
        print("constraints: " + ", ".join(f"{k} {v:g}" for k, v in space.constraints.items()))
    print("decisions:")
    for name, decision in space.param_names():
        print(f"  {name:<24} {_describe(decision)}")
    fixed = [k for k, d in space.global_decisions.items() if not d.searched]
    print("fixed: " + ", ".join(f"{k}={_describe(space.global_decisions[k]).removeprefix('fixed ')}" for k in fixed))
    print(f"cardinality: {space.cardinality()} distinct architectures")
    specs = space.sample(args.n, seed=args.seed)
    params = sorted(count_parameters(s) for s in specs)
    within = sum(p <= space.constraints.get("max_params", float("inf")) for p in params)
    print(f"parameters over {len(params)} sampled points: min {params[0]:,}  median "
          f"{int(statistics.median(params)):,}  max {params[-1]:,}  "
          f"({within}/{len(params)} within max_params)")
    return 0


def sample(args: argparse.Namespace) -> int:
    """Print ``--n`` specs as YAML documents."""
    space = load_space(args.space, check_constraints=False)
    specs = space.sample(args.n, seed=args.seed)
    print("\n---\n".join(spec.to_yaml() for spec in specs), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nas.space", description=__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, func, n in (("validate", validate, 200), ("sample", sample, 1)):
        sub = commands.add_parser(name, help=func.__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        sub.add_argument("space", help="a space file, or a bundled space name such as light.yaml")
        sub.add_argument("--n", type=int, default=n, help="number of sampled specs")
        sub.add_argument("--seed", type=int, default=0, help="sampling seed")
        sub.set_defaults(func=func)
    return parser


@exit_on_config_error
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.n < 1:
        build_parser().error("--n must be at least 1")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
