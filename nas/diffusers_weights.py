"""Our U-Net's weights as diffusers ``UNet2DModel`` weights, tensor for tensor.

With ``width_change: first_block`` (and the rest of :func:`nas.diffusers_config.diffusers_blockers`
clear) our network and ``UNet2DModel.from_config(unet2d_config(spec))`` are the same network:
the same modules in the same order, the same parameter shapes.  Only the names differ, and
our attention keeps q, k and v in one 1x1 convolution where diffusers has three linear layers.
:func:`diffusers_state_dict` renames (and splits) a state dict; the test suite checks that the
diffusers model then gives our output to float32 rounding.

Key correspondence (``L`` levels; our decoder is stored highest resolution first, diffusers'
``up_blocks`` deepest first, so our level ``i`` is ``up_blocks[L-1-i]`` and our
``upsamplers[i]``, from level ``i+1`` to ``i``, is ``up_blocks[L-2-i].upsamplers[0]``)::

    time_embed.mlp.{0,2}          time_embedding.linear_{1,2}
    stem                          conv_in
    encoder.i.j.block             down_blocks.i.resnets.j
    encoder.i.j.attention         down_blocks.i.attentions.j
    downsamplers.i                down_blocks.i.downsamplers.0
    mid.0.block, mid.0.attention  mid_block.resnets.0, mid_block.attentions.0
    mid.1.block                   mid_block.resnets.1
    decoder.i.j.block/attention   up_blocks.(L-1-i).resnets.j / attentions.j
    upsamplers.i                  up_blocks.(L-2-i).upsamplers.0
    out_norm, out_conv            conv_norm_out, conv_out

inside a residual block ``in_norm, in_conv, cond.proj.1, cond.norm, out_conv, skip`` are
``norm1, conv1, time_emb_proj, norm2, conv2, conv_shortcut``; inside an attention layer ``norm,
qkv, proj`` are ``group_norm, to_q|to_k|to_v, to_out.0``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor

from nas.errors import ConfigError
from nas.spec import UNetSpec

__all__ = ["diffusers_state_dict", "diffusers_weight_blockers"]

_RESNET = {"in_norm": "norm1", "in_conv": "conv1", "cond.proj.1": "time_emb_proj", "cond.norm": "norm2",
           "out_conv": "conv2", "skip": "conv_shortcut"}
_TOP = {"time_embed.mlp.0": "time_embedding.linear_1", "time_embed.mlp.2": "time_embedding.linear_2",
        "stem": "conv_in", "out_norm": "conv_norm_out", "out_conv": "conv_out"}


def diffusers_weight_blockers(spec: UNetSpec) -> list[str]:
    """Every reason ``spec``'s weights do not map one to one onto ``UNet2DModel`` (empty when they do)."""
    from nas.diffusers_config import diffusers_blockers

    reasons = diffusers_blockers(spec)
    if spec.width_change != "first_block":
        reasons.append("width_change = resampler (diffusers changes the width in each level's first ResNet "
                       "block: train with width_change: first_block, as the bundled diffusers.yaml does)")
    if spec.level_channels[0] != spec.base_channels:
        reasons.append(f"levels[0].channel_mult = {spec.levels[0].channel_mult} (diffusers' time features are "
                       f"block_out_channels[0] wide, ours base_channels wide: the time MLP's first layer differs)")
    return reasons


def _block_key(rest: str) -> str:
    """``block.<our name>.<weight|bias>`` or ``attention.<...>`` inside a layer -> diffusers' name."""
    for ours, theirs in _RESNET.items():
        if rest.startswith(ours + "."):
            return theirs + rest[len(ours):]
    raise KeyError(rest)


def _rename(key: str, levels: int) -> str:
    """The diffusers name of our parameter ``key`` (attention q/k/v are handled by the caller)."""
    for ours, theirs in _TOP.items():
        if key.startswith(ours + "."):
            return theirs + key[len(ours):]
    match = re.fullmatch(r"(encoder|decoder)\.(\d+)\.(\d+)\.(block|attention)\.(.+)", key)
    if match:
        side, level, index, part, rest = match.groups()
        block = f"down_blocks.{level}" if side == "encoder" else f"up_blocks.{levels - 1 - int(level)}"
        if part == "block":
            return f"{block}.resnets.{index}.{_block_key(rest)}"
        return f"{block}.attentions.{index}.{rest}"
    match = re.fullmatch(r"mid\.(\d)\.(block|attention)\.(.+)", key)
    if match:
        index, part, rest = match.groups()
        if part == "block":
            return f"mid_block.resnets.{index}.{_block_key(rest)}"
        return f"mid_block.attentions.0.{rest}"
    match = re.fullmatch(r"(downsamplers|upsamplers)\.(\d+)\.(.+)", key)
    if match:
        side, index, rest = match.groups()
        block = f"down_blocks.{index}" if side == "downsamplers" else f"up_blocks.{levels - 2 - int(index)}"
        if not rest.startswith("conv."):  # a residual-block resampler (resample: resblock)
            rest = _block_key(rest)
        return f"{block}.{side}.0.{rest}"
    raise KeyError(key)


def _linear(tensor: Tensor) -> Tensor:
    """A 1x1 convolution's weight (out, in, 1, 1) as a linear layer's (out, in); biases unchanged."""
    return (tensor.flatten(1) if tensor.ndim == 4 else tensor).clone()


def diffusers_state_dict(state_dict: Mapping[str, Tensor], spec: UNetSpec) -> dict[str, Tensor]:
    """``state_dict`` of ``build_unet(spec)`` under ``UNet2DModel``'s names and shapes.

    A :class:`ConfigError` names every blocker when the spec does not map one to one.
    """
    reasons = diffusers_weight_blockers(spec)
    if reasons:
        raise ConfigError("the weights cannot be exported to a diffusers UNet2DModel: " + "; ".join(reasons),
                          key="--format diffusers")
    levels = len(spec.levels)
    out: dict[str, Tensor] = {}
    for key, tensor in state_dict.items():
        name = _rename(key, levels)
        if ".attentions." in name and re.search(r"\.(norm|qkv|proj)\.(weight|bias)$", name):
            prefix, layer, kind = name.rsplit(".", 2)
            if layer == "norm":
                out[f"{prefix}.group_norm.{kind}"] = tensor.clone()
            elif layer == "proj":
                out[f"{prefix}.to_out.0.{kind}"] = _linear(tensor)
            else:  # qkv: one (3C, C, 1, 1) conv -> three (C, C) linear layers, q then k then v
                for part, chunk in zip(("to_q", "to_k", "to_v"), tensor.chunk(3, dim=0), strict=True):
                    out[f"{prefix}.{part}.{kind}"] = _linear(chunk)
            continue
        out[name] = tensor.clone()
    return out
