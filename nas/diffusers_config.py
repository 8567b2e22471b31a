"""A `UNetSpec` as a diffusers ``UNet2DModel`` config (and a matching ``DDPMScheduler`` config).

diffusers' ``UNet2DModel`` (von Platen et al., the DDPM/ADM layout of Ho et al. 2020 and
Dhariwal & Nichol 2021) expresses a subset of our space: standard ResNet blocks, no
squeeze-excitation, full self-attention or none, concatenated skips, conv or ResNet resampling,
one ``layers_per_block`` for every level with one more block in the decoder; its
``DDPMScheduler`` has our eps, x0 (``sample``) and v targets and our learned variance
(``learned_range``, the Improved-DDPM interpolation).  :func:`diffusers_blockers` names every
choice of a spec outside that subset; :func:`unet2d_config` maps the rest.

The mapping keeps the levels, their widths, the blocks per level, where attention sits (with
the same heads and parameter count per attention layer), the bottleneck, the time embedding and
the time conditioning.  With ``width_change: first_block`` it is exact, parameter for
parameter, and :mod:`nas.diffusers_weights` carries trained weights across.  With the default
``width_change: resampler`` only the config maps: diffusers changes the width in the first
ResNet of a level (with a 1x1 shortcut) and keeps it in the resampler, so its decoder
concatenates skips of mixed widths; totals then differ by about 1-3 % (DDPM's CIFAR-10
network: 35.75M parameters in diffusers, 36.02M here).
"""

from __future__ import annotations

from typing import Any

from nas.errors import ConfigError
from nas.spec import UNetSpec

__all__ = ["DIFFUSERS_SPACE", "diffusers_blockers", "diffusers_notes", "scheduler_config", "unet2d_config"]

# The bundled space in which every point exports to diffusers with its weights (errors name it).
DIFFUSERS_SPACE = "search_spaces/diffusers.yaml"

_RESAMPLE = {"conv": "conv", "resblock": "resnet"}
_TIME_SHIFT = {"additive": "default", "scale_shift": "scale_shift"}
_PREDICTION = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}


def diffusers_blockers(spec: UNetSpec) -> list[str]:
    """Every choice of ``spec`` that ``UNet2DModel`` cannot express (empty when it can)."""
    reasons: list[str] = []
    first = spec.levels[0].blocks
    for i, lv in enumerate(spec.levels):
        where = f"levels[{i}]"
        if lv.conv != "standard":
            reasons.append(f"{where}.conv = {lv.conv} (diffusers has only standard ResNet blocks)")
        if lv.se:
            reasons.append(f"{where}.se = true (diffusers has no squeeze-excitation)")
        if lv.attention not in ("none", "full"):
            reasons.append(f"{where}.attention = {lv.attention} (diffusers has only full self-attention)")
        if lv.blocks != first:
            reasons.append(f"{where}.blocks = {lv.blocks} differs from levels[0].blocks = {first} "
                           "(layers_per_block is one number for all levels)")
        if lv.blocks == 0:
            reasons.append(f"{where}.blocks = 0 (a diffusers block has at least one ResNet)")
        if lv.decoder_blocks != lv.blocks + 1:
            reasons.append(f"{where}.decoder_blocks = {lv.decoder_blocks} (diffusers uses blocks + 1 = "
                           f"{lv.blocks + 1})")
    if spec.mid_attention not in ("none", "full"):
        reasons.append(f"mid_attention = {spec.mid_attention} (diffusers has only full self-attention or none)")
    for i, width in spec._attention_widths():
        if width < spec.head_channels:
            where = "mid_attention" if i is None else f"levels[{i}].attention"
            reasons.append(f"{where} over {width} channels < head_channels = {spec.head_channels} "
                           "(diffusers would make 0 heads of attention_head_dim channels)")
    if spec.skip_fusion != "concat":
        reasons.append(f"skip_fusion = {spec.skip_fusion} (diffusers concatenates skips)")
    if spec.resample not in _RESAMPLE:
        reasons.append(f"resample = {spec.resample} (diffusers resamples with conv or resnet)")
    return reasons


