"""Gaussian diffusion: noise schedules, training losses and DDIM / ancestral samplers.

Follows DDPM (Ho et al. 2020) for the forward process, ancestral sampling and ``L_simple``;
Improved DDPM (Nichol & Dhariwal 2021) for the cosine schedule, the learned variance
interpolation, the hybrid loss ``L_simple + lambda * L_vlb`` and timestep respacing; DDIM
(Song et al. 2021) for the deterministic sampler; and Salimans & Ho 2022 for the ``v`` target.
The arithmetic mirrors ``openai/improved-diffusion`` ``gaussian_diffusion.py``.

Every function takes any ``model(x, t) -> Tensor`` callable, where ``t`` is a LongTensor (B,)
of *original* training timesteps in ``[0, T)`` (respaced samplers map their steps back), and
images are in ``[-1, 1]``.  With ``variance="learned"`` the model returns ``2 * C`` channels:
the target first, then ``v`` in ``[-1, 1]`` interpolating between ``log beta_t`` and
``log beta-tilde_t`` (iDDPM eq. 15).  The module never changes the model's train/eval mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from nas.errors import ConfigError, close_match_hint
from nas.spec import PREDICTIONS, SCHEDULES, VARIANCES

if TYPE_CHECKING:
    from nas.spec import UNetSpec

__all__ = [
    "FIXED_VARIANCES",
    "GaussianDiffusion",
    "Model",
    "discretized_gaussian_log_likelihood",
    "make_betas",
    "normal_kl",
    "spaced_timesteps",
]

Model = Callable[[Tensor, Tensor], Tensor]
FIXED_VARIANCES = ("small", "large")  # beta-tilde_t (posterior) or beta_t, DDPM section 3.2


def _check_name(key: str, value: object, valid: tuple[str, ...]) -> None:
    if value not in valid:
        hint = close_match_hint(str(value), valid)
        raise ConfigError(f"unknown value {value!r}{hint}; expected one of {list(valid)}", key=key)


def make_betas(schedule: str, steps: int) -> Tensor:
    """Betas (T,) in float64 for a named schedule.

    ``linear``: DDPM's 1e-4..0.02 over 1000 steps, scaled by ``1000 / T`` so other ``T`` keep
    the same end points of ``alpha_bar`` (iDDPM).  ``cosine``: ``alpha_bar(t) = cos^2(
    (t/T + s) / (1 + s) * pi/2)`` with ``s = 0.008`` and betas clipped at 0.999 (iDDPM eq. 17).
    """
    _check_name("schedule", schedule, SCHEDULES)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"expected an int >= 1, got {steps!r}", key="diffusion_steps")
    if schedule == "linear":
        scale = 1000.0 / steps
        return torch.linspace(scale * 1e-4, scale * 0.02, steps, dtype=torch.float64)
    s = 0.008
    grid = torch.arange(steps + 1, dtype=torch.float64) / steps
    alpha_bar = torch.cos((grid + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)


def spaced_timesteps(total: int, steps: int) -> Tensor:
    """``steps`` evenly spaced timesteps in ``[0, total)`` including 0 and ``total - 1``, ascending."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= total:
        raise ConfigError(f"expected an int in [1, {total}], got {steps!r}", key="steps")
    if steps == 1:
        return torch.tensor([total - 1])
    return torch.linspace(0, total - 1, steps, dtype=torch.float64).round().long()


def _posterior_terms(alphas_cumprod: Tensor) -> dict[str, Tensor]:
    """All per-step constants (float64) for a chain with these ``alpha_bar`` values.

    Used for the full chain and for respaced ones, whose betas are ``1 - abar_i / abar_{i-1}``
    between kept steps (iDDPM section 4).
    """
    prev = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
    betas = 1 - alphas_cumprod / prev
    post_var = betas * (1 - prev) / (1 - alphas_cumprod)
    # beta-tilde_0 is 0; iDDPM clips its log to beta-tilde_1 so the log stays finite.
    clipped = torch.cat([post_var[1:2], post_var[1:]]) if len(post_var) > 1 else betas.clone()
    return {
        "betas": betas,
        "alphas_cumprod": alphas_cumprod,
        "alphas_cumprod_prev": prev,
        "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),
        "sqrt_one_minus_alphas_cumprod": (1 - alphas_cumprod).sqrt(),
        "posterior_variance": post_var,
        "posterior_log_variance_clipped": clipped.log(),
        "log_betas": betas.log(),
        # "large" fixed variance (DDPM sigma^2 = beta) with beta-tilde_1 at t=0, as iDDPM
        "large_log_variance": torch.cat([post_var[1:2], betas[1:]]).log()
        if len(post_var) > 1 else betas.log(),
        "posterior_mean_coef1": betas * prev.sqrt() / (1 - alphas_cumprod),
        "posterior_mean_coef2": (1 - prev) * (1 - betas).sqrt() / (1 - alphas_cumprod),
    }


