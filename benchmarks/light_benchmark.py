"""A tabular benchmark over the whole of ``light.yaml``, hard enough to rank samplers (issue 15).

    python benchmarks/light_benchmark.py build --size cpu               # hours on 2 CPU cores; resumable
    python benchmarks/light_benchmark.py build --size cpu --points 300  # grows the same draw

``benchmarks/sampler_efficiency.py`` replays samplers on every point of a 72-point sub-space
with 5 decisions, at a 30-step recipe where width decides most of the front; samplers can
barely be told apart there.  This table draws from all of ``light.yaml``'s decisions instead:
a fixed draw (``_tabular.drawn_points``, seed 0, uniform per decision, distinct points, until
``--points`` of them pass the space's static constraints) evaluated once each with the proxy
evaluator at the full ``cpu`` budget (100 steps), recording the held-out loss at the probe
rungs (``_tabular.PROBES``) as well.  The draw is a prefix property, so a larger ``--points``
keeps every existing row and evaluates only the new points; a killed build resumes where it
stopped.  Points that break a constraint are recorded infeasible without training, as the
search's gate skips them.  When every drawn point is in the table, the trained points'
throughput is measured again in interleaved rounds (``_tabular.remeasure_throughput``); run the
build on a quiet machine for that step.

Sizes: ``quick`` draws 3 feasible points at the smoke budget into ``--out`` (the test;
seconds), ``cpu`` 200 feasible points at the ``cpu`` budget (the committed table,
``results/benchmarks/light_benchmark/table.csv``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, output_dir
from _tabular import build_table, drawn_points

from nas.cli import positive_int

NAME = "light_benchmark"
SPACE = REPO / "search_spaces" / "light.yaml"


@dataclass(frozen=True)
class Size:
    """What one ``--size`` builds."""

    budget: str  # a key of _tabular.table_budgets()
    points: int  # feasible points of the draw
    throughput_rounds: int  # interleaved throughput measurements per point


SIZES = {
    "quick": Size(budget="smoke", points=3, throughput_rounds=2),
    "cpu": Size(budget="cpu", points=200, throughput_rounds=3),
}


def build(args: argparse.Namespace) -> int:
    """Evaluate the drawn points not yet in the table and append them (resumable)."""
    from nas.space import load_space

    size = SIZES[args.size]
    space = load_space(SPACE)
    specs = drawn_points(space, args.points or size.points, seed=0)
    build_table(output_dir(NAME, args.out) / "table.csv", space, specs=specs, budget_name=size.budget,
                device=args.device, throughput_rounds=size.throughput_rounds)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    sub = commands.add_parser("build", help=build.__doc__)
    sub.add_argument("--size", choices=list(SIZES), default="cpu")
    sub.add_argument("--points", type=positive_int, default=None,
                     help="feasible points of the draw (default by size; more grows the same draw)")
    sub.add_argument("--out", default=None, help=f"output folder (default results/benchmarks/{NAME})")
    sub.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    sub.set_defaults(func=build)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
