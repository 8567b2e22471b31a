"""Gaussian diffusion: schedules, parameterisations, losses, samplers, and learning on a toy set.

The samplers are checked against an analytic denoiser (the exact posterior mean of a 4-point
data distribution), so their arithmetic is tested without training; the learning tests train
a small network defined here on the same data.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from nas.diffusion import GaussianDiffusion, make_betas, spaced_timesteps
from nas.errors import ConfigError
from nas.spec import PREDICTIONS, SCHEDULES, LevelSpec, UNetSpec

T = 1000


def patterns() -> Tensor:
    """Four fixed 8x8 binary patterns in {-1, 1}, shape (4, 1, 8, 8)."""
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 2, (4, 1, 8, 8), generator=gen).float() * 2 - 1


def nearest_rms(samples: Tensor, pats: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample RMS distance to the nearest pattern, and that pattern's index."""
    dist = torch.cdist(samples.flatten(1), pats.flatten(1)) / math.sqrt(pats[0].numel())
    return dist.min(dim=1).values, dist.argmin(dim=1)


def sinusoidal(t: Tensor, dim: int = 32) -> Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.sin(), args.cos()], dim=1)


class TinyDenoiser(nn.Module):
    """A small denoiser for 8x8 images: a 3x3 conv stem, an MLP over the whole image with
    FiLM time conditioning in residual layers, and a 1x1 conv skip from the input (so that
    eps ~ x_t at high noise is easy to represent)."""

    def __init__(self, *, channels: int = 1, size: int = 8, out_channels: int = 1,
                 width: int = 8, hidden: int = 256, depth: int = 2) -> None:
        super().__init__()
        self.size, self.out_channels, self.depth = size, out_channels, depth
        self.stem = nn.Conv2d(channels, width, 3, padding=1)
        self.time = nn.Sequential(nn.Linear(32, hidden), nn.SiLU(), nn.Linear(hidden, 2 * depth * hidden))
        self.inp = nn.Linear((width + channels) * size * size, hidden)
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(depth))
        self.layers = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))
        self.out = nn.Linear(hidden, out_channels * size * size)
        self.skip = nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        film = self.time(sinusoidal(t)).chunk(2 * self.depth, dim=1)
        h = torch.cat([nn.functional.silu(self.stem(x)), x], dim=1).flatten(1)
        h = self.inp(h)                                                   # (B, hidden)
        for i, (norm, layer) in enumerate(zip(self.norms, self.layers, strict=True)):
            h = h + layer(nn.functional.silu(norm(h) * (1 + film[2 * i]) + film[2 * i + 1]))
        out = self.out(nn.functional.silu(h))                             # (B, out*size*size)
        return out.view(x.shape[0], self.out_channels, self.size, self.size) + self.skip(x)


class PosteriorMeanDenoiser:
    """The exact MMSE denoiser for data uniform over ``pats``: x0_hat = E[x0 | x_t], returned
    in the diffusion's parameterisation (plus constant variance channels if asked)."""

    def __init__(self, diffusion: GaussianDiffusion, pats: Tensor, *, var_value: float | None = None) -> None:
        self.diffusion, self.pats, self.var_value = diffusion, pats, var_value

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        d = self.diffusion
        abar = d.alphas_cumprod[t].double()[:, None, None]                 # (B, 1, 1)
        flat = self.pats.flatten(1).double()                               # (K, D)
        sq = ((x.flatten(1).double()[:, None] - abar.sqrt() * flat[None]) ** 2).sum(-1)
        weights = torch.softmax(-sq / (2 * (1 - abar[:, :, 0])), dim=1)    # (B, K)
        x0 = (weights @ flat).view_as(x).float()
        eps = d.eps_from_x0(x, t, x0)
        out = {"x0": x0, "eps": eps, "v": d.v_from(x0, eps, t)}[d.prediction]
        if self.var_value is not None:
            out = torch.cat([out, torch.full_like(out, self.var_value)], dim=1)
        return out


