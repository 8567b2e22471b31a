"""What ``python -m nas.space`` reports about a space: a summary of it, and specs as YAML.

:func:`summarise` gathers the facts (decisions, exact cardinality, parameter counts over a
seeded sample) into a :class:`SpaceSummary`; :func:`format_summary` turns one into the text the
``validate`` command prints, and :func:`format_specs` writes specs as a YAML document stream
(what ``sample`` prints).  Nothing here prints.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from nas.space.decisions import Choice, Decision, Fixed, IntRange, Tie
from nas.space.search_space import DataConfig, Objective, SearchSpace
from nas.spec import UNetSpec

__all__ = ["SpaceSummary", "describe_decision", "format_specs", "format_summary", "summarise"]


@dataclass(frozen=True, kw_only=True)
class SpaceSummary:
    """The facts about a space that ``validate`` reports.

    ``decisions`` pairs every searched parameter (Optuna name) with its description, in
    resolution order; ``fixed`` every unsearched global key with its value's description;
    ``params`` the sorted parameter counts of the sampled points and ``within_max_params`` how
    many of them meet the space's ``max_params`` constraint (all when it has none).
    """

    name: str
    source: str
    description: str
    data: DataConfig
    objectives: tuple[Objective, ...]
    constraints: dict[str, float]
    decisions: tuple[tuple[str, str], ...]
    fixed: tuple[tuple[str, str], ...]
    cardinality: int
    params: tuple[int, ...]
    within_max_params: int


def describe_decision(decision: Decision) -> str:
    """One-line description of a decision: ``choice a, b``, ``int 1..4 step 2``, ``tie blocks +1``,
    ``fixed 8``, with ``(when ...)`` appended for a conditional one."""
    if isinstance(decision, Choice):
        text = "choice " + ", ".join(map(str, decision.options))
    elif isinstance(decision, IntRange):
        step = f" step {decision.step}" if decision.step != 1 else ""
        text = f"int {decision.low}..{decision.high}{step}"
    elif isinstance(decision, Tie):
        text = f"tie {decision.target}" + (f" {decision.offset:+d}" if decision.offset else "")
    elif isinstance(decision, Fixed):
        text = f"fixed {decision.value}"
    else:
        raise TypeError(f"unknown decision type {type(decision).__name__}")
    return text + (f"  (when {decision.when.text})" if decision.when else "")


def summarise(space: SearchSpace, *, n: int, seed: int) -> SpaceSummary:
    """Summarise ``space``, counting parameters over ``n`` specs sampled with ``seed``.

    Raises :class:`~nas.errors.ConfigError` when the space yields too few valid specs.
    """
    from nas.unet import count_parameters  # imports torch; `sample` does without it

    cardinality = space.cardinality()
    params = tuple(sorted(count_parameters(s) for s in space.sample(n, seed=seed)))
    limit = space.constraints.get("max_params", float("inf"))
    return SpaceSummary(
        name=space.name, source=space.source, description=space.description, data=space.data,
        objectives=space.objectives, constraints=dict(space.constraints),
        decisions=tuple((name, describe_decision(d)) for name, d in space.param_names()),
        fixed=tuple((k, describe_decision(d).removeprefix("fixed "))
                    for k, d in space.global_decisions.items() if not d.searched),
        cardinality=cardinality, params=params, within_max_params=sum(p <= limit for p in params))


def format_summary(summary: SpaceSummary) -> str:
    """The ``validate`` report: one fact per line, ending in a newline."""
    data = summary.data
    lines = [f"space: {summary.name}  ({summary.source})"]
    if summary.description:
        lines.append(f"  {summary.description}")
    clips = f", clips of {data.frames} frames" if data.frames > 1 else ""
    lines.append(f"data: {data.dataset}, {data.image_size}x{data.image_size}, {data.channels} channel(s){clips}")
    if data.latent is not None:
        lines.append(f"latent: {data.latent.describe()}")
    lines.append("objectives: " + ", ".join(f"{o.metric} ({o.direction})" for o in summary.objectives))
    if summary.constraints:
        lines.append("constraints: " + ", ".join(f"{k} {v:g}" for k, v in summary.constraints.items()))
    lines.append("decisions:")
    lines += [f"  {name:<24} {text}" for name, text in summary.decisions]
    lines.append("fixed: " + ", ".join(f"{k}={text}" for k, text in summary.fixed))
    lines.append(f"cardinality: {summary.cardinality} distinct architectures")
    params, count = summary.params, len(summary.params)
    lines.append(f"parameters over {count} sampled points: min {params[0]:,}  median "
                 f"{int(statistics.median(params)):,}  max {params[-1]:,}  "
                 f"({summary.within_max_params}/{count} within max_params)")
    return "\n".join(lines) + "\n"


def format_specs(specs: Sequence[UNetSpec]) -> str:
    """Specs as YAML documents separated by ``---`` (each readable by ``UNetSpec.from_yaml``)."""
    return "\n---\n".join(spec.to_yaml() for spec in specs)
