"""U-Net building blocks and the one place where spec names become modules.

Each registry maps the names that :mod:`nas.spec` allows to classes; the ``make_*`` factories
translate the spec-level arguments to each class's constructor.  Unknown names raise a
:class:`~nas.errors.ConfigError` listing the valid ones (diffusers' ``get_down_block`` with
the ``else`` it lacks).  A test checks that every registry covers exactly the spec's names.
"""

from __future__ import annotations

from typing import TypeVar

from torch import nn

from nas.blocks.attention import LinearAttention, SelfAttention, TransformerBlock
from nas.blocks.resample import (
    AvgPoolDownsample,
    ConvDownsample,
    ConvUpsample,
    NearestUpsample,
    PixelShuffleUpsample,
    PixelUnshuffleDownsample,
    ResBlockDownsample,
    ResBlockUpsample,
)
from nas.blocks.residual import (
    DepthwiseSeparableResBlock,
    InvertedResidualBlock,
    ResBlock,
)
from nas.blocks.squeeze_excite import SqueezeExcite
from nas.blocks.time_embedding import (
    TimeConditioning,
    TimestepEmbedding,
    sinusoidal_embedding,
)
from nas.errors import ConfigError, close_match_hint

__all__ = [
    "ATTENTION_LAYERS",
    "DOWNSAMPLERS",
    "RES_BLOCKS",
    "UPSAMPLERS",
    "LinearAttention",
    "SelfAttention",
    "SqueezeExcite",
    "TimeConditioning",
    "TimestepEmbedding",
    "TransformerBlock",
    "lookup",
    "make_attention",
    "make_res_block",
    "make_resample",
    "sinusoidal_embedding",
]

RES_BLOCKS: dict[str, type[nn.Module]] = {
    "standard": ResBlock,
    "depthwise_separable": DepthwiseSeparableResBlock,
    "inverted_residual": InvertedResidualBlock,
}
# "none" is a valid spec value that builds no layer; make_attention returns None for it.
ATTENTION_LAYERS: dict[str, type[nn.Module] | None] = {
    "none": None,
    "full": SelfAttention,
    "linear": LinearAttention,
    "transformer": TransformerBlock,
}
DOWNSAMPLERS: dict[str, type[nn.Module]] = {
    "conv": ConvDownsample,
    "avgpool": AvgPoolDownsample,
    "resblock": ResBlockDownsample,
    "pixel_shuffle": PixelUnshuffleDownsample,
}
UPSAMPLERS: dict[str, type[nn.Module]] = {
    "conv": ConvUpsample,
    "avgpool": NearestUpsample,
    "resblock": ResBlockUpsample,
    "pixel_shuffle": PixelShuffleUpsample,
}

T = TypeVar("T")


def lookup(registry: dict[str, T], name: str, *, key: str) -> T:
    """``registry[name]``, or a :class:`ConfigError` at ``key`` that lists the valid names."""
    try:
        return registry[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown value {name!r}{close_match_hint(name, registry)}; "
            f"expected one of {list(registry)}", key=key) from None


def make_res_block(
    conv: str,
    *,
    in_channels: int,
    out_channels: int,
    emb_channels: int,
    time_conditioning: str,
    norm_groups: int,
    dropout: float = 0.0,
    se_reduction: int | None = None,
    expansion: int = 4,
) -> nn.Module:
    """A residual block of type ``conv``; ``se_reduction=None`` means no squeeze-excitation.

    ``expansion`` only applies to ``inverted_residual``.
    """
    cls = lookup(RES_BLOCKS, conv, key="conv")
    extra = {"expansion": expansion} if cls is InvertedResidualBlock else {}
    return cls(in_channels=in_channels, out_channels=out_channels, emb_channels=emb_channels,
               time_conditioning=time_conditioning, norm_groups=norm_groups, dropout=dropout,
               se_reduction=se_reduction, **extra)


def make_attention(
    name: str, *, channels: int, heads: int, norm_groups: int, emb_channels: int
) -> nn.Module | None:
    """The attention layer ``name`` with ``heads`` heads, or None for ``"none"``.

    The U-Net passes ``spec.attention_heads(channels)`` (``channels // head_channels``, at
    least one).
    """
    cls = lookup(ATTENTION_LAYERS, name, key="attention")
    if cls is None:
        return None
    if cls is TransformerBlock:
        return TransformerBlock(channels, heads=heads, emb_channels=emb_channels)
    return cls(channels, heads=heads, norm_groups=norm_groups)


def make_resample(
    name: str,
    direction: str,
    *,
    in_channels: int,
    out_channels: int,
    emb_channels: int,
    time_conditioning: str,
    norm_groups: int,
    dropout: float = 0.0,
) -> nn.Module:
    """A ``direction`` (``"down"`` or ``"up"``) resampler of type ``name``, in -> out channels."""
    if direction not in ("down", "up"):
        raise ValueError(f"direction must be 'down' or 'up', got {direction!r}")
    cls = lookup(DOWNSAMPLERS if direction == "down" else UPSAMPLERS, name, key="resample")
    if issubclass(cls, ResBlock):
        return cls(in_channels=in_channels, out_channels=out_channels, emb_channels=emb_channels,
                   time_conditioning=time_conditioning, norm_groups=norm_groups, dropout=dropout)
    return cls(in_channels, out_channels)
