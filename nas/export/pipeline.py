"""A trained network as a diffusers pipeline folder that ``DDPMPipeline.from_pretrained`` loads.

``python -m nas.export --run RUN_DIR --format diffusers --out DIR`` (``RUN_DIR`` a ``nas.train``
run directory, or a model YAML with ``checkpoint:``) writes::

    DIR/model_index.json                               DDPMPipeline: unet + scheduler
    DIR/unet/config.json                               UNet2DModel config (nas.diffusers_config)
    DIR/unet/diffusion_pytorch_model.safetensors       the checkpoint's EMA weights (nas.diffusers_weights)
    DIR/scheduler/scheduler_config.json                DDPMScheduler with our noise schedule
    DIR/spec.yaml                                      our spec, with where the weights came from

Nothing here imports diffusers: the folder is written from our own tables and read by diffusers.
"""

from __future__ import annotations

import json
from pathlib import Path

from nas.errors import ConfigError
from nas.export.write import ExportResult, check_writable

__all__ = ["export_run_to_diffusers", "model_yaml_of_run"]
# model_index.json's writer version: diffusers only reads it for information; the layout is
# the one diffusers has used since well before this release (the project asks for >= 0.30).
_DIFFUSERS_VERSION = "0.30.0"


def model_yaml_of_run(run: str | Path) -> Path:
    """The model YAML of a ``nas.train`` run directory (``model.yaml``), or ``run`` itself if a file."""
    path = Path(run)
    if path.is_dir():
        path = path / "model.yaml"
        if not path.is_file():
            raise ConfigError(f"{run} has no model.yaml: expected a nas.train run directory", key="--run")
    elif not path.is_file():
        raise ConfigError(f"{run} does not exist: expected a nas.train run directory or a model YAML",
                          key="--run")
    return path


def export_run_to_diffusers(run: str | Path, out: str | Path) -> ExportResult:
    """Write the trained network of ``run`` as a ``DDPMPipeline`` folder at ``out`` (see the module)."""
    from safetensors.torch import save as safetensors_bytes

    from nas.diffusers_config import DIFFUSERS_SPACE, scheduler_config, unet2d_config
    from nas.diffusers_weights import diffusers_state_dict, diffusers_weight_blockers
    from nas.io import atomic_write
    from nas.model_io import load_model, read_model_yaml, write_model_yaml

    source = model_yaml_of_run(run)
    spec, data = read_model_yaml(source)
    if data.get("checkpoint") is None:
        raise ConfigError("has no checkpoint: (an untrained network); train it with python -m nas.train "
                          "and export the run directory", key="checkpoint", source=str(source))
    reasons = diffusers_weight_blockers(spec)
    if data.get("latent") is not None:
        reasons = ["it models an autoencoder's latents (latent:), which a DDPMPipeline has no place for", *reasons]
    if reasons:
        raise ConfigError("the network cannot be exported to a diffusers UNet2DModel: " + "; ".join(reasons)
                          + f" (every point of {DIFFUSERS_SPACE} exports)", key="--format diffusers",
                          source=str(source))
    model = load_model(source)  # the checkpoint's EMA weights
    weights = {k: v.contiguous() for k, v in diffusers_state_dict(model.state_dict(), spec).items()}
    out = Path(out)
    check_writable(out, directory=True)
    (out / "unet").mkdir(parents=True, exist_ok=True)
    (out / "scheduler").mkdir(parents=True, exist_ok=True)
    index = {"_class_name": "DDPMPipeline", "_diffusers_version": _DIFFUSERS_VERSION,
             "scheduler": ["diffusers", "DDPMScheduler"], "unet": ["diffusers", "UNet2DModel"]}
    weights_path = atomic_write(out / "unet" / "diffusion_pytorch_model.safetensors",
                                safetensors_bytes(weights, metadata={"format": "pt"}))
    header = (f"U-Net trained by nas.train, exported from {source} with its EMA weights.\n"
              "diffusers: DDPMPipeline.from_pretrained(THIS_FOLDER); ours: nas.load_model(THIS_FILE)")
    sections = {key: data.get(key) for key in ("metrics", "provenance", "data")}
    paths = [atomic_write(out / "model_index.json", json.dumps(index, indent=2) + "\n"),
             atomic_write(out / "unet" / "config.json", json.dumps(unet2d_config(spec), indent=2) + "\n"),
             weights_path,
             atomic_write(out / "scheduler" / "scheduler_config.json",
                          json.dumps(scheduler_config(spec), indent=2) + "\n"),
             write_model_yaml(out / "spec.yaml", spec, header=header, sections=sections)]
    return ExportResult(paths=paths)