# ----- schedules and construction --------------------------------------------------------------
@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("steps", [50, 1000, 4000])
def test_schedule_alpha_bar_decreases_inside_unit_interval(schedule: str, steps: int) -> None:
    betas = make_betas(schedule, steps)
    assert betas.dtype == torch.float64 and betas.shape == (steps,)
    assert (betas > 0).all() and (betas <= 0.999).all()
    d = GaussianDiffusion(schedule=schedule, steps=steps)
    abar = d.alphas_cumprod
    assert abar.dtype == torch.float32
    assert (abar > 0).all() and (abar < 1).all()
    assert (abar[1:] < abar[:-1]).all()
    assert abar[0] > 0.99 and abar[-1] < 0.01  # starts near the data, ends near pure noise


def test_linear_schedule_scales_with_steps() -> None:
    b1000 = make_betas("linear", 1000)
    assert b1000[0].item() == pytest.approx(1e-4) and b1000[-1].item() == pytest.approx(0.02)
    b4000 = make_betas("linear", 4000)
    assert b4000[0].item() == pytest.approx(2.5e-5) and b4000[-1].item() == pytest.approx(0.005)


def test_cosine_schedule_follows_formula() -> None:
    abar = torch.cumprod(1 - make_betas("cosine", T), dim=0)
    s = 0.008
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    for t in (0, 250, 500, 900):
        assert abar[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-9)


@pytest.mark.parametrize("key,kwargs", [
    ("prediction", {"prediction": "epsilon"}),
    ("variance", {"variance": "learnt"}),
    ("schedule", {"schedule": "sigmoid"}),
])
def test_unknown_names_raise_listing_valid_ones(key: str, kwargs: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=rf"{key}: unknown value .* expected one of \[") as err:
        GaussianDiffusion(**kwargs)
    assert err.value.key == key


def test_bad_numbers_raise() -> None:
    with pytest.raises(ConfigError, match="diffusion_steps"):
        GaussianDiffusion(steps=0)
    with pytest.raises(ConfigError, match="vlb_weight"):
        GaussianDiffusion(vlb_weight=-1.0)
    with pytest.raises(ConfigError, match="fixed_variance: unknown value 'tiny'"):
        GaussianDiffusion(steps=10).ancestral_sample(lambda x, t: x, torch.zeros(1, 1, 2, 2),
                                                      fixed_variance="tiny")
    with pytest.raises(ConfigError, match=r"steps: expected an int in \[1, 10\]"):
        GaussianDiffusion(steps=10).ddim_sample(lambda x, t: x, torch.zeros(1, 1, 2, 2), steps=11)
    with pytest.raises(ConfigError, match=r"steps: expected an int in \[1, 10\], got 0"):
        GaussianDiffusion(steps=10).ancestral_sample(lambda x, t: x, torch.zeros(1, 1, 2, 2), steps=0)
    with pytest.raises(ConfigError, match="eta: expected a number >= 0"):
        GaussianDiffusion(steps=10).ddim_sample(lambda x, t: x, torch.zeros(1, 1, 2, 2), steps=2, eta=-1)


def test_from_spec_copies_the_diffusion_fields() -> None:
    spec = UNetSpec(image_size=8, base_channels=8, norm_groups=2, prediction="v",
                    variance="learned", schedule="linear", diffusion_steps=200)
    d = GaussianDiffusion.from_spec(spec)
    assert (d.schedule, d.num_timesteps, d.prediction, d.variance) == ("linear", 200, "v", "learned")
    assert len(d.betas) == 200


def test_buffers_move_with_to_and_stay_out_of_state_dict() -> None:
    d = GaussianDiffusion(steps=10)
    assert d.state_dict() == {}
    d.to("meta")
    assert {buf.device.type for buf in d.buffers()} == {"meta"}
    assert len(list(d.buffers())) >= 10


