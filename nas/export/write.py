"""Writing a picked trial as a config: the commented spec YAML, or a diffusers folder.

* ``yaml`` (default): the spec under ``spec:`` with every field documented by a comment, the
  trial's metrics under ``metrics:``, ``provenance:`` (space, study, storage, trial, budget,
  seed, device, dtype, export time), the space's ``data:`` and ``budgets:`` so that
  ``python -m nas.train --config FILE`` needs nothing else; ``nas.load_model(FILE)`` gives the
  (untrained) network;
* ``diffusers``: ``config.json`` for diffusers' ``UNet2DModel``, ``scheduler_config.json`` for its
  ``DDPMScheduler`` and the YAML above as ``spec.yaml``, when the spec lies in what diffusers can
  express (see :mod:`nas.diffusers_config`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.errors import ConfigError
from nas.metrics import METRICS

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from evaluators.latent import LatentConfig
    from nas.space import SearchSpace

__all__ = ["FORMATS", "ExportResult", "export_trial"]

FORMATS = ("yaml", "diffusers")


@dataclass
class ExportResult:
    """The files an export wrote, and notes the user should read (e.g. where diffusers differs)."""

    paths: list[Path]
    notes: list[str] = field(default_factory=list)


def _load_space(source: str | None) -> SearchSpace | None:
    """The study's space when its file still loads."""
    if not source:
        return None
    from nas.space import load_space

    try:
        return load_space(source, check_constraints=False)
    except ConfigError:
        return None


def _space_sections(space: SearchSpace | None) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The space's ``data`` and ``budgets`` (None, None without a space)."""
    if space is None:
        return None, None
    data = {"dataset": space.data.dataset, "image_size": space.data.image_size, "channels": space.data.channels}
    if space.data.frames > 1:
        data["frames"] = space.data.frames
    return data, {name: budget.to_dict() for name, budget in space.budgets.items()}


def _write_autoencoder(space: SearchSpace, latent: LatentConfig, out: Path) -> dict[str, Any]:
    """A latent space's autoencoder (from the search's cache) saved beside the export ``out``;
    returns the export's ``latent:`` section, which names that file relative to the export."""
    from evaluators.autoencoder import save_autoencoder
    from evaluators.data import load_dataset
    from evaluators.latent import load_autoencoder

    pixels = load_dataset(space.data.dataset, image_size=space.data.image_size, channels=space.data.channels, seed=0)
    path = save_autoencoder(load_autoencoder(latent, pixels), out.with_name(f"{out.stem}.autoencoder.safetensors"))
    return {**latent.to_dict(), "autoencoder": path.name}


def check_writable(out: Path, *, directory: bool) -> None:
    """A path below a regular file, or a file where a folder goes, is a one-line error."""
    for parent in [out, *out.parents] if directory else list(out.parents):
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"{parent} exists and is not a directory", key="--out")
    if not directory and out.is_dir():
        raise ConfigError(f"{out} is a directory; expected a file path", key="--out")


def export_trial(study: optuna.Study, trial: FrozenTrial, *, storage_url: str, out: str | Path,
                 fmt: str = "yaml", how: str = "") -> ExportResult:
    """Write ``trial`` of ``study`` in format ``fmt`` to ``out``; returns what was written."""
    from nas.model_io import write_model_yaml
    from nas.spec import UNetSpec
    from nas.study import redact_url, trial_spec

    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; expected one of {list(FORMATS)}", key="--format")
    attrs = trial.user_attrs
    spec = UNetSpec.from_dict(trial_spec(trial), source=f"trial {trial.number}")
    names = study.metric_names or []
    metrics = {k: attrs[k] for k in METRICS if attrs.get(k) is not None}
    metrics["status"] = attrs.get("status")
    metrics.update({n: v for n, v in zip(names, trial.values or [], strict=False) if n not in metrics})
    source = study.user_attrs.get("space_source")
    space = _load_space(source)
    data, budgets = _space_sections(space)
    provenance = {
        "space": study.user_attrs.get("space"),
        "space_source": source,
        "study": study.study_name,
        "storage": redact_url(storage_url) if "@" in storage_url else storage_url,  # never a password
        "trial": trial.number,
        "picked_by": how,
        "duplicate_of": attrs.get("duplicate_of"),
        "budget": attrs.get("budget"),
        "seed": attrs.get("seed"),
        "device": attrs.get("device"),
        "dtype": attrs.get("dtype"),
        "spec_digest": spec.digest(),
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    provenance = {k: v for k, v in provenance.items() if v is not None}
    header = (f"U-Net architecture exported from study {study.study_name!r}, trial {trial.number} ({how}).\n"
              "Load it: nas.load_model(PATH) -> torch.nn.Module; train it: python -m nas.train --config PATH")
    sections = {"metrics": metrics, "provenance": provenance, "data": data, "budgets": budgets}
    out = Path(out)
    latent = space.data.latent if space is not None else None
    if latent is None and study.user_attrs.get("latent") is not None:
        raise ConfigError(f"the study's space {source!r} no longer loads, and its U-Nets model an autoencoder's "
                          "latents: restore the space file so the export can carry the autoencoder",
                          key="space_source")
    if latent is not None and fmt != "yaml":
        raise ConfigError("a latent space's U-Net models an autoencoder's latents, which a diffusers UNet2DModel "
                          "config cannot say; export it as yaml (it carries the autoencoder)", key="--format")
    if fmt == "yaml":
        check_writable(out, directory=False)
        if latent is not None:  # the U-Net with the autoencoder it needs, beside it
            sections["latent"] = _write_autoencoder(space, latent, out)
            header += "; nas.load_model returns it with its autoencoder (encode/decode)"
            paths = [write_model_yaml(out, spec, header=header, sections=sections)]
            return ExportResult(paths=[*paths, out.with_name(sections["latent"]["autoencoder"])])
        return ExportResult(paths=[write_model_yaml(out, spec, header=header, sections=sections)])
    from nas.diffusers_config import DIFFUSERS_SPACE, diffusers_notes, scheduler_config, unet2d_config
    from nas.io import atomic_write

    try:
        config = unet2d_config(spec)  # raises, naming every blocker, before anything is written
    except ConfigError as err:
        raise ConfigError(f"{err.message} (every point of {DIFFUSERS_SPACE} exports)", key=err.key) from None
    check_writable(out, directory=True)
    out.mkdir(parents=True, exist_ok=True)
    paths = [atomic_write(out / "config.json", json.dumps(config, indent=2) + "\n"),
             atomic_write(out / "scheduler_config.json", json.dumps(scheduler_config(spec), indent=2) + "\n"),
             write_model_yaml(out / "spec.yaml", spec, header=header, sections=sections)]
    notes = ["configuration only, no weights (a study trial holds none): train it with python -m nas.train "
             "and export the run with python -m nas.export --run RUN_DIR --format diffusers for a "
             "DDPMPipeline folder with weights", *diffusers_notes(spec)]
    return ExportResult(paths=paths, notes=notes)
