"""``python -m nas.space validate|sample SPACE``: check a space and draw specs from it.

``SPACE`` is a path or the name of a bundled space (``light.yaml``), from any directory.
"""

from __future__ import annotations

import argparse
import sys

from nas.cli import ArgumentParser, positive_int, run_cli
from nas.space.loader import load_space
from nas.space.summary import format_specs, format_summary, summarise

__all__ = ["build_parser", "main"]


def validate(args: argparse.Namespace) -> int:
    """Print the space's name, decisions, exact cardinality and parameter-count range."""
    space = load_space(args.space)
    print(format_summary(summarise(space, n=args.n, seed=args.seed)), end="")
    return 0


def sample(args: argparse.Namespace) -> int:
    """Print ``--n`` specs as YAML documents."""
    space = load_space(args.space, check_constraints=False)
    print(format_specs(space.sample(args.n, seed=args.seed)), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``validate`` and ``sample`` subcommands, each with ``SPACE``, ``--n`` and ``--seed``."""
    parser = ArgumentParser(prog="python -m nas.space", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, func, n in (("validate", validate, 200), ("sample", sample, 1)):
        sub = commands.add_parser(name, help=func.__doc__, description=func.__doc__)
        sub.add_argument("space", help="a space file, or a bundled space name such as light.yaml")
        sub.add_argument("--n", type=positive_int, default=n, help="number of sampled specs")
        sub.add_argument("--seed", type=int, default=0, help="sampling seed")
        sub.set_defaults(func=func)
    return parser


@run_cli
def main(argv: list[str] | None = None) -> int:
    """Run the command line; a bad space or flag prints one line and exits 2."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
