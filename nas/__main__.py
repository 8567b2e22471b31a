"""``unet-nas COMMAND ...`` (or ``python -m nas COMMAND ...``): every tool under one command.

=========  ====================================================  ===========================
command    what it does                                          same as
=========  ====================================================  ===========================
search     search a space, keep the Pareto front in a study      ``python -m nas.search``
export     write a trial of the study as a config                ``python -m nas.export``
train      train an exported config fully                        ``python -m nas.train``
space      validate a space, or sample specs from it             ``python -m nas.space``
evaluate   train and score one spec with the proxy evaluator     ``python -m evaluators``
=========  ====================================================  ===========================
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["COMMANDS", "main"]

# command -> the module whose main() it runs (each is a thin argparse layer over the library).
COMMANDS = {
    "search": "nas.search.__main__",
    "export": "nas.export.__main__",
    "train": "nas.train.__main__",
    "space": "nas.space.__main__",
    "evaluate": "evaluators.__main__",
}


def main(argv: list[str] | None = None) -> int:
    """Run ``argv[0]``'s tool with the remaining arguments; returns its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        from nas.errors import close_match_hint

        print(f"error: unknown command {command!r}{close_match_hint(command, COMMANDS)}; "
              f"expected one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