def test_spaced_timesteps_are_even_unique_and_span_the_chain() -> None:
    for steps in (1, 2, 7, 20, T):
        seq = spaced_timesteps(T, steps)
        assert len(seq) == steps and len(set(seq.tolist())) == steps
        assert seq[-1] == T - 1 and (steps == 1 or seq[0] == 0)
        assert (seq[1:] > seq[:-1]).all()
        gaps = seq.diff().float()
        assert steps < 3 or gaps.max() - gaps.min() <= 1


# ----- forward process and parameterisations --------------------------------------------------
def test_q_sample_has_the_marginal_mean_and_variance() -> None:
    d = GaussianDiffusion()
    gen = torch.Generator().manual_seed(0)
    x0 = torch.full((20000, 1, 1, 1), 0.7)
    t = torch.full((20000,), 300)
    xt = d.q_sample(x0, t, torch.randn(x0.shape, generator=gen))
    abar = d.alphas_cumprod[300].item()
    assert xt.mean().item() == pytest.approx(math.sqrt(abar) * 0.7, abs=0.02)
    assert xt.var().item() == pytest.approx(1 - abar, rel=0.04)
    assert torch.equal(d.q_sample(x0[:4], t[:4], torch.zeros(4, 1, 1, 1)),
                       math.sqrt(abar) * x0[:4] * torch.ones(1))  # zero noise: scaled data


def test_conversions_round_trip() -> None:
    d = GaussianDiffusion(steps=T)
    gen = torch.Generator().manual_seed(1)
    x0 = torch.rand(16, 2, 4, 4, generator=gen) * 2 - 1
    eps = torch.randn(x0.shape, generator=gen)
    t = torch.linspace(0, 900, 16).long()  # abar >= ~0.02: away from the ill-conditioned end
    xt = d.q_sample(x0, t, eps)
    v = d.v_from(x0, eps, t)
    close = {"atol": 2e-4, "rtol": 0}
    torch.testing.assert_close(d.x0_from_eps(xt, t, eps), x0, **close)
    torch.testing.assert_close(d.eps_from_x0(xt, t, x0), eps, atol=2e-3, rtol=0)  # 1/sqrt(1-abar_0)
    torch.testing.assert_close(d.x0_from_v(xt, t, v), x0, **close)
    torch.testing.assert_close(d.eps_from_v(xt, t, v), eps, **close)
    for prediction, out in (("eps", eps), ("x0", x0), ("v", v)):
        dp = GaussianDiffusion(steps=T, prediction=prediction)
        torch.testing.assert_close(dp.target(x0, eps, t), out)
        torch.testing.assert_close(dp.predict_x0(xt, t, out), x0, **close)


# ----- losses -----------------------------------------------------------------------------------
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_target_mse_matches_training_loss_and_is_per_sample(prediction: str) -> None:
    torch.manual_seed(0)
    d = GaussianDiffusion(prediction=prediction)
    model = TinyDenoiser(hidden=16)
    x0 = patterns().repeat(2, 1, 1, 1)
    t = torch.tensor([0, 10, 100, 300, 500, 700, 900, 999])
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(2))
    per_sample = d.target_mse(model, x0, t, noise)
    assert per_sample.shape == (8,) and not per_sample.requires_grad
    loss = d.training_loss(model, x0, t=t, noise=noise)
    assert loss.ndim == 0 and loss.requires_grad
    torch.testing.assert_close(loss.detach(), per_sample.mean())
    # an int timestep broadcasts over the batch
    torch.testing.assert_close(d.target_mse(model, x0, 500, noise),
                               d.target_mse(model, x0, torch.full((8,), 500), noise))


def test_training_loss_is_reproducible_with_a_generator() -> None:
    torch.manual_seed(0)
    d = GaussianDiffusion()
    model = TinyDenoiser(hidden=16)
    x0 = patterns()
    a = d.training_loss(model, x0, generator=torch.Generator().manual_seed(5))
    b = d.training_loss(model, x0, generator=torch.Generator().manual_seed(5))
    c = d.training_loss(model, x0, generator=torch.Generator().manual_seed(6))
    assert a.item() == b.item() != c.item()


