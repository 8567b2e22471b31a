"""Knowledge distillation as a proxy-training option: train each candidate toward a trained teacher.

BK-SDM (Kim et al., 2023) makes small block-removed U-Nets good by training them on the usual
target plus the prediction of the original network on the same noisy inputs.  A budget's
``distill: {teacher: RUN_DIR, weight: W}`` does that to every candidate it trains: the loss is

    L = MSE(pred, target) + W * MSE(pred, teacher's prediction)

where the teacher is any ``nas.train`` run directory (its ``model.yaml`` with the trained EMA
weights), run under ``torch.no_grad`` on the candidate's device and inside its autocast.  The
teacher's output is expressed in the student's parameterisation: its noise estimate is read at
the teacher timestep whose noise level (alpha-bar) is nearest the student's, then converted to
the student's target (``eps``, ``x0`` or ``v``) with the student's schedule, so a teacher and a
student that differ in target or schedule still agree on what "the same noisy input" means.

A teacher is loaded once per process and device (:func:`load_teacher` caches it).  Paths are
checked when the space is loaded (:func:`check_teacher`): a missing run, an untrained one and a
teacher of another data shape are one-line errors naming the key.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from evaluators.budget import Distill
from nas.diffusion import GaussianDiffusion
from nas.errors import ConfigError
from nas.spec import UNetSpec

__all__ = ["Distill", "Teacher", "check_teacher", "load_teacher", "teacher_yaml"]


def teacher_yaml(teacher: str | Path) -> Path:
    """The ``model.yaml`` of a teacher given as a run directory (or as that file itself)."""
    path = Path(teacher).expanduser()
    candidate = path / "model.yaml" if path.is_dir() else path
    if not candidate.is_file():
        raise ConfigError(f"no trained run at {str(teacher)!r}: expected a nas.train run directory "
                          "holding model.yaml", key="distill.teacher")
    return candidate


def check_teacher(teacher: str, *, image_size: int, channels: int, frames: int = 1, latent: bool = False) -> UNetSpec:
    """The teacher's spec, after checking that it is a trained run for data of this shape (the
    latents' shape in a latent space, whose teacher must model latents too)."""
    from nas.model_io import read_model_yaml

    path = teacher_yaml(teacher)
    try:
        spec, data = read_model_yaml(path)
    except ConfigError as err:
        raise ConfigError(f"the teacher's {path} is not a model file: {err.message}", key="distill.teacher") from None
    if not isinstance(data.get("checkpoint"), str):
        raise ConfigError(f"the teacher at {str(teacher)!r} has no trained weights (no 'checkpoint:' in {path.name}); "
                          "train it with python -m nas.train first", key="distill.teacher")
    if (spec.in_channels, spec.frames, spec.image_size) != (channels, frames, image_size):
        def shape(c: int, f: int, size: int) -> str:
            return f"{size}x{size} with {c} channel(s)" + (f", {f} frames" if f > 1 else "")

        theirs, ours = shape(spec.in_channels, spec.frames, spec.image_size), shape(channels, frames, image_size)
        raise ConfigError(f"the teacher at {str(teacher)!r} models {theirs} data; the space's data are {ours}",
                          key="distill.teacher")
    if (data.get("latent") is not None) != latent:
        what = "an autoencoder's latents" if latent else "pixels"
        raise ConfigError(f"the teacher at {str(teacher)!r} does not model {what} as the space's U-Nets do",
                          key="distill.teacher")
    return spec


class Teacher:
    """A trained network whose predictions a student is distilled toward (module docstring)."""

    def __init__(self, model: nn.Module, spec: UNetSpec, *, device: torch.device) -> None:
        self.model = model.to(device).eval().requires_grad_(False)
        self.spec = spec
        self.diffusion = GaussianDiffusion.from_spec(spec).to(device)
        self.device = device
        self.seconds = 0.0  # time in the teacher's forward passes (host time; on CUDA, launch time)
        self._timestep_maps: dict[tuple[Any, ...], Tensor] = {}

    def _teacher_steps(self, student: GaussianDiffusion) -> Tensor:
        """For each student timestep, the teacher timestep of the nearest alpha-bar."""
        key = (student.schedule, student.num_timesteps)
        if key not in self._timestep_maps:
            mine = self.diffusion.alphas_cumprod.double().cpu()
            theirs = student.alphas_cumprod.double().cpu()
            self._timestep_maps[key] = (mine[None, :] - theirs[:, None]).abs().argmin(dim=1).to(self.device)
        return self._timestep_maps[key]

    @torch.no_grad()
    def target(self, student: GaussianDiffusion, x_t: Tensor, t: Tensor) -> Tensor:
        """The teacher's prediction for noisy ``x_t`` at student timesteps ``t``, as ``student``'s target."""
        started = time.perf_counter()
        t_teacher = self._teacher_steps(student)[t]
        out = self.model(x_t, t_teacher).float()
        self.seconds += time.perf_counter() - started
        pred, _ = self.diffusion.split_output(out, x_t)
        x0 = self.diffusion.predict_x0(x_t, t_teacher, pred)
        eps = self.diffusion.eps_from_x0(x_t, t_teacher, x0)
        if student.prediction == "eps":
            return eps
        x0 = student.x0_from_eps(x_t, t, eps)
        return x0 if student.prediction == "x0" else student.v_from(x0, eps, t)


@functools.lru_cache(maxsize=4)
def _load(path: str, device: str) -> Teacher:
    from nas.model_io import load_model, read_model_yaml

    spec, _ = read_model_yaml(path)
    return Teacher(load_model(path), spec, device=torch.device(device))


def load_teacher(distill: Distill, *, device: torch.device | str) -> Teacher:
    """The teacher of ``distill`` on ``device``, loaded once per process and device."""
    return _load(str(teacher_yaml(distill.teacher).resolve()), str(torch.device(device)))
