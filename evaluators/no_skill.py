"""The no-skill point: what a network that learned nothing scores on the held-out metrics.

A multi-objective study needs a finite value for every objective of every COMPLETE trial, and an
infeasible candidate is never trained.  Rather than an invented penalty (or infinity, which
optuna-dashboard sends as the string "inf" and every plot then mishandles), such a candidate is
recorded at the no-skill point, measured with the very definitions of the metrics:

* ``val_loss``: the held-out target MSE of a denoiser that always predicts zero (about 1 for the
  eps and v targets, whose variance is 1), on the same images, timesteps and noise as every
  candidate (:class:`~evaluators.heldout.HeldOutProbe`);
* ``fid_proxy``, ``kid_mean`` (and a video search's ``fvd_proxy``): the scores of DDIM samples
  drawn with that zero denoiser, with the budget's sample count and steps and the same fixed
  noise seed as every candidate's samples (on MNIST at the ``cpu`` budget about 4,200, where
  trained candidates score 250-420 and 4-step smoke training about the same 4,200: it has
  learned nothing yet).

So the point is the evaluation pipeline run with a network that predicts zero: a candidate that
learned anything scores better on quality, an infeasible trial lands at the far corner of the
quality axes, and the plots keep numeric axes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from evaluators.heldout import HeldOutProbe
from nas.diffusion import GaussianDiffusion

if TYPE_CHECKING:
    from evaluators.budget import Budget
    from evaluators.proxy import EvalContext
    from nas.spec import UNetSpec

__all__ = ["ZeroDenoiser", "no_skill_scores"]


class ZeroDenoiser(nn.Module):
    """A "network" that predicts zero for every input: ``(B, C, H, W), (B,) -> (B, out, H, W)``."""

    def __init__(self, out_channels: int) -> None:
        super().__init__()
        self.out_channels = out_channels

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return x.new_zeros((x.shape[0], self.out_channels, *x.shape[2:]))


def _sample_scores(spec: UNetSpec, diffusion: GaussianDiffusion, budget: Budget,
                   context: EvalContext) -> dict[str, float]:
    from evaluators.fid import score_samples
    from evaluators.proxy import SAMPLE_NOISE_SEED

    key = ("no_skill_fid", budget.fid_samples, budget.sample_steps, spec.sample_shape,
           spec.prediction, spec.schedule, spec.diffusion_steps)
    if key not in context.memo:
        gen = torch.Generator().manual_seed(SAMPLE_NOISE_SEED)  # the candidates' starting noise
        noise = torch.randn((budget.fid_samples, *spec.sample_shape), generator=gen)
        pixels = context.latent is None  # a latent search decodes its latents, as for candidates
        samples = diffusion.ddim_sample(ZeroDenoiser(spec.out_channels), noise, steps=budget.sample_steps,
                                        clip=context.sample_clip)
        samples = samples.clamp(-1, 1) if pixels else context.to_pixels(samples)
        scores = score_samples(samples, context.reference, seed=0)
        context.memo[key] = {"fid_proxy": float(scores["fid_proxy"]), "kid_mean": float(scores["kid_mean"])}
        if context.clip_reference is not None and samples.ndim == 5:
            from evaluators.video_fid import temporal_scores

            clip_scores = temporal_scores(samples, context.clip_reference, seed=0)
            context.memo[key]["fvd_proxy"] = float(clip_scores["fvd_proxy"])
    return dict(context.memo[key])


@torch.no_grad()
def no_skill_scores(spec: UNetSpec, *, budget: Budget, context: EvalContext) -> dict[str, float]:
    """``val_loss`` (and ``fid_proxy``, ``kid_mean``, for clips ``fvd_proxy``, when the context scores samples) of the
    no-skill point for ``spec``'s target and schedule (see the module docstring)."""
    diffusion = GaussianDiffusion.from_spec(spec)
    probe = HeldOutProbe.build(context.data.held_out, images=budget.val_images, timesteps=budget.val_timesteps,
                               diffusion_steps=spec.diffusion_steps)
    val_loss, _ = probe.loss(ZeroDenoiser(spec.out_channels), diffusion, device=torch.device("cpu"))
    scores = {"val_loss": float(val_loss)}
    if context.reference is not None and budget.fid_samples >= 2:
        scores.update(_sample_scores(spec, diffusion, budget, context))
    return scores
