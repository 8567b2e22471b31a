"""What every command line of the tool shares (each is a thin argparse layer over a library function).

* :class:`ArgumentParser`: argparse's parser, whose errors are one line (no usage block);
* :class:`HelpFormatter`: ``--help`` shows defaults (except None/False, whose help says what happens);
* :func:`positive_int`, :func:`positive_float`: argparse types with one-line messages;
* :func:`run_cli`: decorates a ``main``: bad input of any kind (a :class:`~nas.errors.ConfigError`
  or a bad flag) is one line on stderr and exit code 2, never a traceback or a usage block; an
  internal error (a bug) is one line and exit code 1, with the traceback written to a file;
* :func:`configure_logging`: library modules log through :mod:`logging`; a command shows those
  lines plainly on stderr.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from nas.errors import exit_on_config_error

__all__ = ["ArgumentParser", "BadFlag", "HelpFormatter", "configure_logging", "non_negative_int", "positive_float",
           "positive_int", "run_cli"]

F = TypeVar("F", bound=Callable[..., Any])


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except None/False ones (their help says what happens instead)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        # `is`, not `in (None, False)`: a default of 0 equals False and must still be shown.
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


class BadFlag(Exception):
    """A bad command-line flag, carried from :meth:`ArgumentParser.error` to :func:`run_cli`."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser with :class:`HelpFormatter`, whose errors :func:`run_cli` prints as one line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Raise instead of printing the usage block and exiting."""
        raise BadFlag(f"{self.prog}: {message}")


def _int_at_least(text: str, lowest: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < lowest:
        raise argparse.ArgumentTypeError(f"expected at least {lowest}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _int_at_least(text, 0)


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def run_cli(main: F) -> F:
    """Decorate a command's ``main``: every input error is one ``error: ...`` line and exit 2."""

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return exit_on_config_error(main)(*args, **kwargs)
        except BadFlag as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        except Exception as err:  # noqa: BLE001 - a bug: one line for the user, the details in a file
            path = _write_traceback(err)
            print(f"error: internal error, {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''} "
                  f"(the traceback is in {path}; please report it)", file=sys.stderr)
            raise SystemExit(1) from None

    return wrapper  # type: ignore[return-value]


def _write_traceback(err: BaseException) -> str:
    import tempfile
    import traceback

    fd, path = tempfile.mkstemp(prefix="unet-nas-error-", suffix=".txt")
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{' '.join(sys.argv)}\n\n")
        traceback.print_exception(type(err), err, err.__traceback__, file=fh)
    return path


def configure_logging(level: int = logging.INFO) -> None:
    """Show the library's log lines on stderr as plain text (once per process)."""
    root = logging.getLogger("nas")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
        root.setLevel(level)
    for name in ("evaluators",):
        other = logging.getLogger(name)
        if not other.handlers:
            other.addHandler(root.handlers[0])
            other.setLevel(level)
