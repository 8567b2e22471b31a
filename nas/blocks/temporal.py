"""Layers that mix information across the frames of a video, the per-level ``temporal`` types.

A video U-Net here is the image U-Net applied to every frame (its spatial layers see a batch of
``B * F`` frames, kernel ``(1, 3, 3)`` in 3D terms) with temporal layers between them, the
factorised space-time layout of Video Diffusion Models (Ho et al. 2022, arXiv:2204.03458) and
Make-A-Video's pseudo-3D layers (Singer et al. 2022, arXiv:2209.14792):

- ``conv1d``: a kernel-3 convolution over frames at each pixel (Make-A-Video's pseudo-3D conv),
- ``attention``: multi-head self-attention over the frames at each pixel, with a learned bias
  per head and relative frame distance (the relative position embedding of Video Diffusion
  Models' temporal attention), so it works for any number of frames.

Both take ``forward(h (B*F, C, H, W), frames=F) -> (B*F, C, H, W)``, pre-normalise with
GroupNorm over (channels, frames) at each pixel, and end with a zero-initialised projection in
a residual, so a freshly built video U-Net is exactly the image U-Net run frame by frame (the
identity initialisation Make-A-Video uses for its temporal layers).  Every pixel is treated
alike and independently, so both layers commute with spatial shifts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas.blocks.layers import zero_init_

__all__ = ["TemporalAttention", "TemporalConv", "frames_to_sequences", "sequences_to_frames"]


def frames_to_sequences(h: Tensor, frames: int) -> Tensor:
    """``(B*F, C, H, W)`` frames (clip-major) -> ``(B*H*W, C, F)``: one sequence per pixel."""
    bf, c, hgt, wid = h.shape
    if frames < 1 or bf % frames:
        raise ValueError(f"a batch of {bf} frames is not a whole number of {frames}-frame clips")
    b = bf // frames
    return h.reshape(b, frames, c, hgt, wid).permute(0, 3, 4, 2, 1).reshape(b * hgt * wid, c, frames)


def sequences_to_frames(x: Tensor, frames: int, height: int, width: int) -> Tensor:
    """The inverse of :func:`frames_to_sequences`."""
    n, c, _ = x.shape
    b = n // (height * width)
    return x.reshape(b, height, width, c, frames).permute(0, 4, 3, 1, 2).reshape(b * frames, c, height, width)


class TemporalConv(nn.Module):
    """``h + conv_k3(silu(norm(h)))`` over the frames at each pixel (zero-padded at the ends)."""

    def __init__(self, channels: int, *, norm_groups: int, kernel: int = 3) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(norm_groups, channels)
        self.conv = zero_init_(nn.Conv1d(channels, channels, kernel, padding=kernel // 2))

    def forward(self, h: Tensor, frames: int) -> Tensor:
        if frames == 1:  # nothing to mix; the branch would see one frame and zero padding
            return h
        x = frames_to_sequences(h, frames)                    # (B*H*W, C, F)
        y = self.conv(F.silu(self.norm(x)))
        return h + sequences_to_frames(y, frames, h.shape[2], h.shape[3])


class TemporalAttention(nn.Module):
    """Multi-head self-attention over the frames at each pixel with a learned relative-distance
    bias per head; distances beyond ``max_distance`` share the last bias."""

    def __init__(self, channels: int, *, heads: int, norm_groups: int, max_distance: int = 16) -> None:
        super().__init__()
        if heads < 1 or channels % heads:
            raise ValueError(f"{channels} channels cannot be split into {heads} attention heads")
        self.heads = heads
        self.max_distance = max_distance
        self.norm = nn.GroupNorm(norm_groups, channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.relative_bias = nn.Parameter(torch.zeros(heads, 2 * max_distance + 1))
        self.proj = zero_init_(nn.Conv1d(channels, channels, 1))

    def position_bias(self, frames: int, device: torch.device) -> Tensor:
        """``(heads, F, F)``: the bias of query frame i attending to key frame j."""
        pos = torch.arange(frames, device=device)
        distance = (pos[None, :] - pos[:, None]).clamp(-self.max_distance, self.max_distance)
        return self.relative_bias[:, distance + self.max_distance]

    def forward(self, h: Tensor, frames: int) -> Tensor:
        if frames == 1:  # attention over one frame would be a learned per-pixel map, not mixing
            return h
        x = frames_to_sequences(h, frames)                    # (N, C, F), N = B*H*W
        n, c, f = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, self.heads, c // self.heads, f).unbind(dim=1)
        bias = self.position_bias(f, x.device).to(q.dtype)
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2),
                                             attn_mask=bias)  # (N, heads, F, d)
        out = out.transpose(-1, -2).reshape(n, c, f)
        return h + sequences_to_frames(self.proj(out), frames, h.shape[2], h.shape[3])