def test_wrong_output_channels_and_timesteps_raise() -> None:
    x0 = patterns()
    with pytest.raises(ValueError, match="variance='learned' with 1 input channels needs 2 output"):
        GaussianDiffusion(variance="learned").training_loss(lambda x, t: x, x0)
    with pytest.raises(ValueError, match="variance='fixed' with 1 input channels needs 1 output"):
        GaussianDiffusion().training_loss(lambda x, t: torch.cat([x, x], 1), x0)
    with pytest.raises(ValueError, match=r"timesteps of shape \(4,\) in \[0, 1000\)"):
        GaussianDiffusion().target_mse(lambda x, t: x, x0, torch.tensor([0, 1, 2, 1000]), x0)


class _TwoHeads(nn.Module):
    """Mean and variance channels from separate parameters, to check which ones each loss trains."""

    def __init__(self) -> None:
        super().__init__()
        self.mean = TinyDenoiser(hidden=16)
        self.var = TinyDenoiser(hidden=16)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return torch.cat([self.mean(x, t), torch.tanh(self.var(x, t))], dim=1)


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_learned_variance_hybrid_loss_is_finite_and_stops_the_mean_gradient(prediction: str) -> None:
    x0 = patterns().repeat(2, 1, 1, 1)
    t = torch.tensor([0, 1, 5, 50, 200, 500, 900, 999])  # t = 0 takes the decoder NLL branch
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))
    grads = {}
    for weight in (0.0, 0.001):
        torch.manual_seed(0)
        model = _TwoHeads()
        d = GaussianDiffusion(prediction=prediction, variance="learned", vlb_weight=weight)
        loss = d.training_loss(model, x0, t=t, noise=noise)
        assert torch.isfinite(loss)
        loss.backward()
        grads[weight] = {name: p.grad.clone() if p.grad is not None else torch.zeros_like(p)
                         for name, p in model.named_parameters()}
        if weight == 0.0:
            torch.testing.assert_close(loss.detach(), d.target_mse(model, x0, t, noise).mean())
    for name, g0 in grads[0.0].items():
        g1 = grads[0.001][name]
        assert torch.isfinite(g1).all()
        if name.startswith("mean."):  # the VLB term must not move the mean (stop-gradient)
            torch.testing.assert_close(g1, g0)
        else:  # the variance head learns only from the VLB term
            assert not g0.any()
    assert any(g.any() for n, g in grads[0.001].items() if n.startswith("var."))


def test_vlb_vanishes_when_the_model_matches_the_true_posterior() -> None:
    """True noise and v = -1 (posterior variance): the KL term is zero for t > 0; at t = 0 the
    decoder NLL of data at the edge values +-1 is -log2 Phi((1/255) / sigma), the mass of the
    open-ended edge bin under N(+-1, sigma^2) with sigma^2 = beta-tilde_1 (iDDPM's clip)."""
    d = GaussianDiffusion(variance="learned")
    x0 = patterns()
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(4))
    oracle = lambda x, t: torch.cat([noise, -torch.ones_like(noise)], dim=1)
    for step in (1, 10, 500, 999):
        loss = d.training_loss(oracle, x0, t=torch.full((4,), step), noise=noise)
        assert loss.item() == pytest.approx(0.0, abs=1e-6)
    sigma = d.posterior_variance[1].sqrt().item()
    edge_bits = -math.log2(0.5 * (1 + math.erf(1 / 255 / sigma / math.sqrt(2))))
    nll = d.training_loss(oracle, x0, t=torch.zeros(4, dtype=torch.long), noise=noise)
    assert nll.item() == pytest.approx(d.vlb_weight * d.num_timesteps * edge_bits, abs=2e-3)
    # a wrong variance costs something
    wrong = lambda x, t: torch.cat([noise, torch.ones_like(noise)], dim=1)
    assert d.training_loss(wrong, x0, t=torch.full((4,), 10), noise=noise).item() > 1e-3


