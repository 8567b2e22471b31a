"""``--where``: keep only trials whose recorded values pass simple comparisons.

``params<1e6, throughput>=100`` or ``params < 1e6 and status == ok``: clauses ``KEY OP VALUE`` with
``OP`` one of ``<``, ``<=``, ``>``, ``>=``, ``==``, ``!=``, joined by ``,`` or ``and``.  Keys are
the trials' user attributes (and ``number``); a value is a number, ``true``/``false`` or a word.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nas.errors import ConfigError, close_match_hint

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

__all__ = ["Clause", "filter_trials", "parse_where", "trial_values"]

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<=": operator.le, ">=": operator.ge, "==": operator.eq, "!=": operator.ne, "<": operator.lt,
    ">": operator.gt, "=": operator.eq,
}
_CLAUSE = re.compile(r"^\s*([A-Za-z_][\w.@-]*)\s*(<=|>=|==|!=|<|>|=)\s*(\S.*?)\s*$")


@dataclass(frozen=True)
class Clause:
    """One comparison of ``--where``: ``key op value``."""

    key: str
    op: str
    value: Any
    text: str = ""  # as the user wrote it, for messages

    def holds(self, attrs: dict[str, Any]) -> bool:
        """Whether ``attrs`` has the key and its value passes (a missing value never passes)."""
        if self.key not in attrs or attrs[self.key] is None:
            return False
        have = attrs[self.key]
        try:
            return bool(_OPS[self.op](have, self.value))
        except TypeError:  # e.g. a string attribute compared with <
            return False

    def __str__(self) -> str:
        return self.text or f"{self.key}{self.op}{self.value}"


def _parse_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return float(text)
    except ValueError:
        return text.strip("'\"")


def parse_where(text: str | None) -> list[Clause]:
    """Clauses of a ``--where`` string, joined by ``,`` or ``and``; a bad clause is a ConfigError."""
    if not text or not text.strip():
        return []
    clauses = []
    for part in re.split(r",|\s+and\s+", text):
        if not part.strip():
            raise ConfigError(f"empty clause in {text!r}; expected e.g. 'params<1e6, throughput>=100'",
                              key="--where")
        match = _CLAUSE.match(part)
        if not match:
            raise ConfigError(f"cannot read {part.strip()!r}; expected KEY OP VALUE with OP one of "
                              f"<, <=, >, >=, ==, != (e.g. 'params<1e6')", key="--where")
        key, op, raw = match.groups()
        value = _parse_value(raw)
        if isinstance(value, str) and op not in ("==", "!=", "="):
            raise ConfigError(f"{part.strip()!r} compares with {op} but {raw!r} is not a number", key="--where")
        clauses.append(Clause(key, "==" if op == "=" else op, value, text=part.strip()))
    return clauses


def trial_values(trial: FrozenTrial) -> dict[str, Any]:
    """What a clause reads of a trial: its user attributes and its number."""
    return {**trial.user_attrs, "number": trial.number}


def filter_trials(trials: list[FrozenTrial], clauses: list[Clause], known: set[str]) -> list[FrozenTrial]:
    """The trials passing every clause; a clause on a key no trial records is a ConfigError."""
    for clause in clauses:
        if clause.key not in known:
            hint = close_match_hint(clause.key, known)
            raise ConfigError(f"unknown key {clause.key!r}{hint}; trials record {sorted(known)}", key="--where")
    return [t for t in trials if all(c.holds(trial_values(t)) for c in clauses)]
