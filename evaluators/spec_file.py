"""Evaluate one spec file as ``python -m evaluators`` does: the spec, its budget and its data.

:func:`evaluate_spec_file` reads a spec YAML (as ``nas.space sample`` or ``nas.export`` writes
it), takes the budgets and the dataset from a space when one is given (else the built-in
budgets and the embedded MNIST), loads the data and the FID reference, and runs
:func:`evaluators.proxy.evaluate` once.
"""

from __future__ import annotations

from pathlib import Path

from evaluators.budget import DEFAULT_BUDGETS
from evaluators.proxy import EvalContext, EvalResult, evaluate
from nas.errors import ConfigError, close_match_hint

__all__ = ["evaluate_spec_file"]


def evaluate_spec_file(config: str | Path, *, budget: str = "cpu", space: str | None = None,
                       dataset: str | None = None, device: str = "auto", seed: int = 0, fid: bool = True,
                       artifacts: str | Path | None = None) -> EvalResult:
    """Train and score the spec in ``config`` once; input errors are :class:`ConfigError`."""
    from nas.spec import UNetSpec

    path = str(config)
    spec = UNetSpec.from_yaml(path if path.endswith((".yaml", ".yml")) else path + ".yaml")
    budgets, default_dataset = dict(DEFAULT_BUDGETS), "mnist"
    if space:
        from nas.space import load_space

        loaded = load_space(space, check_constraints=False)
        budgets, default_dataset = loaded.budgets, loaded.data.dataset
    if budget not in budgets:
        raise ConfigError(f"unknown budget {budget!r}{close_match_hint(budget, budgets)}; valid budgets are "
                          f"{list(budgets)}", key="--budget")
    context = EvalContext.load(dataset=dataset or default_dataset, image_size=spec.image_size,
                               channels=spec.in_channels, device=device, seed=0, fid=fid)
    return evaluate(spec, budget=budgets[budget], context=context, seed=seed, artifacts_dir=artifacts)
