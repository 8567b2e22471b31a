"""``python -m nas.export --study NAME --pick knee``: write a searched architecture as a config.

See :mod:`nas.export` (picks: ``knee``, ``best:<metric>``, ``trial:<N>``; ``--where`` filters;
formats: the commented spec YAML, or a diffusers ``UNet2DModel`` folder).  ``--run RUN_DIR
--format diffusers`` instead writes a trained ``nas.train`` run as a ``DDPMPipeline`` folder with
its weights (:mod:`nas.export.pipeline`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nas.cli import ArgumentParser, configure_logging, run_cli

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The export's flags, with defaults shown in ``--help``."""
    from nas.export import FORMATS

    parser = ArgumentParser(prog="python -m nas.export", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--study", help="study name (the space's name by default in nas.search)")
    source.add_argument("--run", help="a nas.train run directory (or its model.yaml): with --format diffusers, "
                        "a DDPMPipeline folder with the trained EMA weights")
    parser.add_argument("--storage", default=None, help="Optuna storage URL (default: the search's, "
                        "sqlite:///RESULTS/<space>.db holding the study)")
    parser.add_argument("--results", default="results", help="the search's --out, where the default storage is")
    parser.add_argument("--pick", default="knee", help="knee, best:<metric> or trial:<N>")
    parser.add_argument("--where", default=None, help="filter, e.g. 'params<1e6, throughput>=100'")
    parser.add_argument("--format", default="yaml", choices=FORMATS, help="output format")
    parser.add_argument("--out", default=None, help="output file (yaml; default best.yaml) or directory "
                        "(diffusers; default best-diffusers/)")
    return parser


@run_cli
def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns 0, or exits 2 with one line on a user error."""
    from nas.export import export_from_study

    args = build_parser().parse_args(argv)
    configure_logging()
    if args.run is not None:
        return _export_run(args)
    done = export_from_study(args.study, pick=args.pick, where=args.where, fmt=args.format, out=args.out,
                             storage=args.storage, results=args.results)
    for note in done.result.notes:
        print(f"note: {note}", file=sys.stderr)
    values = ", ".join(f"{n}={v:.4g}" for n, v in done.values.items())
    print(f"trial {done.trial_number} ({done.how}): {values}" + (f", params={done.params:,}" if done.params else ""))
    print("wrote " + ", ".join(str(p) for p in done.result.paths))
    return 0


def _export_run(args: argparse.Namespace) -> int:
    from nas.errors import ConfigError
    from nas.export.pipeline import export_run_to_diffusers

    if args.format != "diffusers":
        raise ConfigError("a run is exported as a diffusers pipeline folder; use --format diffusers (the run's "
                          "model.yaml is already the YAML export: nas.load_model reads it)", key="--format")
    result = export_run_to_diffusers(args.run, args.out or "best-diffusers")
    print(f"wrote a DDPMPipeline folder with the trained weights: {Path(result.paths[0]).parent}")
    print("load it: DDPMPipeline.from_pretrained(" + repr(str(Path(result.paths[0]).parent)) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
