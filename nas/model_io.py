"""Model files: the commented spec YAML, training checkpoints, and ``load_model``.

A model file is a YAML mapping with the architecture under ``spec:`` (every field preceded by a
comment taken from the :class:`~nas.spec.UNetSpec` / :class:`~nas.spec.LevelSpec` docstrings,
so the documentation has one source), optional ``metrics:``/``provenance:``/... sections, and
optionally ``checkpoint: PATH`` (relative to the YAML file).  ``nas.export`` writes the first
kind, ``nas.train`` the second; :func:`load_model` reads both.

A checkpoint is one ``torch.save`` file holding everything :class:`evaluators.training.TrainState`
carries (model, EMA, optimiser, the data-order and noise generators, the epoch permutation and
its cursor, the step) plus torch's global RNG state (dropout draws from it), so a resumed run
takes exactly the steps an uninterrupted one would.  It is written to a temporary file and
renamed, so a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import inspect
import re
import textwrap
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml
from torch import nn

from nas.errors import ConfigError
from nas.io import atomic_write, atomic_writer
from nas.spec import LevelSpec, UNetSpec

if TYPE_CHECKING:
    from evaluators.training import TrainState

__all__ = ["CHECKPOINT_VERSION", "field_docs", "latent_section", "load_checkpoint", "load_model", "read_model_yaml",
           "restore_train_state", "save_checkpoint", "spec_yaml_lines", "write_model_yaml"]

CHECKPOINT_VERSION = 1
_WIDTH = 100  # comment lines are wrapped to this width


# ----- the commented YAML -------------------------------------------------------------------
def field_docs(cls: type) -> dict[str, str]:
    """``{field: one-paragraph text}`` from the ``Args:`` section of a dataclass docstring.

    Sphinx markup is reduced to plain text (``x`` -> x, :class:`A` -> A) so it reads well as
    a YAML comment.
    """
    doc = inspect.cleandoc(cls.__doc__ or "")
    _, _, args = doc.partition("Args:")
    docs: dict[str, str] = {}
    current = None
    for line in args.splitlines():
        match = re.match(r"^    (\w+): (.*)$", line)
        if match and match.group(1) in {f.name for f in fields(cls)}:
            current = match.group(1)
            docs[current] = match.group(2).strip()
        elif current and line.startswith("        "):
            docs[current] += " " + line.strip()
        elif line.strip():
            current = None
    for key, text in docs.items():
        text = re.sub(r":\w+:`~?(?:[\w.]*\.)?(\w+)`", r"\1", text)
        docs[key] = text.replace("``", "")
    return docs


def _scalar(value: Any) -> str:
    # Dumping inside a one-element flow list quotes exactly what YAML would misread.
    return yaml.safe_dump([value], default_flow_style=True, width=10**6).strip()[1:-1]


def _comment(text: str, indent: str, *, hang: str = "") -> list[str]:
    return textwrap.wrap(text, width=_WIDTH, initial_indent=f"{indent}# ",
                         subsequent_indent=f"{indent}# {hang}")


def spec_yaml_lines(spec: UNetSpec, *, indent: str = "  ") -> list[str]:
    """The spec's fields as YAML lines, each field preceded by its documentation comment.

    The level fields are documented once, above ``levels:``; each level follows as a block
    mapping.  ``UNetSpec.from_dict(yaml.safe_load(...))`` gives back ``spec``.
    """
    spec_docs, level_docs = field_docs(UNetSpec), field_docs(LevelSpec)
    data = spec.to_dict()
    lines: list[str] = []
    for f in fields(UNetSpec):
        lines += _comment(spec_docs.get(f.name, f.name), indent)
        if f.name != "levels":
            lines.append(f"{indent}{f.name}: {_scalar(getattr(spec, f.name))}")  # every field, documented
            continue
        for lf in fields(LevelSpec):
            lines += _comment(f"  {lf.name}: {level_docs.get(lf.name, lf.name)}", indent, hang="    ")
        lines.append(f"{indent}levels:")
        for i, level in enumerate(data["levels"]):
            for j, (key, value) in enumerate(level.items()):
                lead = "- " if j == 0 else "  "
                tail = f"  # level {i}" if j == 0 else ""
                lines.append(f"{indent}{lead}{key}: {_scalar(value)}{tail}")
    return lines


def write_model_yaml(path: str | Path, spec: UNetSpec, *, header: str = "",
                     sections: dict[str, Any] | None = None) -> Path:
    """Write ``header`` (as comments), the commented ``spec:`` and plain ``sections`` to ``path``.

    ``sections`` maps top-level keys (``metrics``, ``provenance``, ``checkpoint``...) to plain
    data.  The file is written atomically.
    """
    path = Path(path)
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    lines += ["spec:", *spec_yaml_lines(spec)]
    for key, value in (sections or {}).items():
        if value is None:
            continue
        lines.append("")
        lines.append(yaml.safe_dump({key: value}, sort_keys=False, width=_WIDTH).rstrip())
    return atomic_write(path, "\n".join(lines) + "\n")


def read_model_yaml(path: str | Path) -> tuple[UNetSpec, dict[str, Any]]:
    """The spec (top level or under ``spec:``) and the whole mapping of a model YAML file."""
    from nas.readers import read_yaml

    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping with a spec", source=str(path))
    raw = data["spec"] if isinstance(data.get("spec"), dict) else {
        k: v for k, v in data.items() if k in {f.name for f in fields(UNetSpec)}}
    return UNetSpec.from_dict(raw, source=str(path)), data


# ----- checkpoints ----------------------------------------------------------------------------
def save_checkpoint(path: str | Path, state: TrainState, *, spec: UNetSpec,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write ``state`` (a :class:`~evaluators.training.TrainState`) to ``path`` atomically."""
    path = Path(path)
    payload = {
        "version": CHECKPOINT_VERSION,
        "spec": spec.to_dict(),
        "step": state.step,
        "model": state.model.state_dict(),
        "ema": state.ema.model.state_dict(),
        "ema_updates": state.ema.updates,
        "optimizer": state.optimizer.state_dict(),
        "data_generator": state.data_generator.get_state(),
        "noise_generator": state.noise_generator.get_state(),
        "order": state.order,
        "cursor": state.cursor,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "extra": extra or {},
    }
    with atomic_writer(path, binary=True) as fh:
        torch.save(payload, fh)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The payload of a checkpoint written by :func:`save_checkpoint` (tensors on the CPU)."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError("checkpoint file does not exist", source=str(path)) from None
    except Exception as err:  # noqa: BLE001 - a truncated or foreign file
        raise ConfigError(f"not a readable checkpoint ({type(err).__name__}: {str(err).splitlines()[0]})",
                          source=str(path)) from None
    if not isinstance(payload, dict) or payload.get("version") != CHECKPOINT_VERSION:
        raise ConfigError(f"not a checkpoint of version {CHECKPOINT_VERSION}", source=str(path))
    return payload