# ----- samplers -----------------------------------------------------------------------------------
def _noise(n: int = 64, seed: int = 3) -> Tensor:
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_samplers_with_the_exact_denoiser_reach_every_pattern(schedule: str, prediction: str) -> None:
    d = GaussianDiffusion(schedule=schedule, prediction=prediction)
    pats = patterns()
    model = PosteriorMeanDenoiser(d, pats)
    noise = _noise()
    runs = {
        "ddim": d.ddim_sample(model, noise, steps=10),
        "ddim_eta": d.ddim_sample(model, noise, steps=10, eta=1.0,
                                  generator=torch.Generator().manual_seed(0)),
        "ancestral": d.ancestral_sample(model, noise, steps=10, generator=torch.Generator().manual_seed(0)),
    }
    for name, samples in runs.items():
        dist, which = nearest_rms(samples, pats)
        assert dist.max() < 1e-3, name
        assert which.bincount(minlength=4).min() >= 6, name  # no mode collapse


def test_ddim_eta0_is_deterministic_and_eta_reproducible() -> None:
    torch.manual_seed(0)
    d = GaussianDiffusion(steps=100)
    model = TinyDenoiser(hidden=16)
    noise = _noise(8)
    a = d.ddim_sample(model, noise, steps=5)
    assert a.shape == noise.shape and a.abs().max() <= 1  # the last step returns the clipped x0
    torch.testing.assert_close(d.ddim_sample(model, noise, steps=5), a, rtol=0, atol=0)
    b = d.ddim_sample(model, noise, steps=5, eta=0.5, generator=torch.Generator().manual_seed(1))
    c = d.ddim_sample(model, noise, steps=5, eta=0.5, generator=torch.Generator().manual_seed(1))
    e = d.ddim_sample(model, noise, steps=5, eta=0.5, generator=torch.Generator().manual_seed(2))
    assert torch.equal(b, c) and not torch.equal(b, e) and not torch.equal(a, b)


def test_ddim_clip_keeps_x0_in_range() -> None:
    d = GaussianDiffusion(steps=50, prediction="x0")
    wild = lambda x, t: torch.full_like(x, 5.0)
    out = d.ddim_sample(wild, _noise(4), steps=5)
    torch.testing.assert_close(out, torch.ones_like(out))  # last step returns the clipped x0
    assert d.ddim_sample(wild, _noise(4), steps=5, clip=False).min() > 4.9


@pytest.mark.parametrize("steps", [None, 7])
def test_ancestral_is_reproducible_with_the_same_seed(steps: int | None) -> None:
    torch.manual_seed(0)
    d = GaussianDiffusion(steps=50)
    model = TinyDenoiser(hidden=16)
    noise = _noise(4)
    run = lambda seed: d.ancestral_sample(model, noise, steps=steps,
                                          generator=torch.Generator().manual_seed(seed))
    a, b, c = run(0), run(0), run(1)
    assert a.shape == noise.shape and torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("steps", [None, 9])
