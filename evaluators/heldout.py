"""The held-out denoising loss (``val_loss``) with common random numbers.

Every candidate is scored on the same held-out images, the same fixed grid of timesteps and the
same noise tensors, drawn once from a fixed seed that does not depend on the candidate or the
training seed, so differences between candidates are differences of networks, not of draws
(DESIGN.md, "Metric definitions").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from evaluators.device import Precision
from nas.diffusion import GaussianDiffusion

__all__ = ["NOISE_SEED", "HeldOutProbe"]

NOISE_SEED = 20_240_611  # fixed for every candidate, study and training seed


@dataclass
class HeldOutProbe:
    """Fixed held-out images, timesteps and noise; :meth:`loss` scores a model on them."""

    images: Tensor  # (N, C, H, W) in [-1, 1]
    timesteps: Tensor  # (K,) long
    noise: Tensor  # (K, N, C, H, W)
    batch_size: int = 256

    @classmethod
    def build(cls, held_out: Tensor, *, images: int, timesteps: int, diffusion_steps: int,
              batch_size: int = 256) -> HeldOutProbe:
        """Take the first ``images`` held-out images and ``timesteps`` grid points (bin centres)."""
        chosen = held_out[:images]
        grid = ((torch.arange(timesteps, dtype=torch.float64) + 0.5) * diffusion_steps / timesteps).long()
        gen = torch.Generator().manual_seed(NOISE_SEED)
        noise = torch.randn((timesteps, *chosen.shape), generator=gen)
        return cls(images=chosen, timesteps=grid, noise=noise, batch_size=batch_size)

    @torch.no_grad()
    def loss(self, model: nn.Module, diffusion: GaussianDiffusion, *, device: torch.device,
             precision: Precision | None = None) -> tuple[float, list[float]]:
        """Mean target MSE over the grid, and the per-timestep means (low ``t`` first); forward
        passes run in ``precision`` (float32 when not given)."""
        precision = precision or Precision()
        per_t = []
        for k, t in enumerate(self.timesteps.tolist()):
            total = 0.0
            for start in range(0, len(self.images), self.batch_size):
                x0 = self.images[start:start + self.batch_size].to(device)
                noise = self.noise[k, start:start + self.batch_size].to(device)
                with precision.autocast(device):
                    mse = diffusion.target_mse(model, x0, t, noise)
                total += float(mse.float().sum())
            per_t.append(total / len(self.images))
        return sum(per_t) / len(per_t), per_t