def restore_train_state(state: TrainState, payload: dict[str, Any]) -> None:
    """Load a checkpoint ``payload`` into a freshly created ``TrainState`` (model on its device)."""
    state.model.load_state_dict(payload["model"])
    state.ema.model.load_state_dict(payload["ema"])
    state.ema.updates = int(payload["ema_updates"])
    state.optimizer.load_state_dict(payload["optimizer"])  # moves its tensors to the params' device
    state.data_generator.set_state(payload["data_generator"])
    state.noise_generator.set_state(payload["noise_generator"])
    state.order = payload["order"]
    state.cursor = int(payload["cursor"])
    state.step = int(payload["step"])
    torch.set_rng_state(payload["torch_rng"])
    if payload.get("cuda_rng") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["cuda_rng"][:torch.cuda.device_count()])


# ----- load_model -----------------------------------------------------------------------------
def load_model(path: str | Path) -> nn.Module:
    """A plain ``torch.nn.Module`` (eval mode, CPU) from a model YAML file.

    Without ``checkpoint:`` the network is freshly initialised; with it, the checkpoint's EMA
    weights (the weights every metric was computed with) are loaded.  A latent model's file
    (``latent:``, as exports and ``nas.train`` runs of a latent space write it) gives an
    :class:`evaluators.latent.LatentUNet`: the U-Net with its trained autoencoder.
    """
    from nas.unet import build_unet

    path = Path(path)
    spec, data = read_model_yaml(path)
    model = build_unet(spec)
    checkpoint = data.get("checkpoint")
    if checkpoint is not None:
        if not isinstance(checkpoint, str):
            raise ConfigError(f"expected a file path, got {checkpoint!r}", key="checkpoint", source=str(path))
        payload = load_checkpoint(path.parent / checkpoint)
        if UNetSpec.from_dict(payload["spec"]) != spec:
            raise ConfigError(f"checkpoint {checkpoint} was trained for a different spec",
                              key="checkpoint", source=str(path))
        model.load_state_dict(payload["ema"])
    if data.get("latent") is not None:
        return _with_autoencoder(model, data, path).eval()
    return model.eval()


def latent_section(data: dict[str, Any], path: Path) -> Any:
    """The :class:`evaluators.latent.LatentConfig` of a model file's ``latent:`` section, its
    ``autoencoder`` file resolved against the model file's folder (None without the section)."""
    from evaluators.latent import BUILT_IN, LatentConfig

    raw = data.get("latent")
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("autoencoder"), str):
        raise ConfigError(f"expected a mapping with 'autoencoder: FILE', got {raw!r}", key="latent", source=str(path))
    if raw["autoencoder"] == BUILT_IN:
        raise ConfigError("a model file names its autoencoder's file (nas.export and nas.train write one beside "
                          "it), not 'kl'", key="latent.autoencoder", source=str(path))
    try:
        latent = LatentConfig.from_dict({**raw, "autoencoder": str(path.parent / raw["autoencoder"])})
    except (TypeError, ConfigError) as err:
        raise ConfigError(f"not a latent section: {err}", key="latent", source=str(path)) from None
    from evaluators.autoencoder import autoencoder_file_info

    try:
        autoencoder_file_info(latent.autoencoder)
    except ConfigError as err:
        raise ConfigError(err.message, key="latent.autoencoder", source=str(path)) from None
    return latent


def _with_autoencoder(unet: nn.Module, data: dict[str, Any], path: Path) -> nn.Module:
    from evaluators.autoencoder import read_autoencoder
    from evaluators.latent import LatentUNet

    latent = latent_section(data, path)
    return LatentUNet(unet, read_autoencoder(latent.autoencoder), latent)