def diffusers_notes(spec: UNetSpec) -> list[str]:
    """Differences that remain in an exported config (not blockers; see the module docstring)."""
    notes = []
    if spec.width_change != "first_block":
        notes.append("width_change = resampler: diffusers changes the width in each level's first block, so "
                     "its parameter count differs by about 1-3% and no weights can move across (train with "
                     "width_change: first_block, as search_spaces/diffusers.yaml does, for an exact export)")
    if spec.level_channels[0] != spec.base_channels:
        notes.append(f"diffusers' sinusoidal time features are block_out_channels[0] = {spec.level_channels[0]} "
                     f"wide, ours base_channels = {spec.base_channels} (the time MLP's first layer differs)")
    return notes


def unet2d_config(spec: UNetSpec) -> dict[str, Any]:
    """``UNet2DModel`` config for ``spec``; a :class:`ConfigError` lists every blocker."""
    reasons = diffusers_blockers(spec)
    if reasons:
        raise ConfigError("the spec cannot be expressed as a diffusers UNet2DModel: " + "; ".join(reasons),
                          key="--format diffusers")
    attn = [lv.attention == "full" for lv in spec.levels]
    return {
        "_class_name": "UNet2DModel",
        "sample_size": spec.image_size,
        "in_channels": spec.in_channels,
        "out_channels": spec.out_channels,
        "center_input_sample": False,
        "time_embedding_type": "positional",
        # our TimestepEmbedding: cos-then-sin features, frequencies exp(-ln(1e4) * i / half)
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "time_embedding_dim": 4 * spec.base_channels,
        "down_block_types": [_down_type(a, spec.resample) for a in attn],
        "mid_block_type": "UNetMidBlock2D",
        "up_block_types": [_up_type(a, spec.resample) for a in reversed(attn)],  # deepest first
        "block_out_channels": list(spec.level_channels),
        "layers_per_block": spec.levels[0].blocks,
        "mid_block_scale_factor": 1,
        "downsample_padding": 1,
        "downsample_type": _RESAMPLE[spec.resample],
        "upsample_type": _RESAMPLE[spec.resample],
        "dropout": spec.dropout,
        "act_fn": "silu",
        "attention_head_dim": spec.head_channels,
        "norm_num_groups": spec.norm_groups,
        # our attention always has a GroupNorm; diffusers drops the mid one under scale_shift unless set
        "attn_norm_num_groups": spec.norm_groups,
        "norm_eps": 1e-5,
        "resnet_time_scale_shift": _TIME_SHIFT[spec.time_conditioning],
        "add_attention": spec.mid_attention == "full",
    }


def _down_type(attention: bool, resample: str) -> str:
    if attention:
        return "AttnDownBlock2D"  # takes downsample_type itself
    return "DownBlock2D" if resample == "conv" else "ResnetDownsampleBlock2D"


def _up_type(attention: bool, resample: str) -> str:
    if attention:
        return "AttnUpBlock2D"
    return "UpBlock2D" if resample == "conv" else "ResnetUpsampleBlock2D"


def scheduler_config(spec: UNetSpec) -> dict[str, Any]:
    """``DDPMScheduler`` config with our noise schedule (see :func:`nas.diffusion.make_betas`)."""
    config: dict[str, Any] = {
        "_class_name": "DDPMScheduler",
        "num_train_timesteps": spec.diffusion_steps,
        "prediction_type": _PREDICTION[spec.prediction],
        # ours and diffusers' learned_range: log-variance = frac log(beta) + (1 - frac) log(beta~),
        # frac = (v + 1) / 2 (Improved DDPM); only the clipping of beta~ at t = 0 differs
        "variance_type": "learned_range" if spec.variance == "learned" else "fixed_small",
        "clip_sample": True,
    }
    if spec.schedule == "cosine":
        # alpha_bar(t) = cos^2((t/T + 0.008) / 1.008 * pi/2), betas clipped at 0.999: same formula
        config["beta_schedule"] = "squaredcos_cap_v2"
    else:
        scale = 1000.0 / spec.diffusion_steps  # our linear betas keep alpha_bar's end points for any T
        config.update(beta_schedule="linear", beta_start=1e-4 * scale, beta_end=0.02 * scale)
    return config
