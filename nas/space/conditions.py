"""Conditions (``when:``) of the search-space DSL.

Grammar (``and`` binds tighter than ``or``; no parentheses, which keeps conditions readable)::

    condition := clause ("or" clause)*
    clause    := term ("and" term)*
    term      := KEY | "not" KEY | KEY ("==" | "!=") VALUE | KEY ("in" | "not in") [V1, V2, ...]

Values are parsed as YAML scalars (``true``, ``3``, ``none`` is the string attention name).
In a global key's condition a per-level ``KEY`` holds when it holds at *any active level*;
inside ``per_level`` it refers to the same level.  Example::

    head_channels: {choice: [8, 16], when: "attention != none or mid_attention != none"}
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from nas.errors import ConfigError

__all__ = ["Condition", "Term", "parse_condition"]

_TERM = re.compile(r"^(not\s+)?([A-Za-z_][A-Za-z0-9_]*)(?:\s*(==|!=|\bnot in\b|\bin\b)\s*(.+))?$")


@dataclass(frozen=True)
class Term:
    """``key op value``; ``op`` is one of ``truthy``, ``falsy``, ``==``, ``!=``, ``in``, ``not in``."""

    key: str
    op: str
    value: Any = None

    def holds(self, actual: Any) -> bool:
        """Whether the term holds for the key's resolved value ``actual``."""
        if self.op == "truthy":
            return bool(actual)
        if self.op == "falsy":
            return not actual
        if self.op == "==":
            return bool(actual == self.value)
        if self.op == "!=":
            return bool(actual != self.value)
        if self.op == "in":
            return actual in self.value
        return actual not in self.value


@dataclass(frozen=True)
class Condition:
    """A disjunction of conjunctions of :class:`Term` s."""

    text: str
    clauses: tuple[tuple[Term, ...], ...]

    @property
    def keys(self) -> set[str]:
        """Every key the condition reads."""
        return {term.key for clause in self.clauses for term in clause}

    def evaluate(self, term_holds: Callable[[Term], bool]) -> bool:
        """Evaluate with ``term_holds`` deciding each term (it knows levels and scopes)."""
        return any(all(term_holds(t) for t in clause) for clause in self.clauses)


def _parse_value(text: str, *, key: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"cannot read value {text!r}", key=key) from None


def parse_condition(text: Any, *, key: str) -> Condition:
    """Parse a ``when:`` string; errors name ``key`` and show the offending part."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"expected a condition string such as \"attention != none\", got {text!r}", key=key)
    clauses = []
    for clause_text in re.split(r"\s+or\s+", text.strip()):
        terms = []
        for term_text in re.split(r"\s+and\s+", clause_text.strip()):
            match = _TERM.match(term_text.strip())
            if not match:
                raise ConfigError(f"cannot parse condition term {term_text!r}; expected e.g. "
                                  "\"conv == inverted_residual\" or \"se\"", key=key)
            negated, name, op, value_text = match.groups()
            if op is None:
                terms.append(Term(key=name, op="falsy" if negated else "truthy"))
                continue
            if negated:
                raise ConfigError(f"'not' only negates a bare key, in {term_text!r}", key=key)
            value = _parse_value(value_text.strip(), key=key)
            op = " ".join(op.split())
            if op in ("in", "not in") and not isinstance(value, list):
                raise ConfigError(f"expected a list after {op!r}, got {value_text.strip()!r}", key=key)
            terms.append(Term(key=name, op=op, value=tuple(value) if isinstance(value, list) else value))
        clauses.append(tuple(terms))
    return Condition(text=text, clauses=tuple(clauses))