def test_ddim_eta1_equals_ancestral_with_posterior_variance(steps: int | None) -> None:
    """DDIM with eta = 1 is DDPM's posterior step (Song et al. 2021, section 4.1), also on a
    respaced chain, so the two samplers agree given the same generator."""
    torch.manual_seed(0)
    d = GaussianDiffusion(steps=60, prediction="v")
    model = TinyDenoiser(hidden=16)
    noise = _noise(4)
    ddim = d.ddim_sample(model, noise, steps=steps or 60, eta=1.0, generator=torch.Generator().manual_seed(7))
    ddpm = d.ancestral_sample(model, noise, steps=steps, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(ddim, ddpm, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("var_value,fixed", [(-1.0, "small"), (1.0, "large")])
def test_learned_variance_endpoints_are_the_fixed_variances(var_value: float, fixed: str) -> None:
    pats = patterns()
    learned = GaussianDiffusion(steps=100, variance="learned")
    plain = GaussianDiffusion(steps=100)
    noise = _noise(8)
    for steps in (None, 10):
        a = learned.ancestral_sample(PosteriorMeanDenoiser(learned, pats, var_value=var_value), noise,
                                     steps=steps, generator=torch.Generator().manual_seed(0), clip=False)
        b = plain.ancestral_sample(PosteriorMeanDenoiser(plain, pats), noise, steps=steps,
                                   generator=torch.Generator().manual_seed(0), clip=False,
                                   fixed_variance=fixed)
        torch.testing.assert_close(a, b)
    # DDIM ignores the variance channels
    torch.testing.assert_close(
        learned.ddim_sample(PosteriorMeanDenoiser(learned, pats, var_value=var_value), noise, steps=5),
        plain.ddim_sample(PosteriorMeanDenoiser(plain, pats), noise, steps=5))


# ----- the U-Net builder plugs in -------------------------------------------------------------
def _tiny_spec(**kwargs: object) -> UNetSpec:
    level = {"blocks": 1, "decoder_blocks": 2, "conv": "standard", "attention": "none"}
    return UNetSpec(image_size=8, in_channels=1, base_channels=8, norm_groups=2, mid_attention="none",
                    levels=(LevelSpec(channel_mult=1, **level), LevelSpec(channel_mult=2, **level)),
                    **kwargs)


@pytest.mark.parametrize("variance", ["fixed", "learned"])
def test_unet_from_spec_trains_and_samples(variance: str) -> None:
    unet = pytest.importorskip("nas.unet")
    torch.manual_seed(0)
    spec = _tiny_spec(variance=variance, prediction="v", diffusion_steps=100)
    model, d = unet.build_unet(spec), GaussianDiffusion.from_spec(spec)
    loss = d.training_loss(model, patterns(), generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters()
                                        if p.grad is not None)
    model.eval()
    assert d.target_mse(model, patterns(), 50, torch.zeros(4, 1, 8, 8)).shape == (4,)
    assert d.ddim_sample(model, _noise(2), steps=3).shape == (2, 1, 8, 8)
    assert d.ancestral_sample(model, _noise(2), steps=3,
                              generator=torch.Generator().manual_seed(0)).shape == (2, 1, 8, 8)


# ----- learning -------------------------------------------------------------------------------------
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_a_small_model_learns_the_patterns(prediction: str) -> None:
    """300 Adam steps on 4 patterns: the held-out loss (fixed t grid, fixed noise) falls below
    half its initial value and 20-step DDIM samples land near the patterns."""
    torch.manual_seed(0)
    pats = patterns()
    d = GaussianDiffusion(schedule="cosine", steps=T, prediction=prediction)
    model = TinyDenoiser()
    x_val = pats[torch.arange(64) % 4]
    t_val = torch.linspace(0, T - 1, 64).long()
    n_val = torch.randn(x_val.shape, generator=torch.Generator().manual_seed(2))
    initial = d.target_mse(model, x_val, t_val, n_val).mean().item()

    steps, gen = 300, torch.Generator().manual_seed(1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    # linear decay: the last steps refine instead of bouncing at full step size
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1 - i / steps)
    for _ in range(steps):
        batch = pats[torch.randint(0, 4, (64,), generator=gen)]
        loss = d.training_loss(model, batch, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()

    final = d.target_mse(model, x_val, t_val, n_val).mean().item()
    assert final < 0.5 * initial, (initial, final)
    noise = _noise()
    samples = d.ddim_sample(model, noise, steps=20)
    dist, which = nearest_rms(samples, pats)
    pattern_gap = (torch.pdist(pats.flatten(1)) / 8).min().item()   # ~1.2
    noise_dist = nearest_rms(noise, pats)[0].mean().item()          # ~1.3
    assert dist.mean() < 0.5 * pattern_gap and dist.mean() < 0.4 * noise_dist, dist.mean()
    assert len(which.unique()) >= 3  # covers the data, not one mode
