"""Reading what users hand the tools, with one error path: every problem is one ConfigError line.

Spaces, specs, exported configs and run settings are all read through these functions, so a
directory given for a file, a binary or non-UTF-8 file, an oversized file, a YAML syntax error
(with its line and column), YAML nested deeper than any config needs, or a truncated JSON file
each become a :class:`~nas.errors.ConfigError` naming the file and what was expected, never a
traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from nas.errors import ConfigError

__all__ = ["MAX_CONFIG_BYTES", "parse_yaml", "read_json", "read_text", "read_yaml"]

# No space, spec or settings file is anywhere near this; a larger one is a mistake (a data file?).
MAX_CONFIG_BYTES = 8 * 1024 * 1024
# YAML nested deeper than this is refused before the parser recurses through it.
_MAX_DEPTH = 200


def read_text(path: str | Path) -> str:
    """The UTF-8 text of the file ``path``; unreadable, binary or oversized files are ConfigErrors."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError("is a directory; expected a file", source=str(path))
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"is {size:,} bytes; a config file is at most {MAX_CONFIG_BYTES:,}", source=str(path))
        data = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read file: {err.strerror or err}", source=str(path)) from None
    if b"\x00" in data:
        raise ConfigError("is a binary file; expected UTF-8 text (YAML or JSON)", source=str(path))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"is not UTF-8 text (byte {err.start}: {data[err.start:err.start + 1]!r})",
                          source=str(path)) from None


def _too_deep(text: str) -> bool:
    """Whether flow or block nesting in ``text`` could exceed :data:`_MAX_DEPTH` (a cheap bound)."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(0, depth - 1)
    indent = max((len(line) - len(line.lstrip(" ")) for line in text.splitlines()), default=0)
    return deepest > _MAX_DEPTH or indent > 2 * _MAX_DEPTH


def _yaml_message(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None)
    if mark is not None:
        return f"YAML syntax error at line {mark.line + 1}, column {mark.column + 1}: {problem or 'invalid YAML'}"
    if isinstance(err, yaml.reader.ReaderError):  # a character YAML does not allow
        return f"YAML syntax error at character {err.position}: {err.reason} {err.character!r}"
    return f"YAML syntax error: {problem or str(err).splitlines()[0]}"


def parse_yaml(text: str, *, source: str = "<string>") -> Any:
    """``yaml.safe_load`` of ``text``, its failures as ConfigErrors located in ``source``."""
    if _too_deep(text):
        raise ConfigError(f"YAML nested more than {_MAX_DEPTH} levels deep; a config is a few levels", source=source)
    limit = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(max(limit, 4 * _MAX_DEPTH + 1000))  # the parser recurses per level
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(_yaml_message(err), source=source) from None
    except RecursionError:
        raise ConfigError(f"YAML nested more than {_MAX_DEPTH} levels deep", source=source) from None
    finally:
        sys.setrecursionlimit(limit)


def read_yaml(path: str | Path) -> Any:
    """The YAML document in the file ``path`` (see :func:`read_text` and :func:`parse_yaml`)."""
    return parse_yaml(read_text(path), source=str(path))


def read_json(path: str | Path) -> Any:
    """The JSON document in the file ``path``; a truncated or invalid file is a ConfigError."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"invalid JSON at line {err.lineno}, column {err.colno}: {err.msg} (a truncated file?)",
                          source=str(path)) from None
