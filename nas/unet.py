"""The U-Net builder: ``build_unet(spec) -> UNet``, the only way a :class:`UNetSpec` becomes a
model (nanoGPT's ``GPT(config)`` pattern).

The layout follows DDPM (Ho et al. 2020) and ADM (Dhariwal & Nichol 2021): a stem conv, an
encoder that stores a skip for each level's input and after each block, a bottleneck of
block-attention-block, and a decoder whose blocks each consume the most recent skip of their
level while skips remain.  Per the spec's channel plan, level ``i``'s blocks output
``spec.level_channels[i]`` channels; with ``width_change: resampler`` the resamplers change the
width between levels, with ``first_block`` each level's first block does (DDPM's and ADM's
code, diffusers' ``UNet2DModel``: parameter for parameter the same network, see
:mod:`nas.diffusers_weights`).  The builder follows one running width, so both plans are the
same code.  With ``decoder_blocks = blocks + 1`` every skip is consumed, exactly as in DDPM.

A video spec (``frames > 1``) is the same network run on every frame, clip by clip in one batch
of ``B * F`` frames (every spatial layer a ``(1, 3, 3)`` kernel in 3D terms, resampling spatial
only), with each level's ``temporal`` layer after its blocks (:mod:`nas.blocks.temporal`): the
factorised layout of Video Diffusion Models and Make-A-Video.  An image spec is the one-frame
case and runs exactly as before.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas.blocks import TimestepEmbedding, make_attention, make_res_block, make_resample
from nas.blocks.layers import zero_init_
from nas.blocks.temporal import TemporalAttention, TemporalConv
from nas.spec import LevelSpec, UNetSpec

__all__ = ["UNet", "build_unet", "count_parameters"]


class _Layer(nn.Module):
    """One residual block, optionally followed by an attention layer and a temporal layer.

    ``takes_skip`` marks a decoder layer that fuses a skip before its block; which layers do
    is fixed by the spec, so it is decided once at build time.
    """

    def __init__(self, block: nn.Module, attention: nn.Module | None, *, takes_skip: bool = False,
                 temporal: nn.Module | None = None) -> None:
        super().__init__()
        self.block = block
        self.attention = attention
        self.takes_skip = takes_skip
        self.temporal = temporal  # None is a plain attribute: an image spec's state dict keeps its keys

    def forward(self, h: Tensor, emb: Tensor, frames: int = 1) -> Tensor:
        h = self.block(h, emb)
        if self.attention is not None:
            h = self.attention(h, emb)
        if self.temporal is not None:
            h = self.temporal(h, frames)
        return h


def _temporal_layer(name: str, *, channels: int, heads: int, norm_groups: int, frames: int) -> nn.Module | None:
    """The temporal layer ``name`` of a level (None for ``none``)."""
    if name == "conv1d":
        return TemporalConv(channels, norm_groups=norm_groups)
    if name == "attention":
        return TemporalAttention(channels, heads=heads, norm_groups=norm_groups, max_distance=max(frames - 1, 1))
    return None


class UNet(nn.Module):
    """A diffusion U-Net built from a :class:`UNetSpec`.

    ``forward(x (B, in_channels, H, W), t) -> (B, spec.out_channels, H, W)``, with H and
    W divisible by ``2 ** (len(spec.levels) - 1)`` and ``t`` integer or float timesteps: a
    ``(B,)`` tensor, a 0-d tensor or a Python number (one timestep for the whole batch).
    Videos: ``x (B, in_channels, F, H, W) -> (B, spec.out_channels, F, H, W)`` for any F (one
    timestep per clip); an image spec accepts them too and treats every frame alone.
    """

    def __init__(self, spec: UNetSpec) -> None:
        super().__init__()
        self.spec = spec
        widths = spec.level_channels
        emb_channels = 4 * spec.base_channels
        self._common = {"emb_channels": emb_channels, "time_conditioning": spec.time_conditioning,
                        "norm_groups": spec.norm_groups, "dropout": spec.dropout}

        self.time_embed = TimestepEmbedding(spec.base_channels, emb_channels)
        self.stem = nn.Conv2d(spec.in_channels, widths[0], 3, padding=1)
        resampler_changes_width = spec.width_change == "resampler"

        # encoder: blocks per level, then a downsampler to the next level.  `width` is the
        # running width of h; every block outputs its level's width.  `skip_widths[i]` records
        # the width of each skip level i stores (its input, then each block's output).
        width = widths[0]
        encoder, downsamplers, skip_widths = [], [], []
        for i, lv in enumerate(spec.levels):
            layers, level_skips = [], [width]
            for j in range(lv.blocks):
                layers.append(self._layer(lv, width, widths[i], temporal=_gets_temporal(lv, j, lv.blocks)))
                width = widths[i]
                level_skips.append(width)
            encoder.append(nn.ModuleList(layers))
            skip_widths.append(level_skips)
            if i + 1 < len(widths):
                out = widths[i + 1] if resampler_changes_width else width
                downsamplers.append(make_resample(spec.resample, "down", in_channels=width, out_channels=out,
                                                  **self._common))
                width = out
        self.encoder = nn.ModuleList(encoder)
        self.downsamplers = nn.ModuleList(downsamplers)

        # bottleneck at the last level's width, conv type and SE
        last = spec.levels[-1]
        self.mid = nn.ModuleList([
            self._layer(last, width, widths[-1], attention=spec.mid_attention, temporal=_gets_temporal(last, 0, 2)),
            self._layer(last, widths[-1], widths[-1], attention="none", temporal=_gets_temporal(last, 1, 2)),
        ])
        width = widths[-1]

        # decoder, stored highest resolution first like the encoder, built and run in reverse;
        # upsamplers[i] brings h from level i+1 to level i
        decoder: list[nn.ModuleList] = [nn.ModuleList()] * len(widths)
        upsamplers: list[nn.Module] = [nn.Identity()] * (len(widths) - 1)
        for i in reversed(range(len(widths))):
            if i + 1 < len(widths):
                out = widths[i] if resampler_changes_width else width
                upsamplers[i] = make_resample(spec.resample, "up", in_channels=width, out_channels=out,
                                              **self._common)
                width = out
            decoder[i], width = self._decoder_level(spec.levels[i], width, widths[i], skip_widths[i])
        self.decoder = nn.ModuleList(decoder)
        self.upsamplers = nn.ModuleList(upsamplers)

        self.out_norm = nn.GroupNorm(spec.norm_groups, width)
        self.out_conv = zero_init_(nn.Conv2d(width, spec.out_channels, 3, padding=1))

    def _layer(self, level: LevelSpec, in_channels: int, width: int, *,
               attention: str | None = None, takes_skip: bool = False, temporal: bool = False) -> _Layer:
        spec = self.spec
        block = make_res_block(
            level.conv, in_channels=in_channels, out_channels=width,
            se_reduction=spec.se_reduction if level.se else None, expansion=spec.expansion,
            **self._common)
        attn = make_attention(
            level.attention if attention is None else attention, channels=width,
            heads=spec.attention_heads(width), norm_groups=spec.norm_groups,
            emb_channels=self._common["emb_channels"])
        mixer = _temporal_layer(level.temporal, channels=width, heads=spec.attention_heads(width),
                                norm_groups=spec.norm_groups, frames=spec.frames) if temporal else None
        return _Layer(block, attn, takes_skip=takes_skip, temporal=mixer)

    def _decoder_level(self, level: LevelSpec, width: int, level_width: int,
                       skip_widths: list[int]) -> tuple[nn.ModuleList, int]:
        """The decoder layers of one level for h of ``width`` channels, and h's width after
        them; layer j consumes the most recent remaining skip (``skip_widths`` in store order)."""
        concat = self.spec.skip_fusion == "concat"
        remaining = list(skip_widths)
        layers = []
        for j in range(level.decoder_blocks):
            takes_skip = bool(remaining)
            skip = remaining.pop() if takes_skip else 0
            in_channels = width + skip if concat else width
            layers.append(self._layer(level, in_channels, level_width, takes_skip=takes_skip,
                                      temporal=_gets_temporal(level, j, level.decoder_blocks)))
            width = level_width
        return nn.ModuleList(layers), width

    def _check_inputs(self, x: Tensor, t: Tensor | float) -> Tensor:
        spec = self.spec
        factor = 2 ** (len(spec.levels) - 1)
        if x.ndim not in (4, 5) or x.shape[1] != spec.in_channels or (x.ndim == 5 and x.shape[2] < 1):
            raise ValueError(f"expected x of shape (B, {spec.in_channels}, H, W) or (B, {spec.in_channels}, F, H, W), "
                             f"got {tuple(x.shape)}")
        if x.shape[-2] % factor or x.shape[-1] % factor:
            raise ValueError(f"image size {tuple(x.shape[-2:])} is not divisible by {factor} "
                             f"for {len(spec.levels)} levels")
        if not isinstance(t, Tensor):  # a Python int or float, as diffusers' UNet2DModel accepts
            t = torch.tensor(t, device=x.device)
        if t.ndim == 0:  # one timestep for the whole batch
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(f"expected t of shape ({x.shape[0]},), got {tuple(t.shape)}")
        return t

    def forward(self, x: Tensor, t: Tensor | float) -> Tensor:
        t = self._check_inputs(x, t)
        if x.ndim == 5:  # a video: every frame through the spatial layers, clip-major
            b, c, frames, hgt, wid = x.shape
            out = self._forward_frames(x.transpose(1, 2).reshape(b * frames, c, hgt, wid), t, frames)
            return out.reshape(b, frames, -1, hgt, wid).transpose(1, 2)
        return self._forward_frames(x, t, 1)

    def _forward_frames(self, x: Tensor, t: Tensor, frames: int) -> Tensor:
        """``x (B*F, C, H, W)``, clip-major, with ``t (B,)`` one timestep per clip."""
        emb = self.time_embed(t)                         # (B, 4*base_channels)
        if frames > 1:
            emb = emb.repeat_interleave(frames, dim=0)   # (B*F, ...): each frame its clip's timestep
        h = self.stem(x)                                 # (B, c_0, H, W)

        skips: list[list[Tensor]] = []
        for i, layers in enumerate(self.encoder):
            level_skips = [h]                            # the level input is a skip too
            for layer in layers:
                h = layer(h, emb, frames)
                level_skips.append(h)
            skips.append(level_skips)
            if i < len(self.downsamplers):
                h = self.downsamplers[i](h, emb)         # (B, c_{i+1}, H_i/2, W_i/2)

        for layer in self.mid:
            h = layer(h, emb, frames)

        concat = self.spec.skip_fusion == "concat"
        for i in reversed(range(len(self.decoder))):
            if i < len(self.upsamplers):
                h = self.upsamplers[i](h, emb)           # (B, c_i, H_i, W_i)
            for layer in self.decoder[i]:
                if layer.takes_skip:
                    skip = skips[i].pop()                # most recent remaining skip of level i
                    h = torch.cat([h, skip], dim=1) if concat else h + skip  # (B, 2c_i | c_i, ..)
                h = layer(h, emb, frames)
        # any skips left in `skips` are unused by design (decoder_blocks < blocks + 1)

        return self.out_conv(F.silu(self.out_norm(h)))  # (B, out_channels, H, W)


def _gets_temporal(level: LevelSpec, index: int, count: int) -> bool:
    """Whether block ``index`` of ``count`` in ``level`` is followed by the level's temporal layer."""
    return level.temporal != "none" and (level.temporal_placement == "every" or index == count - 1)


def build_unet(spec: UNetSpec) -> UNet:
    """Build the :class:`UNet` that ``spec`` describes (freshly initialised, on the CPU)."""
    return UNet(spec)


def count_parameters(spec: UNetSpec) -> int:
    """Number of parameters of ``build_unet(spec)``, counted on the ``meta`` device.

    No memory is allocated and no weights are initialised, so this is cheap enough to run on
    every candidate in a search.
    """
    with torch.device("meta"):
        model = UNet(spec)
    return sum(p.numel() for p in model.parameters())