def _extract(buf: Tensor, t: Tensor, like: Tensor) -> Tensor:
    """``buf[t]`` shaped (B, 1, ..., 1) to broadcast against ``like``, in its dtype."""
    out = buf.to(like.device)[t.to(like.device)]
    return out.to(like.dtype).view(-1, *([1] * (like.ndim - 1)))


def _randn(shape: torch.Size, like: Tensor, generator: torch.Generator | None) -> Tensor:
    # Draw on the generator's device so a CPU generator also seeds CUDA runs identically.
    device = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """Elementwise KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def discretized_gaussian_log_likelihood(x: Tensor, *, mean: Tensor, log_scale: Tensor) -> Tensor:
    """Elementwise log-likelihood of 8-bit data in ``[-1, 1]`` under a Gaussian binned at
    width 2/255, with open-ended edge bins (DDPM section 3.3, iDDPM code)."""
    def cdf(z: Tensor) -> Tensor:  # tanh approximation of the standard normal CDF
        return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z ** 3)))

    centered = x - mean
    inv_std = torch.exp(-log_scale)
    cdf_plus = cdf(inv_std * (centered + 1.0 / 255.0))
    cdf_min = cdf(inv_std * (centered - 1.0 / 255.0))
    log_cdf_plus = cdf_plus.clamp(min=1e-12).log()
    log_one_minus_cdf_min = (1.0 - cdf_min).clamp(min=1e-12).log()
    log_delta = (cdf_plus - cdf_min).clamp(min=1e-12).log()
    return torch.where(x < -0.999, log_cdf_plus,
                       torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))


class GaussianDiffusion(nn.Module):
    """A discrete-time Gaussian diffusion with T steps (see the module docstring).

    An ``nn.Module`` only so that its float32 schedule buffers follow ``.to(device)``; it has no
    parameters and its buffers are not saved in ``state_dict`` (they derive from the config).

    Args:
        schedule: ``linear`` or ``cosine``.
        steps: number of training timesteps T.
        prediction: network target, ``eps``, ``v`` or ``x0``.
        variance: ``fixed`` (output C channels) or ``learned`` (2C channels, hybrid loss).
        vlb_weight: lambda of the hybrid loss ``L_simple + lambda * L_vlb`` (iDDPM: 0.001).
    """

    def __init__(self, *, schedule: str = "cosine", steps: int = 1000, prediction: str = "eps",
                 variance: str = "fixed", vlb_weight: float = 0.001) -> None:
        super().__init__()
        _check_name("prediction", prediction, PREDICTIONS)
        _check_name("variance", variance, VARIANCES)
        if isinstance(vlb_weight, bool) or not isinstance(vlb_weight, (int, float)) or vlb_weight < 0:
            raise ConfigError(f"expected a number >= 0, got {vlb_weight!r}", key="vlb_weight")
        self.schedule, self.num_timesteps = schedule, steps
        self.prediction, self.variance, self.vlb_weight = prediction, variance, float(vlb_weight)
        betas = make_betas(schedule, steps)
        # float64 for the chain, kept for respacing; float32 buffers for the arithmetic.
        self._alphas_cumprod64 = torch.cumprod(1 - betas, dim=0)
        for name, value in _posterior_terms(self._alphas_cumprod64).items():
            self.register_buffer(name, value.float(), persistent=False)

    @classmethod
    def from_spec(cls, spec: UNetSpec, **kwargs: float) -> GaussianDiffusion:
        """The diffusion a spec trains with (schedule, steps, prediction, variance)."""
        return cls(schedule=spec.schedule, steps=spec.diffusion_steps, prediction=spec.prediction,
                   variance=spec.variance, **kwargs)

    def extra_repr(self) -> str:
        return (f"schedule={self.schedule}, steps={self.num_timesteps}, prediction="
                f"{self.prediction}, variance={self.variance}, vlb_weight={self.vlb_weight}")

    # ----- forward process and parameterisations --------------------------------------------
    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """Sample ``x_t ~ q(x_t | x_0) = N(sqrt(abar_t) x0, (1 - abar_t) I)`` with given noise."""
        return (_extract(self.sqrt_alphas_cumprod, t, x0) * x0
                + _extract(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise)

    def v_from(self, x0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        """``v = sqrt(abar) eps - sqrt(1 - abar) x0`` (Salimans & Ho 2022)."""
        return (_extract(self.sqrt_alphas_cumprod, t, x0) * eps
                - _extract(self.sqrt_one_minus_alphas_cumprod, t, x0) * x0)

    def x0_from_eps(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """Invert ``q_sample`` for x0 given the noise."""
        return ((x_t - _extract(self.sqrt_one_minus_alphas_cumprod, t, x_t) * eps)
                / _extract(self.sqrt_alphas_cumprod, t, x_t))

    def eps_from_x0(self, x_t: Tensor, t: Tensor, x0: Tensor) -> Tensor:
        """Invert ``q_sample`` for the noise given x0."""
        return ((x_t - _extract(self.sqrt_alphas_cumprod, t, x_t) * x0)
                / _extract(self.sqrt_one_minus_alphas_cumprod, t, x_t))

    def x0_from_v(self, x_t: Tensor, t: Tensor, v: Tensor) -> Tensor:
        """``x0 = sqrt(abar) x_t - sqrt(1 - abar) v``."""
        return (_extract(self.sqrt_alphas_cumprod, t, x_t) * x_t
                - _extract(self.sqrt_one_minus_alphas_cumprod, t, x_t) * v)

    def eps_from_v(self, x_t: Tensor, t: Tensor, v: Tensor) -> Tensor:
        """``eps = sqrt(1 - abar) x_t + sqrt(abar) v``."""
        return (_extract(self.sqrt_one_minus_alphas_cumprod, t, x_t) * x_t
                + _extract(self.sqrt_alphas_cumprod, t, x_t) * v)

    def target(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """What the network is trained to output for this ``prediction``."""
        if self.prediction == "eps":
            return noise
        if self.prediction == "x0":
            return x0
        return self.v_from(x0, noise, t)

    def predict_x0(self, x_t: Tensor, t: Tensor, pred: Tensor) -> Tensor:
        """x0 implied by a network output ``pred`` (mean part) for this ``prediction``."""
        if self.prediction == "eps":
            return self.x0_from_eps(x_t, t, pred)
        if self.prediction == "x0":
            return pred
        return self.x0_from_v(x_t, t, pred)

    def split_output(self, out: Tensor, x_t: Tensor) -> tuple[Tensor, Tensor | None]:
        """Split a model output into (target prediction, variance values or None)."""
        channels = x_t.shape[1]
        expected = 2 * channels if self.variance == "learned" else channels
        if out.shape[1] != expected or out.shape[2:] != x_t.shape[2:]:
            raise ValueError(
                f"model output has shape {tuple(out.shape)}; variance={self.variance!r} with "
                f"{channels} input channels needs {expected} output channels of size "
                f"{tuple(x_t.shape[2:])}")
        if self.variance == "learned":
            return out[:, :channels], out[:, channels:]  # (B, C, H, W) each
        return out, None

    def _learned_log_variance(self, var_out: Tensor, t: Tensor, terms: dict[str, Tensor]) -> Tensor:
        # iDDPM eq. 15: v in [-1, 1] interpolates log beta-tilde (v=-1) .. log beta (v=+1).
        frac = (var_out + 1) / 2
        return (frac * _extract(terms["log_betas"], t, var_out)
                + (1 - frac) * _extract(terms["posterior_log_variance_clipped"], t, var_out))

    def _posterior_mean(self, x0: Tensor, x_t: Tensor, t: Tensor, terms: dict[str, Tensor]) -> Tensor:
        return (_extract(terms["posterior_mean_coef1"], t, x_t) * x0
                + _extract(terms["posterior_mean_coef2"], t, x_t) * x_t)

    def _timesteps(self, t: Tensor | int, x: Tensor) -> Tensor:
        if isinstance(t, int):
            t = torch.full((x.shape[0],), t, dtype=torch.long)
        # The range check reads values, so it runs only on CPU tensors to avoid a device sync.
        bad_range = t.device.type == "cpu" and t.numel() and (
            t.min() < 0 or t.max() >= self.num_timesteps)
        if t.shape != (x.shape[0],) or bad_range:
            raise ValueError(f"expected timesteps of shape ({x.shape[0]},) in [0, "
                             f"{self.num_timesteps}), got {t.tolist() if t.numel() < 9 else t.shape}")
        return t.to(device=x.device, dtype=torch.long)

    def _schedule_terms(self) -> dict[str, Tensor]:
        return {name: buf for name, buf in self.named_buffers()}

    # ----- training --------------------------------------------------------------------------
    def training_loss(self, model: Model, x0: Tensor, *, t: Tensor | None = None,
                      noise: Tensor | None = None,
                      generator: torch.Generator | None = None,
                      teacher: Callable[[GaussianDiffusion, Tensor, Tensor], Tensor] | None = None,
                      teacher_weight: float = 0.0, parts: dict[str, float] | None = None) -> Tensor:
        """Scalar training loss for a batch ``x0`` (B, C, H, W) in ``[-1, 1]``.

        ``L_simple`` (MSE on the target, mean over pixels and batch) with ``t ~ U[0, T)``; with a
        learned variance, plus ``vlb_weight * T * L_t`` where ``L_t`` is the VLB term in bits
        per dim computed with the mean part detached, so it trains only the variance (iDDPM's
        hybrid loss; ``T * E_t[L_t]`` estimates ``L_vlb``): KL to the true posterior for t > 0
        and the discretised Gaussian decoder NLL at t = 0.  With a ``teacher`` (``teacher(self,
        x_t, t)`` -> its prediction as this diffusion's target, :mod:`evaluators.distill`), plus
        ``teacher_weight`` times the MSE toward it on the same noisy inputs; ``parts``, when given,
        then receives that term's value as ``distill``.
        """
        if t is None:
            device = generator.device if generator is not None else x0.device
            t = torch.randint(0, self.num_timesteps, (x0.shape[0],), generator=generator,
                              device=device)
        t = self._timesteps(t, x0)
        if noise is None:
            noise = _randn(x0.shape, x0, generator)
        x_t = self.q_sample(x0, t, noise)
        pred, var_out = self.split_output(model(x_t, t).float(), x_t)
        loss = ((pred - self.target(x0, noise, t)) ** 2).mean()
        if teacher is not None:
            distill = ((pred - teacher(self, x_t, t)) ** 2).mean()
            if parts is not None:
                parts["distill"] = float(distill.detach())
            loss = loss + teacher_weight * distill
        if var_out is None:
            return loss
        vlb = self._vlb_bits(x0, x_t, t, pred.detach(), var_out)  # (B,)
        return loss + self.vlb_weight * self.num_timesteps * vlb.mean()

    def _vlb_bits(self, x0: Tensor, x_t: Tensor, t: Tensor, pred: Tensor, var_out: Tensor) -> Tensor:
        """Per-sample VLB term L_t in bits/dim (iDDPM ``_vb_terms_bpd``, no clipping)."""
        terms = self._schedule_terms()
        true_mean = self._posterior_mean(x0, x_t, t, terms)
        true_logvar = _extract(terms["posterior_log_variance_clipped"], t, x_t)
        model_logvar = self._learned_log_variance(var_out, t, terms)
        model_mean = self._posterior_mean(self.predict_x0(x_t, t, pred), x_t, t, terms)
        dims = tuple(range(1, x0.ndim))
        kl = normal_kl(true_mean, true_logvar, model_mean, model_logvar).mean(dim=dims)
        nll = -discretized_gaussian_log_likelihood(
            x0, mean=model_mean, log_scale=0.5 * model_logvar).mean(dim=dims)
        return torch.where(t == 0, nll, kl) / math.log(2.0)

    @torch.no_grad()
    def target_mse(self, model: Model, x0: Tensor, t: Tensor | int, noise: Tensor) -> Tensor:
        """Per-sample MSE (B,) of the network's target at given timesteps and noise, under
        ``no_grad``; the variance channels of a learned-variance model are ignored.  With fixed
        ``t`` and ``noise`` this is the common-random-numbers held-out loss (``val_loss``)."""
        t = self._timesteps(t, x0)
        x_t = self.q_sample(x0, t, noise)
        pred, _ = self.split_output(model(x_t, t).float(), x_t)
        return ((pred - self.target(x0, noise, t)) ** 2).flatten(1).mean(dim=1)

    # ----- sampling --------------------------------------------------------------------------
    @torch.no_grad()
    def ddim_sample(self, model: Model, noise: Tensor, *, steps: int, eta: float = 0.0,
                    generator: torch.Generator | None = None, clip: bool | float = True) -> Tensor:
        """DDIM sampling (Song et al. 2021, eq. 12) from ``noise`` (B, C, H, W) over ``steps``
        evenly spaced timesteps from T-1 down to 0.  ``eta=0`` is deterministic given ``noise``;
        ``eta=1`` matches DDPM's posterior variance.  ``clip`` clamps each x0 estimate to
        ``[-1, 1]`` (a number ``c``: to ``[-c, c]``, e.g. the range of a latent search's latents;
        the noise estimate is then recomputed from it, as iDDPM does)."""
        bound = 1.0 if clip is True else float(clip)
        if isinstance(eta, bool) or not isinstance(eta, (int, float)) or eta < 0:
            raise ConfigError(f"expected a number >= 0, got {eta!r}", key="eta")
        seq = spaced_timesteps(self.num_timesteps, steps).tolist()[::-1]
        abar = self.alphas_cumprod.to(noise.device)
        x = noise
        for i, step in enumerate(seq):
            t = torch.full((x.shape[0],), step, dtype=torch.long, device=x.device)
            pred, _ = self.split_output(model(x, t).float(), x)
            x0 = self.predict_x0(x, t, pred)
            if clip:
                x0 = x0.clamp(-bound, bound)
            eps = self.eps_from_x0(x, t, x0)
            a_t = abar[step]
            a_prev = abar[seq[i + 1]] if i + 1 < len(seq) else abar.new_tensor(1.0)
            sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).sqrt()
            x = a_prev.sqrt() * x0 + (1 - a_prev - sigma ** 2).clamp(min=0).sqrt() * eps
            if eta > 0 and i + 1 < len(seq):
                x = x + sigma * _randn(x.shape, x, generator)
        return x

    @torch.no_grad()
    def ancestral_sample(self, model: Model, noise: Tensor, *, steps: int | None = None,
                         generator: torch.Generator | None = None, clip: bool = True,
                         fixed_variance: str = "small") -> Tensor:
        """DDPM ancestral sampling from ``noise`` (B, C, H, W).

        ``steps`` < T respaces the chain to that many evenly spaced timesteps (iDDPM section 4);
        the reverse variance is the learned one when ``variance="learned"``, else
        ``fixed_variance``: ``small`` (beta-tilde) or ``large`` (beta), both recomputed for the
        respaced chain.  Reproducible for a given ``generator`` seed.
        """
        _check_name("fixed_variance", fixed_variance, FIXED_VARIANCES)
        kept = spaced_timesteps(self.num_timesteps, self.num_timesteps if steps is None else steps)
        terms = {k: v.float().to(noise.device)
                 for k, v in _posterior_terms(self._alphas_cumprod64[kept]).items()}
        kept = kept.to(noise.device)
        x = noise
        for i in range(len(kept) - 1, -1, -1):
            idx = torch.full((x.shape[0],), i, dtype=torch.long, device=x.device)
            pred, var_out = self.split_output(model(x, kept[idx]).float(), x)
            # Coefficients index the respaced chain; the model sees the original timestep.
            x0 = self.predict_x0(x, kept[idx], pred)
            if clip:
                x0 = x0.clamp(-1, 1)
            mean = self._posterior_mean(x0, x, idx, terms)
            if i == 0:
                return mean
            if var_out is not None:
                log_var = self._learned_log_variance(var_out, idx, terms)
            elif fixed_variance == "small":
                log_var = _extract(terms["posterior_log_variance_clipped"], idx, x)
            else:
                log_var = _extract(terms["large_log_variance"], idx, x)
            x = mean + torch.exp(0.5 * log_var) * _randn(x.shape, x, generator)
        return x
