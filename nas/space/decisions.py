"""Decisions of the search-space DSL: what one key of a space may take.

A key in a space YAML is one of

* a plain value (``norm_groups: 8``): fixed, not searched;
* ``{choice: [a, b, ...]}``: a categorical decision;
* ``{int: [lo, hi]}`` or ``{int: [lo, hi, step]}``: an integer range decision;
* ``{tie: other_key, offset: k}``: a copy of another key's resolved value (plus ``k``), e.g. a
  decoder that mirrors the encoder (``decoder_blocks: {tie: blocks, offset: 1}`` is DDPM); in a
  per-level list, ``{tie: key, level: i}`` copies level ``i``'s value instead of the same
  level's (``blocks: [{int: [1, 3]}, {tie: blocks, level: 0}]``: one block count for every
  level, as diffusers' ``layers_per_block``);

and any of the first three may carry ``when: "<condition>"`` (see :mod:`nas.space.conditions`)
and a ``default:`` used while the condition is false.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nas.errors import ConfigError, close_match_hint
from nas.space.conditions import Condition, parse_condition

__all__ = ["Choice", "Decision", "Fixed", "IntRange", "Tie", "parse_decision"]

_DECISION_KEYS = ("choice", "int", "tie", "when", "default", "offset", "level")


@dataclass(frozen=True)
class Decision:
    """Base: a key's rule.  ``when`` (optional) says when it applies."""

    when: Condition | None = None
    default: Any = None

    @property
    def searched(self) -> bool:
        """Whether a sampler chooses this value (fixed values and ties are not searched)."""
        return False

    def values(self) -> tuple[Any, ...]:
        """Every value this decision can produce on its own (ties: empty)."""
        return ()


@dataclass(frozen=True)
class Fixed(Decision):
    """A value that is not searched."""

    value: Any = None

    def values(self) -> tuple[Any, ...]:
        return (self.value,)


@dataclass(frozen=True)
class Choice(Decision):
    """A categorical decision over ``options``."""

    options: tuple[Any, ...] = ()

    @property
    def searched(self) -> bool:
        return len(self.options) > 1

    def values(self) -> tuple[Any, ...]:
        return self.options


@dataclass(frozen=True)
class IntRange(Decision):
    """An integer decision over ``low..high`` (inclusive) in steps of ``step``."""

    low: int = 0
    high: int = 0
    step: int = 1

    @property
    def searched(self) -> bool:
        return self.high > self.low

    def values(self) -> tuple[Any, ...]:
        return tuple(range(self.low, self.high + 1, self.step))


@dataclass(frozen=True)
class Tie(Decision):
    """The resolved value of key ``target`` plus ``offset``: for per-level keys the same level's,
    or level ``level``'s when it is set."""

    target: str = ""
    offset: int = 0
    level: int | None = None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_decision(raw: Any, *, key: str) -> Decision:
    """Parse one key's YAML value into a :class:`Decision`; errors name ``key``."""
    if not isinstance(raw, dict):
        return Fixed(value=raw)
    for name in raw:
        if name not in _DECISION_KEYS:
            hint = close_match_hint(name, _DECISION_KEYS)
            raise ConfigError(
                f"unknown decision key {name!r}{hint}; expected one of choice, int, tie "
                "(with optional when, default, offset)", key=key)
    kinds = [k for k in ("choice", "int", "tie") if k in raw]
    when = parse_condition(raw["when"], key=f"{key}.when") if "when" in raw else None
    default = raw.get("default")
    if len(kinds) != 1:
        raise ConfigError(
            f"expected exactly one of 'choice', 'int' or 'tie', got {kinds or 'none'}", key=key)
    kind = kinds[0]
    for only_tie in ("offset", "level"):
        if kind != "tie" and only_tie in raw:
            raise ConfigError(f"'{only_tie}' only applies to a 'tie'", key=f"{key}.{only_tie}")
    if kind == "choice":
        options = raw["choice"]
        if not isinstance(options, list) or not options:
            raise ConfigError(f"expected a non-empty list of options, got {options!r}", key=f"{key}.choice")
        for opt in options:
            if isinstance(opt, (dict, list)):
                raise ConfigError(f"options must be plain values, got {opt!r}", key=f"{key}.choice")
        if len(set(map(repr, options))) != len(options):
            raise ConfigError(f"options repeat a value: {options!r}", key=f"{key}.choice")
        return Choice(options=tuple(options), when=when, default=default)
    if kind == "int":
        bounds = raw["int"]
        if not (isinstance(bounds, list) and len(bounds) in (2, 3) and all(map(_is_int, bounds))):
            raise ConfigError(f"expected [low, high] or [low, high, step] integers, got {bounds!r}",
                              key=f"{key}.int")
        low, high, step = (*bounds, 1)[:3]
        if low > high or step < 1:
            raise ConfigError(f"expected low <= high and step >= 1, got {bounds!r}", key=f"{key}.int")
        if (high - low) % step:
            raise ConfigError(f"high - low must be a multiple of step, got {bounds!r}", key=f"{key}.int")
        return IntRange(low=low, high=high, step=step, when=when, default=default)
    target = raw["tie"]
    offset = raw.get("offset", 0)
    if not isinstance(target, str):
        raise ConfigError(f"expected the name of another key, got {target!r}", key=f"{key}.tie")
    if not _is_int(offset):
        raise ConfigError(f"expected an integer, got {offset!r}", key=f"{key}.offset")
    if when is not None:
        raise ConfigError("a 'tie' cannot have a 'when' condition", key=f"{key}.when")
    level = raw.get("level")
    if level is not None and not (_is_int(level) and level >= 0):
        raise ConfigError(f"expected a level index (an integer >= 0), got {level!r}", key=f"{key}.level")
    return Tie(target=target, offset=offset, level=level)
