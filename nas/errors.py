"""User-facing configuration errors and the one-line, exit-code-2 CLI convention.

Every malformed space, spec or flag becomes a :class:`ConfigError` that names the file, the
key path and what was expected.  Command-line entry points wrap their body in
:func:`exit_on_config_error` so the user sees one line on stderr and exit code 2, never a
traceback (DESIGN.md, "Conventions" 5).
"""

from __future__ import annotations

import difflib
import functools
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

__all__ = ["ConfigError", "close_match_hint", "exit_on_config_error"]


class ConfigError(ValueError):
    """Invalid user input: a space, a spec, a budget or a command-line value.

    ``source`` is the file (or ``"<string>"``), ``key`` the dotted key path inside it, and
    ``message`` says what was expected and what was found.
    """

    def __init__(self, message: str, *, key: str | None = None, source: str | None = None) -> None:
        self.message = message
        self.key = key
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [p for p in (self.source, self.key) if p]
        return ": ".join([*parts, self.message])

    def within(self, *, source: str | None = None, key_prefix: str | None = None) -> ConfigError:
        """Return a copy located in ``source`` with ``key_prefix`` prepended to the key path."""
        key = self.key
        if key_prefix:
            key = f"{key_prefix}.{key}" if key else key_prefix
        return ConfigError(self.message, key=key, source=source or self.source)


def close_match_hint(name: str, valid: Iterable[str]) -> str:
    """A ``" (did you mean 'x'?)"`` suffix when ``name`` is close to one of ``valid``."""
    matches = difflib.get_close_matches(str(name), [str(v) for v in valid], n=1, cutoff=0.6)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


F = TypeVar("F", bound=Callable[..., Any])


def exit_on_config_error(func: F) -> F:
    """Decorate a CLI ``main``: a :class:`ConfigError` prints one line to stderr and exits 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper  # type: ignore[return-value]
