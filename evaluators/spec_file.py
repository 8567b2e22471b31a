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
                       artifacts: str | Path | None = None, threads: int | None = None) -> EvalResult:
    """Train and score the spec in ``config`` once; input errors are :class:`ConfigError`.

    ``threads`` fixes torch's CPU threads; by default they are chosen from the cores other
    processes leave free (:func:`evaluators.contention.choose_threads`).
    """
    import torch

    from evaluators.contention import choose_threads
    from evaluators.video_data import check_source
    from nas.spec import UNetSpec

    path = Path(config)
    if not path.exists() and not path.suffix:  # `--config spec` for spec.yaml
        path = path.with_suffix(".yaml")
    spec = UNetSpec.from_yaml(path)
    budgets, default_dataset, latent = dict(DEFAULT_BUDGETS), "mnist", None
    if space:
        from nas.space import load_space

        loaded = load_space(space, check_constraints=False)
        budgets, default_dataset, latent = loaded.budgets, loaded.data.dataset, loaded.data.latent
    try:
        check_source(dataset or default_dataset, frames=spec.frames)
    except ConfigError as err:
        where = {"key": "--dataset"} if dataset else {"key": "data.dataset", "source": space}
        raise ConfigError(err.message, **where) from None
    if budget not in budgets:
        raise ConfigError(f"unknown budget {budget!r}{close_match_hint(budget, budgets)}; valid budgets are "
                          f"{list(budgets)}", key="--budget")
    torch.set_num_threads(choose_threads(requested=threads))
    from evaluators.device import pick_device

    # A latent space's spec models latents; the data to load (and encode) are its pixels.
    image_size, channels = (latent.image_size, latent.image_channels) if latent else (spec.image_size,
                                                                                      spec.in_channels)
    context = EvalContext.load(dataset=dataset or default_dataset, image_size=image_size, channels=channels,
                               frames=spec.frames, device=pick_device(device, key="--device"), seed=0, fid=fid,
                               latent=latent)
    return evaluate(spec, budget=budgets[budget], context=context, seed=seed, artifacts_dir=artifacts)
